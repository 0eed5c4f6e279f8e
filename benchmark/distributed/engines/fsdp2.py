"""Sharded weights with PyTorch FSDP2 (``fully_shard``), and accelerate's FSDP config (FSDP2 on GPUs).

Parameters, gradients and optimizer state are DTensor shards, about 1 / processes of each on every rank. The full
state goes out and in through torch's distributed-checkpoint state-dict API: whole tensors gathered to rank 0's
host memory, and given back by broadcast from rank 0 (one whole copy in host memory, not one per rank; every rank
gets the very bytes rank 0 read and checked).
"""

from __future__ import annotations

import torch

from ..context import ProcessContext
from ..tensors import is_sharded, optimizer_param_names
from .base import FullState, ReadState
from .single import Single


class FSDP2(Single):
    """``fully_shard`` on each of ``shard_modules`` (decoder layers) and on the root; runs on CPU / gloo too."""

    name = "fsdp2"

    def __init__(self, ctx: ProcessContext, shard_modules=()):
        super().__init__(ctx)
        self.shard_modules = list(shard_modules)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import fully_shard

        for m in self.shard_modules:
            fully_shard(m)
        fully_shard(module)
        return module

    def state_out(self, model: torch.nn.Module, optimizer) -> FullState | None:
        from torch.distributed.checkpoint import state_dict as dsd

        options = dsd.StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        weights = dsd.get_model_state_dict(model, options=options)
        by_name = dsd.get_optimizer_state_dict(model, optimizer, options=options)
        return FullState(weights, by_name) if self.ctx.is_main else None

    def state_in(self, model: torch.nn.Module, optimizer, read: ReadState) -> dict:
        """Only rank 0 reads and checks the file; a file it refuses is refused on every rank."""
        from torch.distributed.checkpoint import state_dict as dsd

        names = optimizer_param_names(model, optimizer)
        held = FullState({}, {})  # rank 0's whole tensors; the other ranks receive them below

        def read_on_rank0():
            info, state = read(names)
            held.weights, held.optimizer = state.weights, state.optimizer
            return info

        info = self.ctx.from_rank0(read_on_rank0)
        # strict=False for the model: the file holds the trained weights only, the frozen ones stay as built.
        dsd.set_model_state_dict(model, held.weights, options=dsd.StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True, strict=False))
        dsd.set_optimizer_state_dict(model, optimizer, held.optimizer, options=dsd.StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True))
        return info


class AccelerateFSDP(FSDP2):
    """What accelerate's FSDP plugin makes of the module (``accelerate launch`` with an FSDP config, on GPUs)."""

    def __init__(self, ctx: ProcessContext, name: str = "fsdp"):
        super().__init__(ctx)
        self.name = name  # as requested (--engine ddp under an FSDP config is recorded as asked)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.ctx.accelerator.prepare_model(module)

    def resumable_problem(self, model: torch.nn.Module) -> str | None:
        """FSDP2's DTensors can be saved whole; FSDP1's flat shards cannot."""
        if is_sharded(model):
            return None
        return (f"accelerate's {self.ctx.backend} engine holds the trained weights in shards projbench cannot save "
                "for a resume (it gathers PyTorch FSDP2's DTensors): set `fsdp_version: 2` in the accelerate "
                "config (as configs/accelerate/*fsdp.yaml do), or pass --checkpoint-every 0 to train without "
                "mid-training checkpoints")
