"""Typed run configuration: what one `run` does, with the paper's defaults (DESIGN.md §1).

Kept free of heavy imports so that the command line can build its parser and list the registry quickly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .schema import PROTOCOL_REGIMES, TRAINING_FIELDS, Regime

REGIMES = tuple(r.value for r in PROTOCOL_REGIMES)
BASELINES = Regime.BASELINES.value  # optional stage: random, CLIP zero-shot, probe on CLIP's embedding (benchmark/baselines.py)
STAGES = (*REGIMES, BASELINES)
CLIP_TEMPLATES = ("This is a photo of {}.",)  # transformers' zero-shot-image-classification default
EVAL_MODES = ("loglik", "generate")  # class log-likelihood (default) | greedy decoding + name matching
SCORE_NORMS = ("sum", "mean")        # loglik: summed log-probability of the answer tokens (default) | per-token mean
EARLY_STOPPING = ("loss", "f1")      # probe: validation loss (the paper) | validation macro-F1

# Global batch (examples per optimizer step over all GPUs) of the paper's training scripts, which follow LLaVA-1.5's:
# LLaVA-1.5's per-device batches (pretrain.sh 32, finetune.sh 16, on 8 GPUs) on the paper's 2 GPUs: FT-Proj
# 2 x 32 = 64, FT-E2E 2 x 16 = 32.
PAPER_GLOBAL_BATCH = {Regime.FT_PROJ.value: 64, Regime.FT_E2E.value: 32}


@dataclass(frozen=True)
class ProbeConfig:
    hidden: tuple[int, ...] = (2048, 1536, 1024, 512, 256)  # paper A.2
    lr: float = 1e-4                 # Adam
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 5                # epochs without a better validation score before stopping
    early_stopping: str = "loss"     # "loss": lowest validation loss (the paper, A.2) | "f1": best val macro-F1
    val_fraction: float = 0.1        # of each training class, held out for early stopping
    standardize: bool = True         # z-score inputs with training statistics: measure information, not scale
    control: bool = True             # also train a control probe on shuffled labels (Hewitt & Liang, 2019)

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
    gradient_checkpointing: bool = False
    checkpoint_every: int | None = None  # optimizer steps between resumable checkpoints; None = auto, 0 = never


@dataclass(frozen=True)
class RunConfig:
    model: str
    task: str
    seeds: tuple[int, ...] = (0,)
    regimes: tuple[str, ...] = REGIMES
    data_dir: str | None = None         # local train/<class>/*, test/<class>/* instead of the task's source
    model_path: str | None = None       # local checkpoint directory instead of the hub id
    domain: str | None = None           # override of the prompt's domain phrase
    results_dir: str | None = None
    cache_dir: str | None = None
    eval_mode: str = "loglik"
    score_norm: str = "sum"             # loglik: rank classes by summed (paper) or per-token mean log-probability
    template: str | None = None         # the adapter's prompt template variant; None = the adapter's default
    drop_duplicates: bool = False       # remove test images byte-identical to a training image
    global_batch: int | None = None     # examples per optimizer step over all processes; None = the paper's (below)
    engine: str = "auto"                # multi-process training engine: auto | ddp | fsdp2 | deepspeed (distributed.py)
    micro_batch: int | None = None      # examples per process and forward (None: the largest divisor of the
                                        # process's share up to 8); accumulation = global / (micro x procs)
    eval_batch_size: int = 8
    score_rows: int = 32                # loglik: KV-cache rows (examples x classes) scored at once; bounds memory
    epochs: int = 1
    lr_proj: float = 1e-3               # LLaVA-1.5 pre-training lr for the projector
    lr_e2e: float = 2e-5                # LLaVA-1.5 fine-tuning lr
    warmup_ratio: float = 0.03
    lora: bool = False                  # FT-E2E with LoRA on the LLM (LLaVA-1.5 LoRA recipe), labelled in results
    lora_rank: int = 128
    lr_lora: float = 2e-4               # LoRA weights; the projector keeps lr_e2e
    gradient_checkpointing: bool = False
    checkpoint_every: int | None = None  # resumable training checkpoints (optimizer steps); None = auto
    max_per_class: int | None = None    # quick runs: at most k images per class and split
    device: str = "auto"
    dtype: str | None = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    clip_model: str | None = None       # baselines: open_clip model; None = the CLIP the adapter declares
    clip_pretrained: str | None = None  # baselines: open_clip pretrained tag or weight file
    clip_templates: tuple[str, ...] = CLIP_TEMPLATES  # baselines: zero-shot prompts, averaged CLIP-style
    keep_checkpoints: bool = False
    progress: bool = True

    # Fields that do not change results, and so are left out of the run's identity. ``micro_batch`` only splits
    # the global batch: the loss is token-weighted over the whole global batch, so the gradient does not depend
    # on it (tests/test_global_batch.py); the resolved global batch is part of the identity instead.
    _NOT_IDENTITY = ("results_dir", "cache_dir", "progress", "keep_checkpoints", "regimes", "seeds", "device",
                     "checkpoint_every", "score_rows", "micro_batch", "engine")

    def global_batch_for(self, regime: str) -> int:
        """The global batch of a fine-tuning regime: ``global_batch`` if set, else the paper's scripts' value."""
        return self.global_batch or PAPER_GLOBAL_BATCH[regime]

    # What the baselines stage depends on: the task's data, the CLIP and its prompts, the probe. The adapter
    # (``model``) only chooses the default CLIP, which the runner resolves into clip_model/clip_pretrained.
    _BASELINE_IDENTITY = ("model", "task", "data_dir", "max_per_class", "probe", "clip_model", "clip_pretrained",
                          "clip_templates")

    def identity(self, regime: str, seed: int) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in self._NOT_IDENTITY}
        if regime == BASELINES:
            return {**{k: d[k] for k in self._BASELINE_IDENTITY}, "regime": regime, "seed": seed}
        d.update(regime=regime, seed=seed)
        for k in ("clip_model", "clip_pretrained", "clip_templates"):
            d.pop(k)  # only the baselines stage uses a CLIP
        if regime != Regime.FT_E2E:
            d.pop("lora"), d.pop("lora_rank"), d.pop("lr_lora"), d.pop("lr_e2e")
        elif not self.lora:
            d.pop("lora_rank"), d.pop("lr_lora")
        if regime != Regime.FT_PROJ:
            d.pop("lr_proj")
        if regime == Regime.ZERO_SHOT:
            for k in ("global_batch", "epochs", "warmup_ratio", "gradient_checkpointing"):
                d.pop(k)
        else:
            d["global_batch"] = self.global_batch_for(regime)
        return d

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


