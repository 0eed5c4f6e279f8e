"""Default locations of the cache (tiny twins, vision features) and of the results."""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.schema import results_root  # noqa: F401  (re-exported: the results folder is part of the layout)


def cache_root() -> Path:
    """``$PROJBENCH_CACHE`` or ``~/.cache/projbench``."""
    return Path(os.environ.get("PROJBENCH_CACHE", Path.home() / ".cache" / "projbench")).expanduser()
