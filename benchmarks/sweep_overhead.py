"""SLURM sweep time against the same cells run here one after another (the target: at most 1.5x).

``python benchmarks/sweep_overhead.py`` (as root, with ``slurm-wlm`` and ``munge`` installed) starts the one-node
test cluster of tests/sweep/slurm_cluster.py, runs the test's grid (2 tiny twins x textile x 2 seeds) with
``sweep --executor local``, then the same grid into a fresh results folder with ``sweep --executor slurm`` (jobs
sized to run one at a time, as the local sweep does), polling every second until both cells are finished, and
prints both wall times and their ratio. The feature cache is warmed by the local sweep and shared, so both sweeps
do the same work. Exit code 1 if the ratio exceeds ``--max-ratio``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sweep"))

import slurm_cluster  # noqa: E402

from benchmark.cli import main  # noqa: E402
from benchmark.sweep import manifest  # noqa: E402

RUN = ["--seeds", "0,1", "--max-per-class", "2", "--probe-max-epochs", "1", "--probe-seeds", "1",
       "--no-control-probe", "--regimes", "zero-shot", "--no-progress"]
GRID = ["--models", "llava15-tiny,paligemma-tiny", "--tasks", "textile"]


def finished(results: Path) -> bool:
    """Every cell of the manifest has both seeds' metrics.json (written last by a run)."""
    cells = manifest.read(results)["cells"]
    return bool(cells) and all(len(list((results / c["name"]).glob("zero-shot/seed*/metrics.json"))) == 2
                               for c in cells)


def timed_sweep(results: Path, *extra: str) -> float:
    t = time.perf_counter()
    assert main(["sweep", *GRID, *RUN, "--results-dir", str(results), *extra]) == 0
    return time.perf_counter() - t


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-ratio", type=float, default=1.5)
    a = ap.parse_args(argv)
    why = slurm_cluster.missing()
    if why:
        print(why, file=sys.stderr)
        return 2
    os.environ["OMP_NUM_THREADS"] = "1"
    root = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    os.environ.setdefault("PROJBENCH_CACHE", str(root / "cache"))
    timed_sweep(root / "warm", "--executor", "local")  # builds the tiny twins and the feature cache once
    with slurm_cluster.cluster() as env:
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]
        local_s = timed_sweep(root / "local", "--executor", "local")
        t = time.perf_counter()
        timed_sweep(root / "slurm", "--executor", "slurm", "--slurm-mem-gb", "12")
        while not finished(root / "slurm"):
            time.sleep(1)
        slurm_s = time.perf_counter() - t
    ratio = slurm_s / local_s
    print(f"local, one after another: {local_s:.1f} s; SLURM: {slurm_s:.1f} s; ratio {ratio:.2f} "
          f"(target <= {a.max_ratio})")
    return 0 if ratio <= a.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main_())
