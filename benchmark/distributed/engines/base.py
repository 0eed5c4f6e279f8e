"""The engine protocol: how one training run holds, steps and saves its trained weights.

The training loop is written once against ``Engine``; an engine decides how the weights are held (whole in one
process, whole on every rank with DDP, sharded with FSDP2, partitioned by DeepSpeed ZeRO-3) and hides it behind
five things: ``prepare`` the module and its optimizer, ``backward`` a micro-batch's loss, ``step`` the optimizer
at the end of a global batch, and take the full training state out (``state_out``) and back in (``state_in``).

The full state is what one process would hold, whatever the engine: the trained weights as whole tensors by their
plain names, and the optimizer state in torch's distributed-checkpoint layout (keyed by parameter name). So a
state written under one engine and number of processes resumes under any other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class Optimization:
    """What the training loop steps: the optimizer and its learning-rate schedule."""

    optimizer: torch.optim.Optimizer
    scheduler: Any


@dataclass(frozen=True)
class BatchLayout:
    """How the training loop splits a global batch, and the settings of its step an engine may have to apply."""

    global_batch: int
    micro_batch: int
    accumulation_steps: int
    max_grad_norm: float
    dtype: torch.dtype


@dataclass
class FullState:
    """Trained weights ``{plain name: whole tensor}`` and optimizer state keyed by parameter name
    (``{"state": {name: {...}}, "param_groups": [{..., "params": [names]}]}``, torch's full-state layout)."""

    weights: dict[str, torch.Tensor]
    optimizer: dict


# Reads a saved state, given the plain names of the optimizer's parameters in torch's order (to check the file
# against): returns ``(info, FullState)``, ``info`` being small picklable values (step, losses, schedule...).
ReadState = Callable[[list[str]], tuple[dict, FullState]]


class Engine(Protocol):
    """One training run's engine (a fresh one per run: it holds the prepared module and optimizer)."""

    name: str  # as recorded in metrics.json (training.engine)
    keeps_master_weights: bool  # it keeps fp32 copies of half-precision weights itself (else the loop upcasts)

    def prepare(self, module: torch.nn.Module,
                build: Callable[[], Optimization]) -> tuple[torch.nn.Module, Optimization]:
        """The module as the engine runs it, and the optimization ``build()`` made for its parameters."""

    def accumulating(self, module: torch.nn.Module, last_micro_batch: bool) -> AbstractContextManager:
        """Around a micro-batch's forward and backward: gradients are synchronised after the last one only."""

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None: ...

    def step(self, optimizer: torch.optim.Optimizer, params: list, max_grad_norm: float) -> float:
        """Clip, step and zero the gradients after a global batch; the gradient norm before clipping."""

    def resumable_problem(self, model: torch.nn.Module) -> str | None:
        """Why the training state of ``model`` cannot be saved whole here; None if it can."""

    def state_out(self, model: torch.nn.Module, optimizer) -> FullState | None:
        """The full state on rank 0, None on other ranks; every rank calls it (sharded state is gathered)."""

    def state_in(self, model: torch.nn.Module, optimizer, read: ReadState) -> dict:
        """Load what ``read`` returns into ``model`` and ``optimizer`` on every rank; returns its ``info``."""

    def record(self) -> dict:
        """Entries the engine adds to the training record."""
