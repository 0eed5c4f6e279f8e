"""Result files: atomic writes, provenance, and the layout of one run directory.

``<results>/<model>/<task>[@max<k>]/<regime>/seed<k>/`` holds ``config.json`` (resolved config),
``predictions.jsonl`` (per sample), ``probe_predictions.json`` (the probes' test predictions),
``projector.safetensors`` (fine-tuned regimes) and, written last,
``metrics.json``, which records the SHA-256 of the others and of itself. A run is finished when its
``metrics.json`` parses, passes its checksums and validates (:func:`result_problem`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

METRICS = "metrics.json"
CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
PROBE_PREDICTIONS = "probe_predictions.json"  # the probes' test predictions: paired intervals of later regimes
PROJECTOR = "projector.safetensors"
CHECKPOINT = "checkpoint.safetensors"  # trainable state between training and evaluation; removed when done
TRAINING = "training.json"             # training stats + checkpoint SHA-256, written after the checkpoint
LOCK = ".lock"                         # held by the one process working on the run folder
LEGACY_TRAIN_PROGRESS = "train_state.pt"  # pickled state of older versions: never loaded, removed on sight
TRAIN_PROGRESS = "train_state.json"    # mid-training state (+ train_state-step<k>.safetensors); removed when done


_TEMP = re.compile(r"^\..+\.(tmp\.[A-Za-z0-9_]+|[A-Za-z0-9_]{8})$")  # ours: .<name>.tmp.<rand> (older: .<name>.<rand>)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temporary file in the same folder, fsync it, rename it over ``path``,
    and fsync the folder: after a crash or power loss the file is either the old one or the complete new one.

    The file is created with the user's umask (0644 by default), like any tool's output, not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.tmp.{secrets.token_hex(4)}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temporary files left by writes that were killed; call only while holding the folder's lock."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.is_file() and _TEMP.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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


def has_saved_work(d: Path) -> bool:
    """Whether a run folder holds anything beyond its config: training state, checkpoint, results."""
    d = Path(d)
    names = (TRAIN_PROGRESS, LEGACY_TRAIN_PROGRESS, CHECKPOINT, TRAINING, PROJECTOR, PREDICTIONS, METRICS)
    return any((d / n).exists() for n in names) or any(d.glob("train_state-step*.safetensors"))


def clear_run_dir(d: Path) -> None:
    """Remove the files of an unfinished run (not the lock, which another process may be waiting on)."""
    for p in Path(d).iterdir():
        if p.is_file() and p.name != LOCK:
            p.unlink()


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def _score(m: dict, dotted: str) -> str | None:
    cur = m
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return f"missing field {dotted!r}"
        cur = cur[part]
    if isinstance(cur, bool) or not isinstance(cur, int | float) or not 0.0 <= cur <= 1.0:  # NaN fails too
        return f"field {dotted!r} is not a number in [0, 1]: {cur!r}"
    return None


def result_problem(m) -> str | None:
    """Why ``m`` (a parsed metrics.json) is not a finished result of a supported schema; None if it is.

    The core fields only, the ones every reader relies on; schema 1 files (before checksums) pass too.
    """
    from . import RESULT_SCHEMA_VERSION

    if not isinstance(m, dict):
        return "not a JSON object"
    v = m.get("schema_version")
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= RESULT_SCHEMA_VERSION:
        return f"schema_version {v!r} is not an integer from 1 to {RESULT_SCHEMA_VERSION}"
    for name, kind in (("model", str), ("task", str), ("regime", str), ("seed", int)):
        if not isinstance(m.get(name), kind) or isinstance(m.get(name), bool):
            return f"field {name!r} is missing or not a {kind.__name__}"
    if m["regime"] == "baselines":  # random / CLIP reference numbers, no task metrics of the MLLM
        return None if isinstance(m.get("baselines"), dict) else "field 'baselines' is missing"
    for dotted in ("metrics.macro_f1", "metrics.accuracy", "probe.post_projection.macro_f1"):
        problem = _score(m, dotted)
        if problem:
            return problem
    return None
