"""Ratios measured side by side in one run, written to ``benchmarks/results/scale_ratios.json`` (``make bench``).

- vision-encoder forwards of a whole protocol run with the feature cache vs re-encoding at every use (counted:
  every feature row read from the cache would otherwise be one image through the vision encoder);
- class scoring of 23 classes: prefix-shared KV cache vs one forward per class vs one batched forward of all
  class continuations (same predictions asserted);
- probe throughput (training examples per second).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from benchmark.batching import IGNORE, collate
from benchmark.conformance import MemoryStore, real_photos
from benchmark.evaluation import class_answer_ids, score_batch
from benchmark.features import FeatureStore
from benchmark.probe import train_probe
from benchmark.prompt import build_question
from benchmark.protocol import ProbeConfig, RunConfig, Runner
from benchmark.registry import Plugins

OUT = Path(__file__).resolve().parent / "results" / "scale_ratios.json"
CLASSES23 = [f"skin condition number {i} with a name" if i % 3 else f"lesion {i}" for i in range(23)]


def _count_vision_forwards(tmp_path) -> dict:
    calls, rows = {"n": 0}, {"n": 0}
    real_get = FeatureStore.get

    def counting_get(self, indices):
        out = real_get(self, indices)
        rows["n"] += out.shape[0]
        return out

    FeatureStore.get = counting_get
    try:
        runner = Runner(RunConfig(model="llava15-tiny", task="textile", max_per_class=6, global_batch=8,
                                  probe=ProbeConfig(max_epochs=3), progress=False, results_dir=str(tmp_path / "r"),
                                  cache_dir=str(tmp_path / "c")), log=lambda *a, **k: None)
        real_load = runner.load_adapter

        def load_counting():
            adapter = real_load()
            adapter.vision_module().register_forward_hook(
                lambda mod, args, out: calls.__setitem__("n", calls["n"] + args[0].shape[0]))
            return adapter

        runner.load_adapter = load_counting
        runner.run()
    finally:
        FeatureStore.get = real_get
    return {"images_encoded_with_cache": calls["n"], "feature_rows_read": rows["n"],
            "ratio": rows["n"] / max(1, calls["n"]),
            "note": "each feature row read would be one image through the vision encoder without the cache"}


def _score_three_ways() -> dict:
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    images = real_photos(per_class=2)
    feats = adapter.vision_features(adapter.preprocess([im for im, _ in images]))
    store = MemoryStore(feats)
    questions = [build_question("skin diseases", CLASSES23, 0, f"img{i}") for i in range(len(images))]
    answers = class_answer_ids(adapter, CLASSES23)
    out = {}

    def timed(fn):
        start = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - start

    shared, out["prefix_shared_s"] = timed(lambda: torch.cat([score_batch(adapter, store.get([i]), [q], answers)
                                                              for i, q in enumerate(questions)]))

    @torch.no_grad()
    def full(i, q, classes):
        parts = [adapter.encode(q, c) for c in classes]
        batch = collate(parts, adapter.pad_token_id, with_answer=True)
        emb = adapter.project(store.get([i] * len(classes)))
        logits = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], emb).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        labels = batch["labels"][:, 1:]
        tok = logp.gather(2, labels.clamp(min=0)[..., None]).squeeze(-1) * (labels != IGNORE)
        return tok.sum(-1)

    per_class, out["one_forward_per_class_s"] = timed(lambda: torch.stack([
        torch.cat([full(i, q, [c]) for c in CLASSES23]) for i, q in enumerate(questions)]))
    batched, out["batched_full_forwards_s"] = timed(lambda: torch.stack([full(i, q, CLASSES23)
                                                                         for i, q in enumerate(questions)]))
    same = shared.argmax(-1).tolist() == per_class.argmax(-1).tolist() == batched.argmax(-1).tolist()
    assert same, "the three scoring methods must give the same predictions"
    out.update(images=len(questions), classes=len(CLASSES23), same_predictions=same,
               max_abs_logprob_diff=float(max((shared - per_class).abs().max(), (shared - batched).abs().max())),
               speedup_vs_per_class=out["one_forward_per_class_s"] / out["prefix_shared_s"],
               speedup_vs_batched=out["batched_full_forwards_s"] / out["prefix_shared_s"])
    return out


def _probe_throughput() -> dict:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 256, generator=g), torch.randint(0, 4, (512,), generator=g).tolist()
    uids = [f"u{i}" for i in range(512)]
    cfg = ProbeConfig(max_epochs=5, patience=100)
    start = time.perf_counter()
    res = train_probe(x, y, uids, x[:64], y[:64], 4, 0, cfg)
    seconds = time.perf_counter() - start
    return {"examples_per_s": res["n_train"] * res["epochs_run"] / seconds, "epochs": res["epochs_run"],
            "input_dim": 256}


def test_scale_ratios(benchmark, tmp_path):
    result = {"vision_forwards": _count_vision_forwards(tmp_path)}
    result["class_scoring"] = benchmark.pedantic(_score_three_ways, rounds=1, iterations=1)
    result["probe"] = _probe_throughput()
    result["two_vs_one_process_training"] = ("not measured here: see `make test-multiprocess` (equivalence); "
                                             "throughput on a shared 2-core CPU is not meaningful")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
