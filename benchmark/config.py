"""Typed run configuration in sections: what one `run` does, with the paper's defaults (DESIGN.md §1).

Each :class:`RunConfig` field is declared once, with its section, flag(s) and help in the field's metadata
(:func:`option`). The sections are:

- ``model``: the adapter, its checkpoint and the dtype of the computation (bf16 and fp32 give different numbers);
- ``data``: the task and which of its images are used;
- ``evaluation``: how test images are prompted and scored;
- ``training``: the fine-tuned regimes' hyper-parameters; fields of one regime say so (``regimes``);
- ``probe`` and ``baselines``: the probe's settings and the CLIP baselines stage;
- ``execution``: where and how the same computation runs (device, micro-batch, engine, folders, progress,
  checkpoints); by construction outside every identity;
- ``plan``: which seeds and regimes are run; each result folder carries its own seed and regime instead.

Why flat fields with sections in metadata rather than nested section objects: the training stages, the analyses
and the tests read ``cfg.lr_proj``, ``cfg.micro_batch`` … and build ``RunConfig(model=…, lr_e2e=…)`` and
``dataclasses.replace(cfg, epochs=2)``; flat fields keep all of that, keep the identity dictionaries (and so the
hashes of existing result folders) exactly as before, and still let everything that concerns a section be
derived from the one declaration: the identity of a stage (:meth:`RunConfig.identity`), the ``run`` parser's
argument groups (:mod:`benchmark.cli`), and the per-section frozen views (:meth:`RunConfig.section`).

Kept free of heavy imports so that the command line can build its parser and list the registry quickly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .schema import PROTOCOL_REGIMES, TRAINING_FIELDS, Regime, RunKey

REGIMES = tuple(r.value for r in PROTOCOL_REGIMES)
BASELINES = Regime.BASELINES.value  # optional stage: random, CLIP zero-shot, probe on CLIP's embedding (benchmark/baselines.py)
STAGES = (*REGIMES, BASELINES)
CLIP_TEMPLATES = ("This is a photo of {}.",)  # transformers' zero-shot-image-classification default
EVAL_MODES = ("loglik", "generate")  # class log-likelihood (default) | greedy decoding + name matching
SCORE_NORMS = ("sum", "mean")        # loglik: summed log-probability of the answer tokens (default) | per-token mean
EARLY_STOPPING = ("loss", "f1")      # probe: validation loss (the paper) | validation macro-F1
ENGINE_CHOICES = ("auto", "ddp", "fsdp2", "deepspeed")
FINE_TUNED = (Regime.FT_PROJ.value, Regime.FT_E2E.value)

# Global batch (examples per optimizer step over all GPUs) of the paper's training scripts, which follow LLaVA-1.5's:
# LLaVA-1.5's per-device batches (pretrain.sh 32, finetune.sh 16, on 8 GPUs) on the paper's 2 GPUs: FT-Proj
# 2 x 32 = 64, FT-E2E 2 x 16 = 32.
PAPER_GLOBAL_BATCH = {Regime.FT_PROJ.value: 64, Regime.FT_E2E.value: 32}
DEFAULT_MICRO_BATCH = 8

# The sections, in the order of the `run --help` groups, with the groups' titles.
SECTIONS = {
    "model": "model",
    "data": "data",
    "evaluation": "evaluation",
    "training": "training (FT-Proj and FT-E2E)",
    "probe": "probe",
    "baselines": "baselines stage",
    "execution": "execution (does not change results)",
    "plan": "what to run",
}
# Sections that never change a number in metrics.json: left out of every identity.
OUTSIDE_IDENTITY = ("execution", "plan")
# What each stage's identity is made of. The baselines stage reads the adapter's name only to choose the default
# CLIP, which the runner resolves into clip_model/clip_pretrained; it never loads the model.
BASELINE_SECTIONS = ("data", "probe", "baselines")
BASELINE_MODEL_FIELDS = ("model",)
MLLM_SECTIONS = ("model", "data", "evaluation", "probe")


def option(default=None, *, section: str, help: str | None = None, flags: tuple[str, ...] = (), **cli):
    """A RunConfig field with its section and command-line form.

    ``flags``: the option strings (default ``--<name-with-dashes>``); ``help``: argparse's help; ``cli``: other
    argparse keywords (``type``, ``choices``, ``metavar``), or ``cli_kind`` for how the value is read
    (``int_list``, ``str_list``, ``flag`` for store_true, ``negated`` for a ``--no-…`` switch, ``append``,
    ``none`` for fields with no flag of their own); ``regimes``: the fine-tuned regimes a training field belongs
    to; ``only_if``: the boolean field without which it has no effect.
    """
    assert section in SECTIONS, section
    meta = {"section": section, "help": help, "flags": flags, **cli}
    if isinstance(default, dataclasses.Field):  # already a field(default_factory=…)
        return field(default_factory=default.default_factory, metadata=meta)
    return field(default=default, metadata=meta)


PROBE_PATIENCE = 5
PROBE_SEEDS = 2


@dataclass(frozen=True)
class ProbeConfig:
    """The probe's settings; the fields with ``flags`` are ``run`` options (section ``probe``)."""

    hidden: tuple[int, ...] = (2048, 1536, 1024, 512, 256)  # paper A.2
    lr: float = 1e-4                 # Adam
    batch_size: int = 128
    max_epochs: int = option(100, section="probe", flags=("--probe-max-epochs",), type=int)
    patience: int = PROBE_PATIENCE   # epochs without a better validation score before stopping
    # "loss": lowest validation loss (the paper, A.2) | "f1": best val macro-F1
    early_stopping: str = option(
        "loss", section="probe", flags=("--probe-early-stopping",), choices=EARLY_STOPPING,
        help=f"stop the probe on validation loss (default, as the paper) or macro-F1; patience {PROBE_PATIENCE} "
             "epochs")
    val_fraction: float = 0.1        # of each training class, held out for early stopping
    # probes per feature set, trained together from seeds derived from the run seed; their mean is reported
    seeds: int = option(PROBE_SEEDS, section="probe", flags=("--probe-seeds",), type=int,
                        help=f"probe seeds per feature set (default {PROBE_SEEDS}): the score is their mean, and "
                             "its interval resamples them with the test images")
    standardize: bool = True         # z-score inputs with training statistics: measure information, not scale
    # also train the probe on a control task (Hewitt & Liang, 2019; benchmark/evaluate/control.py)
    control: bool = option(True, section="probe", flags=("--no-control-probe",), cli_kind="negated",
                           help="skip the control task (a random label per feature cluster; halves probe time; no "
                                "selectivity reported)")

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    lr: float                       # 1e-3 FT-Proj, 2e-5 FT-E2E (LLaVA-1.5 defaults)
    epochs: int = 1
    batch_size: int = 8             # the GLOBAL batch: examples per optimizer step, over all processes
    micro_batch: int | None = None  # examples per process and forward; None = largest divisor of the share up to 8
    engine: str = "auto"            # several processes: "auto" (accelerate's: DDP, or its FSDP/DeepSpeed config),
                                    # "ddp", "fsdp2" (PyTorch fully_shard) or "deepspeed" (ZeRO-3 through
                                    # accelerate); both sharded engines run on CPU/gloo too
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora: bool = False              # FT-E2E only: LoRA on the LLM instead of full fine-tuning
    lora_rank: int = 128            # LLaVA-1.5's LoRA recipe: r 128, alpha 256, lr 2e-4 (projector keeps `lr`)
    lr_lora: float = 2e-4
    lora_dropout: float = 0.05      # on the LoRA branch, as LLaVA-1.5's finetune_lora.sh (--lora_dropout 0.05)
    gradient_checkpointing: bool = False
    checkpoint_every: int | None = None  # optimizer steps between resumable checkpoints; None = auto, 0 = never


@dataclass(frozen=True)
class RunConfig:
    """One ``run``: every field declared once, its section and flag in metadata (see the module docstring)."""

    model: str = option(section="model", help="adapter name (see `list models`)", required=True)
    task: str = option(section="data", help="task name (see `list tasks`)", required=True)
    seeds: tuple[int, ...] = option((0,), section="plan", cli_kind="int_list",
                                    help="comma-separated seeds (default: 0)")
    regimes: tuple[str, ...] = option(REGIMES, section="plan", cli_kind="str_list",
                                      help=f"subset of {','.join(REGIMES)}, plus {BASELINES} (see --baselines)")
    data_dir: str | None = option(section="data", help="local data: DIR/train/<class>/* and DIR/test/<class>/*")
    model_path: str | None = option(section="model", help="local checkpoint directory instead of the hub id")
    domain: str | None = option(section="evaluation", help="override the task's domain phrase in the prompt")
    results_dir: str | None = option(
        section="execution", help="where result folders go (default ./results or $PROJBENCH_RESULTS)")
    cache_dir: str | None = option(
        section="execution", help="feature and tiny-model cache (default ~/.cache/projbench or $PROJBENCH_CACHE)")
    eval_mode: str = option(
        "loglik", section="evaluation", flags=("--eval",), choices=EVAL_MODES,
        help="loglik: score every class name (default); generate: greedy decoding + name matching, reports the "
             "unmatched rate")
    score_norm: str = option(
        "sum", section="evaluation", choices=SCORE_NORMS,
        help="loglik: rank classes by the summed log-probability of the answer tokens (default, as scored by "
             "log-likelihood) or by its per-token mean; both are recorded either way")
    template: str | None = option(
        section="evaluation",
        help="prompt template variant of the adapter (default: the adapter's own; llava15: vicuna_v1, llava_v1 or 'short')")
    drop_duplicates: bool = option(
        False, section="evaluation", cli_kind="flag",
        help="remove test images byte-identical to a training image (default: keep them and warn)")
    # The global batch is part of the identity, resolved per regime (the paper's when None).
    global_batch: int | None = option(
        section="training", type=int,
        help="examples per optimizer step over all processes (default: the paper's, 64 for FT-Proj and 32 for "
             "FT-E2E); the loss is the mean over all answer tokens of the global batch")
    engine: str = option(
        "auto", section="execution", choices=ENGINE_CHOICES,
        help="several processes: auto = accelerate's (DDP, the FSDP of its config file on GPUs, or DeepSpeed ZeRO-3 "
             "under a DeepSpeed config), ddp, fsdp2 = PyTorch fully_shard, or deepspeed = DeepSpeed ZeRO-3 through "
             "accelerate (both shard parameters, gradients, optimizer; both also on CPU). Results do not depend on "
             "it")
    # ``micro_batch`` only splits the global batch: the loss is token-weighted over the whole global batch, so the
    # gradient does not depend on it (tests/train/test_global_batch.py).
    micro_batch: int | None = option(
        section="execution", flags=("--micro-batch", "--batch-size"), type=int,
        help="examples per process and forward (default: the largest divisor of the process's share of the global "
             "batch up to 8); gradients accumulate over global / (micro-batch x processes) micro-batches. Results "
             "do not depend on it")
    eval_batch_size: int = option(8, section="evaluation", type=int)
    score_rows: int = option(
        32, section="execution", type=int,
        help="loglik: KV-cache rows (examples x classes) scored at once; lower it if the GPU runs out of memory "
             "(0.35-0.5 GB per row for LLaVA-1.5-7B in bf16)")
    epochs: int = option(1, section="training", type=int)
    lr_proj: float = option(1e-3, section="training", type=float, regimes=(Regime.FT_PROJ.value,))  # LLaVA-1.5
    lr_e2e: float = option(2e-5, section="training", type=float, regimes=(Regime.FT_E2E.value,))    # LLaVA-1.5
    warmup_ratio: float = option(0.03, section="training", cli_kind="none")
    lora: bool = option(False, section="training", cli_kind="flag", regimes=(Regime.FT_E2E.value,),
                        help="FT-E2E with LoRA on the LLM (labelled in results)")
    lora_rank: int = option(128, section="training", type=int, regimes=(Regime.FT_E2E.value,), only_if="lora")
    lr_lora: float = option(2e-4, section="training", type=float, regimes=(Regime.FT_E2E.value,), only_if="lora",
                            help="learning rate of the LoRA weights")  # the projector keeps lr_e2e
    lora_dropout: float = option(0.05, section="training", type=float, regimes=(Regime.FT_E2E.value,),
                                 only_if="lora", help="dropout on the LoRA branch (LLaVA-1.5's finetune_lora.sh: 0.05)")
    gradient_checkpointing: bool = option(False, section="training", cli_kind="flag")
    # A resumed run equals an uninterrupted one (tests/run/test_protocol.py), so it is an execution setting.
    checkpoint_every: int | None = option(
        section="execution", type=int,
        help="optimizer steps between resumable training checkpoints (default: 10 per run when the trained weights "
             "are small, none for full fine-tuning of a large LLM; 0 = never)")
    max_per_class: int | None = option(section="data", type=int,
                                       help="quick run: at most N images per class and split")
    device: str = option("auto", section="execution")
    dtype: str | None = option(section="model",
                               help="float32 | bfloat16 | float16 (default: bf16 on GPU, fp32 on CPU)")
    probe: ProbeConfig = option(field(default_factory=ProbeConfig), section="probe", cli_kind="fields")
    clip_model: str | None = option(
        section="baselines",
        help="open_clip model for the baselines (default: the CLIP matching the adapter's vision encoder); or "
             "local-dir:DIR")
    clip_pretrained: str | None = option(section="baselines",
                                         help="open_clip pretrained tag or weight file for --clip-model")
    clip_templates: tuple[str, ...] = option(
        CLIP_TEMPLATES, section="baselines", flags=("--clip-template",), cli_kind="append",
        help="zero-shot prompt with {} for the class name; repeat to average several (default: 'This is a photo of "
             "{}.')")
    keep_checkpoints: bool = option(False, section="execution", cli_kind="flag",
                                    help="keep the full trainable state after a run")
    progress: bool = option(True, section="execution", flags=("--no-progress",), cli_kind="negated")

    @classmethod
    def fields_of(cls, *sections: str) -> tuple[str, ...]:
        """The names of the fields in ``sections``, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["section"] in sections)

    def section(self, name: str):
        """The frozen view of one section: a dataclass with that section's fields and values."""
        return _section_class(name)(**{k: getattr(self, k) for k in self.fields_of(name)})

    def global_batch_for(self, regime: str) -> int:
        """The global batch of a fine-tuning regime: ``global_batch`` if set, else the paper's scripts' value."""
        return self.global_batch or PAPER_GLOBAL_BATCH[regime]

    def identity(self, regime: str, seed: int) -> dict:
        """What the result folder of (``regime``, ``seed``) depends on: the sections that stage reads."""
        if regime == BASELINES:
            names = (*BASELINE_MODEL_FIELDS, *self.fields_of(*BASELINE_SECTIONS))
        else:
            names = (*self.fields_of(*MLLM_SECTIONS), *self._training_fields(regime))
        d = {k: _plain(getattr(self, k)) for k in names}
        d.update(regime=regime, seed=seed)
        if regime in PAPER_GLOBAL_BATCH:
            d["global_batch"] = self.global_batch_for(regime)
        return d

    def _training_fields(self, regime: str) -> tuple[str, ...]:
        """The training fields a regime reads: none for zero-shot; a field of other regimes, or one whose switch
        (``only_if``) is off, is left out."""
        if regime not in PAPER_GLOBAL_BATCH:
            return ()
        return tuple(f.name for f in dataclasses.fields(self) if f.metadata["section"] == "training"
                     and regime in f.metadata.get("regimes", (regime,))
                     and ("only_if" not in f.metadata or getattr(self, f.metadata["only_if"])))

    def replicate_identity(self, regime: str, execution: dict) -> dict:
        """The identity without the seed, plus what was resolved at run time (dtype, global batch): runs with
        equal replicate identities differ only by seed, so they may be averaged."""
        d = {k: v for k, v in self.identity(regime, 0).items() if k != "seed"}
        d["resolved_dtype"] = execution["dtype"]
        if regime != Regime.ZERO_SHOT:
            d["global_batch"] = execution["global_batch"]
        return d

    @staticmethod
    def setup_identity(replicate: dict) -> dict:
        """What every regime of one setup shares (no regime, no training hyper-parameters): the zero-shot
        baseline of a fine-tuned run must come from the same setup."""
        return {k: v for k, v in replicate.items() if k != "regime" and k not in TRAINING_FIELDS}

    def regime_dir_name(self, regime: str) -> str:
        return Regime.folder_of(regime, self.lora).value

    def run_key(self, regime: str, seed: int) -> RunKey:
        """The results folder of one (regime, seed) of this run (a LoRA FT-E2E run has a folder of its own)."""
        return RunKey(self.model, self.task, self.max_per_class, self.regime_dir_name(regime), seed)


# The fields that do not change results, and so are left out of every identity (reviewed in tests/run/test_identity.py).
RunConfig._NOT_IDENTITY = RunConfig.fields_of(*OUTSIDE_IDENTITY)


def _plain(value):
    """A field's value as ``asdict`` gives it (the nested probe settings as a dict), for the identity."""
    return asdict(value) if dataclasses.is_dataclass(value) else value


_SECTION_CLASSES: dict[str, type] = {}


def _section_class(name: str) -> type:
    """The frozen dataclass of one section, made once from RunConfig's field declarations."""
    if name not in _SECTION_CLASSES:
        if name not in SECTIONS:
            raise KeyError(f"no configuration section {name!r}; sections: {', '.join(SECTIONS)}")
        specs = [(f.name, f.type) for f in dataclasses.fields(RunConfig) if f.metadata["section"] == name]
        _SECTION_CLASSES[name] = dataclasses.make_dataclass(f"{name.title()}Section", specs, frozen=True)
    return _SECTION_CLASSES[name]


@dataclass(frozen=True)
class TrainingLayout:
    """How one fine-tuned regime's global batch is split: global = micro x processes x accumulation."""

    global_batch: int
    micro_batch: int
    accumulation: int
    processes: int


@dataclass(frozen=True)
class RunPlan:
    """A checked configuration with what it left open resolved (benchmark.validation.resolve makes it, once)."""

    cfg: RunConfig
    results_dir: Path
    cache_dir: Path
    processes: int
    training: dict[str, TrainingLayout]  # per fine-tuned regime that is run

    def train_config(self, regime: str) -> TrainConfig:
        """The training settings of ``regime``, with its resolved global batch."""
        cfg = self.cfg
        return TrainConfig(lr=cfg.lr_proj if regime == Regime.FT_PROJ else cfg.lr_e2e, epochs=cfg.epochs,
                           batch_size=self.training[regime].global_batch, micro_batch=cfg.micro_batch,
                           engine=cfg.engine, warmup_ratio=cfg.warmup_ratio,
                           lora=cfg.lora and regime == Regime.FT_E2E, lora_rank=cfg.lora_rank, lr_lora=cfg.lr_lora,
                           lora_dropout=cfg.lora_dropout,
                           gradient_checkpointing=cfg.gradient_checkpointing, checkpoint_every=cfg.checkpoint_every)
