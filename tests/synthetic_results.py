"""Write synthetic result folders (metrics.json as the protocol writes them) with known scores.

For leaderboard tests and benchmarks that need more runs than the real fixtures have. Returns the scores it
wrote, so a test can compute what the leaderboard must show without the leaderboard's code.
"""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

from benchmark.storage.integrity import seal

FAMILIES = ("mlp", "linear", "q-former", "pixel-shuffle", "patch-merger", "resampler", "perceiver", "c-abstractor")
REGIMES = ("zero-shot", "ft-proj", "ft-e2e")


def write_results(root: Path, models: int, tasks: int, seeds: int = 1, still: int = 0, seed: int = 0) -> dict:
    """``models`` x ``tasks`` x 3 regimes x ``seeds`` run folders under ``root``.

    Model i has projector family FAMILIES[i % 8]. The first ``still`` models of each task do not change at all
    (fine-tuned scores = zero-shot), so their points coincide at the origin: the hard case for labels.
    Returns {(model, task, regime, seed): (macro_f1, probe_post_macro_f1)}.
    """
    rng = random.Random(seed)
    scores = {}
    for i in range(models):
        model = f"model-{i:03d}"
        for t in range(tasks):
            task = f"task{t}"
            for s in range(seeds):
                f1_zs, probe_zs = round(rng.uniform(0.05, 0.6), 4), round(rng.uniform(0.3, 0.8), 4)
                for regime in REGIMES:
                    if regime == "zero-shot" or i < still:
                        f1, probe = f1_zs, probe_zs
                    else:
                        f1 = round(min(1.0, f1_zs + rng.uniform(-0.05, 0.4)), 4)
                        probe = round(max(0.0, probe_zs + rng.uniform(-0.25, 0.1)), 4)
                    scores[(model, task, regime, s)] = (f1, probe)
                    _write(root, model, task, regime, s, FAMILIES[i % len(FAMILIES)], f1, probe)
    return scores


def _write(root: Path, model, task, regime, seed, family, f1, probe) -> None:
    d = root / model / task / regime / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    m = {
        "schema_version": 2, "model": model, "task": task, "regime": regime, "lora": False, "seed": seed,
        "limit": None, "projector_family": family, "task_version": "1.0", "task_fingerprint": f"fp-{task}",
        "eval_mode": "loglik", "checkpoint": f"org/{model}", "config_hash": f"{zlib.crc32(f'{model}/{task}/{regime}'.encode()):08x}",
        "projbench_version": "0.1.0",
        "provenance": {"git_commit": "0" * 40, "python": "3.11.7", "versions": {"torch": "2.14.1"}},
        "metrics": {"macro_f1": f1},
        "probe": {"post_projection": {"macro_f1": probe}},
    }
    if regime == "zero-shot":
        m["probe"]["pre_projection"] = {"macro_f1": round(min(1.0, probe + 0.05), 4)}
    (d / "metrics.json").write_text(json.dumps(seal(m)))   # sealed, as projbench writes every schema-2 file


def copy_runs_as(source_model: Path, root: Path, name: str) -> None:
    """Copy every ``metrics.json`` under one model's folder to ``root/<name>/...``, with ``model`` set to ``name``:
    a model folder named as a hostile user might name it, holding real runs."""
    for p in source_model.rglob("metrics.json"):
        dest = root / name / p.relative_to(source_model)
        dest.parent.mkdir(parents=True)
        m = json.loads(p.read_text())
        m["model"] = name
        dest.write_text(json.dumps(seal(m) if m.get("schema_version", 1) >= 2 else m))
