"""Tasks: declarative definitions, their data sources, and the built-in tasks."""

from .base import Sample, Source, TaskData, TaskSpec, load_task, normalize_class_name

__all__ = ["Sample", "Source", "TaskData", "TaskSpec", "load_task", "normalize_class_name"]
