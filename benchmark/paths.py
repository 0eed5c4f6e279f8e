"""Default locations of the cache (tiny twins, vision features) and of the results."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$PROJBENCH_CACHE`` or ``~/.cache/projbench``."""
    return Path(os.environ.get("PROJBENCH_CACHE", Path.home() / ".cache" / "projbench")).expanduser()


def results_root() -> Path:
    """``$PROJBENCH_RESULTS`` or ``./results``."""
    return Path(os.environ.get("PROJBENCH_RESULTS", "results")).expanduser()
