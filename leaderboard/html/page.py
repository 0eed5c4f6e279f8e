"""Assemble the page: head, header, the verdict, the plots, filters, the long-form board, the smaller tables, the
lists of incomplete runs, skipped files and warnings, and the provenance the script opens on demand.

The first screen (1280 x 900) answers the question: the verdict per model and task (the Markdown's, from
:mod:`..verdict`), the richness-vs-gain plot, and the board's header with its gain and richness columns."""

from __future__ import annotations

import base64
import hashlib
import json

from benchmark.schema import Regime

from .. import reference
from ..collect import Collection, RunKey
from ..scatter import point_of
from ..table import Leaderboard
from .plot import plots_html
from .static import css, js
from .tables import (
    Line,
    board_heads,
    esc,
    filter_selects,
    legend_html,
    line_tr,
    lines_of,
    more_tables,
    reference_trs,
)
from .verdict import verdict_html

INDEX, JSON_NAME, CSV_NAME = "index.html", "leaderboard.json", "leaderboard.csv"
PAGE_SIZES = (25, 100, 500, 0)  # 0 = all
DEFAULT_PAGE_SIZE = 100


def page(board: Leaderboard, coll: Collection, with_reference: bool = False) -> str:
    lines = lines_of(board)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp()}">
<link rel="icon" href="data:,">
<title>projbench leaderboard</title>
<style>{style_text()}</style>
</head>
<body>
{_header(board, lines, len(coll.runs))}
<main>
{verdict_html(board)}
{_plots_section(lines)}
{_controls(lines, with_reference)}
{_board(lines)}
{_sections(board)}
</main>
<script type="application/json" id="provenance">{_script_json(_provenance(lines, board, coll))}</script>
<script>{script_text()}</script>
</body>
</html>
"""


def style_text() -> str:
    """The exact text of the page's ``<style>`` element (hashed by :func:`csp`)."""
    return "\n" + css()


def script_text() -> str:
    """The exact text of the page's ``<script>`` element (hashed by :func:`csp`)."""
    return "\n" + js()


def csp() -> str:
    """The page's Content-Security-Policy: nothing from anywhere, except its own inline style and script, named
    by the SHA-256 of their exact text (CSP Level 2, "hash-source"; w3.org/TR/CSP2/#script-src-hash-usage), so
    markup that escaped escaping could run no script and apply no style (no 'unsafe-inline')."""
    def source(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"

    return (f"default-src 'none'; script-src {source(script_text())}; style-src {source(style_text())}; "
            "img-src data:; base-uri 'none'; form-action 'none'")


def _header(board: Leaderboard, lines: list[Line], n_runs: int) -> str:
    return f"""<header>
<h1>projbench leaderboard</h1>
<p>Does the projector learn a domain's visual attributes when fine-tuned, or does the LLM?
{_count(len(board.rows), "row")}, {_count(len(lines), "table line")}, {_count(n_runs, "finished run")}.
Data: <a href="{JSON_NAME}">{JSON_NAME}</a> · <a href="{CSV_NAME}">{CSV_NAME}</a>.</p>
<details><summary>How to read the numbers</summary>{legend_html(any(r.unverified for r in board.rows))}
<p>Each table line is one regime of a leaderboard row; the same numbers as the Markdown leaderboard.
Limited runs are quick checks, not results. Click a column header to sort (again to reverse); missing values
always sort last.</p></details>
</header>"""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _controls(lines: list[Line], with_reference: bool) -> str:
    sizes = "".join(f'<option value="{s}"{" selected" if s == DEFAULT_PAGE_SIZE else ""}>{s or "all"}</option>'
                    for s in PAGE_SIZES)
    checked = " checked" if with_reference else ""
    return f"""<section id="controls" aria-label="filters">
{filter_selects(lines)}
<label>Search <input type="search" id="f-search" placeholder="any text"></label>
<label><input type="checkbox" id="show-ref"{checked}> paper reference rows</label>
<label>Rows per page <select id="page-size">{sizes}</select></label>
<button type="button" id="reset">reset</button>
</section>
<p id="ref-note" class="note">Reference rows: {esc(reference.MODEL)}, macro-F1 as reported in {esc(reference.SOURCE)};
the paper's setup differs (free-text generation with sampling, probes early-stopped on the test split):
compare trends, not decimals.</p>"""


def _board(lines: list[Line]) -> str:
    body = [line_tr(line) for line in lines] + reference_trs()
    return f"""<div class="tablewrap">
<table id="board">
<thead><tr>{board_heads()}</tr></thead>
<tbody id="rows">
{chr(10).join(body)}
</tbody>
</table>
</div>
<nav id="pager" aria-label="pages"><button type="button" id="prev">‹ previous</button>
<span id="status" aria-live="polite">{len(lines)} lines</span>
<button type="button" id="next">next ›</button></nav>"""


def _plots(lines: list[Line]) -> str:
    """The plots of the table's fine-tuned lines, each point knowing its line."""
    points, line_ids = [], {}
    for line in lines:
        point = None if line.regime == Regime.ZERO_SHOT else point_of(line.row, line.regime)
        if point is not None:
            points.append(point)
            line_ids[point.key] = line.id
    return plots_html(points, line_ids)


def _plots_section(lines: list[Line]) -> str:
    return f"""<section id="plots">
<h2>Richness change vs. task gain, per task</h2>
<p class="about">Mean over seeds; error bars: 95% interval (else ± std). Lower right: the task improved while the
projector's output lost domain information (the paper's finding).</p>
{_plots(lines)}
</section>"""


def _sections(board: Leaderboard) -> str:
    incomplete = "".join(f"<li><code>{esc(i.path)}</code>: {esc(i.reason)}</li>" for i in board.incomplete)
    skipped = "".join(f"<li><code>{esc(s.path)}</code>: {esc(s.reason)}</li>" for s in board.skipped)
    warnings = "".join(f"<li>{esc(w)}</li>" for w in board.warnings)
    return f"""<section id="summary">
<h2>Per model</h2>
{more_tables(board) or "<p>No summary yet.</p>"}
</section>
<section id="incomplete"><h2>Incomplete runs</h2><ul>{incomplete or "<li>None.</li>"}</ul></section>
<section id="skipped"><h2>Skipped files</h2><ul>{skipped or "<li>None.</li>"}</ul></section>
{f'<section id="warnings"><h2>Warnings</h2><ul>{warnings}</ul></section>' if warnings else ""}"""


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
