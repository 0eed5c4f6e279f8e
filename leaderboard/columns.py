"""The leaderboard's one column model: what each column is, how its cell reads, and which formats show it.

A :class:`Column` is declared once and every format reads it: Markdown and HTML take its header and its cell text
(:func:`cell`), CSV and JSON its key and its raw value, and the paper's reference rows their value through
``ref``. A measured quantity (a :class:`~.stats.Stat` or :class:`~.stats.Ratio`) is one column per regime; the
HTML table's long form (one line per regime) names, per regime, the row column behind each of its cells
(``per_regime``), so a page cell is always the Markdown's text.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.schema import Regime

from .reference import ReferenceRow
from .stats import Ratio, Stat
from .table import Row, SummaryRow

MISSING = "—"   # no finished run behind this cell (see "Incomplete runs")
UNDEFINED = "n/a"  # % change with a zero baseline
NOT_SIGNIFICANT = "(n.s.)"  # a change whose 95% interval includes 0
OLDER_METHOD = "†"    # an interval made by the older method: results without their test predictions
SMALL_CLASSES = "‡"   # an interval whose smallest class has fewer than 20 test images
REGIME_LABELS = {r: r.short for r in (Regime.ZERO_SHOT, Regime.FT_PROJ, Regime.FT_E2E, Regime.FT_E2E_LORA)}

# Which outputs carry a column. CSV and JSON pick their columns by it; Markdown and HTML show columns through
# their tables (the lists of columns below), and a column only a table shows says so.
EVERY = frozenset({"markdown", "csv", "json", "html"})
DATA = frozenset({"csv", "json"})
CSV = frozenset({"csv"})
JSON = frozenset({"json"})
TABLE = frozenset({"markdown", "html"})   # the Markdown's tables, which the page shows too
HTML = frozenset({"html"})


@dataclass(frozen=True)
class Column:
    """One column, shared by every format so they never disagree on what it means."""

    key: str                              # CSV/JSON name
    header: str                           # Markdown/HTML header
    get: Callable[[Any], Any] = lambda row: None  # the cell's value: a Stat/Ratio for measured kinds, else data
    kind: str = "text"                    # "text", "count", "score" (0..1), "delta" (signed), "pct" (signed %)
    formats: frozenset[str] = EVERY       # which outputs show it
    e2e: bool = False                     # an FT-E2E quantity: marked "(LoRA)" when the row's FT-E2E is LoRA
    base: str | None = None               # for "pct": the absolute column, to tell "missing" from "undefined"
    own_seeds: bool = False               # seeds of its own stage (baselines), not flagged against the row's seeds
    ref: Callable[[ReferenceRow], float | None] = lambda r: None  # the paper's value, where it reports one
    title: str = ""                       # HTML: the header's tooltip
    filter: bool = False                  # HTML: the page offers a filter on this column's values
    per_regime: Mapping[str, str] = field(default_factory=dict)  # HTML lines: regime -> row column behind the cell
    regime: str | None = None             # the regime whose runs make the value: its seeds are the cell's to count

    @property
    def measured(self) -> bool:
        return self.kind in ("score", "delta", "pct")

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


# -- cell text ---------------------------------------------------------------------------------------------------
def number(x: float, kind: str) -> str:
    if kind == "pct":
        return f"{x:+.1f}%"
    return f"{x:+.4f}" if kind == "delta" else f"{x:.4f}"


def spread(x: float, kind: str) -> str:
    return f"{x:.1f}%" if kind == "pct" else f"{x:.4f}"


def interval_marks(s: Stat | Ratio) -> str:
    """The footnote marks of a cell's interval: an older method, a smallest class under 20 test images."""
    iv = getattr(s, "interval", None)
    if iv is None:
        return ""
    return (OLDER_METHOD if iv.older else "") + (SMALL_CLASSES if iv.small_classes else "")


def stat_text(s: Stat | Ratio | None, kind: str, expected: int) -> str:
    """``mean ± std [95% interval]`` (std only with >1 seed, the interval where there is one, with its marks),
    changes whose interval includes 0 marked "(n.s.)", flagged when fewer seeds than the row has finished."""
    if s is None:
        return MISSING
    text = number(s.mean, kind) + getattr(s, "mark", "")
    if s.std is not None:
        text += f" ± {spread(s.std, kind)}"
    if s.ci is not None:
        text += f" [{number(s.ci[0], kind)}, {number(s.ci[1], kind)}]{interval_marks(s)}"
        if kind == "delta" and s.includes_zero:
            text += f" {NOT_SIGNIFICANT}"
    if s.n < expected:
        text += f" ({s.n}/{expected} seeds)"
    return text


def cell(row: Row, col: Column) -> str:
    """The text of a column's cell in a row, as Markdown and HTML show it."""
    if col.kind == "text":
        return col.get(row)
    if col.kind == "count":
        return str(col.get(row))
    s = col.get(row)
    if s is None and col.base is not None and BY_NAME[col.base].get(row) is not None:
        text = UNDEFINED
    else:
        text = stat_text(s, col.kind, s.n if col.own_seeds and s is not None else expected_seeds(row, col.regime))
    if col.e2e and row.lora and text != MISSING:
        text += " (LoRA)"
    return text


def expected_seeds(row: Row, regime: str | None) -> int:
    """The seeds a cell of ``regime`` should have: the row's, less those another configuration of the same
    model and task ran in that regime (they are in that configuration's row, not missing from this one)."""
    return len(row.seeds) - len(row.elsewhere.get(regime, ())) if regime else len(row.seeds)


def task_label(task: str, limit: int | None) -> str:
    return task if limit is None else f"{task} (limited: ≤{limit}/class)"


def model_label(row) -> str:
    """The model name, with what sets the row apart when one model/task has runs of several configurations."""
    return row.model + (f" [{row.variant}]" if getattr(row, "variant", "") else "")


def joined(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else MISSING


def table(columns: list[Column], rows: list) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of a table of ``columns`` (Markdown and HTML show the same one)."""
    return [c.header for c in columns], [[cell(r, c) for c in columns] for r in rows]


# -- measured quantities, one column per regime ------------------------------------------------------------------
_SLUGS = ((Regime.ZERO_SHOT, "zero_shot"), (Regime.FT_PROJ, "ft_proj"), (Regime.FT_E2E, "ft_e2e"))


def _regime_columns(prefix: str, header: str, field_name: str, kind: str) -> list[Column]:
    """Absolute and % change columns of one quantity (gain or richness) per fine-tuned regime."""
    out = []
    for regime, slug in _SLUGS[1:]:
        label = REGIME_LABELS[regime]
        out.append(Column(f"{prefix}_{slug}", f"{header} {label}",
                          lambda r, f=field_name, g=regime: getattr(r, f)[g], kind, e2e=regime == Regime.FT_E2E, regime=regime,
                          ref=lambda r, f=field_name, g=regime: getattr(r, f)(g)))
        out.append(Column(f"{prefix}_{slug}_pct", f"{header} {label} %",
                          lambda r, f=field_name, g=regime: getattr(r, f + "_pct")[g], "pct", e2e=regime == Regime.FT_E2E,
                          regime=regime,
                          base=f"{prefix}_{slug}", ref=lambda r, f=field_name, g=regime: getattr(r, f + "_pct")(g)))
    return out


SCORE_COLUMNS = [
    *[Column(f"f1_{slug}", f"{REGIME_LABELS[g]} F1", lambda r, g=g: r.f1[g], "score", e2e=g == Regime.FT_E2E, regime=g,
             ref=lambda r, g=g: r.f1(g)) for g, slug in _SLUGS],
    Column("probe_pre_projection", "Probe pre-proj.", lambda r: r.probe_pre, "score", regime=Regime.ZERO_SHOT),
    *[Column(f"probe_{slug}", f"Probe {label} proj.", lambda r, g=g: r.probe[g], "score", e2e=g == Regime.FT_E2E, regime=g,
             ref=lambda r, g=g: r.probe(g))
      for g, slug, label in ((Regime.ZERO_SHOT, "original", "orig."), (Regime.FT_PROJ, "ft_proj", "FT-Proj"),
                             (Regime.FT_E2E, "ft_e2e", "FT-E2E"))],
]
CHANGE_COLUMNS = (_regime_columns("gain", "Gain", "gain", "delta")
                  + _regime_columns("richness", "Richness", "richness", "delta"))


def _baseline(attr: str):
    return lambda r: getattr(r.baselines, attr) if r.baselines is not None else None


# The baselines stage (paper Tables 1 and 3): what the model must beat, and its gains read against CLIP zero-shot.
BASELINE_COLUMNS = [
    Column("random_f1", "Random F1", _baseline("random_f1"), "score", own_seeds=True, ref=lambda r: r.random),
    Column("clip_zero_shot_f1", "CLIP ZS F1", _baseline("clip_f1"), "score", own_seeds=True,
           ref=lambda r: r.clip_zero_shot),
    Column("clip_zero_shot_accuracy", "CLIP ZS acc.", _baseline("clip_accuracy"), "score", own_seeds=True),
    Column("clip_embedding_probe", "Probe CLIP emb.", _baseline("clip_probe"), "score", own_seeds=True,
           ref=lambda r: r.clip_probe),
    *[Column(f"gain_vs_clip_{slug}", f"{REGIME_LABELS[g]} − CLIP ZS", lambda r, g=g: r.gain_vs_clip.get(g), "delta",
             e2e=g == Regime.FT_E2E, regime=g, ref=lambda r, g=g: r.gain_vs_clip(g)) for g, slug in _SLUGS],
]
CONTROL_COLUMNS = [
    col
    for key, slug, label, e2e in (("pre", "pre_projection", "pre-proj.", False),
                                  (Regime.ZERO_SHOT, "original", "orig. proj.", False),
                                  (Regime.FT_PROJ, "ft_proj", "FT-Proj proj.", False),
                                  (Regime.FT_E2E, "ft_e2e", "FT-E2E proj.", True))
    for col in (Column(f"control_{slug}", f"Control {label}", lambda r, k=key: r.control.get(k), "score", e2e=e2e,
                       regime=Regime.ZERO_SHOT if key == "pre" else key),
                Column(f"selectivity_{slug}", f"Selectivity {label}", lambda r, k=key: r.selectivity.get(k),
                       "delta", e2e=e2e, regime=Regime.ZERO_SHOT if key == "pre" else key))
]
COLUMNS = SCORE_COLUMNS + CHANGE_COLUMNS + BASELINE_COLUMNS + CONTROL_COLUMNS
BY_NAME = {c.key: c for c in COLUMNS}


# -- a row's identity ------------------------------------------------------------------------------------------
# CSV and JSON carry the raw values (CSV joins lists with ";"); CSV keeps its historical singular names.
IDENTITY_COLUMNS = [
    Column("section", "", lambda r: "measured", formats=CSV),
    Column("model", "", lambda r: r.model, formats=DATA),
    Column("variant", "", lambda r: r.variant, formats=DATA),
    Column("task", "", lambda r: r.task, formats=DATA),
    Column("max_per_class", "", lambda r: r.limit, formats=DATA),
    Column("limited", "", lambda r: r.limit is not None, formats=DATA),
    Column("ft_e2e", "", lambda r: "lora" if r.lora else "full", formats=DATA),
    Column("projector_family", "", lambda r: r.projector_families, formats=CSV),
    Column("projector_families", "", lambda r: r.projector_families, formats=JSON),
    Column("task_version", "", lambda r: r.task_versions, formats=CSV),
    Column("task_versions", "", lambda r: r.task_versions, formats=JSON),
    Column("eval_mode", "", lambda r: r.eval_modes, formats=CSV),
    Column("eval_modes", "", lambda r: r.eval_modes, formats=JSON),
    Column("seeds", "", lambda r: r.seeds, formats=DATA),
    Column("revisions", "", lambda r: r.revisions, formats=DATA),
]
MISSING_COLUMN = Column("missing", "", lambda r: r.missing, formats=DATA)
# Runs whose numbers do not follow from their stored predictions (their cells carry the ✗ mark in the tables).
UNVERIFIED_COLUMN = Column("unverified", "", lambda r: r.unverified, formats=DATA)
# Every per-row column in the CSV's order (JSON sorts its keys).
ROW_COLUMNS = IDENTITY_COLUMNS + COLUMNS + [MISSING_COLUMN, UNVERIFIED_COLUMN]

# What the Markdown (and HTML) tables show of a row besides its numbers.
MODEL = Column("model_label", "Model", model_label, formats=TABLE)
TASK = Column("task_label", "Task", lambda r: task_label(r.task, r.limit), formats=TABLE)
SEED_COUNT = Column("seed_count", "Seeds", lambda r: len(r.seeds), "count", formats=TABLE)
SCORES_TABLE = [MODEL, TASK, Column("task_versions", "Task version", lambda r: joined(r.task_versions), formats=TABLE),
                Column("projector", "Projector", lambda r: joined(r.projector_families), formats=TABLE),
                Column("eval", "Eval", lambda r: joined(r.eval_modes), formats=TABLE), SEED_COUNT, *SCORE_COLUMNS]
CHANGES_TABLE = [MODEL, TASK, SEED_COUNT, *CHANGE_COLUMNS]
CONTROL_TABLE = [MODEL, TASK, SEED_COUNT, *CONTROL_COLUMNS]


def _clips(r: Row) -> str:
    return ", ".join(r.baselines.clips) + ("" if r.baselines.clip_matches else " (not the model's encoder)")


# Baselines next to the model's own pre-projection probe and zero-shot F1; seeds of the baselines stage.
BASELINES_TABLE = [
    Column("model", "Model", lambda r: r.model, formats=TABLE), TASK,
    Column("clip", "CLIP", _clips, formats=TABLE),
    Column("baseline_seeds", "Seeds", lambda r: r.baselines.clip_f1.n, "count", formats=TABLE),
    *BASELINE_COLUMNS[:4], BY_NAME["probe_pre_projection"], BY_NAME["f1_zero_shot"], *BASELINE_COLUMNS[4:],
]


def has_controls(rows: list[Row]) -> bool:
    return any(r.control.get(k) is not None for r in rows for k in r.control)


def control_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the control-probe table (Markdown and HTML show the same one)."""
    return table(CONTROL_TABLE, rows)


def baselines_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the baselines table (Markdown and HTML show the same one)."""
    return table(BASELINES_TABLE, rows)


# -- the per-model summary: four quantities per regime folder the models use ------------------------------
def _summary_folders(summary: list[SummaryRow]) -> list[str]:
    # FT-E2E columns for the variants the rows use (full, LoRA or both), so a LoRA-only board has no empty
    # full-FT-E2E columns; missing runs still show as missing in the cells.
    used = {d for s in summary for d in s.e2e_dirs}
    return [Regime.FT_PROJ] + [d for d in (Regime.FT_E2E, Regime.FT_E2E_LORA) if d in used]


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


# -- the HTML table's long form: one line per (row, regime) -------------------------------------------------------
def _per_regime(prefix: str, pct: bool = False) -> dict[str, str]:
    return {g: f"{prefix}_{slug}" + ("_pct" if pct else "") for g, slug in _SLUGS[1:]}


LINE_COLUMNS = [
    Column("model", "Model", lambda line: model_label(line.row), formats=HTML, filter=True,
           title="model (adapter) name"),
    # Task without the "(limited ...)" suffix: the Data column says it, and a task filter then covers both.
    Column("task", "Task", lambda line: line.row.task, formats=HTML, filter=True,
           title="task (the Data column says whether the run was limited)"),
    Column("family", "Projector", lambda line: joined(line.row.projector_families), formats=HTML, filter=True,
           title="projector family declared by the adapter"),
    Column("regime", "Regime", lambda line: line.regime_label, formats=HTML, filter=True,
           title="ZS zero-shot, FT-Proj projector fine-tuned, FT-E2E projector + LLM"),
    Column("eval", "Eval", lambda line: joined(line.row.eval_modes), formats=HTML, filter=True,
           title="evaluation mode: loglik (class log-likelihood) or generate"),
    Column("data", "Data", lambda line: line.data, formats=HTML, filter=True,
           title="full run, or limited to k images per class and split"),
    Column("seeds", "Seeds", lambda line: len(line.row.seeds), "count", formats=HTML,
           title="number of seeds of the row"),
    Column("f1", "Task F1", kind="score", formats=HTML, title="macro-F1 on the test split",
           per_regime={g: f"f1_{slug}" for g, slug in _SLUGS}),
    Column("probe", "Probe", kind="score", formats=HTML,
           title="probe macro-F1 after this regime's projector (ZS: the original one)",
           per_regime={Regime.ZERO_SHOT: "probe_original", Regime.FT_PROJ: "probe_ft_proj", Regime.FT_E2E: "probe_ft_e2e"}),
    Column("probe_pre", "Pre-proj. probe", kind="score", formats=HTML,
           title="probe macro-F1 before the projector (ZS lines)", per_regime={Regime.ZERO_SHOT: "probe_pre_projection"}),
    Column("gain", "Gain", kind="delta", formats=HTML, title="F1(regime) - F1(zero-shot), per seed, then mean ± std",
           per_regime=_per_regime("gain")),
    Column("gain_pct", "Gain %", kind="pct", formats=HTML, title="gain relative to the zero-shot F1",
           per_regime=_per_regime("gain", pct=True)),
    Column("richness", "Richness", kind="delta", formats=HTML,
           title="probe(regime's projector) - probe(original), per seed", per_regime=_per_regime("richness")),
    Column("richness_pct", "Richness %", kind="pct", formats=HTML,
           title="richness change relative to the original probe", per_regime=_per_regime("richness", pct=True)),
]
FILTERS = tuple(c.key for c in LINE_COLUMNS if c.filter)


def behind(col: Column, regime: str) -> Column | None:
    """The row column behind a line column's cell for a regime; None where it does not apply (ZS has no gain)."""
    name = col.per_regime.get(regime)
    return None if name is None else BY_NAME[name]
