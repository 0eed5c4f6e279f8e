"""CPU time of every leaderboard format from 10,080 result folders: each under 10 s of CPU on 2 cores.

Run with ``make bench``; the figures go to ``benchmarks/results/leaderboard_cpu.json`` with the machine's load
average. Each format is the whole command as a user runs it, in a process of its own (interpreter start,
imports, reading and checking every folder, aggregating, rendering, writing): its user + system CPU time from
``getrusage(RUSAGE_CHILDREN)``. CPU time, not wall time, is the limit: on a shared machine the wall time also counts
the waiting (recorded beside it). The folders are tests/synthetic_results.py's (56 models x 10 tasks x 3 regimes x 6
seeds), sealed schema-2 records without predictions, so the leaderboard's check marks every row (its cost is
part of the figure).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic_results import write_results  # noqa: E402

LIMIT_CPU_S = 10.0
OUT = Path(__file__).resolve().parent / "results" / "leaderboard_cpu.json"
FORMATS = {
    "markdown": ["--format", "markdown", "--output", "{out}/board.md"],
    "csv": ["--format", "csv", "--output", "{out}/board.csv"],
    "json": ["--format", "json", "--output", "{out}/board.json"],
    "html": ["--format", "html", "--output", "{out}/site"],
    "png": ["--format", "csv", "--output", "{out}/plot.csv", "--plot", "{out}/plot.png"],
}
FIGURES: dict = {}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results10k")
    write_results(root, models=56, tasks=10, seeds=6, still=4)
    assert sum(1 for _ in root.rglob("metrics.json")) == 10_080
    # matplotlib builds its font cache on first use, once per machine: not the leaderboard's cost
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], check=True)
    yield root
    FIGURES["machine"] = {"logical_cpus": os.cpu_count(), "python": platform.python_version(),
                          "processor": platform.processor() or platform.machine()}
    OUT.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


def _cpu_of_child(argv: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-2000:]
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall, done.stderr


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_from_10k_folders_in_under_10_s_of_cpu(benchmark, results, tmp_path, fmt):
    argv = [sys.executable, "-m", "benchmark", "leaderboard", "--results", str(results),
            *[a.format(out=tmp_path) for a in FORMATS[fmt]]]
    load_before = os.getloadavg()[0]
    cpu, wall, err = benchmark.pedantic(_cpu_of_child, args=(argv,), rounds=1, iterations=1)
    FIGURES[fmt] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "load_1min_before": round(load_before, 2),
                    "load_1min_after": round(os.getloadavg()[0], 2), "folders": 10_080}
    benchmark.extra_info.update(FIGURES[fmt])
    print(f"\n{fmt}: {cpu:.1f} s CPU, {wall:.1f} s wall (load {load_before:.1f}) for 10,080 folders")
    assert "✗ model-000/task0/ft-e2e/seed0: numbers do not follow" in err   # the check ran on every run
    assert cpu < LIMIT_CPU_S
