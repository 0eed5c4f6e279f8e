"""The leaderboard's cost of computing intervals from the runs' predictions (``make bench``).

The 10,080-folder benchmarks carry no predictions, so their intervals are the older method's and cost nothing.
Here 20 rows (2 models x 10 tasks) x 3 regimes x 3 seeds carry predictions.jsonl and probe_predictions.json on
a DermNet-sized test split (23 classes x 20 images, 3 probe seeds per feature set): every mean over seeds gets
the hierarchical bootstrap of benchmark/evaluate/intervals.py (11 per row). The per-row cost is printed and
bounded, and the same board without the predictions is timed beside it (the ratio: what the intervals cost).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic_results import write_results  # noqa: E402

from benchmark.cli import main as cli_main  # noqa: E402
from benchmark.storage.integrity import seal  # noqa: E402

CLASSES, PER_CLASS, PROBE_SEEDS = 23, 20, 3
ROWS = 20
LIMIT_PER_ROW_S = 3.0


def _with_predictions(root: Path) -> None:
    names = [f"class {i}" for i in range(CLASSES)]
    y = np.repeat(np.arange(CLASSES), PER_CLASS)
    uids = [f"img{i}" for i in range(y.size)]
    rng = np.random.default_rng(0)
    for m in sorted(root.rglob("metrics.json")):
        d = m.parent
        record = json.loads(m.read_text())
        record.update(schema_version=3, data={"classes": names})
        m.write_text(json.dumps(seal(record)))
        task = np.where(rng.random(y.size) < 0.4, y, rng.integers(0, CLASSES, y.size))
        (d / "predictions.jsonl").write_text("".join(
            json.dumps({"uid": u, "label": names[t], "prediction": names[p]}) + "\n"
            for u, t, p in zip(uids, y, task, strict=True)))
        post = np.where(rng.random((PROBE_SEEDS, y.size)) < 0.5, y, rng.integers(0, CLASSES, (PROBE_SEEDS, y.size)))
        probe = {"uids": uids, "post_projection": post.tolist()}
        if d.parent.name == "zero-shot":
            probe["pre_projection"] = post.tolist()
        (d / "probe_predictions.json").write_text(json.dumps(probe))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, Path]:
    plain = tmp_path_factory.mktemp("plain")
    write_results(plain, models=2, tasks=10, seeds=3)
    with_preds = tmp_path_factory.mktemp("predictions")
    write_results(with_preds, models=2, tasks=10, seeds=3)
    _with_predictions(with_preds)
    return plain, with_preds


def test_intervals_from_predictions(benchmark, results, tmp_path):
    plain, with_preds = results
    seconds = {}

    def board(root: Path, name: str) -> None:
        t = time.perf_counter()
        assert cli_main(["leaderboard", "--results", str(root), "--format", "markdown",
                         "--output", str(tmp_path / f"{name}.md")]) == 0
        seconds[name] = time.perf_counter() - t

    board(plain, "plain")
    benchmark.pedantic(board, args=(with_preds, "predictions"), rounds=1, iterations=1)
    text = (tmp_path / "predictions.md").read_text()
    assert "‡" in text and "]†" not in text   # every interval from the predictions, none by the older method
    per_row = (seconds["predictions"] - seconds["plain"]) / ROWS
    benchmark.extra_info.update(per_row_s=per_row, plain_s=seconds["plain"])
    print(f"\nintervals from predictions: {seconds['predictions']:.1f} s for {ROWS} rows "
          f"({per_row:.2f} s per row of 11 intervals); without predictions {seconds['plain']:.2f} s")
    assert per_row < LIMIT_PER_ROW_S
