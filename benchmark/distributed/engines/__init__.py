"""Training engines: one strategy per way of holding the trained weights, chosen once per training run.

``engine_for`` picks it from the process context and the requested ``--engine``: one process trains unsharded
(``Single``); several use DeepSpeed ZeRO-3 when the group was made for it, PyTorch FSDP2 (``--engine fsdp2``),
accelerate's FSDP when launched with an FSDP config, and otherwise DDP.
"""

from __future__ import annotations

from ..context import ProcessContext
from .base import BatchLayout, Engine, FullState, Optimization, ReadState
from .ddp import DDP
from .deepspeed import DeepSpeed, DeepSpeedBatch, deepspeed_config, overwrite
from .fsdp2 import FSDP2, AccelerateFSDP
from .single import Single


def engine_for(ctx: ProcessContext, requested: str, *, layout: BatchLayout, shard_modules=()) -> Engine:
    """A fresh engine for one training run. ``shard_modules``: what FSDP2 shards as units (decoder layers)."""
    if not ctx.distributed:
        return Single(ctx)
    if ctx.deepspeed:
        return DeepSpeed(ctx, layout)
    if requested == "fsdp2":
        return FSDP2(ctx, shard_modules)
    if ctx.backend == "FSDP":  # accelerate launched with an FSDP config (GPUs: it ignores FSDP on CPU)
        return AccelerateFSDP(ctx, "fsdp" if requested == "auto" else requested)
    return DDP(ctx)


def engine_notes(training: dict) -> list[str]:
    """Lines worth logging about how an engine ran a training (``training``: its record in metrics.json)."""
    replaced = training.get("deepspeed", {}).get("config_values_replaced")
    if not replaced:
        return []
    return [f"[deepspeed] projbench set its own values for these entries of the DeepSpeed config (their config "
            f"values: {replaced}); see metrics.json training.deepspeed"]


__all__ = ["DDP", "FSDP2", "AccelerateFSDP", "BatchLayout", "DeepSpeed", "DeepSpeedBatch", "Engine", "FullState",
           "Optimization", "ReadState", "Single", "deepspeed_config", "engine_for", "engine_notes", "overwrite"]
