"""Whether the numbers a run shows follow from its stored predictions: the checks of ``python -m benchmark verify``
on what the leaderboard shows.

For every run of schema 2 or later: the checksums of ``predictions.jsonl`` and ``probe_predictions.json`` against
the record (each must be recorded from the schema that always writes it), then its task macro-F1, accuracy and
unmatched rate, and its probes' macro-F1, recomputed from them (:func:`benchmark.verify.points.point_problems`).
The predictions come from the same store as the intervals (:mod:`.resample`), so each file is read once. The
intervals the leaderboard shows are its own, recomputed from those predictions; the stored ones stand in only
where there are none, and such a run of schema 2 or later is itself marked. Per-class scores, confusion matrices
and the stored intervals are ``verify``'s to check. Schema-1 runs predate predictions: their intervals carry the
older method's mark instead.
"""

from __future__ import annotations

from benchmark.schema import PREDICTIONS, PROBE_PREDICTIONS
from benchmark.storage.integrity import sha256_file
from benchmark.verify.points import Mismatch, artifact_problems, point_problems

from .collect import Run
from .resample import POST, PRE, TASK, Predictions

CHECKED = (PREDICTIONS, PROBE_PREDICTIONS)   # the files whose numbers the leaderboard shows


def _sha(run: Run, name: str) -> str | None:
    path = run.folder / name
    return sha256_file(path) if path.is_file() and not path.is_symlink() else None


def run_problems(store: Predictions, run: Run) -> tuple[str, ...]:
    """Why ``run``'s shown numbers do not follow from its stored predictions (one text per number or file);
    empty if they do, or if the run predates predictions (schema 1)."""
    if run.schema_version < 2 or run.folder is None:
        return ()
    recorded = dict(run.artifacts)
    actual = {n: _sha(run, n) for n in CHECKED if n in recorded}
    problems = artifact_problems(recorded, run.schema_version, actual)
    failed = {p.field.removeprefix("artifacts.") for p in problems}
    task = store.of(run, TASK) if PREDICTIONS in actual and PREDICTIONS not in failed else None
    if PREDICTIONS in actual and PREDICTIONS not in failed and task is None:
        problems.append(Mismatch(PREDICTIONS, "the run's test predictions", "unreadable against its classes"))
    if task is not None:
        probes = {}
        if PROBE_PREDICTIONS in actual and PROBE_PREDICTIONS not in failed:
            for what in (POST, PRE):
                got = store.of(run, what)
                if got is not None:
                    probes[what] = got[2]
        stored = {"macro_f1": run.f1, "accuracy": run.accuracy}
        if run.unmatched_rate is not None:
            stored["unmatched_rate"] = run.unmatched_rate
        probe = {POST: {"macro_f1": run.probe_post}, PRE: {"macro_f1": run.probe_pre}}
        n_classes = max(int(task[1].max()) + 1, len(run.classes))
        problems += point_problems(stored, probe, (task[1], task[2][0]), probes, n_classes)
    return tuple(p.text() for p in problems)
