"""The plan as typed, frozen records; ``Plan.to_json()`` gives the JSON documented in docs/plan.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .hardware import Gpus
from .memory import Memory
from .micro_batch import Recommendation
from .tokens import TokenLengths


@dataclass(frozen=True)
class EngineRow:
    """One engine's answer for one regime: memory per GPU, whether it fits, how to train, wall hours."""

    memory: Memory
    peak_gb: float
    fits: bool
    gpu_gb: float
    recommended: Recommendation | None
    hours: float
    instead: str | None = None  # where it does not fit: what would, in one line

    def to_json(self) -> dict:
        return {"memory_gb": self.memory.to_gb(), "peak_gb": self.peak_gb, "fits": self.fits, "gpu_gb": self.gpu_gb,
                "recommended": self.recommended.to_json() if self.recommended else None, "hours": self.hours,
                "instead": self.instead}


@dataclass(frozen=True)
class RegimeRow:
    """One regime: what it trains, its FLOPs and hours with all GPUs working, and a row per engine."""

    trainable_parameters: int
    flops_per_train_sample: int | None  # None: zero-shot trains nothing
    flops_per_eval_sample: int
    hours_train: float | None
    hours_eval: float
    engines: dict[str, EngineRow]

    def to_json(self) -> dict:
        head = {k: v for k, v in vars(self).items() if k != "engines"}
        return {**head, "engines": {name: row.to_json() for name, row in self.engines.items()}}


@dataclass(frozen=True)
class Flops:
    """FLOPs per image of the vision encoder and the projector, per training sample and per evaluated image."""

    vision_per_image: int | None  # None: the architecture does not say how to run its vision part alone
    projector_per_image: int
    train_per_sample: dict[str, int]  # per trained regime: ft-proj, ft-e2e
    eval_per_sample: int


@dataclass(frozen=True)
class Assumptions:
    """What the estimate assumes, stated in every answer."""

    mfu: float
    dtype_bytes: int
    usable_memory_fraction: float
    trained_weight_bytes: int
    gradient_bytes: int
    adam_bytes: int
    lora_rank: int
    score_rows: int
    task_size: str  # where n_train and n_test come from
    n_train: int
    n_test: int


@dataclass(frozen=True)
class Plan:
    """Will a run fit these GPUs, and how long will it take: the answer of :func:`benchmark.plan.plan`."""

    model: str
    task: str
    config_source: str
    gpus: Gpus
    assumptions: Assumptions
    parameters: dict[str, int]  # per part (vision, projector, llm), total, lora
    tokens: TokenLengths
    flops: Flops
    hours_feature_extraction: float
    regimes: dict[str, RegimeRow]

    def to_json(self) -> dict:
        return {
            "model": self.model, "task": self.task, "config_source": self.config_source,
            "gpus": self.gpus.to_json(), "assumptions": asdict(self.assumptions),
            "parameters": dict(self.parameters), "tokens": asdict(self.tokens), "flops": asdict(self.flops),
            "hours_feature_extraction": self.hours_feature_extraction,
            "regimes": {name: row.to_json() for name, row in self.regimes.items()},
        }
