"""Loading checkpoints through ``from_pretrained`` with fast, explicit failures when the hub is out of reach.

A hub id is first looked up in the local Hugging Face cache; only if it is missing there is the hub contacted,
after a short reachability check, so an offline machine gets a clear error in seconds instead of minutes of
retries and a bare traceback.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.errors import ModelLoadError
from benchmark.storage.hub import download_command, hub_endpoint, hub_reachable


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``None`` -> bfloat16 on CUDA (LLaVA's training precision), float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use float32, bfloat16 or float16.") from None


def load_pretrained(cls, source, local_files_only: bool = False, **kwargs):
    """``cls.from_pretrained(source)`` from a local directory, the local HF cache, or the hub."""
    source = str(source)
    if Path(source).expanduser().is_dir():
        return _load(cls, str(Path(source).expanduser()), local_files_only=True, **kwargs)
    if Path(source).expanduser().exists() or source.startswith((".", "/", "~")):
        raise ModelLoadError(f"Model path {source!r} is not a directory with a saved checkpoint.")
    try:  # already in the local Hugging Face cache?
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        pass
    if local_files_only or not hub_reachable():
        raise ModelLoadError(
            f"Could not fetch {source!r} ({cls.__name__}): the model hub ({hub_endpoint()}) is not reachable "
            "from this machine and the checkpoint is not in the local Hugging Face cache.\n"
            f"Fix: download it where the hub is reachable (`{download_command(source)}`), "
            "copy DIR here, and pass `--model-path DIR`; or run the offline twin with `--model <name>-tiny`."
        )
    return _load(cls, source, **kwargs)


def _load(cls, source, **kwargs):
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load {cls.__name__} from {source!r}: {exc}") from exc
