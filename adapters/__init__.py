"""Model adapters: the contract (``contract``, ``base``), the registry entries (``spec``, ``catalog``) and the
built-in model families.

Importing this package does not import torch: the spec types are plain data, and the adapter classes are
loaded on first use (``benchmark.adapters.ModelAdapter``).
"""

from .spec import AdapterSpec, Checkpoint, TinyTwin, hub_factory, model_family, tiny_factory

_LAZY = {"ModelAdapter": ".base", "PromptParts": ".base", "Architecture": ".base", "HFAdapter": ".hf"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AdapterSpec", "Architecture", "Checkpoint", "HFAdapter", "ModelAdapter", "PromptParts", "TinyTwin",
           "hub_factory", "model_family", "tiny_factory"]
