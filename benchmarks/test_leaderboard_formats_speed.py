"""The leaderboard at scale: Markdown, CSV and JSON from 10,080 result folders, each in under 30 s.

Run with ``make bench``. The folders are the synthetic metrics.json files of tests/synthetic_results.py (56 models
x 10 tasks x 3 regimes x 6 seeds); a few hostile files (deeply nested, oversized, out-of-range scores) are mixed
in and must be skipped with their reason, not crash or slow the command. The HTML site and the plot have their
own benchmarks (test_leaderboard_speed.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic_results import write_results  # noqa: E402

from benchmark.cli import main as cli_main  # noqa: E402
from benchmark.storage.integrity import seal  # noqa: E402

LIMIT_S = 30.0
HOSTILE = {"nested": "[" * 200_000 + "]" * 200_000, "huge": None, "range": None}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results10k")
    write_results(root, models=56, tasks=10, seeds=6, still=4)
    base = json.loads((root / "model-000/task0/zero-shot/seed0/metrics.json").read_text())
    base.pop("_sha256")   # sealed again below, as an editor would
    for name in HOSTILE:
        d = root / f"hostile-{name}/task0/zero-shot/seed0"
        d.mkdir(parents=True)
        if name == "nested":
            text = HOSTILE[name]
        elif name == "huge":
            text = json.dumps({**base, "model": f"hostile-{name}", "padding": "x" * (70 * 1024 * 1024)})
        else:
            text = json.dumps(seal({**base, "model": f"hostile-{name}", "metrics": {**base["metrics"], "macro_f1": 7.5}}))
        (d / "metrics.json").write_text(text)
    return root


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_format_from_10k_result_folders(benchmark, results, tmp_path, capsys, fmt):
    out, cpu = tmp_path / f"board.{fmt}", {}

    def run():
        t = time.process_time()
        rc = cli_main(["leaderboard", "--results", str(results), "--format", fmt, "--output", str(out)])
        cpu["s"] = time.process_time() - t
        return rc

    assert benchmark.pedantic(run, rounds=1, iterations=1) == 0
    err = capsys.readouterr().err
    assert "hostile-nested/task0/zero-shot/seed0/metrics.json: JSON nested too deeply" in err
    assert "hostile-huge/task0/zero-shot/seed0/metrics.json: 73," in err and "larger than" in err
    assert "hostile-range/task0/zero-shot/seed0/metrics.json: field 'metrics.macro_f1' is 7.5, outside [0, 1]" in err
    benchmark.extra_info["cpu_s"] = cpu["s"]
    print(f"\n{fmt}: {benchmark.stats.stats.max:.1f} s wall, {cpu['s']:.1f} s CPU for 10,083 folders")
    assert benchmark.stats.stats.max < LIMIT_S
