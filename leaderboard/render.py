"""Render a :class:`~.table.Leaderboard` as CSV or JSON (the columns of :mod:`.columns`), or pick a format.

Nothing here reads files, clocks or the environment, so the same leaderboard always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics

from . import reference
from .columns import ROW_COLUMNS, Column
from .markdown import markdown
from .stats import Ratio, Stat
from .table import Leaderboard, SummaryRow

CSV_COLUMNS = [c for c in ROW_COLUMNS if "csv" in c.formats]
JSON_COLUMNS = [c for c in ROW_COLUMNS if "json" in c.formats]
_STAT_FIELDS = ("mean", "std", "n", "ci_low", "ci_high")


# -- CSV ---------------------------------------------------------------------------------------------------------
def _csv_header() -> list[str]:
    return [name for c in CSV_COLUMNS for name in ([f"{c.key}_{f}" for f in _STAT_FIELDS] if c.measured else [c.key])]


def _csv_stat(s: Stat | Ratio | None) -> list:
    if s is None:
        return ["", "", "", "", ""]
    ci = ["", ""] if s.ci is None else [repr(s.ci[0]), repr(s.ci[1])]
    return [repr(s.mean), "" if s.std is None else repr(s.std), s.n, *ci]


# OWASP's CSV-injection guidance (owasp.org/www-community/attacks/CSV_Injection): a cell beginning with one of
# these is read by spreadsheets as a formula (=HYPERLINK(...), @SUM(...), -2+3+cmd|...), so a text cell that does
# is prefixed with a single quote, which spreadsheets show as text. Numbers are written by repr() and stay numbers:
# only text cells (names from folders, tags) are neutralised, and a text cell that is a plain decimal number
# ("-0.0123") is left alone, since no spreadsheet evaluates it as anything but that number.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def csv_safe(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet executes (see ``_FORMULA_START``)."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _csv_value(value) -> object:
    """A plain value in a CSV cell: lists joined with ";", None empty, text neutralised (:func:`csv_safe`)."""
    if isinstance(value, tuple):
        value = ";".join(map(str, value))
    if isinstance(value, str):
        return csv_safe(value)
    return "" if value is None else value


def _csv_cells(col: Column, row) -> list:
    return _csv_stat(col.get(row)) if col.measured else [_csv_value(col.get(row))]


# The paper's rows in the CSV: what identifies them, by column (columns not named here are empty).
_REFERENCE_IDS = {"section": "reference", "model": reference.MODEL, "limited": False, "ft_e2e": "full",
                  "projector_family": reference.PROJECTOR_FAMILY}


def _reference_cells(col: Column, r: reference.ReferenceRow) -> list:
    if not col.measured:
        return [_csv_value(r.task if col.key == "task" else _REFERENCE_IDS.get(col.key, ""))]
    x = col.ref(r)
    return ["", "", "", "", ""] if x is None else [repr(x), "", "", "", ""]


def csv_text(board: Leaderboard, with_reference: bool = False) -> str:
    """One line per leaderboard row; reference rows (if asked) are labelled ``section=reference``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_csv_header())
    for r in board.rows:
        w.writerow([v for c in CSV_COLUMNS for v in _csv_cells(c, r)])
    if with_reference:
        for r in reference.ROWS:
            w.writerow([v for c in CSV_COLUMNS for v in _reference_cells(c, r)])
    return buf.getvalue()


# -- JSON --------------------------------------------------------------------------------------------------------
def _json_stat(s: Stat | Ratio | None):
    if s is None:
        return None
    if isinstance(s, Ratio):
        return {"mean": s.mean, "std": None, "n": s.n, "seeds": list(s.seeds), "new_mean": s.new_mean,
                "base_mean": s.base_mean, "estimator": "change of seed-averaged means / seed-averaged baseline"}
    return {"mean": s.mean, "std": s.std, "n": s.n, "seeds": list(s.seeds), "values": list(s.values),
            "ci95": None if s.ci is None else list(s.ci), "ci_method": s.ci_method, "p_value": s.p_value,
            "ci_includes_zero": s.includes_zero,
            "ci_min_class_n": None if s.interval is None else s.interval.min_class_n,
            "ci_older_method": None if s.interval is None else s.interval.older}


def _json_value(col: Column, row):
    value = col.get(row)
    if col.measured:
        return _json_stat(value)
    return list(value) if isinstance(value, tuple) else value


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
        "rows": [{c.key: _json_value(c, r) for c in JSON_COLUMNS} for r in board.rows],
        "summary": [_json_summary(s) for s in board.summary],
        "incomplete": [{"path": i.path, "reason": i.reason} for i in board.incomplete],
        "skipped": [{"path": s.path, "reason": s.reason} for s in board.skipped],
        "warnings": list(board.warnings),
    }
    if with_reference:
        doc["reference"] = {
            "source": reference.SOURCE, "model": reference.MODEL, "projector_family": reference.PROJECTOR_FAMILY,
            "rows": [{"task": r.task, **{c.key: c.ref(r) for c in JSON_COLUMNS if c.measured}}
                     for r in reference.ROWS],
        }
    # allow_nan=False: collect() rejects non-finite scores, so a NaN here would be a bug worth failing on.
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


FORMATS = {"markdown": markdown, "csv": csv_text, "json": json_text}


def render(board: Leaderboard, fmt: str, with_reference: bool = False) -> str:
    return FORMATS[fmt](board, with_reference)
