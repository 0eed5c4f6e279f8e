"""Plugin hook specifications: the whole surface a third-party package needs to extend projbench.

A plugin module defines functions decorated with ``benchmark.hookimpl`` and hands its objects to the
``register`` callback it receives. Built-in adapters, tasks and analyses use these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "projbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_adapters(register: Callable) -> None:
    """Call ``register(spec)`` once per :class:`benchmark.adapters.AdapterSpec` the plugin provides."""


@hookspec
def register_tasks(register: Callable) -> None:
    """Call ``register(task)`` once per :class:`benchmark.tasks.TaskSpec` the plugin provides."""


@hookspec
def register_analyses(register: Callable) -> None:
    """Call ``register(spec)`` once per :class:`benchmark.analyses.AnalysisSpec` the plugin provides."""
