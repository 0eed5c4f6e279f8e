"""The built-in models as data: one declaration per adapter class registers its checkpoints and tiny twins.

Classes, builders and published configurations are ``"module:attribute"`` references, imported only when a
model is built, so that the registry (and ``python -m benchmark list models``) never imports torch.
"""

from __future__ import annotations

from .spec import Checkpoint, TinyTwin, model_family

_A = "benchmark.adapters."
_TINY = "tiny random-init {} (seed 0), built offline"

LLAVA = model_family(
    _A + "llava:LlavaAdapter", projector_family="mlp",
    projector_modules="model.multi_modal_projector (linear-GELU-linear)",
    checkpoints=[
        Checkpoint("llava15", "llava-hf/llava-1.5-7b-hf",
                   "LLaVA-1.5-7B: CLIP ViT-L/14-336 + 2-layer MLP + Vicuna-7B (the paper's model)",
                   clip=("ViT-L-14-336", "openai"), architecture=_A + "configs:llava15_7b"),
        Checkpoint("llava15-13b", "llava-hf/llava-1.5-13b-hf",
                   "LLaVA-1.5-13B: CLIP ViT-L/14-336 + 2-layer MLP + Vicuna-13B",
                   clip=("ViT-L-14-336", "openai"), architecture=_A + "configs:llava15_13b"),
    ],
    twins=[TinyTwin("llava15-tiny", _A + "llava:build_tiny_llava",
                    "Tiny twin of llava15: same classes, tiny config, for tests and the offline demo",
                    checkpoint=_TINY.format("LlavaForConditionalGeneration"))],
)

_BLIP2_PROJECTOR = "qformer + query_tokens + language_projection (32 queries -> 32 LLM tokens)"
_INSTRUCTBLIP_PROJECTOR = ("qformer (instruction-aware; fixed instruction 'Classify this image into one of the "
                           "following categories.') + query_tokens + language_projection")
_EVA = ("EVA01-g-14", "laion400m_s11b_b41k")

BLIP2 = model_family(
    _A + "blip2:Blip2Adapter", projector_family="q-former", projector_modules=_BLIP2_PROJECTOR,
    checkpoints=[Checkpoint("blip2", "Salesforce/blip2-opt-2.7b",
                            "BLIP-2: EVA ViT-g/14 + Q-Former (32 queries) + OPT-2.7B",
                            clip=_EVA, architecture=_A + "configs:blip2_opt27b")],
    twins=[TinyTwin("blip2-tiny", _A + "blip2:build_tiny_blip2",
                    "Tiny twin of blip2: same classes, tiny config (OPT LLM), for tests and the offline demo",
                    checkpoint=_TINY.format("Blip2ForConditionalGeneration"))],
)

INSTRUCTBLIP = model_family(
    _A + "blip2:InstructBlipAdapter", projector_family="q-former", projector_modules=_INSTRUCTBLIP_PROJECTOR,
    checkpoints=[Checkpoint("instructblip", "Salesforce/instructblip-vicuna-7b",
                            "InstructBLIP: EVA ViT-g/14 + instruction-aware Q-Former (32 queries) + Vicuna-7B",
                            clip=_EVA, architecture=_A + "configs:instructblip_vicuna7b")],
    twins=[TinyTwin("instructblip-tiny", _A + "blip2:build_tiny_instructblip",
                    "Tiny twin of instructblip: same classes, tiny config (Llama LLM), for tests and the offline demo",
                    checkpoint=_TINY.format("InstructBlipForConditionalGeneration"))],
)

_PALIGEMMA_PROJECTOR = ("model.multi_modal_projector (PaliGemmaMultiModalProjector: one nn.Linear with bias, "
                        "SigLIP -> Gemma{})")

PALIGEMMA = model_family(
    _A + "paligemma:PaliGemmaAdapter", projector_family="linear",
    projector_modules=_PALIGEMMA_PROJECTOR.format(""),
    checkpoints=[Checkpoint("paligemma", "google/paligemma-3b-pt-224",
                            "PaliGemma-3B (pt, 224px): SigLIP-So400m + linear projection + Gemma-2B, prefix-LM "
                            "attention", clip=("ViT-SO400M-14-SigLIP", "webli"),
                            architecture=_A + "configs:paligemma_3b",
                            projector_modules=_PALIGEMMA_PROJECTOR.format(": 1152 -> 2048"))],
    twins=[TinyTwin("paligemma-tiny", _A + "paligemma:build_tiny_paligemma",
                    "Tiny twin of paligemma: same classes, tiny config, for tests and the offline demo",
                    checkpoint=_TINY.format("PaliGemmaForConditionalGeneration"),
                    projector_modules=_PALIGEMMA_PROJECTOR.format(": 32 -> 64"))],
)

_LIMBER_PROJECTOR = "multi_modal_projector of LimberModel (one nn.Linear with bias, CLIP width -> Gemma-2 width{})"

LIMBER = model_family(
    _A + "limber:LimberAdapter", projector_family="linear", projector_modules=_LIMBER_PROJECTOR.format(""),
    checkpoints=[Checkpoint(
        "limber-gemma2", None,
        "LiMBeR/Venhoff-style: frozen CLIP ViT-L/14 + one linear layer + Gemma-2-2B-it, built from parts",
        clip=("ViT-L-14", "openai"), architecture=_A + "configs:limber_gemma2",
        checkpoint="openai/clip-vit-large-patch14 + linear projector (--model-path) + google/gemma-2-2b-it",
        projector_modules=_LIMBER_PROJECTOR.format(": 1024 -> 2304"))],
    twins=[TinyTwin("limber-gemma2-tiny", _A + "limber:build_tiny_limber",
                    "Tiny twin of limber-gemma2: same classes, tiny configs, for tests and the offline demo",
                    checkpoint=_TINY.format("CLIPVisionModel + nn.Linear + Gemma2ForCausalLM"),
                    projector_modules=_LIMBER_PROJECTOR.format(": 32 -> 64"))],
)

IDEFICS3 = model_family(
    _A + "idefics3:Idefics3Adapter", projector_family="pixel-shuffle",
    projector_modules="model.connector (pixel shuffle, then modality_projection: one bias-free linear)",
    checkpoints=[
        Checkpoint("smolvlm", "HuggingFaceTB/SmolVLM-256M-Instruct",
                   "SmolVLM-256M-Instruct: SigLIP-B/16-512 + 4x4 pixel shuffle + linear + SmolLM2-135M "
                   "(64 image tokens, image splitting off); runs on a CPU",
                   clip=("ViT-B-16-SigLIP-512", "webli"), architecture=_A + "configs:smolvlm_256m"),
        Checkpoint("idefics3", "HuggingFaceM4/Idefics3-8B-Llama3",
                   "Idefics3-8B: SigLIP-so400m/14-364 + 2x2 pixel shuffle + linear + Llama-3.1-8B "
                   "(169 image tokens, image splitting off)",
                   clip=("ViT-SO400M-14-SigLIP-384", "webli"), architecture=_A + "configs:idefics3_8b"),
    ],
    twins=[
        TinyTwin("smolvlm-tiny", _A + "idefics3:build_tiny_smolvlm",
                 "Tiny twin of smolvlm: same class and template shape, tiny config, for tests and the demo",
                 checkpoint=_TINY.format("Idefics3ForConditionalGeneration").replace("seed 0", "seed 0, scale 4")),
        TinyTwin("idefics3-tiny", _A + "idefics3:build_tiny_idefics3",
                 "Tiny twin of idefics3: same class and template shape, tiny config, for tests and the demo",
                 checkpoint=_TINY.format("Idefics3ForConditionalGeneration").replace("seed 0", "seed 0, scale 2")),
    ],
)

QWEN2VL = model_family(
    _A + "qwen2vl:Qwen2VLAdapter", projector_family="patch-merger",
    projector_modules="model.visual.merger (ln_q LayerNorm, 2x2 patch concat, linear-GELU-linear)",
    checkpoints=[Checkpoint("qwen2vl", "Qwen/Qwen2-VL-2B-Instruct",
                            "Qwen2-VL-2B-Instruct: 675M ViT/14 + 2x2 patch merger + Qwen2-1.5B with M-RoPE "
                            "(fixed 448x448 input: 256 image tokens)",
                            architecture=_A + "configs:qwen2vl_2b", options={"image_size": 448})],
    # 32 px: 8x8 patches of 4 px -> 16 LLM tokens (qwen2vl.TINY_IMAGE_SIZE)
    twins=[TinyTwin("qwen2vl-tiny", _A + "qwen2vl:build_tiny_qwen2vl",
                    "Tiny twin of qwen2vl: same class, M-RoPE and template shape, tiny config, for tests and the demo",
                    checkpoint=_TINY.format("Qwen2VLForConditionalGeneration"), options={"image_size": 32})],
)

INTERNVL = model_family(
    _A + "internvl:InternVLAdapter", projector_family="pixel-shuffle-mlp",
    projector_modules="model.multi_modal_projector (after a 2x2 pixel shuffle: LayerNorm, linear-GELU-linear)",
    checkpoints=[Checkpoint("internvl3", "OpenGVLab/InternVL3-1B-hf",
                            "InternVL3-1B: InternViT-300M/14-448 + 2x2 pixel shuffle + MLP + Qwen2.5-0.5B "
                            "(one 448px tile, tiling off: 256 image tokens)",
                            architecture=_A + "configs:internvl3_1b")],
    # 32 px: 8x8 patches of 4 px, pixel-shuffled 2x2 -> 16 LLM tokens (internvl.TINY_IMAGE_SIZE)
    twins=[TinyTwin("internvl3-tiny", _A + "internvl:build_tiny_internvl",
                    "Tiny twin of internvl3: same class, tiling switch and template, tiny config, for tests and the demo",
                    checkpoint=_TINY.format("InternVLForConditionalGeneration"))],
)

COMPOSE = model_family(
    _A + "compose:ComposeAdapter", projector_family="composed",
    projector_modules="multi_modal_projector of ComposedModel (linear, mlp2x_gelu, qformer or perceiver)",
    checkpoints=[Checkpoint(
        "compose", None, "A composed MLLM: a JSON spec via --model-path (vision: timm or open_clip, projector by "
        "name, any HF causal LM)", clip=_A + "compose:declared_clip",
        checkpoint="--model-path SPEC.json, or a folder with the spec as config.json and the weights")],
)
# The tiny compositions show two projector families, so each is its own family entry.
COMPOSE += model_family(
    _A + "compose:ComposeAdapter", projector_family="mlp",
    projector_modules="multi_modal_projector of ComposedModel (mlp2x_gelu: linear-GELU-linear)",
    twins=[TinyTwin("compose-dinosiglip-mlp-tiny", _A + "compose:build_tiny_dinosiglip_mlp",
                    "Tiny Prismatic-style composition: DINOv2 + SigLIP fusion (timm) + LLaVA MLP + Llama",
                    checkpoint="tiny random-init timm DINOv2 + SigLIP ViTs (fused) + mlp2x_gelu + LlamaForCausalLM, "
                               "built offline")],
)
COMPOSE += model_family(
    _A + "compose:ComposeAdapter", projector_family="q-former",
    projector_modules="multi_modal_projector of ComposedModel (QueryTransformer: 8 learned queries, 1 block)",
    twins=[TinyTwin("compose-clip-qformer-tiny", _A + "compose:build_tiny_clip_qformer",
                    "Tiny composition: open_clip CLIP + Q-Former-style query transformer + Qwen2",
                    checkpoint="tiny random-init open_clip CLIP ViT + query transformer (8 queries) + "
                               "Qwen2ForCausalLM, built offline")],
)

# In the order `list models` showed them before (it sorts by name anyway).
ADAPTERS = [*LLAVA, *BLIP2, *INSTRUCTBLIP, *PALIGEMMA, *LIMBER, *IDEFICS3, *QWEN2VL, *INTERNVL, *COMPOSE]
