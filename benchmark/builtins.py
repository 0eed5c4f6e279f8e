"""Registers the built-in adapters and tasks, through the same hooks a third-party plugin uses."""

from __future__ import annotations

import importlib

from .hookspecs import hookimpl

# Each module exposes ADAPTERS (a list of AdapterSpec) / TASKS (a list of TaskSpec).
ADAPTER_MODULES = [
    "benchmark.adapters.llava",
    "benchmark.adapters.blip2",
    "benchmark.adapters.paligemma",
    "benchmark.adapters.limber",
    "benchmark.adapters.idefics3",
    "benchmark.adapters.qwen2vl",
]
TASK_MODULES = [
    "benchmark.tasks.builtin",
    "benchmark.tasks.paper",
]


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
