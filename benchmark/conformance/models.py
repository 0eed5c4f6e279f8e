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


class Broken:
    """What a fixture holds when building or loading an adapter (or encoding its photos) failed: the error, shown
    once, by the first check that asks; every later check that needs it skips, pointing there."""

    def __init__(self, what: str, error: BaseException):
        self.what, self.error, self.shown_by = what, error, None

    def raise_or_skip(self, nodeid: str):
        import pytest

        if self.shown_by is None:
            self.shown_by = nodeid
            raise self.error
        pytest.skip(f"{self.what} failed, see {self.shown_by}")


# Adapters that failed to build or load in this session, by name: every later fixture skips instead of building
# them again and printing the same traceback once per check.
_BROKEN: dict[str, Broken] = {}


def attempt(what: str, fn, *args):
    """``fn(*args)``, or a :class:`Broken` holding its failure (``what``: what was being done, for the skips)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001  (reported once, by the first check that needs it)
        return Broken(what, exc)


def attempt_load(name: str):
    """A fresh adapter ``name``, or the session's one :class:`Broken` record of its failure to build or load."""
    from .report import ConformanceFailure

    if name in _BROKEN:
        return _BROKEN[name]
    got = attempt(f"building or loading {name!r}", load, name)
    if isinstance(got, Broken):
        if not isinstance(got.error, ConformanceFailure):
            got.error = load_failure(name, got.error)
        _BROKEN[name] = got
    return got


def load_failure(name: str, exc: BaseException):
    """A failure naming the adapter's factory (its tiny twin's build, or the adapter's __init__) and the error."""
    import traceback

    from .report import ConformanceFailure

    stack = traceback.extract_tb(exc.__traceback__)
    where = "\n             ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in stack[-4:])
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])[:400]
    return ConformanceFailure(
        f"factory: building or loading {name!r} (its tiny twin's build(), or the adapter's __init__) raised "
        f"{type(exc).__name__}: {text}\n  raised at: {where}\n  (every other check of {name!r} skips, pointing here)")


def load_once(name: str, nodeid: str):
    """A fresh adapter ``name``; if it failed to build before in this session, skip, pointing to where it did."""
    got = attempt_load(name)
    if isinstance(got, Broken):
        got.raise_or_skip(nodeid)
    return got


__all__ = ["MODELS_ENV", "Broken", "adapters_under_test", "attempt", "attempt_load", "load", "load_failure", "load_once", "registry"]
