"""The built-in analyses as data: each names its run function ("module:function"), imported when it runs.

So `list analyses` (and the registry) never imports torch or scikit-learn. ``requires`` names the adapter
protocols an analysis uses (:mod:`benchmark.adapters.contract`).
"""

from __future__ import annotations

from . import AnalysisSpec

_M = "benchmark.analyses."
# Everything that reads the LLM's hidden states (benchmark.analyses.hidden): images projected, prompts encoded,
# the model's forward run with hooks on its blocks.
HIDDEN_STATES = ("projection", "prompting", "language-model", "layer-access")

LAYER_PROBE = AnalysisSpec(
    name="layer-probe",
    run=_M + "layer_probe:run",
    citation="Verma et al., ACL 2024 (arXiv 2402.16832), probe A.2; layer-wise as in Venhoff et al. 2025; "
             "control task: Hewitt & Liang, EMNLP 2019",
    description="richness probe (macro-F1) on mean-pooled image-token states at every LLM layer, with a "
                "control task (a random label per feature cluster, as the run's probe)",
    options=("probe_max_epochs", "tokens_per_image"),
    requires=HIDDEN_STATES,
)
LOGIT_LENS = AnalysisSpec(
    name="logit-lens",
    run=_M + "logit_lens:run",
    citation="nostalgebraist, 'interpreting GPT: the logit lens' (2020); on visual tokens: Neo et al., "
             "'Towards Interpreting Visual Information Processing in VLMs' (ICLR 2025)",
    description="per layer, image-token states decoded through the LM head (with/without final norm): rank of "
                "the correct class name's first token, top tokens",
    options=("tokens_per_image", "top_tokens"),
    requires=HIDDEN_STATES,
)
MODALITY_GAP = AnalysisSpec(
    name="modality-gap",
    run=_M + "modality_gap:run",
    citation="Liang et al., 'Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive "
             "Representation Learning', NeurIPS 2022",
    description="per layer, Liang et al.'s gap: distance between the means of the L2-normalised image and text "
                "vectors (uncentred; text = prompt after the image), with the centred and raw variants and a "
                "permutation baseline",
    options=("permutations",),
    version=2,  # 2: Liang et al.'s uncentred gap as the primary curve; text states after the image only
    requires=HIDDEN_STATES,
)
MIR = AnalysisSpec(
    name="mir",
    run=_M + "mir:run",
    citation="Huang et al., 'Deciphering Cross-Modal Alignment in Large Vision-Language Models with Modality "
             "Integration Rate' (arXiv 2410.07167, 2024)",
    description="per layer Fréchet distance between image-token states and the text states after the image "
                "(text-centric scaling, outlier replacement, exact matrix root); MIR = log10 of the sum",
    options=("tokens_per_image", "mir_compat"),
    version=2,  # 2: text states after the image only, no start or special tokens
    variant=lambda o: "compat" if o.mir_compat else "",
    requires=HIDDEN_STATES,
)
KNOCKOUT = AnalysisSpec(
    name="knockout",
    run=_M + "knockout:run",
    citation="Zhang et al., 'Cross-modal Information Flow in Multimodal Large Language Models', CVPR 2025; "
             "attention knockout: Geva et al., EMNLP 2023",
    description="block attention to the image tokens (from the answer positions, or from all text) in a "
                "sliding window of layers; drop of the correct class's log-likelihood",
    options=("knockout_window", "knockout_max_images", "batch_size"),
    requires=("projection", "prompting", "language-model", "layer-access"),
)
WEIGHT_CHANGE = AnalysisSpec(
    name="weight-change",
    run=_M + "weight_change:run",
    citation="relative weight change per layer, as used to locate fine-tuning updates (e.g. Lee et al., "
             "'Surgical Fine-Tuning', ICLR 2023); FT-E2E/FT-Proj states of Verma et al., ACL 2024",
    description="relative Frobenius change of every LLM block and module (and the projector) against the "
                "original weights",
    on_original_model=True,
    requires=("parts", "layer-access"),
)

ANALYSES = [LAYER_PROBE, LOGIT_LENS, MODALITY_GAP, MIR, KNOCKOUT, WEIGHT_CHANGE]
