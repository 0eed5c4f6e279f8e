"""The page's tables: the long-form board (one line per row and regime) and the Markdown's smaller tables.

Every cell is a cell of :mod:`..columns` (the Markdown's text) computed from the same :class:`~..table.Row`; the
markup only styles the spread, the interval and the notes, so the page's text is the Markdown's.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from benchmark.schema import Regime

from .. import reference
from ..columns import (
    FILTERS,
    LINE_COLUMNS,
    MISSING,
    REGIME_LABELS,
    baselines_table,
    behind,
    cell,
    control_table,
    has_controls,
    number,
    summary_table,
)
from ..markdown import LEGEND, UNVERIFIED_NOTE
from ..table import FINETUNED, Leaderboard, Row

REGIMES = (Regime.ZERO_SHOT,) + FINETUNED


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

    @property
    def key(self) -> tuple:
        """(model, task, limit, regime folder), as a plot point names what it stands for."""
        return (self.row.model, self.row.task, self.row.limit, self.folder)


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


TEXT_COLUMNS = [c for c in LINE_COLUMNS if not c.per_regime]
# The page's column order: what a line is (model, task, regime), then the two changes that answer the question,
# then the scores behind them, then the rest; so gain and richness are on screen at 1280 px without scrolling.
BOARD_ORDER = ("model", "task", "regime", "gain", "richness", "f1", "probe", "gain_pct", "richness_pct",
               "probe_pre", "family", "eval", "data", "seeds")
BOARD_COLUMNS = sorted(LINE_COLUMNS, key=lambda c: BOARD_ORDER.index(c.key) if c.key in BOARD_ORDER
                       else len(BOARD_ORDER))   # a column not named here goes last, never missing


def text_cells(line: Line) -> dict[str, str]:
    return {c.key: cell(line, c) for c in TEXT_COLUMNS}


# -- cells -------------------------------------------------------------------------------------------------------
def esc(s) -> str:
    """Text escaped for HTML content and attribute values."""
    return escape(str(s), quote=True)


def sort_key(x: float) -> str:
    """A sort key: exact (repr round-trips) and locale-free."""
    return repr(float(x))


def td(text: str, key: str | None, numeric: bool, cls: str = "") -> str:
    """A cell whose text content is exactly ``text``: spread, interval and notes only styled, never changed."""
    attrs = ""
    if numeric:
        attrs += f' data-v="{esc(key)}"' if key is not None else ' data-v=""'
        cls = (cls + " num").strip()
    if cls:
        attrs += f' class="{cls}"'
    # "mean ± std [low, high] (k/n seeds) (LoRA)": the spread muted; the interval and the notes in parentheses
    # each on a line of their own (they would otherwise double the column's width).
    body, paren, notes = text.partition(" (")
    body, bracket, interval = body.partition(" [")
    head, sep, tail = body.partition(" ± ")
    inner = esc(head) + (f'<span class="sd">{esc(sep + tail)}</span>' if sep else "")
    if bracket:  # a 95% interval "[low, high]"
        inner += f'<span class="ci">{esc(bracket + interval)}</span>'
    if paren and numeric:
        inner += f'<span class="tag">{esc(paren + notes)}</span>'
    elif paren:
        inner += esc(paren + notes)
    return f"<td{attrs}>{inner}</td>"


def _filter_attrs(text: dict[str, str]) -> str:
    return "".join(f' data-{f}="{esc(text[f])}"' for f in FILTERS)


def line_tr(line: Line) -> str:
    text = text_cells(line)
    tds = []
    for c in BOARD_COLUMNS:
        if not c.per_regime:
            tds.append(td(text[c.key], text[c.key] if c.kind == "count" else None, c.numeric))
            continue
        col = behind(c, line.regime)
        if col is None:
            tds.append(td("", None, True, "na"))
            continue
        s = col.get(line.row)
        t = cell(line.row, col)
        tds.append(td(t, None if s is None else sort_key(s.mean), True, "missing" if t == MISSING else ""))
    tds.append(f'<td><button type="button" class="prov" data-id="{line.id}" aria-expanded="false">runs</button></td>')
    return (f'<tr id="r{line.id}" data-id="{line.id}" data-row="{line.row_index}"{_filter_attrs(text)}>'
            + "".join(tds) + "</tr>")


def reference_trs() -> list[str]:
    """The paper's rows as lines, hidden unless asked for; the values its columns' ``ref`` gives."""
    out = []
    for r in reference.ROWS:
        for regime in REGIMES:
            text = {"model": reference.MODEL, "task": r.task, "family": reference.PROJECTOR_FAMILY,
                    "regime": REGIME_LABELS[regime], "eval": "generate (paper)", "data": "paper", "seeds": ""}
            tds = []
            for c in BOARD_COLUMNS:
                col = behind(c, regime) if c.per_regime else None
                x = None if col is None else col.ref(r)
                if not c.per_regime:
                    tds.append(td(text[c.key], None, c.numeric))
                else:
                    tds.append(td("", None, True, "na") if x is None else td(number(x, col.kind), sort_key(x), True))
            tds.append("<td></td>")
            out.append(f'<tr class="ref" data-ref="1"{_filter_attrs(text)}>' + "".join(tds) + "</tr>")
    return out


def board_heads() -> str:
    """The long-form table's header cells: sortable buttons, each with what its column means."""
    return "".join(
        f'<th scope="col" data-col="{i}" data-type="{"num" if c.numeric else "text"}" aria-sort="none" '
        f'title="{esc(c.title)}"><button type="button">{esc(c.header)}</button></th>'
        for i, c in enumerate(BOARD_COLUMNS)) + '<th scope="col" title="the runs behind the line, with their provenance">Runs</th>'


def filter_selects(lines: list[Line]) -> str:
    """One select per filter column, offering the values its lines have."""
    texts = [text_cells(line) for line in lines]
    out = []
    for c in TEXT_COLUMNS:
        if c.filter:
            values = sorted({t[c.key] for t in texts})
            opts = '<option value="">all</option>' + "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
            out.append(f'<label>{esc(c.header)} <select data-filter="{c.key}" id="f-{c.key}">{opts}</select></label>')
    return "".join(out)


def legend_html(marked: bool = False) -> str:
    """The Markdown's legend as a list; ``marked`` adds the ✗ line (a row whose numbers do not verify is shown)."""
    items = []
    for item in LEGEND + ([UNVERIFIED_NOTE] if marked else []):
        text = esc(item.removeprefix("- "))
        parts = text.split("**")
        items.append("<li>" + "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts)) + "</li>")
    return "<ul class=\"legend\">" + "".join(items) + "</ul>"


# -- the smaller tables ------------------------------------------------------------------------------------------
def static_table(headers: list[str], body: list[list[str]], numeric_from: int) -> str:
    """A plain table (sortable by the page's script, by text or leading number); columns from ``numeric_from`` on
    are right-aligned numbers."""
    head = "".join(f'<th scope="col"><button type="button">{esc(h)}</button></th>' for h in headers)
    rows = "".join("<tr>" + "".join(td(c, None, False, "num" if i >= numeric_from else "")
                                    for i, c in enumerate(line)) + "</tr>" for line in body)
    return f'<div class="tablewrap small"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


_KINDS = ((False, "full runs"), (True, "limited runs (quick checks)"))


def more_tables(board: Leaderboard) -> str:
    """The Markdown's other tables, from the same columns: per-model summary, control probes and baselines."""
    out = []
    for limited, title in _KINDS:
        summary = [s for s in board.summary if (s.limit is not None) == limited]
        if summary:
            out.append(f"<h3>Summary per model, {title}</h3>"
                       "<p>Mean over the model's tasks of each task's mean change, per regime.</p>"
                       + static_table(*summary_table(summary), numeric_from=2))
    for limited, title in _KINDS:
        rows = [r for r in board.rows if (r.limit is not None) == limited]
        if has_controls(rows):
            out.append(f"<h3>Control probes, {title}</h3>"
                       "<p>The same probe and seeds trained and scored on a control task (Hewitt &amp; Liang 2019): a "
                       "fixed random label per cluster of the probed features, so only memorising the clusters "
                       "scores well; selectivity = probe − control (§: the shuffled-label control of results "
                       "before schema 3).</p>"
                       + static_table(*control_table(rows), numeric_from=2))
    for limited, title in _KINDS:
        rows = [r for r in board.rows if (r.limit is not None) == limited and getattr(r, "baselines", None)]
        if rows:
            out.append(f"<h3>Baselines, {title}: does the model beat its own vision encoder?</h3>"
                       "<p>Random: exact expected macro-F1 of a uniform random guess. CLIP ZS: open_clip zero-shot "
                       "with the CLIP shown. Probe CLIP emb.: the probe on CLIP's pooled image embedding (paper "
                       "Table 3). \"X − CLIP ZS\": the model's F1 in regime X minus CLIP zero-shot F1.</p>"
                       + static_table(*baselines_table(rows), numeric_from=3))
    return "".join(out)
