"""Every number of one run's ``metrics.json`` recomputed from the files it came from, with the run's own functions.

- the seal (:func:`benchmark.storage.integrity.record_seal_problem`) and each artifact's SHA-256;
- from ``predictions.jsonl``: macro-F1, accuracy, ``n``, per-class scores and the confusion matrix
  (:func:`benchmark.evaluate.metrics.classification_metrics`, as ``evaluate_loglik`` / ``evaluate_generate`` call
  it), the unmatched rate and match rules of generate mode, and the interval
  (:func:`benchmark.evaluate.intervals.record_interval`);
- from ``probe_predictions.json``: each probe's mean and per-seed macro-F1 and accuracy, its probe seeds and
  interval, and the selectivity against the recorded control score;
- with the zero-shot run of the same seed (``../../zero-shot/seed<k>``): gain and richness change with their
  intervals and p-values (:func:`benchmark.evaluate.intervals.record_change`, as ``paired_stage`` calls it).

The intervals are seeded constants (``intervals.SEED``, ``intervals.SAMPLES``), so the same predictions give the
same interval bit for bit. Intervals of schema 1-2 records were made by an older method this version no longer
has: their point values are checked, their intervals listed as not checked. What cannot be checked at all (the
control task's score: its predictions are not kept) is listed too; docs/trust.md says what this proves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.evaluate.intervals import RECORDED, macro_f1_rows, record_change, record_interval
from benchmark.evaluate.metrics import classification_metrics
from benchmark.schema import METRICS, PREDICTIONS, PROBE_PREDICTIONS, Regime
from benchmark.storage.integrity import SEAL, CorruptFileError, parse_json, record_seal_problem, sha256_file

from .points import Mismatch, artifact_problems, compare, point_problems, probe_points

MAX_FILE_BYTES = 256 * 1024 * 1024   # larger than any predictions file projbench writes for a task
PROBES = ("post_projection", "pre_projection")


@dataclass
class Report:
    """What verifying one run folder found: mismatches (the run fails) and what could not be checked."""

    folder: str
    mismatches: list[Mismatch] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    """A run folder's record and the predictions it came from (None where absent or failing its checksum)."""

    metrics: dict
    classes: list[str]
    truth: np.ndarray | None = None
    task: np.ndarray | None = None          # (n,) class indices, -1: unmatched
    rows: list[dict] | None = None
    probes: dict | None = None              # the parsed probe_predictions.json
    probe_preds: dict = field(default_factory=dict)  # where -> (R, n)


def read_record(folder: Path) -> tuple[dict | None, list[Mismatch]]:
    """The parsed ``metrics.json`` (seal removed) and why it cannot be trusted (its seal); None if unreadable."""
    m = parse_json(folder / METRICS, MAX_FILE_BYTES)
    if not isinstance(m, dict):
        raise CorruptFileError(folder / METRICS, f"expected a JSON object, found {type(m).__name__}")
    claimed = m.pop(SEAL, None)
    problem = record_seal_problem(m, claimed)
    if problem is None:
        return m, []
    stored = "absent" if claimed is None else f"sha256 {str(claimed)[:16]}…"
    return m, [Mismatch(SEAL, stored, problem)]


def _sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() and not path.is_symlink() else None


def _json_text(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path.name} is larger than any projbench writes")
    return path.read_text(encoding="utf-8")


def load(folder: Path, report: Report) -> Loaded | None:
    """Read a run folder for checking; mismatches of its seal and artifacts go into ``report``."""
    m, problems = read_record(folder)
    report.mismatches += problems
    recorded = m.get("artifacts") if isinstance(m.get("artifacts"), dict) else {}
    names = sorted(n for n in recorded if isinstance(n, str) and Path(n).name == n and not n.startswith("."))
    actual = {n: _sha(folder / n) for n in names}
    bad_files = artifact_problems(recorded, int(m.get("schema_version", 1)), actual)
    report.mismatches += bad_files
    failed = {p.field.removeprefix("artifacts.") for p in bad_files}
    classes = (m.get("data") or {}).get("classes") or []
    out = Loaded(m, [c for c in classes if isinstance(c, str)])
    index = {c: i for i, c in enumerate(out.classes)}
    if PREDICTIONS in actual and PREDICTIONS not in failed:
        out.rows = [json.loads(line) for line in _json_text(folder / PREDICTIONS).splitlines() if line.strip()]
        out.truth = np.array([index[r["label"]] for r in out.rows], dtype=np.int64)
        out.task = np.array([index.get(r["prediction"], -1) for r in out.rows], dtype=np.int64)
    if PROBE_PREDICTIONS in actual and PROBE_PREDICTIONS not in failed and out.rows is not None:
        out.probes = json.loads(_json_text(folder / PROBE_PREDICTIONS))
        if list(out.probes.get("uids") or []) != [r["uid"] for r in out.rows]:
            report.mismatches.append(Mismatch("probe_predictions.json uids", "other test images",
                                              "the test images of predictions.jsonl"))
        else:
            for where in PROBES:
                if out.probes.get(where) is not None:
                    a = np.asarray(out.probes[where], dtype=np.int64)
                    out.probe_preds[where] = a[None] if a.ndim == 1 else a
    return out


def _interval_fields(out: list[Mismatch], where: str, stored: dict, want: dict) -> None:
    compare(out, f"{where}.ci95", stored.get("ci95"), want["ci95"])
    got = stored.get("interval") if isinstance(stored.get("interval"), dict) else {}
    for k in RECORDED:
        compare(out, f"{where}.interval.{k}", got.get(k), want["interval"][k])


def check_task(run: Loaded, report: Report) -> None:
    """The task's numbers against ``predictions.jsonl``."""
    m, k = run.metrics.get("metrics") or {}, len(run.classes)
    out = report.mismatches
    truth, pred = run.truth.tolist(), run.task.tolist()
    want = classification_metrics(truth, pred, k, run.classes)
    if run.metrics.get("eval_mode") == "generate":
        from sklearn.metrics import confusion_matrix

        want["confusion_matrix"] = confusion_matrix(truth, pred, labels=[*range(k), -1])[:k].tolist()
        want["n_unmatched"] = sum(p == -1 for p in pred)
        want["match_rules"] = {r: sum(row.get("match") == r for row in run.rows)
                               for r in ("exact", "prefix", "contains", "unmatched")}
    generated = ("n_unmatched", "match_rules") if run.metrics.get("eval_mode") == "generate" else ()
    for name in ("n", "per_class", "confusion_matrix", *generated):
        compare(out, f"metrics.{name}", m.get(name), want[name])
    if run.metrics.get("schema_version", 1) >= 3:
        _interval_fields(out, "metrics", m, record_interval(truth, pred, k))
    else:
        report.unchecked.append("metrics.ci95 (older interval method, schema < 3)")


def check_probes(run: Loaded, report: Report) -> None:
    """Each probe's numbers against its stored test predictions."""
    probe, k, out = run.metrics.get("probe") or {}, len(run.classes), report.mismatches
    truth = run.truth
    for where, preds in run.probe_preds.items():
        stored = probe.get(where) if isinstance(probe.get(where), dict) else {}
        accuracy = [float(np.mean(p == truth)) for p in preds]
        compare(out, f"probe.{where}.accuracy", stored.get("accuracy"), float(np.mean(accuracy)))
        per_seed = stored.get("per_seed") if isinstance(stored.get("per_seed"), list) else []
        seeds = run.probes.get("probe_seeds")
        if seeds is not None:
            compare(out, f"probe.{where}.probe_seeds", stored.get("probe_seeds"), list(seeds)[:len(preds)])
        if per_seed:
            compare(out, f"probe.{where}.per_seed (count)", len(per_seed), len(preds))
        f1s = macro_f1_rows(np.broadcast_to(truth, preds.shape), preds, k)
        for i, s in enumerate(per_seed[:len(preds)]):
            s = s if isinstance(s, dict) else {}
            compare(out, f"probe.{where}.per_seed[{i}].macro_f1", s.get("macro_f1"), float(f1s[i]))
            compare(out, f"probe.{where}.per_seed[{i}].accuracy", s.get("accuracy"), accuracy[i])
        if isinstance(stored.get("control"), dict) and "selectivity" in stored:
            compare(out, f"probe.{where}.selectivity", stored.get("selectivity"),
                    float(np.mean(f1s)) - stored["control"].get("macro_f1", float("nan")))
            report.unchecked.append(f"probe.{where}.control (its predictions are not kept)")
        if run.metrics.get("schema_version", 1) >= 3:
            _interval_fields(out, f"probe.{where}", stored, record_interval(truth, preds, k))


def check_paired(run: Loaded, zs: Loaded | None, report: Report) -> None:
    """Gain and richness change against the zero-shot run of the same seed."""
    paired = run.metrics.get("paired")
    if not isinstance(paired, dict):
        return
    if zs is None or zs.task is None or not np.array_equal(zs.truth, run.truth):
        report.unchecked.append("paired (the zero-shot run of this seed, with its predictions on the same test "
                                "images, is not there)")
        return
    k, out = len(run.classes), report.mismatches
    changes = {"gain": (run.task, zs.task)}
    if "post_projection" in run.probe_preds and "post_projection" in zs.probe_preds:
        changes["richness"] = (run.probe_preds["post_projection"], zs.probe_preds["post_projection"])
    for name, (new, base) in changes.items():
        stored = paired.get(name) if isinstance(paired.get(name), dict) else {}
        if run.metrics.get("schema_version", 1) >= 3:
            want = record_change(run.truth, new, base, k)
            for key in ("delta", "ci95", "p_value", *RECORDED):
                compare(out, f"paired.{name}.{key}", stored.get(key), want[key])
        else:
            delta = probe_points(run.truth, np.atleast_2d(new), k) - probe_points(run.truth, np.atleast_2d(base), k)
            compare(out, f"paired.{name}.delta", stored.get("delta"), delta)
            report.unchecked.append(f"paired.{name}.ci95 (older interval method, schema < 3)")


def verify_folder(folder: Path, label: str) -> Report:
    """Verify one run folder (``label``: how lines name it)."""
    report = Report(label)
    try:
        run = load(folder, report)
    except (CorruptFileError, OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        report.mismatches.append(Mismatch("files", "readable run files", f"unreadable ({_reason(exc)})"))
        return report
    m = run.metrics
    if m.get("regime") == Regime.BASELINES:
        report.unchecked.append("baselines (their predictions are not kept)")
        return report
    if run.task is None:
        report.unchecked.append("every number (no predictions.jsonl recorded: schema 1)"
                                if not report.mismatches else "numbers (their predictions fail the checks above)")
        return report
    report.mismatches += point_problems(m.get("metrics") or {}, m.get("probe") or {}, (run.truth, run.task),
                                        run.probe_preds, len(run.classes))
    check_task(run, report)
    check_probes(run, report)
    if m.get("regime") != Regime.ZERO_SHOT:
        check_paired(run, _partner(folder), report)
    return report


def _partner(folder: Path) -> Loaded | None:
    """The zero-shot run of the same seed, if it is there and passes its own seal and checksums."""
    zs = folder.parent.parent / Regime.ZERO_SHOT.value / folder.name
    probe = Report("")
    try:
        run = load(zs, probe) if (zs / METRICS).is_file() else None
    except (CorruptFileError, OSError, ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None
    return run if run is not None and not probe.mismatches else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CorruptFileError):
        return exc.reason
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"[:200]
