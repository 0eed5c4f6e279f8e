"""The headline numbers of a run recomputed from its stored predictions: what the leaderboard shows.

Task macro-F1 and accuracy from ``predictions.jsonl``, the probes' macro-F1 (mean over probe seeds, as
:func:`benchmark.evaluate.probe._summary` makes it) from ``probe_predictions.json``, and the artifacts' SHA-256.
Macro-F1 is :func:`benchmark.evaluate.intervals.macro_f1_rows`, the closed form of scikit-learn's definition that
the probes use (``tests/evaluate`` checks the two agree), so this module needs numpy only and costs one pass over
the predictions. A stored number agrees when it is within ``REL_TOL`` of the recomputed one: the same
computation on the same predictions gives the same bits, and a tolerance only absorbs summation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchmark.evaluate.intervals import macro_f1_rows
from benchmark.schema import PREDICTIONS, PROBE_PREDICTIONS

REL_TOL, ABS_TOL = 1e-9, 1e-12
# From these schema versions on, every run records the file's SHA-256 in ``artifacts``: a record without it
# cannot be traced to its predictions (it was edited, or they were removed).
REQUIRED_FROM = {PREDICTIONS: 2, PROBE_PREDICTIONS: 3}
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Mismatch:
    """One number (or artifact) of a run that does not follow from what it came from."""

    field: str         # dotted path in metrics.json, or ``artifacts.<file>``
    stored: str
    recomputed: str

    def text(self) -> str:
        return f"{self.field}: stored {self.stored}, recomputed {self.recomputed}"


def show(value) -> str:
    """A value as a mismatch line shows it: floats with enough digits to tell them apart."""
    if isinstance(value, float):
        return f"{value:.6g}" if value == 0 or 1e-4 <= abs(value) < 1e6 else f"{value:.6e}"
    return str(value)


def agrees(stored, recomputed) -> bool:
    """Equal values; numbers within the tolerance (never a bool for a number, never NaN)."""
    if isinstance(recomputed, float) or (isinstance(recomputed, int) and not isinstance(recomputed, bool)):
        if isinstance(stored, bool) or not isinstance(stored, int | float) or not math.isfinite(stored):
            return False
        return math.isclose(stored, recomputed, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(recomputed, list | tuple):
        return (isinstance(stored, list | tuple) and len(stored) == len(recomputed)
                and all(agrees(s, r) for s, r in zip(stored, recomputed, strict=True)))
    if isinstance(recomputed, dict):
        return (isinstance(stored, dict) and stored.keys() == recomputed.keys()
                and all(agrees(stored[k], recomputed[k]) for k in recomputed))
    return stored == recomputed


def compare(out: list[Mismatch], field: str, stored, recomputed) -> None:
    """Append a :class:`Mismatch` to ``out`` unless the stored value agrees with the recomputed one; inside
    objects and lists of the recomputed shape, one per differing entry, named by its path."""
    if isinstance(recomputed, dict) and isinstance(stored, dict) and stored.keys() == recomputed.keys():
        for k in recomputed:
            compare(out, f"{field}.{k}", stored[k], recomputed[k])
        return
    if (isinstance(recomputed, list) and isinstance(stored, list) and len(stored) == len(recomputed)
            and any(isinstance(r, list | dict) for r in recomputed)):
        for i, (s, r) in enumerate(zip(stored, recomputed, strict=True)):
            compare(out, f"{field}[{i}]", s, r)
        return
    if not agrees(stored, recomputed):
        out.append(Mismatch(field, "absent" if stored is None else show(stored), show(recomputed)))


def artifact_problems(recorded, schema_version: int, actual: dict[str, str | None]) -> list[Mismatch]:
    """The artifacts' checksums: ``actual`` maps a file name to its SHA-256 (None: missing). Files the schema
    requires must be recorded; a recorded one must be there with its recorded checksum."""
    recorded = recorded if isinstance(recorded, dict) else {}
    out = []
    for name, since in REQUIRED_FROM.items():
        if schema_version >= since and name not in recorded:
            out.append(Mismatch(f"artifacts.{name}", NOT_RECORDED,
                                f"required (schema {schema_version} runs record it)"))
    for name in sorted(recorded):
        if name in actual and recorded[name] != actual[name]:
            got = "missing" if actual[name] is None else f"sha256 {actual[name][:16]}…"
            out.append(Mismatch(f"artifacts.{name}", f"sha256 {str(recorded[name])[:16]}…", got))
    return out


def task_points(stored: dict, truth: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """What the task's headline numbers must be (``stored``: the record's ``metrics``; unmatched: -1)."""
    want = {"macro_f1": float(macro_f1_rows(truth[None], pred[None], num_classes)[0]),
            "accuracy": float(np.mean(pred == truth))}
    if "unmatched_rate" in stored:  # generate mode
        want["unmatched_rate"] = float(np.sum(pred < 0)) / max(1, pred.size)
    return want


def probe_points(truth: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """A probe's reported macro-F1: the mean over its probe seeds (rows of ``preds``)."""
    return float(np.mean(macro_f1_rows(np.broadcast_to(truth, preds.shape), preds, num_classes)))


def point_problems(metrics: dict, probe: dict, task: tuple | None, probes: dict | None,
                   num_classes: int) -> list[Mismatch]:
    """The headline numbers against the predictions: ``task`` = (truth, (n,) predictions) or None (not
    there), ``probes`` = {"post_projection": (R, n), ...} on the same truth, or None."""
    out: list[Mismatch] = []
    if task is not None:
        truth, pred = task
        for name, value in task_points(metrics, truth, pred, num_classes).items():
            compare(out, f"metrics.{name}", metrics.get(name), value)
        for where, preds in (probes or {}).items():
            stored = (probe.get(where) or {}).get("macro_f1") if isinstance(probe.get(where), dict) else None
            compare(out, f"probe.{where}.macro_f1", stored, probe_points(truth, preds, num_classes))
    return out
