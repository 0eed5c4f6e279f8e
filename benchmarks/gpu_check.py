"""The prepared GPU check (``make gpu-check``): LLaVA-1.5-7B at real size on one GPU, random weights, nothing
fetched. Sized to finish within 8 minutes on one H200.

1. ``plan --measure`` for llava15 on derm: FT-Proj, full FT-E2E (checkpointed where the plan says so) and FT-E2E
   with LoRA, each a few optimizer steps at the plan's micro-batch after warm-up, and the scoring comparison
   (prefix-shared vs one forward per class, derm's 23 classes) at 7B;
2. one short FT-Proj ``run --model llava15 --model-path SKELETON`` on synthetic images (3 classes of noise
   images in a ``--task folder`` layout), from the random-init skeleton checkpoint step 1 wrote (its weights are
   initialised at load), into a scratch results folder that is deleted afterwards: random-init runs are never
   results;
3. one JSON and one Markdown report (``--out``, default ``benchmarks/results/gpu_check.{json,md}``).

``--cpu-smoke`` runs the same steps on the CPU with the tiny twin (seconds, for the test suite).
Usage on the GPU machine (after ``bash benchmarks/gpu_wheels.sh install``):
``python benchmarks/gpu_check.py --out $OUT/gpu_check``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "gpu_check"


def _measure(model: str, out: Path, *, cpu: bool, layers: int | None) -> tuple[dict, str]:
    from benchmark.plan.measure import Settings
    from benchmark.plan.measure_report import render_measured
    from benchmark.plan.measuring import measure

    # Full FT-E2E with activation checkpointing (the plan's micro-batch that way), as a 7B run on one GPU trains.
    settings = Settings(steps=2 if cpu else 3, warmup=1, micro_batch=1 if cpu else None,
                        eval_images=1 if cpu else 4, checkpointed=("ft-e2e",))
    record, _ = measure(model, "derm", out=out, layers=layers, device="cpu" if cpu else None, settings=settings)
    return record, render_measured(record)


def _synthetic_folder(root: Path, *, size: int, per_class: int = 8) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png``: seeded noise, 3 classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c in ("alpha", "beta", "gamma"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _short_run(model_path: Path, scratch: Path, *, size: int, cpu: bool) -> dict:
    """One FT-Proj run through the command line on synthetic images; its training record and wall time."""
    data = _synthetic_folder(scratch / "data", size=size)
    results = scratch / "results"
    cmd = [sys.executable, "-m", "benchmark", "run", "--model", "llava15", "--model-path", str(model_path),
           "--task", "folder", "--data-dir", str(data), "--regimes", "zero-shot,ft-proj", "--global-batch", "8",
           "--micro-batch", "4", "--probe-max-epochs", "2", "--no-control-probe", "--no-progress",
           "--results-dir", str(results), "--cache-dir", str(scratch / "cache"), "--checkpoint-every", "0"]
    if cpu:
        cmd += ["--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        return {"ok": False, "wall_seconds": wall, "stderr_tail": done.stderr[-2000:]}
    from benchmark.leaderboard.collect import collect

    record = json.loads(next(results.rglob("ft-proj/seed0/metrics.json")).read_text())
    training = record.get("training") or {}
    board = collect(results)  # every record of a marked checkpoint is refused, with the reason
    return {"ok": True, "wall_seconds": wall, "command": " ".join(cmd[1:]),
            "random_init_recorded": bool((record.get("revision") or {}).get("random_init")),
            "leaderboard_runs": len(board.runs), "leaderboard_refused": len(board.skipped),
            "training": {k: training.get(k) for k in ("optimizer_steps", "micro_batch", "seconds",
                                                      "examples_per_second", "final_loss")}}


def _marked_twin(scratch: Path) -> Path:
    """A copy of the tiny twin's checkpoint carrying the random-init mark, as the skeleton on a GPU does."""
    from benchmark.registry import Plugins
    from benchmark.storage.random_init import mark_random_init

    twin = scratch / "twin-skeleton"
    shutil.copytree(Plugins(autoload=False).adapters.get("llava15-tiny").factory.folder(), twin)
    mark_random_init(twin, "gpu_check --cpu-smoke: the tiny twin standing in for the skeleton")
    return twin


def _markdown(report: dict, table: str) -> str:
    m = report["measure"]
    lines = [f"# GPU check: {m['model']} on {m['task']}, {m['device']['name']} ({m['dtype']}, random-init)", "",
             f"machine: {report['machine']}; torch {m['torch']}; attention {m['attention']}; "
             f"total {report['seconds']:.0f} s", "", "```", table, "```", ""]
    run = report["run"]
    lines.append(f"`run --model-path` (FT-Proj, synthetic images): {'ok' if run['ok'] else 'FAILED'}, "
                 f"{run['wall_seconds']:.0f} s wall" + (f"; training {run['training']}" if run["ok"] else ""))
    if run["ok"]:
        lines.append(f"its records: random_init {'recorded' if run['random_init_recorded'] else 'NOT RECORDED'}; the "
                     f"leaderboard kept {run['leaderboard_runs']} and refused {run['leaderboard_refused']}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report path without suffix (.json and .md)")
    ap.add_argument("--cpu-smoke", action="store_true", help="the same steps on CPU with the tiny twin")
    a = ap.parse_args(argv)
    if not a.cpu_smoke:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here; use --cpu-smoke to try the steps on the CPU.", file=sys.stderr)
            return 2
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="projbench-gpu-check-"))
    try:
        model = "llava15-tiny" if a.cpu_smoke else "llava15"
        record, table = _measure(model, scratch / "measure.json", cpu=a.cpu_smoke, layers=None)
        if a.cpu_smoke:
            skeleton = _marked_twin(scratch)
        else:
            skeleton = scratch / "measure-skeleton" / "llava15"
        run = _short_run(skeleton, scratch, size=56 if a.cpu_smoke else 336, cpu=a.cpu_smoke)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"kind": "plan-measure", "random_init": True, "seconds": time.perf_counter() - start,
              "machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "measure": record, "run": run}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    a.out.with_suffix(".md").write_text(_markdown(report, table))
    print(_markdown(report, table))
    return 0 if run["ok"] and run.get("random_init_recorded") and not run.get("leaderboard_runs") else 1


if __name__ == "__main__":
    sys.exit(main())
