"""Result files: atomic writes, provenance, and the layout of one run directory.

``<results>/<model>/<task>[@max<k>]/<regime>/seed<k>/`` holds ``config.json`` (resolved config),
``predictions.jsonl`` (per sample), ``projector.safetensors`` (fine-tuned regimes) and, written last so that
its presence means "finished", ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

METRICS = "metrics.json"
CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
PROJECTOR = "projector.safetensors"
CHECKPOINT = "checkpoint.safetensors"  # trainable state between training and evaluation; removed when done
LEGACY_TRAIN_PROGRESS = "train_state.pt"  # pickled state of older versions: never loaded, removed on sight
TRAIN_PROGRESS = "train_state.json"    # mid-training state (+ train_state-step<k>.safetensors); removed when done


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_with(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def git_commit() -> str | None:
    """The commit of the projbench source checkout, with ``-dirty`` if it has uncommitted changes."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    versions = {}
    for dist in ("projbench", "torch", "transformers", "tokenizers", "peft", "accelerate", "datasets", "numpy",
                 "scikit-learn", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_dir(results: Path, model: str, task: str, regime: str, seed: int, max_per_class: int | None) -> Path:
    task_dir = task if max_per_class is None else f"{task}@max{max_per_class}"
    return Path(results) / model / task_dir / regime / f"seed{seed}"


def read_json(path: Path):
    return json.loads(Path(path).read_text())
