"""Analysis results in the leaderboard: per-layer curves (PNG) and summary tables (Markdown, JSON).

Reads ``<results>/<model>/<task>[@max<k>]/analyses/<analysis>/<regime>/seed<k>/analysis.json`` (written by
``python -m benchmark analyze``). Curves: one PNG per (model, task, analysis), one line per model state (mean
over seeds; the analysis's secondary curve, e.g. the control probe, dashed). Tables: one row per (model, task,
analysis, state) with the analysis's summary numbers, mean over seeds. Limited runs are labelled as such.
Unreadable files are listed, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.schema import ANALYSES_DIR, ANALYSIS_RESULT, FOLDER_ORDER, Regime, migrate, parse_task_dir
from benchmark.storage.integrity import CorruptFileError, read_sealed_json

from .markdown import code_span, md_text


def state_label(regime: str) -> str:
    """The model state an analysis of a regime's folder looked at (zero-shot: the original weights)."""
    return Regime(regime).state_label if regime in FOLDER_ORDER else regime


@dataclass(frozen=True)
class Record:
    model: str
    task_dir: str
    folder: str        # analysis name (+ variant, e.g. mir-compat)
    regime: str
    seed: int
    data: dict

    @property
    def limit(self) -> int | None:
        return parse_task_dir(self.task_dir)[1]

    @property
    def task_label(self) -> str:
        task = parse_task_dir(self.task_dir)[0]
        return task if self.limit is None else f"{task} (limited: {self.limit}/class)"


def collect_analyses(results: Path, model: str | None = None, task_dir: str | None = None):
    """(records, skipped) of every analysis result under ``results`` (optionally one model / task folder)."""
    results = Path(results)
    records, skipped = [], []
    pattern = f"{model or '*'}/{task_dir or '*'}/{ANALYSES_DIR}/*/*/seed*/{ANALYSIS_RESULT}"
    for path in sorted(results.glob(pattern)):
        rel = path.relative_to(results).parts
        try:
            data = migrate(read_sealed_json(path), "analysis")
            problem = _result_problem(data.get("result"))
            if problem:
                raise ValueError(problem)
            seed = int(rel[5].removeprefix("seed"))
        except (CorruptFileError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            skipped.append((str(path.relative_to(results)), f"unreadable: {exc}"))
            continue
        records.append(Record(rel[0], rel[1], rel[3], rel[4], seed, data))
    return records, skipped


def _number(v) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _result_problem(result) -> str | None:
    """Why an analysis.json's ``result`` cannot be shown (its fields of the wrong type), or None."""
    if not isinstance(result, dict):
        return "field 'result' is not an object"
    curves, x, summary = result.get("curves"), result.get("x"), result.get("summary", {})
    if not isinstance(curves, dict) or not curves or not isinstance(x, list):
        return "no curves"
    bad = sorted(str(k) for k, c in curves.items() if not isinstance(c, list) or not all(map(_number, c)))
    if bad:
        return f"curve(s) {bad} are not lists of numbers"
    if not isinstance(summary, dict):
        return f"field 'result.summary' is a {type(summary).__name__}, not an object"
    for key in ("primary", "secondary", "x_label"):
        if result.get(key) is not None and not isinstance(result[key], str):
            return f"field 'result.{key}' is not text"
    return None


def _groups(records):
    out: dict = {}
    for r in records:
        out.setdefault((r.model, r.task_dir, r.folder), {}).setdefault(r.regime, []).append(r)
    return out


def _mean_curve(recs, name):
    curves = [r.data["result"]["curves"].get(name) for r in recs]
    curves = [c for c in curves if c]
    if not curves:
        return None
    out = []
    for values in zip(*curves, strict=False):
        vals = [v for v in values if v is not None]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out


def _regime_key(regime):
    return FOLDER_ORDER.index(regime) if regime in FOLDER_ORDER else len(FOLDER_ORDER)


def draw_curves(results: Path, model: str | None = None, task_dir: str | None = None,
                out_dir: Path | None = None) -> list[Path]:
    """One PNG per (model, task, analysis); by default next to the results, ``.../analyses/<analysis>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records, _ = collect_analyses(results, model, task_dir)
    with matplotlib.rc_context({"text.parse_math": False}):  # names drawn as they are: "$" starts no mathtext
        return [_draw_curve(plt, group, locator=MaxNLocator, results=results, out_dir=out_dir)
                for group in sorted(_groups(records).items())]


def _draw_curve(plt, group, *, locator, results, out_dir) -> Path:
    """One analysis's curves of one (model, task) as a PNG; its path. ``group``: ((model, task folder, analysis
    folder), {regime: records})."""
    (m, t, folder), by_regime = group
    first = next(iter(by_regime.values()))[0]
    res = first.data["result"]
    primary, secondary = res.get("primary") or sorted(res["curves"])[0], res.get("secondary")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for i, regime in enumerate(sorted(by_regime, key=_regime_key)):
        recs = by_regime[regime]
        x = recs[0].data["result"]["x"]
        label = f"{state_label(regime)} (n={len(recs)} seed{'s' if len(recs) > 1 else ''})"
        y = _mean_curve(recs, primary)
        if y:
            ax.plot(x[: len(y)], y, marker="o", ms=3, color=f"C{i}", label=label)
        y2 = _mean_curve(recs, secondary) if secondary else None
        if y2:
            ax.plot(x[: len(y2)], y2, ls="--", color=f"C{i}", alpha=0.6, label=f"{label}: {secondary}")
    limited = f" (limited run: {first.limit}/class)" if first.limit else ""
    ax.set_title(f"{folder}: {m} on {parse_task_dir(t)[0]}{limited}", fontsize=10)
    ax.set_xlabel(res.get("x_label", "layer"))
    ax.xaxis.set_major_locator(locator(integer=True))  # layers are whole numbers
    ax.set_ylabel(primary)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = (Path(out_dir) / f"{m}__{t}__{folder}.png" if out_dir
            else Path(results) / m / t / ANALYSES_DIR / f"{folder}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# What the results of an analysis's older definitions (identity version below the current one) measured: they
# are still read, in rows of their own, labelled with this.
OLDER_DEFINITIONS = {
    "modality-gap": (2, "older definition: centred gap, not Liang et al.'s; text states include the start token "
                        "and the prompt before the image"),
    "mir": (2, "older definition: text states include the start token and the prompt before the image"),
}


def analysis_label(record: Record) -> str:
    """The analysis folder's name, plus the older definition it was computed with, if so."""
    current, what = OLDER_DEFINITIONS.get(record.data.get("analysis"), (1, ""))
    version = (record.data.get("identity") or {}).get("version", 1)
    return f"{record.folder} ({what})" if version < current else record.folder


def summary_rows(records) -> list[dict]:
    """One row per (model, task, analysis, state): summary numbers averaged over seeds; results of an older
    definition of an analysis in rows of their own (:func:`analysis_label`)."""
    rows = []
    labelled: dict = {}
    for r in records:
        labelled.setdefault((r.model, r.task_dir, analysis_label(r)), {}).setdefault(r.regime, []).append(r)
    for (m, _t, folder), by_regime in sorted(labelled.items()):
        for regime in sorted(by_regime, key=_regime_key):
            recs = sorted(by_regime[regime], key=lambda r: r.seed)
            summary = {}
            for key in sorted(recs[0].data["result"].get("summary", {})):
                vals = [r.data["result"]["summary"].get(key) for r in recs]
                if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
                    summary[key] = sum(vals) / len(vals)
                else:
                    summary[key] = vals[0]
            rows.append({"model": m, "task": recs[0].task_label, "limit": recs[0].limit, "analysis": folder,
                         "state": state_label(regime), "seeds": [r.seed for r in recs],
                         "summary": summary, "citation": recs[0].data.get("citation")})
    return rows


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_section(records, skipped=()) -> str:
    if not records and not skipped:
        return ""
    from tabulate import tabulate

    lines = ["", "## Layer-wise analyses", "",
             "Summary numbers per model state (mean over seeds); per-layer curves: "
             "`python -m benchmark leaderboard --analysis-plots DIR`. Limited runs are labelled.", ""]
    rows = summary_rows(records)
    for analysis in sorted({r["analysis"] for r in rows}):
        sub = [r for r in rows if r["analysis"] == analysis]
        lines += [f"### {md_text(analysis)}", "", md_text(str(sub[0]["citation"])), ""]
        table = [[md_text(r["model"]), md_text(r["task"]), r["state"], len(r["seeds"]),
                  md_text("; ".join(f"{k} {_fmt(v)}" for k, v in r["summary"].items()))] for r in sub]
        lines += [tabulate(table, headers=["model", "task", "state", "seeds", "summary"], tablefmt="github"), ""]
    if skipped:
        lines += ["Skipped analysis files:", ""] + [f"- {code_span(p)}: {md_text(why)}" for p, why in skipped] + [""]
    return "\n".join(lines)


def _clean(obj):
    """JSON without NaN/inf (the leaderboard writes strict JSON)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def json_section(records, skipped=()) -> dict:
    return _clean({"rows": summary_rows(records), "skipped": [{"path": p, "reason": w} for p, w in skipped]})


def with_analyses(text: str, fmt: str, results: Path) -> str:
    """The rendered leaderboard ``text`` with the analyses added (Markdown section / JSON key; CSV unchanged)."""
    records, skipped = collect_analyses(results)
    if not records and not skipped:
        return text
    if fmt == "markdown":
        return text.rstrip("\n") + "\n" + markdown_section(records, skipped)
    if fmt == "json":
        doc = json.loads(text)
        doc["analyses"] = json_section(records, skipped)
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"
    return text
