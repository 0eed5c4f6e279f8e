"""Data parallelism through accelerate: every rank holds all weights, gradients are all-reduced."""

from __future__ import annotations

import torch

from .single import Single


class DDP(Single):
    """accelerate's DistributedDataParallel; its state is what one process holds (rank 0 writes it)."""

    name = "ddp"

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.ctx.accelerator.prepare_model(module)
