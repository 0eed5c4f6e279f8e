"""Coverage of the 95% macro-F1 interval, simulated (``make bench``), written to
``benchmarks/results/interval_coverage.json``.

The population and the trials are tests/coverage_sim.py's: 23 classes (DermNet's count) whose per-class accuracy
runs from 0.1 to 0.5, errors spread uniformly over the other classes, population macro-F1 known exactly; each
trial draws k test images per class, predicts them, and asks whether the interval holds the population value.
k = 4 (the small derm subsets) and k = 9 (PlantDoc's test images per class). The new method (stratified, widened
BCa, benchmark/evaluate/intervals.py) against the old one (percentile over unstratified test images). The
default suite runs a 300-trial version (tests/evaluate/test_intervals.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from coverage_sim import coverage  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "interval_coverage.json"


def test_interval_coverage(benchmark):
    def simulate():
        return [coverage(per_class=4, trials=2000, samples=2000, seed=1),
                coverage(per_class=9, trials=1000, samples=2000, seed=2)]

    results = benchmark.pedantic(simulate, rounds=1, iterations=1)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        print(f"\n{r['per_class']} test images per class, {r['trials']} trials: stratified BCa covers "
              f"{r['stratified_bca']:.3f}, unstratified percentile {r['unstratified_percentile']:.3f}")
    assert results[0]["stratified_bca"] >= 0.90 > results[0]["unstratified_percentile"]
