"""The leaderboard checks the numbers it shows against the runs' stored predictions: a row with a run whose
numbers do not follow from them carries ✗ on every number, and the run and number are named; consistent rows,
and schema-1 rows (no predictions), carry no such mark.

The predictions and the consistent scores are written by test_leaderboard_intervals.write_predictions (scores
computed there from the predictions, as a run writes them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_leaderboard import RESULTS, board_of, edit_metrics, row
from test_leaderboard_intervals import DIGITS, write_predictions

from benchmark.leaderboard.render import render

RUN = DIGITS / "ft-proj" / "seed1"


@pytest.fixture
def results(tmp_path) -> Path:
    root = Path(shutil.copytree(RESULTS, tmp_path / "results"))
    write_predictions(root)
    return root


def test_numbers_that_follow_from_their_predictions_carry_no_mark(results):
    board = board_of(results)
    assert all(r.unverified == () for r in board.rows)
    assert "✗" not in render(board, "markdown") and "✗" not in render(board, "csv")


@pytest.mark.parametrize("field, change", [
    ("metrics.macro_f1", lambda m: m["metrics"].update(macro_f1=m["metrics"]["macro_f1"] + 0.25)),
    ("metrics.accuracy", lambda m: m["metrics"].update(accuracy=0.99)),
    ("probe.post_projection.macro_f1", lambda m: m["probe"]["post_projection"].update(macro_f1=0.99)),
])
def test_an_edited_shown_number_marks_every_number_of_its_row(results, field, change):
    edit_metrics(results / RUN / "metrics.json", change)
    board = board_of(results)
    r = row(board, "digits", 10)
    [why] = r.unverified
    assert why.startswith(f"{RUN.as_posix()}: numbers do not follow from its stored predictions: {field}: stored ")
    for stat in (*r.f1.values(), *r.probe.values(), r.probe_pre, *r.gain.values(), *r.richness.values(),
                 *r.gain_pct.values(), *r.richness_pct.values()):
        assert stat is None or stat.mark.endswith("✗")
    others = [o for o in board.rows if o is not r]
    assert others and all(o.unverified == () for o in others)
    md = render(board, "markdown")
    assert f"- ✗ {why}" in md and "- ✗: a number of this row does not follow" in md
    assert md.count("✗ (numbers that do not follow from their stored predictions: not a result)**") == 1  # verdict
    csv_line = next(line for line in render(board, "csv").splitlines() if "digits" in line and ",10," in line)
    assert f"{RUN.as_posix()}: numbers do not follow" in csv_line
    [json_row] = [x for x in json.loads(render(board, "json"))["rows"] if x["task"] == "digits" and x["max_per_class"]]
    assert json_row["unverified"] == [why]


def test_the_pages_legend_explains_the_mark_only_when_a_row_carries_it(results):
    from benchmark.leaderboard.html.tables import legend_html

    assert "does not follow from its runs" not in legend_html(False)
    assert "does not follow from its runs" in legend_html(True)
    edit_metrics(results / RUN / "metrics.json", lambda m: m["metrics"].update(accuracy=0.99))
    board = board_of(results)
    assert any(r.unverified for r in board.rows)
    from benchmark.leaderboard.html.page import _header

    assert "does not follow from its runs" in _header(board, [], 0)


def test_predictions_changed_after_the_record_fail_their_checksum(results):
    path = results / RUN / "probe_predictions.json"
    probe = json.loads(path.read_text())
    probe["post_projection"][0][0] = (probe["post_projection"][0][0] + 1) % 10
    path.write_text(json.dumps(probe))
    [why] = row(board_of(results), "digits", 10).unverified
    assert "artifacts.probe_predictions.json: stored sha256 " in why


def test_a_schema_3_run_without_its_predictions_recorded_is_marked(results):
    edit_metrics(results / RUN / "metrics.json", lambda m: m.pop("artifacts"))
    [why] = row(board_of(results), "digits", 10).unverified
    assert "artifacts.predictions.jsonl: stored not recorded" in why
    assert "artifacts.probe_predictions.json: stored not recorded" in why


def test_schema_1_rows_are_not_marked():
    board = board_of(RESULTS)
    assert all(r.unverified == () for r in board.rows) and "✗" not in render(board, "markdown")
