"""The PNG plot stays readable: small multiples per task, numbered points whose labels never overlap.

Label boxes are measured from the matplotlib renderer after drawing, and point positions come from the scores
the synthetic results were written with (tests/synthetic_results.py), not from the plot's own bookkeeping.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import pytest
from synthetic_results import write_results

from benchmark.leaderboard.collect import collect
from benchmark.leaderboard.plot import LABEL_GID, MARKER_SIZE, figure
from benchmark.leaderboard.table import build

RESULTS = Path(__file__).parents[1] / "fixtures" / "results"


def drawn(board):
    from matplotlib.text import Text

    fig = figure(board)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = {}
    for ax in fig.axes:
        # Text.get_window_extent: the number's own box (an Annotation's would include its leader line)
        labels = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts if t.get_gid() == LABEL_GID]
        panels[ax.get_title()] = (ax, labels)
    return fig, renderer, panels


def assert_readable(panels, renderer, expected_points: dict[str, list[tuple[float, float]]]):
    for title, (ax, labels) in panels.items():
        frame = ax.get_window_extent(renderer)
        for (ta, a), (tb, b) in itertools.combinations(labels, 2):
            overlap = min(a.x1, b.x1) - max(a.x0, b.x0) > 0 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0
            assert not overlap, f"{title}: labels {ta!r} and {tb!r} overlap"
        for text, box in labels:
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                f"{title}: label {text!r} outside its panel"
        # no label covers a marker (markers at the known data points, half a marker size in pixels)
        r = MARKER_SIZE / 2 * ax.figure.dpi / 72
        for x, y in expected_points[title]:
            px, py = ax.transData.transform((x, y))
            for text, box in labels:
                hit = box.x0 < px + r and box.x1 > px - r and box.y0 < py + r and box.y1 > py - r
                assert not hit, f"{title}: label {text!r} covers the marker at ({x}, {y})"


def expected_points(scores: dict) -> dict[str, list[tuple[float, float]]]:
    out = {}
    for (model, task, regime, seed) in scores:
        if regime == "zero-shot" or seed != 0:
            continue
        seeds = sorted(s for (m, t, g, s) in scores if (m, t, g) == (model, task, regime))
        gain = statistics.mean(scores[(model, task, regime, s)][0] - scores[(model, task, "zero-shot", s)][0]
                               for s in seeds)
        rich = statistics.mean(scores[(model, task, regime, s)][1] - scores[(model, task, "zero-shot", s)][1]
                               for s in seeds)
        out.setdefault(task, []).append((gain, rich))
    return out


@pytest.fixture(scope="module")
def eighty(tmp_path_factory):
    """8 projector families x 5 tasks x 2 fine-tuned regimes = 80 points; 3 models per task never change."""
    root = tmp_path_factory.mktemp("eighty")
    scores = write_results(root, models=8, tasks=5, seeds=1, still=3)
    return build(collect(root)), scores


def test_eighty_points_all_numbered_without_overlaps(eighty):
    board, scores = eighty
    fig, renderer, panels = drawn(board)
    want = expected_points(scores)
    assert sorted(panels) == sorted(want) == [f"task{t}" for t in range(5)]  # one panel per task
    assert sum(len(v) for v in want.values()) == 80
    assert_readable(panels, renderer, want)
    # every point is numbered: each panel's labels name every model twice (FT-Proj and FT-E2E), coinciding
    # points of one regime sharing a label "1,2,3"
    for title, (_, labels) in panels.items():
        numbers = sorted(int(n) for text, _ in labels for n in text.split(","))
        assert numbers == sorted(list(range(1, 9)) * 2), title
    # the key maps numbers to models and families, in order
    key = [t.get_text() for t in fig.texts if t.get_text()[:1].isdigit()]
    assert key[0] == "1  model-000 (mlp)" and key[2] == "3  model-002 (q-former)" and len(key) == 8


def test_fixture_plot_is_readable():
    board = build(collect(RESULTS))
    scores = {}
    for p in RESULTS.glob("*/*/*/seed*/metrics.json"):
        model, task_dir, regime, seed = p.relative_to(RESULTS).parts[:4]
        if regime == "baselines":  # baseline runs have no regime scores to plot
            continue
        m = json.loads(p.read_text())
        scores[(model, task_dir, regime, int(seed[4:]))] = (m["metrics"]["macro_f1"],
                                                             m["probe"]["post_projection"]["macro_f1"])
    fig, renderer, panels = drawn(board)
    titles = {"textile": "textile", "textile@max10": "textile (limited: ≤10/class)",
              "digits@max10": "digits (limited: ≤10/class)"}
    want = {titles[k]: v for k, v in expected_points(
        {(m, t, "ft-e2e" if g == "ft-e2e-lora" else g, s): v for (m, t, g, s), v in scores.items()}).items()}
    assert sorted(panels) == sorted(want)
    assert_readable(panels, renderer, want)
    assert sum(len(text.split(",")) for _, labels in panels.values() for text, _ in labels) == 20
