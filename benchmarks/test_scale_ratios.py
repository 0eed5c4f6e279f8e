"""Ratios measured side by side in one run, written to ``benchmarks/results/scale_ratios.json`` (``make bench``).

- vision-encoder forwards of a whole protocol run with the feature cache vs re-encoding at every use (counted:
  every feature row read from the cache would otherwise be one image through the vision encoder);
- class scoring of 23 classes: prefix-shared KV cache vs one forward per class vs one batched forward of all
  class continuations (same predictions asserted);
- probe throughput (training examples per second);
- training throughput of 2 processes (``torchrun``, gloo, one thread each) vs 1 process (all cores as threads, and
  one thread) at the same global batch, from the training loop's own clock (``metrics.json`` ``training.seconds``:
  no process start, model load, feature extraction or evaluation), with the machine facts, and a check that the
  runs trained the same projector (equal work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from benchmark.conformance import MemoryStore, real_photos
from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.probe import train_probe
from benchmark.evaluate.prompt import build_question
from benchmark.protocol import ProbeConfig, RunConfig, Runner
from benchmark.registry import Plugins
from benchmark.storage.features import FeatureStore

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
    cfg = ProbeConfig(max_epochs=5, patience=100, seeds=1)
    start = time.perf_counter()
    res = train_probe(x, y, uids_train=uids, x_test=x[:64], y_test=y[:64], num_classes=4, seed=0, cfg=cfg)
    seconds = time.perf_counter() - start
    epochs = res["per_seed"][0]["epochs_run"]
    return {"examples_per_s": res["n_train"] * epochs / seconds, "epochs": epochs, "input_dim": 256}


# llava15-tiny on textile, 32 images per class (96 training images) for 10 epochs: 60 optimizer steps of the global
# batch 16 per regime, in micro-batches of 8 (1 process: 2 accumulation steps; 2 processes: 1 each). No
# mid-training checkpoints (their writes are not training) and the cheapest evaluation and probes.
TRAIN_ARGS = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "32", "--epochs", "10",
              "--regimes", "ft-proj,ft-e2e", "--global-batch", "16", "--micro-batch", "8", "--checkpoint-every", "0",
              "--probe-max-epochs", "1", "--no-control-probe", "--no-progress"]
ROUNDS = 2  # each setup runs this often, interleaved; the fastest run of each counts (the box is shared)


def _cpu_facts() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), None) if Path("/proc/cpuinfo").exists() else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"logical_cpus": os.cpu_count(), "cpus_usable_by_this_process": usable, "cpu_model": model,
            "torch": torch.__version__}


def _train_run(out: Path, cache: Path, processes: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, "-m", "benchmark", *TRAIN_ARGS, "--results-dir", str(out), "--cache-dir", str(cache)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = {"wall_s": wall, "load_average_1min_before": load_before, "regimes": {}}
    for regime in ("ft-proj", "ft-e2e"):
        folder = out / "llava15-tiny" / "textile@max32" / regime / "seed0"
        m = json.loads((folder / "metrics.json").read_text())
        t = m["training"]
        assert m["processes"] == t["processes"] == processes  # a silent fall-back to 1 process would be refused
        run["regimes"][regime] = {
            "train_seconds": t["seconds"], "examples": t["optimizer_steps"] * t["global_batch"],
            "examples_per_s": t["examples_per_second"], "cpu_seconds_all_processes": t["cpu_seconds_all_processes"],
            "cpu_ms_per_example": 1000 * t["cpu_seconds_all_processes"] / (t["optimizer_steps"] * t["global_batch"]),
            "micro_batch": t["micro_batch"], "accumulation_steps": t["accumulation_steps"],
            "final_loss": t["final_loss"], "projector": load_file(str(folder / "projector.safetensors"))}
    return run


def _two_vs_one_process_training(tmp_path) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    setups = {"1_process_x_all_cores": (1, cores), "1_process_x_1_thread": (1, 1), "2_processes_x_1_thread": (2, 1)}
    cache = tmp_path / "cache"
    runs = {name: [] for name in setups}
    for r in range(ROUNDS):
        for name, (processes, threads) in setups.items():
            runs[name].append(_train_run(tmp_path / f"{name}-{r}", cache, processes, threads))
    out = {"command": "python -m benchmark " + " ".join(TRAIN_ARGS), "rounds": ROUNDS,
           "timing": "training.seconds of metrics.json: the training loop only, fastest of the rounds; "
                     "cpu_seconds_all_processes: CPU time of all threads of all processes in that loop",
           "setups": {}}
    reference = runs["1_process_x_all_cores"][0]["regimes"]
    for name, (processes, threads) in setups.items():
        entry = {"processes": processes, "threads_per_process": threads, "regimes": {}}
        for regime in ("ft-proj", "ft-e2e"):
            best = min((run["regimes"][regime] for run in runs[name]), key=lambda x: x["train_seconds"])
            # Equal work: every run trains the projector of the 1-process run (fp32 tolerance, as the tests).
            ref = reference[regime]["projector"]
            diff = max(float((run["regimes"][regime]["projector"][k] - ref[k]).abs().max())
                       for run in runs[name] for k in ref)
            same = all(torch.allclose(run["regimes"][regime]["projector"][k], ref[k], rtol=1e-5, atol=1e-6)
                       for run in runs[name] for k in ref)
            entry["regimes"][regime] = {k: v for k, v in best.items() if k != "projector"}
            entry["regimes"][regime].update(same_projector_as_1_process=same, max_abs_projector_diff=diff)
            assert same, f"{name} {regime}: a different projector than the 1-process run (max diff {diff:.2e})"
            entry["regimes"][regime]["all_rounds_s"] = [run["regimes"][regime]["train_seconds"] for run in runs[name]]
        entry["wall_s_per_round"] = [run["wall_s"] for run in runs[name]]
        entry["load_average_1min_before"] = [run["load_average_1min_before"] for run in runs[name]]
        out["setups"][name] = entry
    s = out["setups"]
    out["ratios"] = {regime: {
        "2_processes_vs_1_process_all_cores": s["2_processes_x_1_thread"]["regimes"][regime]["examples_per_s"]
        / s["1_process_x_all_cores"]["regimes"][regime]["examples_per_s"],
        "2_processes_vs_1_process_1_thread": s["2_processes_x_1_thread"]["regimes"][regime]["examples_per_s"]
        / s["1_process_x_1_thread"]["regimes"][regime]["examples_per_s"]} for regime in ("ft-proj", "ft-e2e")}
    return out


def test_scale_ratios(benchmark, tmp_path):
    # The timings below depend on what else runs on the machine: record its load and the threads torch uses here.
    result = {"machine": {**_cpu_facts(), "torch_threads_in_this_process": torch.get_num_threads(),
                          "load_average_1min_at_start": os.getloadavg()[0]}}
    result["vision_forwards"] = _count_vision_forwards(tmp_path)
    result["class_scoring"] = benchmark.pedantic(_score_three_ways, rounds=1, iterations=1)
    result["probe"] = _probe_throughput()
    result["two_vs_one_process_training"] = _two_vs_one_process_training(tmp_path)
    result["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
