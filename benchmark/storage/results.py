"""Result files: atomic writes, provenance, and the layout of one run directory.

A run folder (its place: :class:`benchmark.schema.RunKey`) holds ``config.json`` (resolved config),
``predictions.jsonl`` (per sample), ``probe_predictions.json`` (the probes' test predictions),
``projector.safetensors`` (fine-tuned regimes) and, written last,
``metrics.json``, which records the SHA-256 of the others and of itself. A run is finished when its
``metrics.json`` parses, passes its checksums and validates (:func:`result_problem`).
"""

from __future__ import annotations

import errno
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

from benchmark.errors import BenchmarkError
from benchmark.schema import (  # noqa: F401  (re-exported: the file names of a run folder)
    CHECKPOINT,
    CONFIG,
    LEGACY_TRAIN_PROGRESS,
    LOCK,
    METRICS,
    PREDICTIONS,
    PROBE_PREDICTIONS,
    PROJECTOR,
    TRAIN_PROGRESS,
    TRAINING,
    result_problem,
)

# The files projbench writes into a run folder or a feature-cache entry, and nothing else: only these are ever
# deleted there, so a user's file in a folder (a dot-file such as ``.bashrc.20241201``) is never touched.
_OWN = (r"(?:" + "|".join(re.escape(n) for n in (CONFIG, METRICS, PREDICTIONS, PROBE_PREDICTIONS, PROJECTOR,
                                                   CHECKPOINT, TRAINING, TRAIN_PROGRESS, LEGACY_TRAIN_PROGRESS,
                                                   "index.json", "key.json"))
        + r"|train_state-step[0-9]+\.safetensors|part-[0-9]{5}\.safetensors(?:\.sha256)?)")
_OWN_FILE = re.compile(rf"^{_OWN}$")
# Temporaries: ``.<name>.tmp.<8 hex>`` (:func:`atomic_write_with`); older versions wrote ``.<name>.<8 of
# [a-z0-9_]>`` (``tempfile``'s names), recognised only for the file names above.
_TEMP = re.compile(rf"^\.(?:.+\.tmp\.[0-9a-f]{{8}}|{_OWN}\.[a-z0-9_]{{8}})$")


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
    except Exception as exc:
        if _disk_full(exc):  # the old file (if any) is intact: a rerun after freeing space gives the same result
            raise DiskFullError(
                f"No space left to write {path.name} in {path.parent} ({exc.__class__.__name__}). Nothing was "
                "damaged: free some space there (or use another --results-dir / --cache-dir) and run the same "
                "command again.") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class DiskFullError(BenchmarkError):
    """A write failed because the file system is full (or the user's quota is used up)."""


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk or quota is full: an OSError's errno, or the message a Rust writer such as
    safetensors' gives (``IoError(Os { code: 28, kind: StorageFull, ... })``)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return any(sign in text for sign in ("StorageFull", "QuotaExceeded", os.strerror(errno.ENOSPC),
                                         os.strerror(errno.EDQUOT)))


def atomic_save_tensors(path: Path, tensors: dict) -> None:
    """``tensors`` as a safetensors file at ``path``, written atomically (:func:`atomic_write_with`)."""
    from safetensors.torch import save_file

    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp)))


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temporary files left by writes that were killed; call only while holding the folder's lock."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if _TEMP.match(p.name) and p.is_file() and not p.is_symlink()]
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


def has_saved_work(d: Path) -> bool:
    """Whether a run folder holds anything beyond its config: training state, checkpoint, results."""
    d = Path(d)
    names = (TRAIN_PROGRESS, LEGACY_TRAIN_PROGRESS, CHECKPOINT, TRAINING, PROJECTOR, PREDICTIONS, METRICS)
    return any((d / n).exists() for n in names) or any(d.glob("train_state-step*.safetensors"))


def clear_run_dir(d: Path) -> None:
    """Remove the files of an unfinished run that projbench wrote (its own names and temporaries; not the lock,
    which another process may be waiting on, nor anything else a user keeps there)."""
    for p in Path(d).iterdir():
        if (_OWN_FILE.match(p.name) or _TEMP.match(p.name)) and (p.is_symlink() or p.is_file()):
            p.unlink()


def read_json(path: Path):
    return json.loads(Path(path).read_text())
