"""``sweep.json``, the sweep manifest beside the results: every cell with its command, job and state.

It is written atomically (:func:`benchmark.storage.results.atomic_write_json`: a crash leaves the old file or the
new one, never half of one) under a file lock, so two sweep commands on one results folder never lose each other's
cells. It is a record of what was submitted, not of results: whether a cell is finished is always read from the
results tree (``grid.progress``). Layout (``format`` 1)::

    {"format": 1, "updated": ISO time, "executor": "slurm" | "local", "slurm": {override: value},
     "cells": [{"key", "model", "task", "name", "seeds", "regimes", "run_args", "command", "executor",
                "job_id", "pid", "host", "submitted", "finished_at", "exit_code", "log", "resources",
                "state", "attempts": [{"job_id" | "pid", "submitted", "executor"}]}]}
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from ..errors import BenchmarkError
from ..storage.integrity import CorruptFileError, parse_json
from ..storage.results import atomic_write_json

MANIFEST = "sweep.json"
LOGS = "sweep-logs"  # the jobs' logs (SLURM: submitit's folder per job id; local: one file per cell)
FORMAT = 1
MAX_BYTES = 64 * 1024 * 1024


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def path_of(results: Path) -> Path:
    return Path(results) / MANIFEST


def read(results: Path) -> dict:
    """The manifest of ``results`` (an empty one if there is none); a damaged one is refused, never replaced."""
    path = path_of(results)
    if not path.exists():
        return {"format": FORMAT, "cells": []}
    try:
        m = parse_json(path, MAX_BYTES)
    except CorruptFileError as exc:
        raise BenchmarkError(f"{exc}. It records the sweep's jobs: move it away to start a new sweep record "
                             "(results are kept in the results tree either way).") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("cells"), list):
        raise BenchmarkError(f"{path} is not a sweep manifest of format {FORMAT}: move it away, or use another "
                             "--results-dir.")
    return m


def update(results: Path, change: Callable[[dict], None]) -> dict:
    """Read, ``change`` in place, and write the manifest atomically, holding its lock throughout."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    with FileLock(str(results / f".{MANIFEST}.lock")):
        m = read(results)
        change(m)
        m["updated"] = now()
        atomic_write_json(path_of(results), m)
    return m


def entry(m: dict, key: str) -> dict | None:
    return next((c for c in m["cells"] if c.get("key") == key), None)


def cell_record(cell) -> dict:
    """What the manifest says of a cell before any job: its grid coordinates and command line."""
    return {"key": cell.key, "model": cell.model, "task": cell.task, "name": cell.name,
            "seeds": list(cell.cfg.seeds), "regimes": list(cell.cfg.regimes), "run_args": list(cell.run_args),
            "command": cell.command(), "attempts": []}


def record_job(m: dict, cell, **job) -> dict:
    """Add or update ``cell``'s entry with a new job (``job_id`` or ``pid``, ``executor``, ``log``, ...)."""
    e = entry(m, cell.key)
    if e is None:
        e = cell_record(cell)
        m["cells"].append(e)
    e.update(cell_record(cell) | {"attempts": e.get("attempts", [])})
    for stale in ("job_id", "pid", "exit_code", "finished_at", "resources"):
        e.pop(stale, None)
    e.update(job, submitted=now(), host=socket.gethostname())
    e["attempts"].append({k: e[k] for k in ("job_id", "pid", "executor", "submitted") if k in e})
    return e
