"""The two factory shapes every adapter registers (now in :mod:`benchmark.adapters.spec`), under their old home."""

from .spec import hub_factory, tiny_factory

__all__ = ["hub_factory", "tiny_factory"]
