"""SIGKILL fuzz of resuming: kill a tiny run at random moments, resume it, and require the metrics of a run that
was never interrupted, bit for bit.

``make fuzz`` (or ``python benchmarks/fuzz_resume.py --trials N --seed S``). Each trial runs the tiny protocol
(zero-shot, FT-Proj, FT-E2E; a resumable checkpoint after every optimizer step) into a fresh results folder and
cache, kills it with SIGKILL after a random delay, up to ``--kills`` times, each time restarting the same command,
then lets it finish and compares every run's metrics, probes and final loss with the reference. Exit code 1 and
the differing run on any mismatch or failed resume.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(root: Path) -> list[str]:
    return [sys.executable, "-m", "benchmark", "run", "--model", "llava15-tiny", "--task", "textile",
            "--max-per-class", "6", "--probe-max-epochs", "3", "--checkpoint-every", "1", "--no-progress",
            "--results-dir", str(root / "results"), "--cache-dir", str(root / "cache")]


def comparable(results: Path) -> dict:
    out = {}
    for p in sorted(results.rglob("metrics.json")):
        m = json.loads(p.read_text())
        out[str(p.relative_to(results).parent)] = {
            "metrics": m["metrics"], "probe": m["probe"], "final_loss": (m["training"] or {}).get("final_loss"),
            "optimizer_steps": (m["training"] or {}).get("optimizer_steps")}
    return out


def run_to_end(root: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command(root), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"run failed in {root}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kills", type=int, default=2, help="SIGKILLs per trial before it may finish (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times, to replay a failure")
    ap.add_argument("--keep", action="store_true", help="keep the trial folders (printed) for inspection")
    a = ap.parse_args(argv)
    if a.trials < 1 or a.kills < 1:
        ap.error("--trials and --kills must be at least 1")
    rng = random.Random(a.seed)
    env = {**os.environ, "PROJBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1"}
    base = Path(tempfile.mkdtemp(prefix="projbench-fuzz-"))
    ref = base / "reference"
    seconds = run_to_end(ref, env)
    want = comparable(ref / "results")
    print(f"reference: {len(want)} runs in {seconds:.1f} s")
    failures = 0
    for trial in range(a.trials):
        root = base / f"trial{trial:03d}"
        kills = []
        for _ in range(a.kills):
            delay = rng.uniform(0.5, seconds)
            proc = subprocess.Popen(command(root), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=delay)
                kills.append(f"finished before {delay:.1f}s")
                break
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills.append(f"killed at {delay:.1f}s")
        run_to_end(root, env)
        got = comparable(root / "results")
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        print(f"trial {trial}: {', '.join(kills)} -> " + ("identical" if not bad else f"DIFFERENT in {bad}"))
        failures += bool(bad)
        if not a.keep and not bad:
            shutil.rmtree(root)
    if not a.keep and not failures:
        shutil.rmtree(base)
    else:
        print(f"trial folders: {base}")
    print(f"{a.trials - failures}/{a.trials} trials resumed to identical metrics")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
