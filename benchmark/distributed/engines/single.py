"""One process (and the base of the torch engines): whole weights, a plain backward and an optimizer step."""

from __future__ import annotations

import contextlib

import torch

from ..context import ProcessContext
from ..tensors import optimizer_param_names, trained_parameters, whole
from .base import FullState, Optimization, ReadState


class Single:
    """Whole weights in this process; the optimizer state goes in and out through torch's state-dict API."""

    name = "single"
    keeps_master_weights = False

    def __init__(self, ctx: ProcessContext):
        self.ctx = ctx

    def prepare(self, module: torch.nn.Module, build) -> tuple[torch.nn.Module, Optimization]:
        module = self.wrap(module)  # before the optimizer is built: sharding replaces the parameters
        return module, build()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def accumulating(self, module: torch.nn.Module, last_micro_batch: bool):
        """Skip a wrapper's gradient all-reduce (DDP's, FSDP1's ``no_sync``) on all micro-batches but the last."""
        no_sync = getattr(module, "no_sync", None)
        return contextlib.nullcontext() if last_micro_batch or no_sync is None else no_sync()

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        loss.backward()

    def step(self, optimizer: torch.optim.Optimizer, params: list, max_grad_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(whole(torch.as_tensor(norm)))  # a sharded norm (FSDP2's DTensor) is gathered

    def resumable_problem(self, model: torch.nn.Module) -> str | None:
        return None

    def record(self) -> dict:
        return {}

    # Whole weights on every rank: rank 0 writes what it holds, and every rank reads the file itself.
    def state_out(self, model: torch.nn.Module, optimizer) -> FullState | None:
        from torch.distributed.checkpoint import state_dict as dsd

        by_name = dsd.get_optimizer_state_dict(model, optimizer)  # every rank: no rank calls torch's API alone
        if not self.ctx.is_main:
            return None
        return FullState({k: v.detach() for k, v in trained_parameters(model).items()}, by_name)

    def state_in(self, model: torch.nn.Module, optimizer, read: ReadState) -> dict:
        from torch.distributed.checkpoint import state_dict as dsd

        info, state = read(optimizer_param_names(model, optimizer))
        with torch.no_grad():
            for k, p in trained_parameters(model).items():
                p.copy_(state.weights[k])
        dsd.set_optimizer_state_dict(model, optimizer, state.optimizer)
        return info
