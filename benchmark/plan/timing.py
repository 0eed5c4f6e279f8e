"""Time from FLOPs: the GPUs' dense bf16 peak at an assumed model FLOP utilisation (MFU)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BenchmarkError
from .hardware import Gpus

DEFAULT_MFU = 0.35  # model FLOP utilisation assumed for time estimates (stated in every answer)
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Clock:
    """Seconds of work spread over all of ``hw``'s GPUs, each at ``mfu`` of its peak."""

    hw: Gpus
    mfu: float

    def __post_init__(self):
        if not 0 < self.mfu <= 1:
            raise BenchmarkError(f"--mfu must be in (0, 1], got {self.mfu}.")

    def seconds(self, flops: float) -> float:
        return flops / (self.hw.count * (self.hw.peak_tflops * 1e12 * self.mfu))

    def hours_on(self, seconds_all_gpus: float, n_gpus: int) -> float:
        """Wall hours of work that takes ``seconds_all_gpus`` on all GPUs, done on ``n_gpus`` of them."""
        return seconds_all_gpus * self.hw.count / n_gpus / SECONDS_PER_HOUR
