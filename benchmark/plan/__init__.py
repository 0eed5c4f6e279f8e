"""`plan`: will a run fit these GPUs, and how long will it take? Answered before any weight is downloaded.

The room, one job per file:

- ``hardware``: what the GPUs are (count, memory, bf16 peak);
- ``architecture``: which architecture to plan (the adapter spec's shipped config, or ``--model-path``);
- ``counting``: the real architecture on the meta device: parameters, FLOPs and saved activations per part;
- ``tokens``: token lengths of the task's real prompt; ``workload``: how many images are trained and tested;
- ``memory``: bytes per GPU for each engine (single, DDP, FSDP, ZeRO-3); ``micro_batch``: the micro-batch choice;
- ``timing``: hours from FLOPs at an assumed MFU; ``regimes``: the table of regimes x engines;
- ``result``: the typed answer (:class:`Plan`, JSON keys in docs/plan.md); ``render``: the answer as text;
- ``estimate``: :func:`plan`, the orchestration of the above.

- ``measure``, ``measure_model``, ``measure_report``: ``--measure``, the plan held against the real-size model
  with random weights on the local device (docs/plan.md, "Measured").

Importing the package imports neither torch nor transformers (names resolve on first use), so ``plan``'s
arguments are checked before the heavy imports.
"""

from __future__ import annotations

from importlib import import_module

from .hardware import GPUS, Gpus  # torch-free, like the two below
from .render import render
from .result import Plan

_WHERE = {"plan": "estimate", "prompt_tokens": "tokens"}  # these import torch: on first use

__all__ = ["GPUS", "Gpus", "Plan", "plan", "prompt_tokens", "render"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
