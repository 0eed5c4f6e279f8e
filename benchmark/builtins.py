"""Registers the built-in adapters, tasks and analyses, through the same hooks a third-party plugin uses."""

from __future__ import annotations

import importlib

from .hookspecs import hookimpl

# Each module exposes ADAPTERS (a list of AdapterSpec) / TASKS (a list of TaskSpec) / ANALYSIS (an AnalysisSpec).
ADAPTER_MODULES = [
    "benchmark.adapters.llava",
    "benchmark.adapters.blip2",
    "benchmark.adapters.paligemma",
    "benchmark.adapters.limber",
    "benchmark.adapters.idefics3",
    "benchmark.adapters.qwen2vl",
    "benchmark.adapters.compose",
]
TASK_MODULES = [
    "benchmark.tasks.builtin",
    "benchmark.tasks.paper",
]

ANALYSIS_MODULES = [
    "benchmark.analyses.layer_probe",
    "benchmark.analyses.logit_lens",
    "benchmark.analyses.modality_gap",
    "benchmark.analyses.mir",
    "benchmark.analyses.knockout",
    "benchmark.analyses.weight_change",
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


@hookimpl
def register_analyses(register):
    for module in ANALYSIS_MODULES:
        register(importlib.import_module(module).ANALYSIS)
