"""Which adapters the suite runs over, and how it loads them: every registered tiny twin, or the names given.

``check-adapter NAME`` sets ``$PROJBENCH_CONFORMANCE_MODELS`` before the suite is imported, since the fixtures'
parametrisation reads it at import time.
"""

from __future__ import annotations

import os

from benchmark.registry import Plugins

MODELS_ENV = "PROJBENCH_CONFORMANCE_MODELS"


def registry() -> Plugins:
    return Plugins()  # honours PROJBENCH_DISABLE_PLUGIN_AUTOLOAD


def adapters_under_test() -> list[str]:
    """``$PROJBENCH_CONFORMANCE_MODELS`` (comma-separated), else every registered tiny twin."""
    names = [n.strip() for n in os.environ.get(MODELS_ENV, "").split(",") if n.strip()]
    return names or [spec.name for spec in registry().adapters if spec.tiny]


def load(name):
    return registry().adapters.get(name).factory(device="cpu")


__all__ = ["MODELS_ENV", "adapters_under_test", "load", "registry"]
