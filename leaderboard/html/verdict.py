"""The page's verdict block: per model and task, the verdict lines of :mod:`..verdict` (the Markdown's text).

Full runs are shown; limited runs (quick checks) follow in a collapsed list, open when there are no full runs.
The block keeps a bounded height (it scrolls), so the plot and the board's header stay on the first screen.
"""

from __future__ import annotations

from ..table import Leaderboard
from ..verdict import ABOUT, TWIN, Verdict, groups, row_verdicts, title
from .tables import esc


def _line_html(v: Verdict) -> str:
    """One line; its text content is exactly ``v.text``: the parts are only styled."""
    parts = [f'<span class="vlabel">{esc(v.label)}</span>']
    if v.numbers:
        parts.append(f'<span class="vnum">{esc(v.numbers)}</span>')
    parts.append(f'<strong class="vread">{esc(v.reading)}</strong>')
    return ": ".join(parts)


def _table(rows) -> str:
    trs = []
    for row in rows:
        verdicts = row_verdicts(row)
        head = f'<th scope="rowgroup" rowspan="{len(verdicts)}">{esc(title(row))}</th>'
        for i, v in enumerate(verdicts):
            cls = ' class="twin"' if v.label == TWIN else ""
            trs.append(f"<tr{cls}>{head if i == 0 else ''}<td>{_line_html(v)}</td></tr>")
    return f'<table class="verdicts"><tbody>{"".join(trs)}</tbody></table>'


def verdict_html(board: Leaderboard) -> str:
    """The verdict section; without rows, a note that there is nothing to read yet."""
    parts = groups(board)
    if not parts:
        return '<section id="verdict"><h2>Verdict</h2><p>No runs yet: nothing to conclude.</p></section>'
    body = []
    has_full = not parts[0][0]
    for heading, rows in parts:
        if not heading:
            body.append(_table(rows))
        else:
            opened = "" if has_full else " open"
            body.append(f"<details{opened}><summary>{esc(heading)}: {len(rows)} model × task</summary>"
                        f"{_table(rows)}</details>")
    return (f'<section id="verdict" aria-label="verdict"><h2>Verdict</h2><p class="about">{esc(ABOUT)}</p>'
            f'<div class="verdictbox">{"".join(body)}</div></section>')
