"""Two real processes on the same results folder and cache: no work done twice, no wrong provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

pytestmark = pytest.mark.stress  # two interpreters with torch: ~30 s of CPU, so `make fuzz`, not the default suite


def command(results: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "benchmark", "run", "--model", "llava15-tiny", "--task", "textile",
            "--max-per-class", "6", "--probe-max-epochs", "2", "--regimes", "zero-shot,ft-proj",
            "--checkpoint-every", "1", "--no-progress", "--results-dir", str(results), "--cache-dir", str(cache)]


def test_two_processes_share_the_work_without_duplicating_it(tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROJBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    # Both start while a third party holds the FT-Proj folder: each must leave it for later, not run it twice.
    ft = results / "llava15-tiny/textile@max6/ft-proj/seed0"
    ft.mkdir(parents=True)
    gate = FileLock(str(ft / ".lock"))
    gate.acquire()
    procs = [subprocess.Popen(command(results, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    try:
        # Wait until one process has finished zero-shot (the other waits or skips it), then let FT-Proj go.
        deadline = time.monotonic() + 240
        while not (results / "llava15-tiny/textile@max6/zero-shot/seed0/metrics.json").exists():
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no progress"
            time.sleep(0.2)
    finally:
        gate.release()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    logs = outs[0][0] + outs[1][0]
    assert logs.count("[run] zero-shot") == 1, logs
    assert logs.count("[run] ft-proj") == 1, logs
    assert logs.count("[wait] ft-proj") == 2, logs
    assert "finished by another process" in logs
    m = json.loads((ft / "metrics.json").read_text())
    assert m["training"]["resumed_from_step"] == 0, "never interrupted, so never resumed"
    features = [p for p in (cache / "features").iterdir() if p.is_dir()]
    assert len(features) == 2, "each split's features extracted once, into one cache entry"
