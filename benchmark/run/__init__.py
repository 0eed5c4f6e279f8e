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

The names below are imported on first use, so that reading run folders (``benchmark.run.folders``, e.g. for
``sweep``'s finished check) does not import torch.
"""

from __future__ import annotations

# public name -> the module of this package that defines it
_API = {
    "drop_duplicates": ".data", "KEEP_FOR_ANALYSES_MAX_PARAMS": ".record", "ModelState": ".resolved",
    "ResolvedRun": ".resolved", "RunSetting": ".resolved", "Runner": ".runner", "config_hash": ".runner",
    "resolve_device": ".runner", "run": ".runner",
}

__all__ = ["KEEP_FOR_ANALYSES_MAX_PARAMS", "ModelState", "ResolvedRun", "RunSetting", "Runner", "config_hash", "drop_duplicates",
           "resolve_device", "run"]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value  # once resolved, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
