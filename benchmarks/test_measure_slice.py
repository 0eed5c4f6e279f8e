"""Class scoring at real width on CPU (``make bench``): prefix-shared vs one forward per class for derm's 23
classes on a slice of LLaVA-1.5-7B, its first 2 of 32 decoder layers (and 2 CLIP layers) at full width and
vocabulary, random weights, fp32, through ``plan --measure`` (``benchmark.plan.measuring.measure``); no trained
regime (minutes each at this size on CPU). Written to ``benchmarks/results/measure_slice.json``.

With 2 of 32 layers the LM head (32,064 x 4,096) is a larger share of each forward than at full depth, and the
prompt (576 image tokens + the question) dominates both methods, so the ratio here is a lower bound of the 7B
one: per image, one forward per class runs the prompt 23 times, prefix-shared once plus the answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.plan.measure import Settings
from benchmark.plan.measuring import measure

OUT = Path(__file__).resolve().parent / "results" / "measure_slice.json"


def test_scoring_ratio_on_the_real_width_slice(benchmark, tmp_path):
    def run():
        return measure("llava15", "derm", out=tmp_path / "slice.json", layers=2, device="cpu",
                       settings=Settings(steps=1, warmup=0, eval_images=1, regimes=()))[0]

    record = benchmark.pedantic(run, rounds=1, iterations=1)
    sc = record["scoring"]
    assert sc["same_predictions"], "the two scoring methods must give the same predictions"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"model": "llava15, first 2 of 32 decoder layers, random weights, fp32, CPU",
                               "scoring": sc, "memory_method": record["memory_method"]}, indent=2) + "\n")
    print(f"\nscoring at real width (2 layers, 23 classes): prefix-shared {sc['prefix_shared']['seconds']:.1f} s, "
          f"one forward per class {sc['one_forward_per_class']['seconds']:.1f} s: {sc['speedup']:.1f}x")
