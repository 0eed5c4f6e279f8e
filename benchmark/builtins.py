"""Registers the built-in adapters, tasks and analyses, through the same hooks a third-party plugin uses."""

from __future__ import annotations

import importlib

from .hookspecs import hookimpl

# Each module exposes ADAPTERS (a list of AdapterSpec) / TASKS (a list of TaskSpec) / ANALYSES (AnalysisSpecs).
# The specs are data: they name their code ("module:function") and import it only when it runs.
ADAPTER_MODULES = ["benchmark.adapters.catalog"]  # the built-in models as data: no torch to list them
TASK_MODULES = [
    "benchmark.tasks.builtin",
    "benchmark.tasks.paper",
]

ANALYSIS_MODULES = ["benchmark.analyses.catalog"]  # the built-in analyses as data, run functions imported on use


@hookimpl
def register_adapters(register):
    for module in ADAPTER_MODULES:
        for spec in importlib.import_module(module).ADAPTERS:
            register(spec)


@hookimpl
def register_tasks(register):
    for module in TASK_MODULES:
        for task in importlib.import_module(module).TASKS:
            register(task)


@hookimpl
def register_analyses(register):
    for module in ANALYSIS_MODULES:
        for spec in importlib.import_module(module).ANALYSES:
            register(spec)
