"""Render a :class:`~..table.Leaderboard` as a self-contained static site: ``index.html`` + the JSON and CSV.

The page is a pure function of the results, like the other formats: no clock, no environment, no network asset
(inline CSS, inline vanilla JS, inline SVG), so the same results give the same bytes and the page works from
``file://`` or any static host. Every number shown is a cell of :mod:`..columns` (the Markdown's text) computed
from the same :class:`~..table.Row`, so the formats never disagree.

The table is long-form: one line per (model, task, regime), so that regime is a filter and a sort ranks every
fine-tuned result together. All lines are in the HTML (readable without JS, parseable by tools); the script only
sorts, filters, pages and opens provenance.

Rooms: ``page`` assembles the page, ``tables`` writes its tables, ``plot`` draws the richness-vs-gain small
multiples as SVG (the plot model of :mod:`..scatter`), ``static`` loads the stylesheet and script files.
"""

from __future__ import annotations

from ..collect import Collection
from ..render import csv_text, json_text
from ..table import Leaderboard
from .page import CSV_NAME, INDEX, JSON_NAME, page

__all__ = ["CSV_NAME", "INDEX", "JSON_NAME", "page", "site"]


def site(board: Leaderboard, coll: Collection, with_reference: bool = False) -> dict[str, str]:
    """File name -> text of the site. The JSON and CSV are the ``--format json|csv`` outputs, linked from the page."""
    return {INDEX: page(board, coll, with_reference), JSON_NAME: json_text(board, with_reference),
            CSV_NAME: csv_text(board, with_reference)}
