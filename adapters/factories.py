"""The two factory shapes every adapter registers: a hub checkpoint, and its tiny twin built in the cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .tiny import materialise


def hub_factory(adapter_cls, name: str, default_source: str | None, **options):
    """``factory(source=None, ...)`` loading ``source`` (a local dir or hub id), else ``default_source``."""

    def factory(source=None, device="cpu", dtype=None, cache_dir=None, local_files_only=False, **kwargs):
        return adapter_cls(name, source or default_source, device=device, dtype=dtype,
                           local_files_only=local_files_only, **{**options, **kwargs})

    return factory


def tiny_factory(adapter_cls, name: str, build: Callable[[Path], None], **options):
    """``factory(...)`` loading the tiny twin ``name``, built once by ``build`` into the cache, in fp32 by default."""

    def factory(source=None, device="cpu", dtype=None, cache_dir=None, local_files_only=False, **kwargs):
        from benchmark.paths import cache_root

        path = source or materialise(Path(cache_dir) if cache_dir else cache_root(), name, build)
        return adapter_cls(name, path, device=device, dtype=dtype or "float32", local_files_only=True,
                           **{**options, **kwargs})

    return factory
