"""The micro-batch choice: the largest that fits the memory left after the training state, without activation
checkpointing if possible, then fitted to the paper's global batch (a divisor of each GPU's share of it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import PAPER_GLOBAL_BATCH
from .memory import Activations

POWERS = (16, 8, 4, 2, 1)  # micro-batches tried, largest first


@dataclass(frozen=True)
class Recommendation:
    """How to train on one engine: micro-batch, checkpointing, accumulation to the global batch."""

    micro_batch: int
    gradient_checkpointing: bool
    accumulation_steps: int
    global_batch: int
    activations_at_micro_batch: float  # bytes per GPU

    def to_json(self) -> dict:
        return asdict(self)


def _largest_fitting(free: float, act: Activations, *, wanted: int | None) -> tuple[int, bool] | None:
    """(micro-batch, checkpointing) that fits ``free`` bytes: the largest power of two up to 16 without
    checkpointing, else with it; ``wanted`` forces the micro-batch. None if not even one sample fits."""
    if free <= 0:
        return None
    options = [wanted] if wanted else POWERS
    for ckpt, per in ((False, act.full), (True, act.checkpointed)):
        for mb in options:
            if mb * per <= free:
                return mb, ckpt
    return None


def recommend(free: float, act: Activations, *, regime: str, n_gpus: int,
              wanted: int | None = None) -> Recommendation | None:
    """The recommendation for ``regime`` (``ft-proj`` or ``ft-e2e``) on ``n_gpus`` with ``free`` bytes per GPU
    for activations; None if not even one sample fits."""
    choice = _largest_fitting(free, act, wanted=wanted)
    if choice is None:
        return None
    mb, ckpt = choice
    glob = PAPER_GLOBAL_BATCH[regime]
    mb = min(mb, max(1, glob // n_gpus))
    while (glob // n_gpus) % mb:
        mb -= 1
    return Recommendation(micro_batch=mb, gradient_checkpointing=ckpt,
                          accumulation_steps=max(1, glob // (n_gpus * mb)), global_batch=glob,
                          activations_at_micro_batch=mb * (act.checkpointed if ckpt else act.full))
