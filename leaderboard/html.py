"""Render a :class:`~.table.Leaderboard` as a self-contained static site: ``index.html`` + the JSON and CSV.

The page is a pure function of the results, like the other formats: no clock, no environment, no network asset
(inline CSS, inline vanilla JS, inline SVG), so the same results give the same bytes and the page works from
``file://`` or any static host. Every number shown is a cell of :mod:`.render` (the Markdown's text) computed
from the same :class:`~.table.Row`, so the formats never disagree.

The table is long-form: one line per (model, task, regime), so that regime is a filter and a sort ranks every
fine-tuned result together. All lines are in the HTML (readable without JS, parseable by tools); the script only
sorts, filters, pages and opens provenance. The richness-vs-gain small multiples are SVG written here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape

from . import reference
from .collect import Collection, RunKey
from .columns import (
    BY_NAME,
    MISSING,
    REGIME_LABELS,
    baselines_table,
    control_table,
    has_controls,
    joined,
    model_label,
    number,
    summary_table,
    task_label,
)
from .markdown import LEGEND
from .plot import axis_range, bar_text, error_bar
from .render import csv_text, json_text
from .table import FINETUNED, Leaderboard, Row, Stat

INDEX, JSON_NAME, CSV_NAME = "index.html", "leaderboard.json", "leaderboard.csv"
PAGE_SIZES = (25, 100, 500, 0)  # 0 = all
DEFAULT_PAGE_SIZE = 100
REGIMES = ("zero-shot",) + FINETUNED
# Marker shape per projector family, in the order of the PNG plot's markers (plot.MARKERS), as SVG polygons in
# unit coordinates (y down). "o" is drawn as a circle.
SHAPES = {
    "o": None,
    "s": ((-1, -1), (1, -1), (1, 1), (-1, 1)),
    "^": ((0, -1.2), (1.1, 0.9), (-1.1, 0.9)),
    "D": ((0, -1.3), (1.1, 0), (0, 1.3), (-1.1, 0)),
    "v": ((0, 1.2), (1.1, -0.9), (-1.1, -0.9)),
    "P": ((-0.35, -1.1), (0.35, -1.1), (0.35, -0.35), (1.1, -0.35), (1.1, 0.35), (0.35, 0.35), (0.35, 1.1),
          (-0.35, 1.1), (-0.35, 0.35), (-1.1, 0.35), (-1.1, -0.35), (-0.35, -0.35)),
    "X": ((-0.8, -1.1), (0, -0.3), (0.8, -1.1), (1.1, -0.8), (0.3, 0), (1.1, 0.8), (0.8, 1.1), (0, 0.3),
          (-0.8, 1.1), (-1.1, 0.8), (-0.3, 0), (-1.1, -0.8)),
    "*": tuple((round(r * math.sin(a), 3), round(-r * math.cos(a), 3))
               for i in range(10) for r, a in ((1.3 if i % 2 == 0 else 0.55, math.pi * i / 5),)),
    "h": tuple((round(1.15 * math.sin(math.pi * i / 3), 3), round(-1.15 * math.cos(math.pi * i / 3), 3))
               for i in range(6)),
    "<": ((-1.2, 0), (0.9, -1.1), (0.9, 1.1)),
    ">": ((1.2, 0), (-0.9, -1.1), (-0.9, 1.1)),
}
MARKERS = tuple(SHAPES)
COLORS = {"ft-proj": "#1f77b4", "ft-e2e": "#d62728", "ft-e2e-lora": "#ff7f0e", "zero-shot": "#555555"}


# -- the long-form lines -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One table line: a leaderboard row seen through one regime (its FT-E2E may be the LoRA folder)."""

    id: int
    row: Row
    row_index: int   # the row's index in the board (= in leaderboard.json "rows" and the CSV's measured lines)
    regime: str   # zero-shot, ft-proj or ft-e2e
    folder: str   # the regime's folder: ft-e2e-lora for a LoRA row's FT-E2E

    @property
    def regime_label(self) -> str:
        return REGIME_LABELS[self.folder]

    @property
    def data(self) -> str:
        return "full" if self.row.limit is None else f"limited ≤{self.row.limit}/class"


def lines_of(board: Leaderboard) -> list[Line]:
    """Board rows x regimes, in board order. A model/task with both full and LoRA FT-E2E has two rows sharing
    their zero-shot and FT-Proj runs: those lines appear once."""
    out, seen = [], set()
    for index, row in enumerate(board.rows):
        for regime in REGIMES:
            folder = row.folder(regime)
            key = (row.model, row.task, row.limit, folder)
            if key not in seen:
                seen.add(key)
                out.append(Line(len(out), row, index, regime, folder))
    return out


_SLUG = {"zero-shot": "zero_shot", "ft-proj": "ft_proj", "ft-e2e": "ft_e2e"}
_PROBE = {"zero-shot": "probe_original", "ft-proj": "probe_ft_proj", "ft-e2e": "probe_ft_e2e"}


def _render_column(line: Line, what: str) -> str | None:
    """The :mod:`.render` column behind a quantity of a line; None where it does not apply (ZS has no gain)."""
    r = line.regime
    if what == "f1":
        return f"f1_{_SLUG[r]}"
    if what == "probe":
        return _PROBE[r]
    if what == "probe_pre":
        return "probe_pre_projection" if r == "zero-shot" else None
    if r == "zero-shot":
        return None
    return f"{what.replace('_pct', '')}_{_SLUG[r]}" + ("_pct" if what.endswith("_pct") else "")


@dataclass(frozen=True)
class HtmlColumn:
    name: str
    header: str
    numeric: bool
    title: str   # the header's tooltip: what the column means


TEXT_COLUMNS = [
    HtmlColumn("model", "Model", False, "model (adapter) name"),
    HtmlColumn("task", "Task", False, "task (the Data column says whether the run was limited)"),
    HtmlColumn("family", "Projector", False, "projector family declared by the adapter"),
    HtmlColumn("regime", "Regime", False, "ZS zero-shot, FT-Proj projector fine-tuned, FT-E2E projector + LLM"),
    HtmlColumn("eval", "Eval", False, "evaluation mode: loglik (class log-likelihood) or generate"),
    HtmlColumn("data", "Data", False, "full run, or limited to k images per class and split"),
    HtmlColumn("seeds", "Seeds", True, "number of seeds of the row"),
]
STAT_COLUMNS = [
    HtmlColumn("f1", "Task F1", True, "macro-F1 on the test split"),
    HtmlColumn("probe", "Probe", True, "probe macro-F1 after this regime's projector (ZS: the original one)"),
    HtmlColumn("probe_pre", "Pre-proj. probe", True, "probe macro-F1 before the projector (ZS lines)"),
    HtmlColumn("gain", "Gain", True, "F1(regime) - F1(zero-shot), per seed, then mean ± std"),
    HtmlColumn("gain_pct", "Gain %", True, "gain relative to the zero-shot F1"),
    HtmlColumn("richness", "Richness", True, "probe(regime's projector) - probe(original), per seed"),
    HtmlColumn("richness_pct", "Richness %", True, "richness change relative to the original probe"),
]
HTML_COLUMNS = TEXT_COLUMNS + STAT_COLUMNS
FILTERS = ("model", "task", "family", "regime", "eval", "data")


def _num(x: float) -> str:
    """A sort key: exact (repr round-trips) and locale-free."""
    return repr(float(x))


def _text_cells(line: Line) -> dict[str, str]:
    row = line.row
    # Task without the "(limited ...)" suffix: the Data column says it, and a task filter then covers both.
    return {"model": model_label(row), "task": row.task, "family": joined(row.projector_families),
            "regime": line.regime_label, "eval": joined(row.eval_modes), "data": line.data,
            "seeds": str(len(row.seeds))}


def _stat_of(line: Line, what: str) -> Stat | None:
    name = _render_column(line, what)
    return None if name is None else BY_NAME[name].get(line.row)


# -- HTML pieces -------------------------------------------------------------------------------------------------
def _e(s) -> str:
    return escape(str(s), quote=True)


def _td(text: str, key: str | None, numeric: bool, cls: str = "") -> str:
    """A cell whose text content is exactly ``text``: spread, interval and notes only styled, never changed."""
    attrs = ""
    if numeric:
        attrs += f' data-v="{_e(key)}"' if key is not None else ' data-v=""'
        cls = (cls + " num").strip()
    if cls:
        attrs += f' class="{cls}"'
    # "mean ± std [low, high] (k/n seeds) (LoRA)": the spread muted; the interval and the notes in parentheses
    # each on a line of their own (they would otherwise double the column's width).
    body, paren, notes = text.partition(" (")
    body, bracket, interval = body.partition(" [")
    head, sep, tail = body.partition(" ± ")
    inner = _e(head) + (f'<span class="sd">{_e(sep + tail)}</span>' if sep else "")
    if bracket:  # a 95% interval "[low, high]"
        inner += f'<span class="ci">{_e(bracket + interval)}</span>'
    if paren and numeric:
        inner += f'<span class="tag">{_e(paren + notes)}</span>'
    elif paren:
        inner += _e(paren + notes)
    return f"<td{attrs}>{inner}</td>"


def _line_tr(line: Line) -> str:
    from .columns import cell

    text = _text_cells(line)
    filt = "".join(f' data-{f}="{_e(text[f])}"' for f in FILTERS)
    tds = [_td(text[c.name], text[c.name] if c.name == "seeds" else None, c.numeric) for c in TEXT_COLUMNS]
    for c in STAT_COLUMNS:
        name = _render_column(line, c.name)
        if name is None:
            tds.append(_td("", None, True, "na"))
            continue
        s = BY_NAME[name].get(line.row)
        t = cell(line.row, BY_NAME[name])
        tds.append(_td(t, None if s is None else _num(s.mean), True, "missing" if t == MISSING else ""))
    tds.append(f'<td><button type="button" class="prov" data-id="{line.id}" aria-expanded="false">runs</button></td>')
    return f'<tr id="r{line.id}" data-id="{line.id}" data-row="{line.row_index}"{filt}>' + "".join(tds) + "</tr>"


def _reference_trs() -> list[str]:
    out = []
    for r in reference.ROWS:
        for regime in REGIMES:
            text = {"model": reference.MODEL, "task": r.task, "family": reference.PROJECTOR_FAMILY,
                    "regime": REGIME_LABELS[regime], "eval": "generate (paper)", "data": "paper", "seeds": ""}
            filt = "".join(f' data-{f}="{_e(text[f])}"' for f in FILTERS)
            tds = [_td(text[c.name], None, c.numeric) for c in TEXT_COLUMNS]
            values = {"f1": (r.f1(regime), "score"), "probe": (r.probe(regime), "score"), "probe_pre": None}
            if regime != "zero-shot":
                values |= {"gain": (r.gain(regime), "delta"), "gain_pct": (r.gain_pct(regime), "pct"),
                           "richness": (r.richness(regime), "delta"), "richness_pct": (r.richness_pct(regime), "pct")}
            for c in STAT_COLUMNS:
                v = values.get(c.name)
                if v is None or v[0] is None:
                    tds.append(_td("", None, True, "na"))
                else:
                    tds.append(_td(number(v[0], v[1]), _num(v[0]), True))
            tds.append("<td></td>")
            out.append(f'<tr class="ref" data-ref="1"{filt}>' + "".join(tds) + "</tr>")
    return out


def _select(name: str, label: str, values: list[str]) -> str:
    opts = '<option value="">all</option>' + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
    return f'<label>{_e(label)} <select data-filter="{name}" id="f-{name}">{opts}</select></label>'


def _legend_html() -> str:
    items = []
    for item in LEGEND:
        text = _e(item.removeprefix("- "))
        parts = text.split("**")
        items.append("<li>" + "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts)) + "</li>")
    return "<ul class=\"legend\">" + "".join(items) + "</ul>"


def _static_table(headers: list[str], body: list[list[str]], numeric_from: int) -> str:
    """A plain table (sortable by the page's script, by text or leading number); columns from ``numeric_from`` on
    are right-aligned numbers."""
    head = "".join(f'<th scope="col"><button type="button">{_e(h)}</button></th>' for h in headers)
    rows = "".join("<tr>" + "".join(_td(c, None, False, "num" if i >= numeric_from else "")
                                    for i, c in enumerate(line)) + "</tr>" for line in body)
    return f'<div class="tablewrap small"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _more_tables(board: Leaderboard) -> str:
    """The Markdown's other tables, from the same helpers: per-model summary, control probes and baselines."""
    out = []
    for limited, title in ((False, "full runs"), (True, "limited runs (quick checks)")):
        summary = [s for s in board.summary if (s.limit is not None) == limited]
        if summary:
            out.append(f"<h3>Summary per model, {title}</h3>"
                       "<p>Mean over the model's tasks of each task's mean change, per regime.</p>"
                       + _static_table(*summary_table(summary), numeric_from=2))
    for limited, title in ((False, "full runs"), (True, "limited runs (quick checks)")):
        rows = [r for r in board.rows if (r.limit is not None) == limited]
        if has_controls(rows):
            out.append(f"<h3>Control probes, {title}</h3>"
                       "<p>The same probe trained on shuffled labels (a probe that memorises scores well on it "
                       "too); selectivity = probe − control.</p>"
                       + _static_table(*control_table(rows), numeric_from=2))
    for limited, title in ((False, "full runs"), (True, "limited runs (quick checks)")):
        rows = [r for r in board.rows if (r.limit is not None) == limited and getattr(r, "baselines", None)]
        if rows:
            out.append(f"<h3>Baselines, {title}: does the model beat its own vision encoder?</h3>"
                       "<p>Random: exact expected macro-F1 of a uniform random guess. CLIP ZS: open_clip zero-shot "
                       "with the CLIP shown. Probe CLIP emb.: the probe on CLIP's pooled image embedding (paper "
                       "Table 3). \"X − CLIP ZS\": the model's F1 in regime X minus CLIP zero-shot F1.</p>"
                       + _static_table(*baselines_table(rows), numeric_from=3))
    return "".join(out)


# -- small multiples ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    line: Line
    x: float
    y: float
    xbar: tuple[float, float]
    ybar: tuple[float, float]
    tip: str
    family: str


def points_of(lines: list[Line]) -> list[Point]:
    """One point per fine-tuned line with both a gain and a richness change: the mean over seeds, with the same
    error bars as the PNG (the 95% interval where the results carry one, else ± std)."""
    out = []
    for line in lines:
        if line.regime == "zero-shot":
            continue
        g, r = _stat_of(line, "gain"), _stat_of(line, "richness")
        if g is None or r is None:
            continue
        family = "+".join(line.row.projector_families) or "unknown"
        tip = (f"{line.row.model} · {task_label(line.row.task, line.row.limit)} · {line.regime_label} · {family}\n"
               f"gain {number(g.mean, 'delta')} {bar_text(g)}\nrichness {number(r.mean, 'delta')} {bar_text(r)}")
        out.append(Point(line, g.mean, r.mean, error_bar(g), error_bar(r), tip, family))
    return out


def _ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k) covering [lo, hi]."""
    span = hi - lo
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    out = []
    k = first
    while k * step <= hi + 1e-9 * step:
        out.append(k * step)
        k += 1
    return out


def _tick_text(v: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{v:.{decimals}f}"
    return "0" if float(text) == 0 else text


def _marker_svg(shape: str, cx: float, cy: float, size: float, color: str, hollow: bool) -> str:
    fill = "#fff" if hollow else color
    style = f'fill="{fill}" stroke="{color}" stroke-width="1.4"'
    if SHAPES[shape] is None:
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{size:.1f}" {style}/>'
    pts = " ".join(f"{cx + size * dx:.1f},{cy + size * dy:.1f}" for dx, dy in SHAPES[shape])
    return f'<polygon points="{pts}" {style}/>'


W, H = 330, 270
ML, MR, MT, MB = 52, 12, 26, 40


def _panel_svg(title: str, points: list[Point], marker: dict[str, str]) -> str:
    # The same axis rule as the PNG: every point in view, very wide error bars clipped at the panel's edge.
    x0, x1 = axis_range([p.x for p in points], [p.xbar for p in points], 0.08)
    y0, y1 = axis_range([p.y for p in points], [p.ybar for p in points], 0.08)
    pw, ph = W - ML - MR, H - MT - MB

    def sx(v):  # clamped: an error bar beyond the axis range stops at the panel's edge
        return ML + (min(max(v, x0), x1) - x0) / (x1 - x0) * pw

    def sy(v):
        return MT + (y1 - min(max(v, y0), y1)) / (y1 - y0) * ph

    out = [f'<svg class="panel" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{_e(title)}: richness change vs task gain">',
           f'<text class="ptitle" x="{ML + pw / 2:.1f}" y="16" text-anchor="middle">{_e(title)}</text>',
           f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" class="frame"/>']
    xt, yt = _ticks(x0, x1), _ticks(y0, y1)
    xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
    ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0
    for v in xt:
        out.append(f'<line class="grid" x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{MT}" y2="{MT + ph}"/>'
                   f'<text class="tick" x="{sx(v):.1f}" y="{MT + ph + 13}" text-anchor="middle">'
                   f'{_tick_text(v, xstep)}</text>')
    for v in yt:
        out.append(f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}"/>'
                   f'<text class="tick" x="{ML - 4}" y="{sy(v) + 3:.1f}" text-anchor="end">'
                   f'{_tick_text(v, ystep)}</text>')
    out.append(f'<line class="zero" x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="{MT}" y2="{MT + ph}"/>'
               f'<line class="zero" x1="{ML}" x2="{ML + pw}" y1="{sy(0):.1f}" y2="{sy(0):.1f}"/>')
    out.append(f'<text class="axis" x="{ML + pw / 2:.1f}" y="{H - 6}" text-anchor="middle">task gain</text>'
               f'<text class="axis" transform="translate(12 {MT + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">richness change</text>')
    for p in points:
        color = COLORS[p.line.folder]
        cx, cy = sx(p.x), sy(p.y)
        bars = ""
        if p.xbar[0] != p.xbar[1]:
            bars += f'<line x1="{sx(p.xbar[0]):.1f}" x2="{sx(p.xbar[1]):.1f}" y1="{cy:.1f}" y2="{cy:.1f}"/>'
        if p.ybar[0] != p.ybar[1]:
            bars += f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{sy(p.ybar[0]):.1f}" y2="{sy(p.ybar[1]):.1f}"/>'
        out.append(f'<g class="pt" data-id="{p.line.id}" tabindex="0" stroke="{color}"><title>{_e(p.tip)}</title>'
                   f'{bars}{_marker_svg(marker[p.family], cx, cy, 4.5, color, p.line.row.limit is not None)}</g>')
    out.append("</svg>")
    return "".join(out)


def _plots_html(lines: list[Line]) -> str:
    points = points_of(lines)
    if not points:
        return "<p>No finished fine-tuned runs with a zero-shot baseline yet: nothing to plot.</p>"
    families = sorted({p.family for p in points})
    marker = {f: MARKERS[i % len(MARKERS)] for i, f in enumerate(families)}
    panels: dict[tuple, list[Point]] = {}
    for p in points:
        row = p.line.row
        panels.setdefault((row.task, row.limit is not None, row.limit or 0), []).append(p)
    legend = []
    for f in families:
        legend.append(f'<span class="key"><svg width="14" height="14" viewBox="0 0 14 14">'
                      f'{_marker_svg(marker[f], 7, 7, 4.5, "#444", False)}</svg>{_e(f)}</span>')
    for folder in ("ft-proj", "ft-e2e", "ft-e2e-lora"):
        if any(p.line.folder == folder for p in points):
            legend.append(f'<span class="key"><svg width="14" height="14" viewBox="0 0 14 14">'
                          f'{_marker_svg("o", 7, 7, 4.5, COLORS[folder], False)}</svg>'
                          f'{_e(REGIME_LABELS[folder])}</span>')
    if any(p.line.row.limit is not None for p in points):
        legend.append('<span class="key"><svg width="14" height="14" viewBox="0 0 14 14">'
                      f'{_marker_svg("o", 7, 7, 4.5, "#444", True)}</svg>hollow: limited run</span>')
    svgs = [_panel_svg(task_label(task, limit or None if limited else None), panels[(task, limited, limit)],
                       marker) for task, limited, limit in sorted(panels)]
    return (f'<p class="keys">Marker: projector family. Colour: regime. {"".join(legend)}</p>'
            f'<div class="panels">{"".join(svgs)}</div>'
            '<p id="pt-detail" class="detail" aria-live="polite">Hover a point for its values; click it to '
            'show its line in the table with its runs.</p>')


# -- provenance --------------------------------------------------------------------------------------------------
def _provenance(lines: list[Line], board: Leaderboard, coll: Collection) -> dict:
    """Per line: its runs (path, status); per run: its provenance pairs. Only what the page opens on demand."""
    by_key = {r.key: r for r in coll.runs}
    reasons = {i.path: i.reason for i in board.incomplete}
    entries, runs = {}, {}
    for line in lines:
        row = line.row
        mine = []
        for seed in row.seeds:
            key = RunKey(row.model, row.task, row.limit, line.folder, seed)
            run = by_key.get(key)
            if run is not None:
                mine.append([key.path, "finished"])
                runs[key.path] = [list(pair) for pair in run.provenance]
            else:
                mine.append([key.path, "missing: " + reasons.get(key.path, "no finished run")])
        entries[str(line.id)] = mine
    return {"lines": entries, "runs": runs}


def _script_json(obj) -> str:
    # Inside <script type="application/json">: "<" escaped so no "</script>" or "<!--" can end it early.
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


# -- the page ----------------------------------------------------------------------------------------------------
def page(board: Leaderboard, coll: Collection, with_reference: bool = False) -> str:
    lines = lines_of(board)
    texts = [_text_cells(line) for line in lines]
    values = {f: sorted({t[f] for t in texts}) for f in FILTERS}
    heads = "".join(
        f'<th scope="col" data-col="{i}" data-type="{"num" if c.numeric else "text"}" aria-sort="none" '
        f'title="{_e(c.title)}"><button type="button">{_e(c.header)}</button></th>'
        for i, c in enumerate(HTML_COLUMNS)) + '<th scope="col" title="the runs behind the line, with their provenance">Runs</th>'
    body = [_line_tr(line) for line in lines] + _reference_trs()
    n_runs = len(coll.runs)
    filters = "".join(_select(f, c.header, values[f]) for f, c in zip(FILTERS, TEXT_COLUMNS, strict=False))
    sizes = "".join(f'<option value="{s}"{" selected" if s == DEFAULT_PAGE_SIZE else ""}>{s or "all"}</option>'
                    for s in PAGE_SIZES)
    incomplete = "".join(f"<li><code>{_e(i.path)}</code>: {_e(i.reason)}</li>" for i in board.incomplete)
    skipped = "".join(f"<li><code>{_e(s.path)}</code>: {_e(s.reason)}</li>" for s in board.skipped)
    warnings = "".join(f"<li>{_e(w)}</li>" for w in board.warnings)
    checked = " checked" if with_reference else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>projbench leaderboard</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>projbench leaderboard</h1>
<p>Does the cross-modal projector learn a domain's visual attributes when fine-tuned, or does the LLM?
{len(board.rows)} leaderboard rows ({len(lines)} table lines) from {n_runs} finished runs.
Data: <a href="{JSON_NAME}">{JSON_NAME}</a> · <a href="{CSV_NAME}">{CSV_NAME}</a>.</p>
<details><summary>How to read the numbers</summary>{_legend_html()}
<p>Each table line is one regime of a leaderboard row; the same numbers as the Markdown leaderboard.
Limited runs are quick checks, not results. Click a column header to sort (again to reverse); missing values
always sort last.</p></details>
</header>
<main>
<section id="controls" aria-label="filters">
{filters}
<label>Search <input type="search" id="f-search" placeholder="any text"></label>
<label><input type="checkbox" id="show-ref"{checked}> paper reference rows</label>
<label>Rows per page <select id="page-size">{sizes}</select></label>
<button type="button" id="reset">reset</button>
</section>
<p id="ref-note" class="note">Reference rows: {_e(reference.MODEL)}, macro-F1 as reported in {_e(reference.SOURCE)};
the paper's setup differs (free-text generation with sampling, probes early-stopped on the test split):
compare trends, not decimals.</p>
<div class="tablewrap">
<table id="board">
<thead><tr>{heads}</tr></thead>
<tbody id="rows">
{chr(10).join(body)}
</tbody>
</table>
</div>
<nav id="pager" aria-label="pages"><button type="button" id="prev">‹ previous</button>
<span id="status" aria-live="polite">{len(lines)} lines</span>
<button type="button" id="next">next ›</button></nav>
<section id="summary">
<h2>Per model</h2>
{_more_tables(board) or "<p>No summary yet.</p>"}
</section>
<section id="plots">
<h2>Richness change vs. task gain, per task</h2>
<p>Mean over seeds; error bars: the 95% interval where the results carry one, else ± std (a bar much wider
than the points' spread is cut at the panel's edge). Right of 0: the task improved; below 0: the projector's output lost domain
information (the paper's finding for FT-E2E is the lower right).</p>
{_plots_html(lines)}
</section>
<section id="incomplete"><h2>Incomplete runs</h2><ul>{incomplete or "<li>None.</li>"}</ul></section>
<section id="skipped"><h2>Skipped files</h2><ul>{skipped or "<li>None.</li>"}</ul></section>
{f'<section id="warnings"><h2>Warnings</h2><ul>{warnings}</ul></section>' if warnings else ""}
</main>
<script type="application/json" id="provenance">{_script_json(_provenance(lines, board, coll))}</script>
<script>{JS}</script>
</body>
</html>
"""


def site(board: Leaderboard, coll: Collection, with_reference: bool = False) -> dict[str, str]:
    """File name -> text of the site. The JSON and CSV are the ``--format json|csv`` outputs, linked from the page."""
    return {INDEX: page(board, coll, with_reference), JSON_NAME: json_text(board, with_reference),
            CSV_NAME: csv_text(board, with_reference)}


CSS = """
:root{--fg:#1b1b1b;--mut:#5a5a5a;--line:#d9d9d9;--hl:#fff3b0;--bg:#fff;--head:#f3f4f6}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0;padding:0 1.2rem 2rem}
h1{font-size:1.5rem;margin:1rem 0 .3rem}h2{font-size:1.15rem;margin:1.6rem 0 .4rem}
header p{margin:.2rem 0;color:var(--mut)}
details{margin:.3rem 0 .6rem}summary{cursor:pointer;color:#1f5fa8}
#controls{display:flex;flex-wrap:wrap;gap:.4rem .9rem;align-items:center;padding:.5rem .6rem;background:var(--head);
border:1px solid var(--line);border-radius:6px}
#controls label{white-space:nowrap}select,input,button{font:inherit}
.note{font-size:.85rem;color:var(--mut);display:none}body.with-ref .note{display:block}
.tablewrap{overflow-x:auto;border:1px solid var(--line);margin-top:.5rem}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:12.5px}
th,td{padding:.2rem .35rem;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
thead th{position:sticky;top:0;background:var(--head);z-index:1}
th button{all:unset;cursor:pointer;font-weight:600}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
td.num{text-align:right}.tablewrap.small{display:inline-block;max-width:100%}.sd{color:var(--mut);font-size:.85em}
.ci{display:block;color:var(--mut);font-size:.8em;line-height:1.1}
.tag{display:block;color:var(--mut);font-size:.8em;line-height:1.1}td.missing{color:#b00020}td.na{background:#fafafa}
tr.ref{background:#eef5ff;font-style:italic}
tr.hl{background:var(--hl)}
tr.provrow td{white-space:normal;background:#fbfbfb}
.prov{font-size:.8rem;padding:0 .4rem}
.run{margin:.2rem 0 .5rem}.run dl{display:grid;grid-template-columns:max-content 1fr;gap:0 .8rem;margin:.2rem 0}
.run dt{color:var(--mut)}.run dd{margin:0;word-break:break-all}
#pager{display:flex;gap:1rem;align-items:center;margin:.5rem 0}
.panels{display:flex;flex-wrap:wrap;gap:.6rem}
svg.panel{border:1px solid var(--line);background:#fff}
.frame{fill:none;stroke:#999}.grid{stroke:#eee}.zero{stroke:#888;stroke-dasharray:4 3}
.tick{font-size:10px;fill:#555}.axis{font-size:11px;fill:#333}.ptitle{font-size:12px;font-weight:600}
.pt{cursor:pointer;stroke-width:1}.pt:hover polygon,.pt:hover circle,.pt:focus polygon,.pt:focus circle{stroke-width:3}
.keys .key{display:inline-flex;align-items:center;gap:.25rem;margin-right:.8rem}
.detail{min-height:1.5em;color:var(--mut)}
"""

# Vanilla JS, no library. State lives in the URL hash (e.g. #sort=10&dir=desc&task=textile), so a sorted and
# filtered view can be linked to. Lines stay in the DOM; paging only hides them.
JS = r"""
(function () {
  "use strict";
  var tbody = document.getElementById("rows");
  var lines = Array.prototype.slice.call(tbody.rows);
  var heads = Array.prototype.slice.call(document.querySelectorAll("#board thead th[data-col]"));
  var filters = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("f-search");
  var showRef = document.getElementById("show-ref");
  var pageSize = document.getElementById("page-size");
  var status = document.getElementById("status");
  var prov = JSON.parse(document.getElementById("provenance").textContent);
  var state = {col: -1, dir: 1, page: 0};
  var keyCache = {};
  var text = lines.map(function (tr) { return tr.textContent.toLowerCase(); });

  function keys(col) {
    // Numbers sort by their exact value (data-v), text by its characters; missing values are null.
    if (keyCache[col]) return keyCache[col];
    var numeric = heads[col].getAttribute("data-type") === "num";
    keyCache[col] = lines.map(function (tr) {
      var td = tr.cells[col];
      if (numeric) { var v = td.getAttribute("data-v"); return v === "" || v === null ? null : parseFloat(v); }
      var t = td.textContent; return t === "" ? null : t;
    });
    return keyCache[col];
  }
  function visible(i) {
    var tr = lines[i];
    if (tr.hasAttribute("data-ref") && !showRef.checked) return false;
    for (var k = 0; k < filters.length; k++) {
      var want = filters[k].value;
      if (want && tr.getAttribute("data-" + filters[k].getAttribute("data-filter")) !== want) return false;
    }
    var q = search.value.trim().toLowerCase();
    return !q || text[i].indexOf(q) >= 0;
  }
  function order() {
    var idx = lines.map(function (_, i) { return i; });
    if (state.col < 0) return idx;
    var k = keys(state.col), dir = state.dir;
    idx.sort(function (a, b) {
      var x = k[a], y = k[b];
      if (x === null || y === null) { if (x === y) return a - b; return x === null ? 1 : -1; }
      if (x < y) return -dir; if (x > y) return dir; return a - b;
    });
    return idx;
  }
  function closeProvenance() {
    Array.prototype.slice.call(tbody.querySelectorAll("tr.provrow")).forEach(function (r) { r.remove(); });
    Array.prototype.slice.call(tbody.querySelectorAll("button.prov[aria-expanded=true]")).forEach(
      function (b) { b.setAttribute("aria-expanded", "false"); });
  }
  function apply(keepPage) {
    closeProvenance();
    document.body.classList.toggle("with-ref", showRef.checked);
    var idx = order().filter(visible);
    var size = parseInt(pageSize.value, 10) || idx.length || 1;
    var pages = Math.max(1, Math.ceil(idx.length / size));
    if (!keepPage) state.page = 0;
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    var start = state.page * size, end = Math.min(idx.length, start + size);
    var shown = {};
    for (var j = start; j < end; j++) shown[idx[j]] = true;
    var frag = document.createDocumentFragment();
    idx.forEach(function (i) { frag.appendChild(lines[i]); });
    lines.forEach(function (tr, i) { if (!(i in shown) && !visible(i)) frag.appendChild(tr); });
    tbody.appendChild(frag);
    lines.forEach(function (tr, i) { tr.hidden = !(i in shown); });
    heads.forEach(function (th, c) {
      th.setAttribute("aria-sort", c !== state.col ? "none" : state.dir > 0 ? "ascending" : "descending");
    });
    status.textContent = idx.length ? ("lines " + (start + 1) + "–" + end + " of " + idx.length +
      " (page " + (state.page + 1) + "/" + pages + ")") : "no line matches the filters";
    status.setAttribute("data-matching", String(idx.length));
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    writeHash();
  }
  function writeHash() {
    var p = [];
    if (state.col >= 0) p.push("sort=" + state.col, "dir=" + (state.dir > 0 ? "asc" : "desc"));
    filters.forEach(function (f) { if (f.value) p.push(f.getAttribute("data-filter") + "=" + encodeURIComponent(f.value)); });
    if (search.value) p.push("q=" + encodeURIComponent(search.value));
    if (showRef.checked !== showRef.defaultChecked) p.push("ref=" + (showRef.checked ? 1 : 0));
    if (pageSize.value !== String(pageSize.querySelector("option[selected]").value)) p.push("size=" + pageSize.value);
    if (state.page) p.push("page=" + (state.page + 1));
    var h = p.length ? "#" + p.join("&") : "";
    if (h !== location.hash && !(h === "" && location.hash === "#")) {
      try { history.replaceState(null, "", h || location.pathname + location.search); } catch (e) { /* some browsers refuse it for local files */ }
    }
  }
  function readHash() {
    var p = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return; var i = kv.indexOf("=");
      p[decodeURIComponent(i < 0 ? kv : kv.slice(0, i))] = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
    });
    if (p.sort !== undefined && heads[+p.sort]) { state.col = +p.sort; state.dir = p.dir === "desc" ? -1 : 1; }
    filters.forEach(function (f) {
      var v = p[f.getAttribute("data-filter")];
      if (v !== undefined && Array.prototype.some.call(f.options, function (o) { return o.value === v; })) f.value = v;
    });
    if (p.q !== undefined) search.value = p.q;
    if (p.ref !== undefined) showRef.checked = p.ref === "1";
    if (p.size !== undefined && pageSize.querySelector('option[value="' + p.size + '"]')) pageSize.value = p.size;
    state.page = p.page ? (parseInt(p.page, 10) || 1) - 1 : 0;
  }
  function openProvenance(btn) {
    var tr = btn.closest("tr"), open = btn.getAttribute("aria-expanded") === "true";
    var next = tr.nextElementSibling;
    if (next && next.classList.contains("provrow")) next.remove();
    btn.setAttribute("aria-expanded", open ? "false" : "true");
    if (open) return;
    var row = document.createElement("tr"); row.className = "provrow";
    var td = document.createElement("td"); td.colSpan = tr.cells.length;
    (prov.lines[btn.getAttribute("data-id")] || []).forEach(function (run) {
      var box = document.createElement("div"); box.className = "run";
      var h = document.createElement("strong"); h.textContent = run[0] + " (" + run[1] + ")"; box.appendChild(h);
      var pairs = prov.runs[run[0]];
      if (pairs) {
        var dl = document.createElement("dl");
        pairs.forEach(function (kv) {
          var dt = document.createElement("dt"); dt.textContent = kv[0];
          var dd = document.createElement("dd"); dd.textContent = kv[1];
          dl.appendChild(dt); dl.appendChild(dd);
        });
        box.appendChild(dl);
      }
      td.appendChild(box);
    });
    if (!td.childNodes.length) td.textContent = "no runs";
    row.appendChild(td); tr.parentNode.insertBefore(row, tr.nextSibling);
  }
  function showLine(id) {
    // From a plot point: clear what would hide the line, go to its page, highlight it and open its runs.
    filters.forEach(function (f) { f.value = ""; }); search.value = "";
    var target = document.getElementById("r" + id); if (!target) return;
    var size = parseInt(pageSize.value, 10);
    var pos = order().filter(visible).indexOf(lines.indexOf(target));
    state.page = size ? Math.floor(pos / size) : 0;
    apply(true);
    lines.forEach(function (tr) { tr.classList.remove("hl"); });
    target.classList.add("hl");
    openProvenance(target.querySelector("button.prov"));
    target.scrollIntoView({block: "center"});
  }

  heads.forEach(function (th, c) {
    th.querySelector("button").addEventListener("click", function () {
      if (state.col === c) state.dir = -state.dir;
      else { state.col = c; state.dir = th.getAttribute("data-type") === "num" ? -1 : 1; }
      apply(false);
    });
  });
  filters.concat([pageSize, showRef]).forEach(function (el) { el.addEventListener("change", function () { apply(false); }); });
  search.addEventListener("input", function () { apply(false); });
  document.getElementById("prev").addEventListener("click", function () { state.page--; apply(true); });
  document.getElementById("next").addEventListener("click", function () { state.page++; apply(true); });
  document.getElementById("reset").addEventListener("click", function () {
    filters.forEach(function (f) { f.value = ""; }); search.value = ""; showRef.checked = showRef.defaultChecked;
    pageSize.value = pageSize.querySelector("option[selected]").value; state.col = -1; state.dir = 1; apply(false);
  });
  tbody.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.prov"); if (b) openProvenance(b);
  });
  var detail = document.getElementById("pt-detail");
  Array.prototype.slice.call(document.querySelectorAll(".pt")).forEach(function (g) {
    function describe() { if (detail) detail.textContent = g.querySelector("title").textContent.replace(/\n/g, " · "); }
    g.addEventListener("mouseenter", describe); g.addEventListener("focus", describe);
    g.addEventListener("click", function () { describe(); showLine(g.getAttribute("data-id")); });
    g.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { describe(); showLine(g.getAttribute("data-id")); } });
  });
  // The smaller tables: click a header to sort by it (numbers by their leading value), again to reverse.
  Array.prototype.slice.call(document.querySelectorAll("table.sortable")).forEach(function (table) {
    var body = table.tBodies[0], ths = Array.prototype.slice.call(table.tHead.rows[0].cells), last = -1, dir = 1;
    ths.forEach(function (th, c) {
      th.querySelector("button").addEventListener("click", function () {
        dir = last === c ? -dir : 1; last = c;
        var rows = Array.prototype.slice.call(body.rows);
        var key = function (tr) {
          var t = tr.cells[c].textContent, v = parseFloat(t);
          return isNaN(v) ? (t === "\u2014" || t === "" ? null : t) : v;
        };
        rows.map(function (tr, i) { return [key(tr), i, tr]; }).sort(function (a, b) {
          if (a[0] === null || b[0] === null) return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
          if (a[0] < b[0]) return -dir; if (a[0] > b[0]) return dir; return a[1] - b[1];
        }).forEach(function (x) { body.appendChild(x[2]); });
        ths.forEach(function (h, j) { h.setAttribute("aria-sort", j !== c ? "none" : dir > 0 ? "ascending" : "descending"); });
      });
    });
  });
  window.addEventListener("hashchange", function () { readHash(); apply(true); });
  readHash();
  apply(true);
  document.body.setAttribute("data-ready", "1");
})();
"""
