"""Several processes (torchrun, gloo on CPU) give the results of one process at the same global batch.

One 2-process torchrun of the whole protocol (zero-shot, FT-Proj, FT-E2E) on llava15-tiny / textile is compared
with a 1-process run in this process: same fine-tuned projector (fp32 tolerance), same predictions and metrics.
The world size is asserted from what the run itself recorded (a plain Accelerator without CUDA would silently give
two independent 1-process runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmark.distributed import Context
from benchmark.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner

ARGS = ["--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs", "3",
        "--global-batch", "8", "--micro-batch", "2", "--no-progress"]


def torchrun(nproc: int, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "benchmark", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    two = tmp_path_factory.mktemp("two")
    proc = torchrun(2, ["run", *ARGS, "--results-dir", str(two)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = tmp_path_factory.mktemp("one")
    Runner(RunConfig(model="llava15-tiny", task="textile", max_per_class=6, probe=ProbeConfig(max_epochs=3),
                     global_batch=8, micro_batch=2, progress=False, results_dir=str(one))).run()
    return two, one


def run_folder(root: Path, regime: str) -> Path:
    return root / "llava15-tiny" / "textile@max6" / regime / "seed0"


@pytest.mark.multiprocess
@pytest.mark.parametrize("regime", ["zero-shot", "ft-proj", "ft-e2e"])
def test_two_processes_equal_one(two_and_one, regime):
    two, one = (json.loads((run_folder(r, regime) / "metrics.json").read_text()) for r in two_and_one)
    assert two["processes"] == 2 and two["distributed_backend"] == "MULTI_CPU"
    assert one["processes"] == 1
    if regime != "zero-shot":
        assert two["training"]["processes"] == 2 and two["training"]["accumulation_steps"] == 2
        assert one["training"]["accumulation_steps"] == 4
        assert two["training"]["optimizer_steps"] == one["training"]["optimizer_steps"] == 3
        assert two["training"]["final_loss"] == pytest.approx(one["training"]["final_loss"], rel=1e-5)
        p2, p1 = (load_file(str(run_folder(r, regime) / "projector.safetensors")) for r in two_and_one)
        assert p2.keys() == p1.keys()
        for k in p1:
            torch.testing.assert_close(p2[k], p1[k], rtol=1e-5, atol=1e-6)
    preds = [(run_folder(r, regime) / "predictions.jsonl").read_text().splitlines() for r in two_and_one]
    assert [json.loads(x)["prediction"] for x in preds[0]] == [json.loads(x)["prediction"] for x in preds[1]]
    assert len(preds[0]) == two["data"]["n_test"] == 18
    assert two["metrics"]["macro_f1"] == one["metrics"]["macro_f1"]
    assert two["metrics"]["confusion_matrix"] == one["metrics"]["confusion_matrix"]
    for name in one["probe"]:
        assert two["probe"][name]["macro_f1"] == one["probe"][name]["macro_f1"], name


def test_shares_cover_the_work_in_rank_order():
    for n in (0, 1, 5, 18):
        for world in (1, 2, 3):
            blocks = [Context(rank=r, world_size=world).share(n) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
