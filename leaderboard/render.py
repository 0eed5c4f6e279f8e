"""Render a :class:`~.table.Leaderboard` as Markdown (for publishing), CSV or JSON. Text in, text out.

Nothing here reads files, clocks or the environment, so the same leaderboard always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from tabulate import tabulate

from . import reference
from .table import Leaderboard, Ratio, Row, Stat, SummaryRow

MISSING = "—"   # no finished run behind this cell (see "Incomplete runs")
UNDEFINED = "n/a"  # % change with a zero baseline
NOT_SIGNIFICANT = "(n.s.)"  # a change whose 95% interval includes 0
REGIME_LABELS = {"zero-shot": "ZS", "ft-proj": "FT-Proj", "ft-e2e": "FT-E2E", "ft-e2e-lora": "FT-E2E (LoRA)"}


@dataclass(frozen=True)
class Column:
    """One per-row quantity, shared by every format so they never disagree on what a column means."""

    name: str                          # CSV/JSON name
    header: str                        # Markdown header
    get: Callable[[Row], Stat | Ratio | None]
    kind: str                          # "score" (0..1), "delta" (signed), "pct" (signed percent)
    e2e: bool = False                  # an FT-E2E quantity: marked "(LoRA)" when the row's FT-E2E is LoRA
    base: str | None = None            # for "pct": the absolute column, to tell "missing" from "undefined"
    own_seeds: bool = False            # seeds of its own stage (baselines), not flagged against the row's seeds


def _regime_columns(prefix: str, header: str, field: str, kind: str) -> list[Column]:
    out = []
    for regime, slug in (("ft-proj", "ft_proj"), ("ft-e2e", "ft_e2e")):
        label = REGIME_LABELS[regime]
        out.append(Column(f"{prefix}_{slug}", f"{header} {label}", lambda r, f=field, g=regime: getattr(r, f)[g],
                          kind, e2e=regime == "ft-e2e"))
        out.append(Column(f"{prefix}_{slug}_pct", f"{header} {label} %",
                          lambda r, f=field, g=regime: getattr(r, f + "_pct")[g], "pct", e2e=regime == "ft-e2e",
                          base=f"{prefix}_{slug}"))
    return out


SCORE_COLUMNS = [
    Column("f1_zero_shot", "ZS F1", lambda r: r.f1["zero-shot"], "score"),
    Column("f1_ft_proj", "FT-Proj F1", lambda r: r.f1["ft-proj"], "score"),
    Column("f1_ft_e2e", "FT-E2E F1", lambda r: r.f1["ft-e2e"], "score", e2e=True),
    Column("probe_pre_projection", "Probe pre-proj.", lambda r: r.probe_pre, "score"),
    Column("probe_original", "Probe orig. proj.", lambda r: r.probe["zero-shot"], "score"),
    Column("probe_ft_proj", "Probe FT-Proj proj.", lambda r: r.probe["ft-proj"], "score"),
    Column("probe_ft_e2e", "Probe FT-E2E proj.", lambda r: r.probe["ft-e2e"], "score", e2e=True),
]
CHANGE_COLUMNS = (_regime_columns("gain", "Gain", "gain", "delta")
                  + _regime_columns("richness", "Richness", "richness", "delta"))


def _baseline(attr: str):
    return lambda r: getattr(r.baselines, attr) if r.baselines is not None else None


# The baselines stage (paper Tables 1 and 3): what the model must beat, and its gains read against CLIP zero-shot.
BASELINE_COLUMNS = [
    Column("random_f1", "Random F1", _baseline("random_f1"), "score", own_seeds=True),
    Column("clip_zero_shot_f1", "CLIP ZS F1", _baseline("clip_f1"), "score", own_seeds=True),
    Column("clip_zero_shot_accuracy", "CLIP ZS acc.", _baseline("clip_accuracy"), "score", own_seeds=True),
    Column("clip_embedding_probe", "Probe CLIP emb.", _baseline("clip_probe"), "score", own_seeds=True),
    *[Column(f"gain_vs_clip_{slug}", f"{REGIME_LABELS[g]} − CLIP ZS", lambda r, g=g: r.gain_vs_clip.get(g), "delta",
             e2e=g == "ft-e2e")
      for g, slug in (("zero-shot", "zero_shot"), ("ft-proj", "ft_proj"), ("ft-e2e", "ft_e2e"))],
]
CONTROL_COLUMNS = []
for _key, _slug, _label, _e2e in (("pre", "pre_projection", "pre-proj.", False),
                                  ("zero-shot", "original", "orig. proj.", False),
                                  ("ft-proj", "ft_proj", "FT-Proj proj.", False), ("ft-e2e", "ft_e2e", "FT-E2E proj.", True)):
    CONTROL_COLUMNS += [
        Column(f"control_{_slug}", f"Control {_label}", lambda r, k=_key: r.control.get(k), "score", e2e=_e2e),
        Column(f"selectivity_{_slug}", f"Selectivity {_label}", lambda r, k=_key: r.selectivity.get(k), "delta",
               e2e=_e2e),
    ]
COLUMNS = SCORE_COLUMNS + CHANGE_COLUMNS + BASELINE_COLUMNS + CONTROL_COLUMNS
BY_NAME = {c.name: c for c in COLUMNS}


# -- cell text ---------------------------------------------------------------------------------------------------
def number(x: float, kind: str) -> str:
    if kind == "pct":
        return f"{x:+.1f}%"
    return f"{x:+.4f}" if kind == "delta" else f"{x:.4f}"


def spread(x: float, kind: str) -> str:
    return f"{x:.1f}%" if kind == "pct" else f"{x:.4f}"


def stat_text(s: Stat | Ratio | None, kind: str, expected: int) -> str:
    """``mean ± std [95% interval]`` (std only with >1 seed, the interval where there is one), changes whose
    interval includes 0 marked "(n.s.)", flagged when fewer seeds than the row has finished."""
    if s is None:
        return MISSING
    text = number(s.mean, kind)
    if s.std is not None:
        text += f" ± {spread(s.std, kind)}"
    if s.ci is not None:
        text += f" [{number(s.ci[0], kind)}, {number(s.ci[1], kind)}]"
        if kind == "delta" and s.includes_zero:
            text += f" {NOT_SIGNIFICANT}"
    if s.n < expected:
        text += f" ({s.n}/{expected} seeds)"
    return text


def cell(row: Row, col: Column) -> str:
    s = col.get(row)
    if s is None and col.base is not None and BY_NAME[col.base].get(row) is not None:
        text = UNDEFINED
    else:
        text = stat_text(s, col.kind, s.n if col.own_seeds and s is not None else len(row.seeds))
    if col.e2e and row.lora and text != MISSING:
        text += " (LoRA)"
    return text


def task_label(task: str, limit: int | None) -> str:
    return task if limit is None else f"{task} (limited: ≤{limit}/class)"


def model_label(row) -> str:
    """The model name, with what sets the row apart when one model/task has runs of several configurations."""
    return row.model + (f" [{row.variant}]" if getattr(row, "variant", "") else "")


def joined(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else MISSING


# -- Markdown ----------------------------------------------------------------------------------------------------
def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    # Names come from folder names: a "|" in one would otherwise split the cell.
    rows = [[c.replace("|", "\\|") for c in r] for r in rows]
    # disable_numparse: cells are already formatted; tabulate must not re-round or re-align them as numbers.
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _scores_md(rows: list[Row]) -> str:
    headers = ["Model", "Task", "Task version", "Projector", "Eval", "Seeds"] + [c.header for c in SCORE_COLUMNS]
    body = [[model_label(r), task_label(r.task, r.limit), joined(r.task_versions), joined(r.projector_families),
             joined(r.eval_modes), str(len(r.seeds))] + [cell(r, c) for c in SCORE_COLUMNS] for r in rows]
    return _md_table(headers, body)


def _changes_md(rows: list[Row]) -> str:
    headers = ["Model", "Task", "Seeds"] + [c.header for c in CHANGE_COLUMNS]
    body = [[model_label(r), task_label(r.task, r.limit), str(len(r.seeds))] + [cell(r, c) for c in CHANGE_COLUMNS]
            for r in rows]
    return _md_table(headers, body)


def control_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the control-probe table (Markdown and HTML show the same one)."""
    headers = ["Model", "Task", "Seeds"] + [c.header for c in CONTROL_COLUMNS]
    body = [[model_label(r), task_label(r.task, r.limit), str(len(r.seeds))] + [cell(r, c) for c in CONTROL_COLUMNS]
            for r in rows]
    return headers, body


def has_controls(rows: list[Row]) -> bool:
    return any(r.control.get(k) is not None for r in rows for k in r.control)


def _control_md(rows: list[Row]) -> str:
    return _md_table(*control_table(rows))


def baselines_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the baselines table (Markdown and HTML show the same one)."""
    headers = (["Model", "Task", "CLIP", "Seeds"] + [c.header for c in BASELINE_COLUMNS[:4]]
               + [BY_NAME["probe_pre_projection"].header, BY_NAME["f1_zero_shot"].header]
               + [c.header for c in BASELINE_COLUMNS[4:]])
    body = []
    for r in rows:
        b = r.baselines
        clip = ", ".join(b.clips) + ("" if b.clip_matches else " (not the model's encoder)")
        body.append([r.model, task_label(r.task, r.limit), clip, str(b.clip_f1.n)]
                    + [cell(r, c) for c in BASELINE_COLUMNS[:4]]
                    + [cell(r, BY_NAME["probe_pre_projection"]), cell(r, BY_NAME["f1_zero_shot"])]
                    + [cell(r, c) for c in BASELINE_COLUMNS[4:]])
    return headers, body


def _baselines_md(rows: list[Row]) -> str:
    return _md_table(*baselines_table(rows))


def _summary_folders(summary: list[SummaryRow]) -> list[str]:
    # FT-E2E columns for the variants the rows use (full, LoRA or both), so a LoRA-only board has no empty
    # full-FT-E2E columns; missing runs still show as missing in the cells.
    used = {d for s in summary for d in s.e2e_dirs}
    return ["ft-proj"] + [d for d in ("ft-e2e", "ft-e2e-lora") if d in used]


def _mean_over_tasks(per_task: dict[str, float] | None, kind: str, n_tasks: int) -> str:
    if not per_task:
        return MISSING
    vals = [per_task[t] for t in sorted(per_task)]
    text = number(statistics.fmean(vals), kind)
    return text + (f" ({len(vals)}/{n_tasks} tasks)" if len(vals) < n_tasks else "")


def summary_table(summary: list[SummaryRow]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the per-model summary (Markdown and HTML show the same one)."""
    folders = _summary_folders(summary)
    headers = ["Model", "Projector", "Tasks"]
    for f in folders:
        label = REGIME_LABELS[f]
        headers += [f"Gain {label}", f"Gain {label} %", f"Richness {label}", f"Richness {label} %"]
    body = []
    for s in summary:
        line = [model_label(s), joined(s.projector_families), str(len(s.tasks))]
        for f in folders:
            for per_task, kind in ((s.gain, "delta"), (s.gain_pct, "pct"), (s.richness, "delta"),
                                   (s.richness_pct, "pct")):
                line.append(_mean_over_tasks(per_task.get(f), kind, len(s.tasks)))
        body.append(line)
    return headers, body


def _summary_md(summary: list[SummaryRow]) -> str:
    return _md_table(*summary_table(summary))


def _runs_section_md(title: str, blurb: str, rows: list[Row], summary: list[SummaryRow]) -> list[str]:
    out = [f"## {title}", "", blurb, ""]
    if not rows:
        return out + ["No runs of this kind yet.", ""]
    out += ["### Task and probe macro-F1", "", _scores_md(rows), ""]
    out += ["### Task gain and richness change (vs. zero-shot and the original projector)", "",
            _changes_md(rows), ""]
    if has_controls(rows):
        out += ["### Control probes (training labels shuffled; selectivity = probe − control)", "",
                _control_md(rows), ""]
    out += ["### Summary per model (mean over tasks of the per-task means)", "", _summary_md(summary), ""]
    with_baselines = [r for r in rows if r.baselines is not None]
    if with_baselines:
        out += ["### Baselines: does the model beat its own vision encoder? (paper Tables 1 and 3)", "",
                "Random: exact expected macro-F1 of a uniform random guess. CLIP ZS: open_clip zero-shot with the "
                "CLIP shown. Probe CLIP emb.: the probe MLP on CLIP's pooled image embedding (Table 3), next to "
                "the probe on the model's patch-mean pre-projection features. \"X − CLIP ZS\": the model's F1 "
                "minus CLIP zero-shot F1.", "", _baselines_md(with_baselines), ""]
    return out


def _reference_md() -> list[str]:
    out = ["## Reference: published paper numbers (not measured by projbench)", "",
           f"{reference.MODEL}, projector: {reference.PROJECTOR_FAMILY}, macro-F1 as reported in {reference.SOURCE}. "
           "The paper's setup differs from projbench's protocol (free-text generation with sampling; probes "
           "early-stopped on the test split): compare trends, not decimals. "
           "Changes are computed from the reported numbers; the paper gives no spread over seeds.", ""]
    regimes = ("zero-shot", "ft-proj", "ft-e2e")
    headers = ["Task"] + [f"{REGIME_LABELS[g]} F1" for g in regimes] + [
        "Probe orig. proj.", "Probe FT-Proj proj.", "Probe FT-E2E proj."]
    body = [[r.task] + [number(r.f1(g), "score") for g in regimes] + [number(r.probe(g), "score") for g in regimes]
            for r in reference.ROWS]
    out += [_md_table(headers, body), ""]

    def pct(x):
        return UNDEFINED if x is None else number(x, "pct")

    headers = ["Task"]
    for what in ("Gain", "Richness"):
        for g in ("ft-proj", "ft-e2e"):
            headers += [f"{what} {REGIME_LABELS[g]}", f"{what} {REGIME_LABELS[g]} %"]
    body = []
    for r in reference.ROWS:
        line = [r.task]
        for absolute, relative in ((r.gain, r.gain_pct), (r.richness, r.richness_pct)):
            for g in ("ft-proj", "ft-e2e"):
                line += [number(absolute(g), "delta"), pct(relative(g))]
        body.append(line)
    out += [_md_table(headers, body), ""]
    headers = ["Task", "Random F1", "CLIP ZS F1", "Probe CLIP emb. (Table 3)", "ZS − CLIP ZS", "FT-Proj − CLIP ZS",
               "FT-E2E − CLIP ZS"]
    body = [[r.task, number(r.random, "score"), number(r.clip_zero_shot, "score"), number(r.clip_probe, "score")]
            + [number(r.gain_vs_clip(g), "delta") for g in regimes] for r in reference.ROWS]
    baselines = ["Baselines (Table 1: uniform random and CLIP ViT-L/14-336 zero-shot; Table 3: MLP on the CLIP image "
            "embedding), and LLaVA-1.5's F1 read against CLIP zero-shot:", "", _md_table(headers, body), ""]

    return out + baselines


LEGEND = [
    "- **F1**: macro-F1 on the task's test split, per regime: ZS (zero-shot), FT-Proj (projector fine-tuned), "
    "FT-E2E (projector + LLM fine-tuned; \"(LoRA)\" when the LLM was tuned with LoRA instead of fully).",
    "- **Probe**: macro-F1 of an MLP probe on mean-pooled image features, taken before the projector "
    "(pre-proj.) or after the original, FT-Proj or FT-E2E projector.",
    "- **Gain** = F1(regime) − F1(zero-shot); **Richness** = probe(regime's projector) − probe(original "
    "projector); **%**: the change of the seed-averaged means relative to the seed-averaged zero-shot F1 / "
    "original probe, over the seeds both have (the paper's Table 2 estimator).",
    "- Changes are computed per seed (each run against the zero-shot run of its seed), then aggregated: "
    "mean ± sample std over seeds, std only with more than one seed.",
    "- **[low, high]**: 95% interval of the mean: Student t over seeds (paired by seed for changes) with two or "
    f"more seeds; with one, the run's bootstrap over test images (paired with the zero-shot run for changes). "
    f"{NOT_SIGNIFICANT}: the change's interval includes 0.",
    "- Only true replicates (equal run identity but for the seed) are averaged: runs of other configurations "
    "get their own row, labelled `model [field=value; ...]` with the fields that differ.",
    f"- {MISSING}: no finished run (see Incomplete runs); \"(k/n seeds)\": only k of the row's n seeds finished; "
    f"{UNDEFINED}: % change of a zero baseline.",
    "- **Baselines** (runs with `--baselines`): Random = exact expected macro-F1 of a uniform random guess; "
    "CLIP ZS = open_clip zero-shot; Probe CLIP emb. = the probe on CLIP's pooled image embedding (paper Table 3); "
    "\"X − CLIP ZS\" = the model's F1 in regime X minus CLIP zero-shot F1.",
]


def markdown(board: Leaderboard, with_reference: bool = False) -> str:
    full = [r for r in board.rows if r.limit is None]
    limited = [r for r in board.rows if r.limit is not None]
    out = ["# projbench leaderboard", "", *LEGEND, ""]
    out += _runs_section_md("Full runs", "Every image of each task's splits.", full,
                            [s for s in board.summary if s.limit is None])
    if limited:
        out += _runs_section_md(
            "Limited runs (quick checks, not comparable with full runs)",
            "Run with `--max-per-class k`: at most k images per class and split. Never read these as results.",
            limited, [s for s in board.summary if s.limit is not None])
    out += ["## Incomplete runs", ""]
    out += [f"- `{i.path}`: {i.reason}" for i in board.incomplete] or ["None."]
    out += ["", "## Skipped files", ""]
    out += [f"- `{s.path}`: {s.reason}" for s in board.skipped] or ["None."]
    out += [""]
    if board.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in board.warnings] + [""]
    if with_reference:
        out += _reference_md()
    return "\n".join(out).rstrip("\n") + "\n"


# -- CSV ---------------------------------------------------------------------------------------------------------
ID_FIELDS = ["section", "model", "variant", "task", "max_per_class", "limited", "ft_e2e", "projector_family",
             "task_version", "eval_mode", "seeds", "revisions"]


def _csv_header() -> list[str]:
    out = list(ID_FIELDS)
    for c in COLUMNS:
        out += [f"{c.name}_mean", f"{c.name}_std", f"{c.name}_n", f"{c.name}_ci_low", f"{c.name}_ci_high"]
    return out + ["missing"]


def _csv_stat(s: Stat | Ratio | None) -> list:
    if s is None:
        return ["", "", "", "", ""]
    ci = ["", ""] if s.ci is None else [repr(s.ci[0]), repr(s.ci[1])]
    return [repr(s.mean), "" if s.std is None else repr(s.std), s.n, *ci]


def csv_text(board: Leaderboard, with_reference: bool = False) -> str:
    """One line per leaderboard row; reference rows (if asked) are labelled ``section=reference``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_csv_header())
    for r in board.rows:
        ids = ["measured", r.model, r.variant, r.task, "" if r.limit is None else r.limit, r.limit is not None,
               "lora" if r.lora else "full", ";".join(r.projector_families), ";".join(r.task_versions),
               ";".join(r.eval_modes), ";".join(map(str, r.seeds)), ";".join(r.revisions)]
        vals = [v for c in COLUMNS for v in _csv_stat(c.get(r))]
        w.writerow(ids + vals + [";".join(r.missing)])
    if with_reference:
        for r in reference.ROWS:
            ids = ["reference", reference.MODEL, "", r.task, "", False, "full", reference.PROJECTOR_FAMILY, "", "", "",
                   ""]
            vals = []
            for c in COLUMNS:
                x = _reference_value(r, c.name)
                vals += ["", "", "", "", ""] if x is None else [repr(x), "", "", "", ""]
            w.writerow(ids + vals + [""])
    return buf.getvalue()


def _reference_value(r: reference.ReferenceRow, name: str) -> float | None:
    """A reference row's value for a column name (None where the paper reports nothing)."""
    if name in ("probe_pre_projection", "clip_zero_shot_accuracy") or name.startswith(("control_", "selectivity_")):
        return None
    if name in ("random_f1", "clip_zero_shot_f1", "clip_embedding_probe"):
        return {"random_f1": r.random, "clip_zero_shot_f1": r.clip_zero_shot, "clip_embedding_probe": r.clip_probe}[name]
    if name.startswith("gain_vs_clip_"):
        return r.gain_vs_clip(name.removeprefix("gain_vs_clip_").replace("_", "-"))
    if name.startswith("f1_"):
        return r.f1({"zero_shot": "zero-shot", "ft_proj": "ft-proj", "ft_e2e": "ft-e2e"}[name[3:]])
    if name.startswith("probe_"):
        return r.probe({"original": "zero-shot", "ft_proj": "ft-proj", "ft_e2e": "ft-e2e"}[name[6:]])
    what, _, rest = name.partition("_")
    pct = rest.endswith("_pct")
    regime = rest.removesuffix("_pct").replace("_", "-")
    fn = getattr(r, f"{what}_pct" if pct else what)
    return fn(regime)


# -- JSON --------------------------------------------------------------------------------------------------------
def _json_stat(s: Stat | Ratio | None):
    if s is None:
        return None
    if isinstance(s, Ratio):
        return {"mean": s.mean, "std": None, "n": s.n, "seeds": list(s.seeds), "new_mean": s.new_mean,
                "base_mean": s.base_mean, "estimator": "change of seed-averaged means / seed-averaged baseline"}
    return {"mean": s.mean, "std": s.std, "n": s.n, "seeds": list(s.seeds), "values": list(s.values),
            "ci95": None if s.ci is None else list(s.ci), "ci_method": s.ci_method, "p_value": s.p_value,
            "ci_includes_zero": s.includes_zero}


def _json_row(r: Row) -> dict:
    return {
        "model": r.model, "variant": r.variant, "revisions": list(r.revisions), "task": r.task,
        "max_per_class": r.limit, "limited": r.limit is not None,
        "ft_e2e": "lora" if r.lora else "full", "projector_families": list(r.projector_families),
        "task_versions": list(r.task_versions), "eval_modes": list(r.eval_modes), "seeds": list(r.seeds),
        "missing": list(r.missing),
        **{c.name: _json_stat(c.get(r)) for c in COLUMNS},
    }


def _json_summary(s: SummaryRow) -> dict:
    def means(per_folder):
        return {f: {"mean_over_tasks": statistics.fmean(v[t] for t in sorted(v)), "per_task": v}
                for f, v in per_folder.items() if v}

    return {"model": s.model, "variant": s.variant, "max_per_class": s.limit, "limited": s.limit is not None,
            "projector_families": list(s.projector_families), "tasks": list(s.tasks),
            "gain": means(s.gain), "gain_pct": means(s.gain_pct), "richness": means(s.richness),
            "richness_pct": means(s.richness_pct)}


def json_text(board: Leaderboard, with_reference: bool = False) -> str:
    doc = {
        "format": "projbench-leaderboard",
        "format_version": 1,
        "rows": [_json_row(r) for r in board.rows],
        "summary": [_json_summary(s) for s in board.summary],
        "incomplete": [{"path": i.path, "reason": i.reason} for i in board.incomplete],
        "skipped": [{"path": s.path, "reason": s.reason} for s in board.skipped],
        "warnings": list(board.warnings),
    }
    if with_reference:
        doc["reference"] = {
            "source": reference.SOURCE, "model": reference.MODEL, "projector_family": reference.PROJECTOR_FAMILY,
            "rows": [{"task": r.task, **{c.name: _reference_value(r, c.name) for c in COLUMNS}}
                     for r in reference.ROWS],
        }
    # allow_nan=False: collect() rejects non-finite scores, so a NaN here would be a bug worth failing on.
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


FORMATS = {"markdown": markdown, "csv": csv_text, "json": json_text}


def render(board: Leaderboard, fmt: str, with_reference: bool = False) -> str:
    return FORMATS[fmt](board, with_reference)
