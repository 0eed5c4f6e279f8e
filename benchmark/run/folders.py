"""Run folders already on disk: finished runs are kept, other configurations refused, busy folders deferred.

A run folder is one (regime, seed) of one model on one task. Before any work a folder is checked against the run's
identity (``check_existing``); while a run writes to it, it holds the folder's file lock (``folder_lock``), so two
jobs never write the same folder, and a folder busy elsewhere is done after the others (``run_each_locked``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import BenchmarkError
from ..schema import CONFIG, LOCK, METRICS, as_stored, digest
from ..storage.integrity import CorruptFileError, read_finished, read_sealed_json
from ..storage.results import clear_run_dir, has_saved_work


def check_existing(d: Path, identity: dict, log) -> bool:
    """True if ``d`` holds a finished run of this very configuration; error if of another one, or corrupt.

    A folder holding only the ``config.json`` of a run that failed before any work was saved does not block:
    the corrected command replaces it. An unreadable config of an unfinished run is discarded.
    """
    identity = as_stored(identity)
    want = digest(identity)
    if (d / METRICS).exists():
        m = read_finished(d)  # CorruptFileError (named file, what to do) if it fails its checks
        if m.get("config_hash") not in (None, want):
            old = {}
            if (d / CONFIG).exists():
                try:
                    old = read_sealed_json(d / CONFIG).get("identity", {})
                except CorruptFileError:
                    pass
            refuse(d, old, identity)
        return True
    if not (d / CONFIG).exists():
        return False
    try:
        old = read_sealed_json(d / CONFIG)
    except CorruptFileError as exc:
        log(f"[discard] {exc} The run had not finished: starting it afresh.")
        clear_run_dir(d)
        return False
    if old.get("config_hash") != want:
        if has_saved_work(d):
            refuse(d, old.get("identity", {}), identity)
        log(f"[replace] {d / CONFIG}: a run of another configuration that failed before saving anything")
        (d / CONFIG).unlink()
    return False


def refuse(d: Path, old: dict, identity: dict):
    diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
    raise BenchmarkError(
        f"{d} holds results of a different configuration (differs in: {', '.join(diff) or 'config_hash'}). "
        "Nothing was overwritten: use another --results-dir, or delete that folder to redo it."
    )


def folder_lock(d: Path) -> FileLock:
    """The lock a run holds on its folder while it writes there (the folder is made if missing)."""
    d.mkdir(parents=True, exist_ok=True)
    return FileLock(str(d / LOCK))


def run_each_locked(items: list, *, lock_for: Callable[..., FileLock], work: Callable, dist, log) -> None:
    """``work(regime, seed)`` for each ``(regime, seed)`` of ``items`` while holding its folder's lock.

    One process: a folder busy in another job is deferred and done after the others. Several processes: rank 0
    holds each lock for the whole group (waiting if another job has it); the other ranks follow it in order.
    """
    if dist.distributed:
        for regime, seed in items:
            with dist.main_holds(lock_for(regime, seed)):
                work(regime, seed)
        return
    deferred = []
    for regime, seed in items:
        lock = lock_for(regime, seed)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"[wait] {regime} seed {seed}: another process is running it; coming back to it later")
            deferred.append((regime, seed, lock))
            continue
        try:
            work(regime, seed)
        finally:
            lock.release()
    for regime, seed, lock in deferred:
        with lock:
            work(regime, seed)
