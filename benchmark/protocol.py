"""The protocol's entry points under their earlier names; the protocol itself lives in ``benchmark.run``."""

from __future__ import annotations

from .config import (  # noqa: F401  (re-exported)
    BASELINES,
    EARLY_STOPPING,
    EVAL_MODES,
    PAPER_GLOBAL_BATCH,
    REGIMES,
    SCORE_NORMS,
    STAGES,
    ProbeConfig,
    RunConfig,
    TrainConfig,
)
from .run import KEEP_FOR_ANALYSES_MAX_PARAMS, Runner, config_hash, drop_duplicates, resolve_device, run

__all__ = ["BASELINES", "EARLY_STOPPING", "EVAL_MODES", "KEEP_FOR_ANALYSES_MAX_PARAMS", "PAPER_GLOBAL_BATCH",
           "REGIMES", "SCORE_NORMS", "STAGES", "ProbeConfig", "RunConfig", "Runner", "TrainConfig", "config_hash",
           "drop_duplicates", "resolve_device", "run"]
