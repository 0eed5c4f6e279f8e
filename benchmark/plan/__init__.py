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

A measurement on real devices (issue 25's ``--measure``) belongs beside ``estimate`` as a module of its own that
returns its own record next to :class:`Plan`.
"""

from .estimate import plan
from .hardware import GPUS, Gpus
from .render import render
from .result import Plan
from .tokens import prompt_tokens

__all__ = ["GPUS", "Gpus", "Plan", "plan", "prompt_tokens", "render"]
