"""What ``plan --measure`` trains and how much it measures, importable without torch: the command checks
``--regimes`` against it before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import Regime

TRAINED = (Regime.FT_PROJ, Regime.FT_E2E, Regime.FT_E2E_LORA)  # LoRA last: it adds modules to the LLM
TRAINED_NAMES = tuple(r.value for r in TRAINED)


@dataclass(frozen=True)
class Settings:
    """How much to measure: optimizer steps after ``warmup`` steps, the micro-batch (None: the plan's), the
    evaluation batch, and the GPU's peak (None on CPU: no MFU, no predicted time)."""

    steps: int = 3
    warmup: int = 1
    micro_batch: int | None = None
    eval_images: int = 4
    peak_tflops: float | None = None
    mfu: float = 0.35
    regimes: tuple[str, ...] = TRAINED_NAMES  # which trained regimes to measure (if they fit)
    checkpointed: tuple[str, ...] = ()  # regimes measured with activation checkpointing even where not needed
    engine: str = "auto"  # several processes: the training engine (run's --engine)
