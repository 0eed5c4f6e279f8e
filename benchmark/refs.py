"""Lazy references: ``"package.module:attribute"`` names of code that a registry entry imports only on use.

Registries hold their entries as data (a model's factory, an analysis's run function), so that listing them never
imports torch or other heavy libraries; the code is imported the first time it is called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ref:
    """A ``"package.module:attribute"`` reference, imported on first use; calling it calls the attribute."""

    target: str

    def __post_init__(self):
        module, _, attribute = self.target.partition(":")
        if not module or not attribute:
            raise ValueError(f"a reference is 'package.module:attribute', got {self.target!r}")

    def resolve(self) -> Any:
        module, _, attribute = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        return obj

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __str__(self):
        return self.target


def resolve(obj):
    """``obj`` itself, or what it refers to if it is a :class:`Ref` or a ``"module:attribute"`` string."""
    if isinstance(obj, str):
        return Ref(obj).resolve()
    return obj.resolve() if isinstance(obj, Ref) else obj


__all__ = ["Ref", "resolve"]
