"""Several processes (torchrun, gloo on CPU) give the results of one process at the same global batch.

One 2-process torchrun of the whole protocol (zero-shot, FT-Proj, FT-E2E) on llava15-tiny / textile is compared
with a 1-process run in this process: same fine-tuned projector (fp32 tolerance), same predictions and metrics.
The world size is asserted from what the run itself recorded (a plain Accelerator without CUDA would silently give
two independent 1-process runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmark import train_state
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


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp2")
    proc = torchrun(2, ["run", *ARGS, "--regimes", "ft-e2e", "--engine", "fsdp2", "--results-dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.multiprocess
def test_sharded_ft_e2e_equals_one_process(sharded, two_and_one):
    """FT-E2E with PyTorch FSDP2 (fully_shard over gloo): each rank holds half the trained weights."""
    got = json.loads((run_folder(sharded, "ft-e2e") / "metrics.json").read_text())
    want = json.loads((run_folder(two_and_one[1], "ft-e2e") / "metrics.json").read_text())
    assert got["processes"] == 2 and got["training"]["engine"] == "fsdp2"
    assert got["training"]["trained_weights_held_by_rank0"] == pytest.approx(0.5, abs=0.02)
    assert got["training"]["final_loss"] == pytest.approx(want["training"]["final_loss"], rel=1e-5)
    p2, p1 = (load_file(str(run_folder(r, "ft-e2e") / "projector.safetensors")) for r in (sharded, two_and_one[1]))
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], rtol=1e-5, atol=1e-6)
    assert got["metrics"]["macro_f1"] == want["metrics"]["macro_f1"]
    assert got["metrics"]["confusion_matrix"] == want["metrics"]["confusion_matrix"]


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


def kill_when(nproc: int, args: list[str], ready, timeout: float = 300) -> str:
    """Start a torchrun job and SIGKILL its whole process group as soon as ``ready()`` holds; what was seen then."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "benchmark", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            seen = ready()
            if seen or proc.poll() is not None:
                return seen or "finished before the kill point"
            time.sleep(0.02)
        raise AssertionError("the kill point was never reached")
    finally:
        # torchrun starts each worker in a session of its own: kill the workers too, as a job scheduler would.
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            launcher = psutil.Process(proc.pid)
            for p in [*launcher.children(recursive=True), launcher]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.multiprocess
def test_a_killed_two_process_run_resumes_to_the_one_process_results(tmp_path, two_and_one):
    """Kill a 2-process job in FT-Proj (at its first saved training state, or once its training is saved and it
    evaluates), run the same command again: every regime ends with the uninterrupted 1-process run's numbers."""
    out = tmp_path / "killed"
    ft_proj = run_folder(out, "ft-proj")

    def ready():
        if (ft_proj / "train_state.json").exists():
            return "training state"  # mid-training: resumes from the saved step
        return "trained" if (ft_proj / "training.json").exists() else ""  # evaluating: reuses the checkpoint

    seen = kill_when(2, ["run", *ARGS, "--results-dir", str(out), "--checkpoint-every", "1"], ready)
    assert seen in ("training state", "trained"), seen
    assert not (ft_proj / "metrics.json").exists()
    proc = torchrun(2, ["run", *ARGS, "--results-dir", str(out), "--checkpoint-every", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for regime in ("zero-shot", "ft-proj", "ft-e2e"):
        got = json.loads((run_folder(out, regime) / "metrics.json").read_text())
        want = json.loads((run_folder(two_and_one[1], regime) / "metrics.json").read_text())
        assert got["processes"] == 2, regime
        assert got["metrics"]["macro_f1"] == want["metrics"]["macro_f1"], regime
        assert got["metrics"]["confusion_matrix"] == want["metrics"]["confusion_matrix"], regime
        for name in want["probe"]:
            assert got["probe"][name]["macro_f1"] == want["probe"][name]["macro_f1"], (regime, name)
        if regime == "ft-proj" and seen == "training state":
            assert got["training"]["resumed_from_step"] >= 1
        if regime != "zero-shot":
            assert got["training"]["final_loss"] == pytest.approx(want["training"]["final_loss"], rel=1e-5)
            p2, p1 = (load_file(str(run_folder(r, regime) / "projector.safetensors")) for r in (out, two_and_one[1]))
            for k in p1:
                torch.testing.assert_close(p2[k], p1[k], rtol=1e-5, atol=1e-6)


@pytest.mark.multiprocess
def test_a_killed_sharded_run_resumes_to_the_one_process_results(tmp_path, two_and_one):
    """Kill a 2-process FSDP2 FT-E2E job (workers included) at its first saved training state and run the same
    command again: it resumes from that state and ends with the uninterrupted 1-process run's trained weights and
    numbers. The state holds whole tensors in one process's layout, so one process resumes it as well."""
    out = tmp_path / "killed"
    d = run_folder(out, "ft-e2e")
    args = ["run", *ARGS, "--regimes", "ft-e2e", "--engine", "fsdp2", "--checkpoint-every", "1",
            "--results-dir", str(out)]
    seen = kill_when(2, args, lambda: "training state" if (d / "train_state.json").exists() else "")
    assert seen == "training state" and not (d / "metrics.json").exists()
    ref = run_folder(two_and_one[1], "ft-e2e")
    trained = load_file(str(ref / "checkpoint.safetensors"))  # every weight FT-E2E trained, uninterrupted
    saved, tensors = train_state.read(d / "train_state.json")
    assert {k: v.shape for k, v in tensors.items() if k.startswith("param.")} == {
        f"param.{k}": v.shape for k, v in trained.items()}, "whole tensors, not rank 0's shards"
    shutil.copytree(out, tmp_path / "by-one")

    proc = torchrun(2, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    Runner(RunConfig(model="llava15-tiny", task="textile", max_per_class=6, probe=ProbeConfig(max_epochs=3),
                     global_batch=8, micro_batch=2, regimes=("ft-e2e",), checkpoint_every=1, progress=False,
                     results_dir=str(tmp_path / "by-one"))).run()
    want = json.loads((ref / "metrics.json").read_text())
    for root, processes in ((out, 2), (tmp_path / "by-one", 1)):
        got = json.loads((run_folder(root, "ft-e2e") / "metrics.json").read_text())
        assert got["processes"] == processes
        assert got["training"]["resumed_from_step"] == saved["step"] >= 1, root.name
        assert got["training"]["optimizer_steps"] == want["training"]["optimizer_steps"] == 3
        assert got["training"]["final_loss"] == pytest.approx(want["training"]["final_loss"], rel=1e-5)
        weights = load_file(str(run_folder(root, "ft-e2e") / "checkpoint.safetensors"))
        assert weights.keys() == trained.keys()
        for k in trained:
            torch.testing.assert_close(weights[k], trained[k], rtol=1e-5, atol=1e-6, msg=f"{root.name}: {k}")
        preds = [(run_folder(r, "ft-e2e") / "predictions.jsonl").read_text().splitlines()
                 for r in (root, two_and_one[1])]
        assert [json.loads(x)["prediction"] for x in preds[0]] == [json.loads(x)["prediction"] for x in preds[1]]
        assert got["metrics"]["macro_f1"] == want["metrics"]["macro_f1"]
        assert got["metrics"]["confusion_matrix"] == want["metrics"]["confusion_matrix"]
        for name in want["probe"]:
            assert got["probe"][name]["macro_f1"] == want["probe"][name]["macro_f1"], (root.name, name)
    assert not list(d.glob("train_state*")), "the mid-training state is removed once training is done"


def test_shares_cover_the_work_in_rank_order():
    for n in (0, 1, 5, 18):
        for world in (1, 2, 3):
            blocks = [Context(rank=r, world_size=world).share(n) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_shipped_accelerate_configs_load_with_accelerate():
    """The configs in configs/accelerate are read by accelerate's own loader and describe the documented setups."""
    from accelerate.commands.config.config_args import load_config_from_file

    root = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    got = {p.name: load_config_from_file(str(p)) for p in sorted(root.glob("*.yaml"))}
    assert {k: (v.distributed_type.value, v.num_processes) for k, v in got.items()} == {
        "1gpu-lora.yaml": ("NO", 1), "2x80gb-fsdp.yaml": ("FSDP", 2), "8gpu-ddp.yaml": ("MULTI_GPU", 8),
        "8gpu-fsdp.yaml": ("FSDP", 8)}
    for name in ("2x80gb-fsdp.yaml", "8gpu-fsdp.yaml"):
        fsdp = got[name].fsdp_config
        assert fsdp["fsdp_activation_checkpointing"] and fsdp["fsdp_reshard_after_forward"], name


def test_more_processes_than_gpus_fails_before_any_work(monkeypatch):
    from benchmark import distributed
    from benchmark.errors import BenchmarkError

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(BenchmarkError, match="4 processes per node were launched but only 2 GPU"):
        distributed.setup("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchmarkError, match="--device cuda: no CUDA device"):
        distributed.setup("cuda")
