"""Cost of the layer-wise analyses, as a multiple of one evaluation pass (loglik scoring of the same images).

Run with ``make bench``. On llava15-tiny with 24 train / 24 test real photos: one evaluation pass over the test
images is timed, then each analysis of one model state (hidden-state extraction included, shared by the analyses
that read it, as in ``analyze``). The ratios are stored in the benchmark's ``extra_info`` and printed.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from benchmark.analyses import AnalysisContext, AnalysisOptions
from benchmark.analyses.hidden import HiddenRequest, extract_hidden
from benchmark.conformance import MemoryStore, real_photos, samples_for
from benchmark.evaluate.loglik import EvalSet, evaluate_loglik
from benchmark.registry import Plugins

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


@pytest.fixture(scope="module")
def setup():
    reg = Plugins(autoload=False)
    images = real_photos(per_class=16)
    adapter = reg.adapters.get("llava15-tiny").factory()
    samples = samples_for(images)
    train, test = samples[0::2], samples[1::2]
    feats = adapter.vision_features(adapter.preprocess([im for im, _ in images]))
    stores = {"train": MemoryStore(feats[0::2]), "test": MemoryStore(feats[1::2])}
    data = SimpleNamespace(classes=CLASSES, spec=SimpleNamespace(domain=DOMAIN), splits={"train": train, "test": test})
    return reg, adapter, data, stores


def test_analysis_time_per_evaluation_pass(benchmark, setup, tmp_path):
    reg, adapter, data, stores = setup
    start = time.perf_counter()
    evaluate_loglik(adapter, EvalSet(stores["test"], data.splits["test"], CLASSES, DOMAIN, 0), progress=False)
    eval_s = time.perf_counter() - start
    options = AnalysisOptions(probe_max_epochs=20, knockout_max_images=len(data.splits["test"]))
    hidden_s = {"s": 0.0}
    cache = {}

    def hidden(split):
        if split not in cache:
            request = HiddenRequest("bench", split, {"regime": "zero-shot"}, 0, DOMAIN, CLASSES,
                                    tokens_per_image=options.tokens_per_image)
            cache[split], secs = extract_hidden(adapter, request, samples=data.splits[split], features=stores[split],
                                                cache_dir=tmp_path, batch_size=options.batch_size, progress=False)
            hidden_s["s"] += secs
        return cache[split]

    ctx = AnalysisContext(adapter=adapter, regime="zero-shot", seed=0, data=data, stores=stores, hidden=hidden,
                          options=options, progress=False)
    times = {}

    def all_analyses():
        for spec in reg.analyses:
            t = time.perf_counter()
            spec.run(ctx)
            times[spec.name] = time.perf_counter() - t

    benchmark.pedantic(all_analyses, rounds=1, iterations=1)
    benchmark.extra_info["evaluation_pass_s"] = eval_s
    benchmark.extra_info["hidden_extraction_s"] = hidden_s["s"]
    print(f"\none evaluation pass: {eval_s:.3f} s (llava15-tiny, {len(data.splits['test'])} test images, loglik)")
    print(f"hidden-state extraction (train + test, all layers, once per state): {hidden_s['s']:.3f} s = "
          f"{hidden_s['s'] / eval_s:.2f}x")
    for name, secs in times.items():
        benchmark.extra_info[f"{name}_x_eval"] = secs / eval_s
        print(f"{name:14s} {secs:7.3f} s = {secs / eval_s:6.2f}x one evaluation pass")
    total = sum(times.values())
    print(f"{'all six':14s} {total:7.3f} s = {total / eval_s:6.2f}x one evaluation pass")
