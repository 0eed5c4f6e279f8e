"""One `run`: the paper's protocol for one model and one task, over seeds, resumable, as stages.

The rooms:

- ``runner``: the orchestration (lock → check → for each stage → record → write) over regimes and seeds;
- ``resolved``: what a stage reads (``ResolvedRun``: configuration, task data, feature stores, run folder key)
  and the model state passed between stages (``ModelState``: original or trained weights);
- ``train``, ``evaluate``, ``baselines``: the stages, each writing its own files and returning its part of the
  record; ``record``: ``metrics.json``, written last;
- ``folders``: run folders already on disk (finished, of another configuration, busy in another job);
- ``data``: the task data a run uses, loaded and checked once.

Nothing here knows how many processes run it or how training holds its weights: that is ``benchmark.distributed``.
"""

from __future__ import annotations

from .data import drop_duplicates
from .record import KEEP_FOR_ANALYSES_MAX_PARAMS
from .resolved import ModelState, ResolvedRun, RunSetting
from .runner import Runner, config_hash, resolve_device, run

__all__ = ["KEEP_FOR_ANALYSES_MAX_PARAMS", "ModelState", "ResolvedRun", "RunSetting", "Runner", "config_hash", "drop_duplicates",
           "resolve_device", "run"]
