"""This process's place in a run: rank arithmetic and the few collectives the rest of projbench uses.

One process is rank 0 of 1 and every method is a no-op there. Several processes (``setup`` joined the group the
launcher made) split work with ``share`` / ``run_split``, combine it with ``gather`` / ``sum``, agree through
``broadcast`` / ``from_rank0``, and let only rank 0 write files (``is_main``, ``on_main``). How the trained
weights are held is not decided here but by a training engine (``engines.engine_for``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import BenchmarkError


@dataclass
class ProcessContext:
    """This process's place in the run. One process: rank 0 of 1, no accelerator."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    accelerator: Any = None
    deepspeed: bool = False  # the group was made for DeepSpeed ZeRO-3 (decided by ``setup``, before joining)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str:
        return self.accelerator.state.distributed_type.value if self.accelerator is not None else "NO"

    # -- splitting and combining work -----------------------------------------------------------------------
    def share(self, n: int) -> range:
        """This rank's contiguous block of ``range(n)``; blocks in rank order cover it exactly."""
        per, extra = divmod(n, self.world_size)
        start = self.rank * per + min(self.rank, extra)
        return range(start, start + per + (1 if self.rank < extra else 0))

    def gather(self, items: list) -> list:
        """Every rank's list, concatenated in rank order, on every rank."""
        if not self.distributed:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (rank 0 decides, e.g. whether a cache entry is reusable)."""
        if not self.distributed:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def run_split(self, jobs: list) -> list:
        """Run zero-argument ``jobs`` round-robin over the ranks; every rank gets all results in job order."""
        mine = [(i, job()) for i, job in enumerate(jobs) if i % self.world_size == self.rank]
        return [r for _, r in sorted(self.gather(mine), key=lambda x: x[0])]

    def sum(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    def on_main(self, write) -> None:
        """``write()`` on rank 0 only (files are written once); every rank continues once it is done."""
        if self.is_main:
            write()
        self.barrier()

    def from_rank0(self, fn):
        """``fn()`` run on rank 0 alone, its (small, picklable) result on every rank. If it raises, every rank
        raises (rank 0 its own exception, the others a BenchmarkError with its message): none is left waiting in a
        collective for a rank that gave up."""
        outcome, failure = None, None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                outcome, failure = ("error", str(exc)), exc
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise failure if self.is_main else BenchmarkError(value)
        return value

    def rank0_first(self, fn):
        """``fn()`` on rank 0, then on the other ranks, which so see what rank 0 built or cleaned up."""
        if self.distributed and not self.is_main:
            self.barrier()
        out = fn()
        if self.distributed and self.is_main:
            self.barrier()
        return out

    @contextlib.contextmanager
    def main_holds(self, lock):
        """Rank 0 holds ``lock`` (e.g. a run folder's file lock) for the whole group, waiting if another job has
        it; the other ranks go on once it does."""
        with lock if self.is_main else contextlib.nullcontext():
            self.barrier()
            yield

    def main_only(self, log):
        """``log`` on rank 0, a silent one elsewhere: one log for the whole run."""
        return log if self.is_main else (lambda *a, **k: None)

    def trained_weights_sharded(self, requested_engine: str) -> bool:
        """Whether training under ``--engine requested_engine`` leaves the weights split over the ranks, so that
        evaluation needs a fresh copy of the model with the trained weights put back whole."""
        return self.distributed and (requested_engine == "fsdp2" or self.deepspeed)

    def check_training_dtype(self, dtype: str) -> None:
        """Refuse a precision this group's engine cannot train in, before anything is loaded."""
        if self.deepspeed and dtype == "float16":
            raise BenchmarkError("--dtype float16 with DeepSpeed: projbench trains it in bf16 or fp32 (fp16 would "
                                 "need loss scaling, which skips steps); use --dtype bfloat16 or float32.")

    def release(self) -> None:
        """Drop accelerate's references to the trained engine (its partitioned weights and optimizer state)."""
        if self.accelerator is not None:
            self.accelerator.free_memory()


Context = ProcessContext  # the name modules and tests used before the engines moved out of it
