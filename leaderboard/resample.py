"""The leaderboard's intervals from the runs' own test predictions: one hierarchical bootstrap for any seed count.

A row's mean over seeds (a task F1, a probe F1, a gain, a richness change) gets the interval of
:mod:`benchmark.evaluate.intervals`: its runs' seeds drawn with replacement, then the probe seeds within each
run, then the test images within class (one image resample for every seed: they all scored the same images),
BCa on the result (Efron 1987; Davison & Hinkley 1997, §3.8). The same method serves 1, 2 or 3 seeds, so
"(n.s.)" means the same whatever the seed count.

The predictions are read from the run folders (``predictions.jsonl``, ``probe_predictions.json``) lazily, only
when a cell's interval is first asked for, and once per folder. Where a run's predictions are missing, damaged
or were made on other test images, the quantity falls back to the older method (:func:`.stats.stat_of`),
which the tables mark.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.evaluate.intervals import change_interval, score_interval
from benchmark.schema import PREDICTIONS, PROBE_PREDICTIONS

from .collect import Run

# A predictions file larger than this is not one projbench wrote for a leaderboard-sized task; not read.
MAX_PREDICTIONS_BYTES = 256 * 1024 * 1024
TASK, POST, PRE = "task", "post_projection", "pre_projection"


class Predictions:
    """Test predictions of run folders, read on first use and kept, each file on its own (a damaged probe file
    leaves the task's predictions usable): ``(uids, truth, (R, n) array)`` per run and kind, or None."""

    def __init__(self):
        self._cache: dict[tuple[Path, str], tuple | None] = {}

    def of(self, run: Run, what: str) -> tuple | None:
        if run.folder is None or not run.classes:
            return None
        key = (run.folder, TASK if what == TASK else "probe")
        if key not in self._cache:
            try:
                read = _read_task if what == TASK else _read_probes
                self._cache[key] = read(run.folder, run.classes)
            except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError):
                self._cache[key] = None   # damaged or absent: the older method, marked
        got = self._cache[key]
        if got is None or what not in got[2]:
            return None
        return got[0], got[1], got[2][what]


def _text(path: Path) -> str:
    if path.stat().st_size > MAX_PREDICTIONS_BYTES:
        raise ValueError(f"{path.name} is larger than any projbench writes")
    return path.read_text(encoding="utf-8")


def _rows(value, n: int) -> np.ndarray:
    """A probe's predictions, one list (one probe seed) or a list per probe seed, as (R, n) int."""
    a = np.asarray(value)
    a = a[None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] != n or not a.size or not np.issubdtype(a.dtype, np.integer):
        raise ValueError("probe predictions of another shape")
    return a.astype(np.int64)


def _read_task(folder: Path, classes: tuple[str, ...]) -> tuple:
    """predictions.jsonl: the test rows' ids, their true classes and the task's predictions (-1: unmatched)."""
    index = {c: i for i, c in enumerate(classes)}
    rows = [json.loads(line) for line in _text(folder / PREDICTIONS).splitlines() if line.strip()]
    uids = tuple(r["uid"] for r in rows)
    truth = np.array([index[r["label"]] for r in rows], dtype=np.int64)
    return uids, truth, {TASK: np.array([[index.get(r["prediction"], -1) for r in rows]], dtype=np.int64)}


def _read_probes(folder: Path, classes: tuple[str, ...]) -> tuple:
    """probe_predictions.json, on the test rows of the folder's predictions.jsonl (their truth)."""
    uids, truth, _ = _read_task(folder, classes)
    probe = json.loads(_text(folder / PROBE_PREDICTIONS))
    if tuple(probe["uids"]) != uids:
        raise ValueError("probe predictions of other test images")
    return uids, truth, {w: _rows(probe[w], len(uids)) for w in (POST, PRE) if probe.get(w) is not None}


def _shared(loaded: list[tuple | None]) -> tuple | None:
    """(truth, (S, R, n) predictions) if every run's are there, on the same test images; replicates cut to the
    fewest any seed has."""
    if not loaded or any(x is None for x in loaded):
        return None
    uids, truth, _ = loaded[0]
    if any(u != uids or not np.array_equal(t, truth) for u, t, _ in loaded[1:]):
        return None
    reps = min(p.shape[0] for _, _, p in loaded)
    return truth, np.stack([p[:reps] for _, _, p in loaded])


def score_source(store: Predictions, runs: list[Run], what: str):
    """A callable giving the hierarchical interval of mean macro-F1 of ``what`` over ``runs`` (None: none)."""
    def interval():
        shared = _shared([store.of(r, what) for r in runs])
        if shared is None:
            return None
        return score_interval(shared[0], shared[1], max(int(shared[0].max()) + 1, len(runs[0].classes)))
    return interval


def change_source(store: Predictions, pairs: list[tuple[Run, Run]], what: str):
    """A callable giving the hierarchical interval of the mean change of ``what``, new - base, paired by seed."""
    def interval():
        new = _shared([store.of(r, what) for r, _ in pairs])
        base = _shared([store.of(b, what) for _, b in pairs])
        if new is None or base is None or not np.array_equal(new[0], base[0]):
            return None
        return change_interval(new[0], new[1], base[1], max(int(new[0].max()) + 1, len(pairs[0][0].classes)))
    return interval
