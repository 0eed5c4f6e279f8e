"""The verdict lines: the four quadrants, every case where an interval includes 0 or is missing, the boundary
(an interval touching 0), the twin's caveat, and the same lines in the run's output, the Markdown and the tables.

The expected sentences are spelled out here, not taken from the module: a changed word is a changed product.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.leaderboard.cli import run_table
from benchmark.leaderboard.collect import collect
from benchmark.leaderboard.columns import BY_NAME, cell, stat_text
from benchmark.leaderboard.render import render
from benchmark.leaderboard.stats import Interval, Stat
from benchmark.leaderboard.table import build
from benchmark.leaderboard.verdict import is_twin, regime_line, row_lines

RESULTS = Path(__file__).parents[1] / "fixtures" / "results"
IMPROVED, WORSE = "the task improved", "the task got worse"
GAINED = "the projector's output gained domain information"
LOST = "the projector's output lost domain information"


def change(values: tuple[float, ...], ci: tuple[float, float] | None) -> Stat:
    """A change over seeds with the interval given (as a run without stored predictions has one)."""
    fallback = None if ci is None else Interval(ci, "t over seeds", older=True)
    return Stat(tuple(range(len(values))), values, fallback)


UP = change((0.20, 0.21, 0.22), (0.15, 0.27))          # mean +0.21, interval above 0
DOWN = change((-0.03, -0.04, -0.05), (-0.07, -0.01))    # mean -0.04, interval below 0
NS = change((-0.02, 0.0, 0.02), (-0.03, 0.03))          # mean 0, interval across 0
NONE = change((0.05, 0.05), None)                       # seeds agree exactly: no interval
UP_T, DOWN_T = "+0.2100 [+0.1500, +0.2700]", "-0.0400 [-0.0700, -0.0100]"
NS_T, NONE_T = "+0.0000 [-0.0300, +0.0300] (n.s.)", "+0.0500 (no interval)"


@pytest.mark.parametrize("gain, richness, numbers, reading", [
    # the four quadrants
    (UP, DOWN, (UP_T, DOWN_T), f"{IMPROVED} while {LOST} (the paper's finding)"),
    (UP, UP, (UP_T, UP_T), f"{IMPROVED} and {GAINED} (the projector learned the domain: not the paper's finding)"),
    (DOWN, DOWN, (DOWN_T, DOWN_T), f"{WORSE} and {LOST}"),
    (DOWN, UP, (DOWN_T, UP_T), f"{WORSE} while {GAINED}"),
    # one interval includes 0: the other direction stands, this one is not concluded
    (UP, NS, (UP_T, NS_T), f"{IMPROVED}; no change in the projector's domain information can be concluded "
                           "(interval includes 0)"),
    (DOWN, NS, (DOWN_T, NS_T), f"{WORSE}; no change in the projector's domain information can be concluded "
                               "(interval includes 0)"),
    (NS, UP, (NS_T, UP_T), f"no change in the task can be concluded (interval includes 0); {GAINED}"),
    (NS, DOWN, (NS_T, DOWN_T), f"no change in the task can be concluded (interval includes 0); {LOST}"),
    # both include 0, or there is no interval to read
    (NS, NS, (NS_T, NS_T), "no change in the task or in the projector's domain information can be concluded "
                           "(both intervals include 0)"),
    (NONE, NONE, (NONE_T, NONE_T), "no change in the task or in the projector's domain information can be "
                                   "concluded (neither has an interval)"),
    (NONE, NS, (NONE_T, NS_T), "no change in the task or in the projector's domain information can be concluded "
                               "(task gain: no interval; richness: interval includes 0)"),
    (UP, NONE, (UP_T, NONE_T), f"{IMPROVED}; no change in the projector's domain information can be concluded "
                               "(no interval)"),
    (NONE, DOWN, (NONE_T, DOWN_T), f"no change in the task can be concluded (no interval); {LOST}"),
])
def test_each_quadrant_and_each_undecided_case(gain, richness, numbers, reading):
    assert regime_line("FT-Proj", gain, richness) == (
        f"FT-Proj: task gain {numbers[0]}, richness {numbers[1]}: {reading}")


@pytest.mark.parametrize("ci, concluded", [
    ((0.0, 0.1), False), ((-0.1, 0.0), False),            # touching 0: the interval includes it
    ((5e-324, 0.1), True), ((-0.1, -5e-324), True),       # the smallest step off 0: a direction
    ((-1e-9, 1e-9), False),
])
def test_an_interval_touching_zero_concludes_nothing_like_the_tables_mark(ci, concluded):
    s = change((ci[0] / 2 + ci[1] / 2,), ci)
    line = regime_line("FT-E2E", s, UP)
    assert ("no change in the task can be concluded" not in line) == concluded
    assert line.startswith("FT-E2E: task gain ")
    # the line marks "(n.s.)" exactly where the table's cell does
    assert ("(n.s.)" in line.split(", richness")[0]) == ("(n.s.)" in stat_text(s, "delta", 1)) == (not concluded)


def test_a_regime_without_a_paired_run_has_no_verdict():
    assert regime_line("FT-E2E", None, None) == (
        "FT-E2E: no verdict: no finished run paired with the zero-shot run of its seed")
    assert regime_line("FT-E2E", UP, None).endswith(": no verdict: no finished run paired with the zero-shot run "
                                                    "of its seed")


def test_twins_are_told_from_their_checkpoint_folder(tmp_path):
    from benchmark.adapters.tiny import twin_dir

    def build(directory):  # a twin builder (its source is hashed into the folder name)
        return directory

    twin = str(twin_dir(tmp_path, "llava15-tiny", build))
    assert is_twin((twin,)) and is_twin((twin, str(twin_dir(tmp_path / "b", "llava15-tiny", build))))
    assert not is_twin(("llava-hf/llava-1.5-7b-hf",)) and not is_twin(("/models/llava-1.5-7b",))
    assert not is_twin((twin, "llava-hf/llava-1.5-7b-hf")) and not is_twin(())


# -- the same verdicts in every output --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def board():
    return build(collect(RESULTS))


def test_the_numbers_are_the_tables_cells(board):
    checked = 0
    for row in board.rows:
        lines = row_lines(row)
        for line, slug in zip(lines, ("ft_proj", "ft_e2e"), strict=False):
            m = re.fullmatch(r"(FT-Proj|FT-E2E(?: \(LoRA\))?): task gain (.*?), richness (.*?): .*", line)
            assert m, line
            for got, column in ((m[2], f"gain_{slug}"), (m[3], f"richness_{slug}")):
                text = cell(row, BY_NAME[column])
                mean, _, rest = text.partition(" ")
                interval = re.search(r"\[[^]]*\]", rest)
                assert got.startswith(mean), (got, text)
                if interval:
                    assert interval[0] in got
                assert ("(n.s.)" in got) == ("(n.s.)" in text), (got, text)
                checked += 1
        # every fixture model is a random-initialised twin
        assert lines[-1] == ("random-initialised twin: these numbers show the protocol runs, not what "
                             f"{row.model.removesuffix('-tiny')} does")
    assert checked == 4 * len(board.rows) == 40


def test_the_markdown_leads_with_the_verdicts(board):
    md = render(board, "markdown")
    sections = re.findall(r"^## (.*)$", md, re.M)
    assert sections[0] == "Verdict"
    verdict = md.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    for row in board.rows:
        for line in row_lines(row):
            assert f"  - {line}\n" in verdict
    # full runs first, then the limited ones under their caveat
    assert verdict.index("**llava15-tiny · textile**") < verdict.index("Limited runs") < verdict.index(
        "**blip2-tiny · textile (limited: ≤10/class)**")


def test_run_prints_its_table_with_the_marks_then_the_verdict():
    printed = run_table(RESULTS, "llava15-tiny", "textile")
    table, _, verdict = printed.partition("\nVerdict (")
    assert "## Verdict" not in table and "(n.s.)" in table and "| llava15-tiny |" in table
    row = next(r for r in build(collect(RESULTS)).rows if (r.model, r.task, r.limit) == ("llava15-tiny", "textile",
                                                                                          None))
    assert verdict.split("\n\n", 1)[1] == "\n".join(["llava15-tiny · textile"] + [f"  {x}" for x in row_lines(row)])
    assert row_lines(row)[0].startswith("FT-Proj: task gain +0.1000 [-0.3065, +0.5064] (n.s.), richness -0.0258")
