"""Several processes (torchrun, gloo on CPU) give the results of one process at the same global batch.

One 2-process torchrun of the whole protocol (zero-shot, FT-Proj, FT-E2E) on llava15-tiny / textile is compared
with a 1-process run in this process: same fine-tuned projector (fp32 tolerance), same predictions and metrics.
Sharded FT-E2E is compared with the same 1-process run: PyTorch FSDP2 (torchrun) and DeepSpeed ZeRO-3 (through
accelerate: once with the shipped accelerate config, once with torchrun and --engine deepspeed).
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

from benchmark.distributed import Context
from benchmark.evaluate.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner
from benchmark.train import state as train_state

ARGS = ["--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs", "3",
        "--global-batch", "8", "--micro-batch", "2", "--no-progress"]


ROOT = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "benchmark", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def accelerate_launch(config: Path, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m", "benchmark", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def require_deepspeed() -> None:
    """Skip without DeepSpeed, except under CI=true, where `make test-multiprocess` installs it: a failure there."""
    from benchmark.distributed import DEEPSPEED_INSTALL, deepspeed_installed

    if not deepspeed_installed():
        why = f"DeepSpeed is not installed ({DEEPSPEED_INSTALL}, or `make install-deepspeed`)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {why}", pytrace=False)
        pytest.skip(why)


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


@pytest.fixture(scope="module")
def zero3(tmp_path_factory):
    """DeepSpeed ZeRO-3 over 2 processes: `accelerate launch` with the shipped paper config (its --engine auto
    picks DeepSpeed) running the whole protocol (FT-Proj and FT-E2E: two DeepSpeed engines in one process).
    `torchrun ... --engine deepspeed` is run by the kill-and-resume test below."""
    require_deepspeed()
    out = tmp_path_factory.mktemp("zero3")
    proc = accelerate_launch(ROOT / "configs" / "accelerate" / "2x80gb-zero3.yaml",
                             ["run", *ARGS, "--results-dir", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.multiprocess
def test_deepspeed_zero3_equals_one_process(zero3, two_and_one):
    """Each rank holds half of the trained weights while training; the gathered trained weights, the gradient of
    the global batch (norm before clipping: DeepSpeed must not divide the already token-weighted loss by its
    accumulation count again), loss, predictions, metrics and probes are those of one process."""
    out = zero3
    for regime in ("zero-shot", "ft-proj", "ft-e2e"):
        got = json.loads((run_folder(out, regime) / "metrics.json").read_text())
        want = json.loads((run_folder(two_and_one[1], regime) / "metrics.json").read_text())
        assert got["processes"] == 2 and got["distributed_backend"] == "DEEPSPEED"
        if regime != "zero-shot":
            t = got["training"]
            assert t["engine"] == "deepspeed" and t["deepspeed"]["zero_stage"] == 3, regime
            assert (t["processes"], t["micro_batch"], t["accumulation_steps"], t["optimizer_steps"]) == (2, 2, 2, 3)
            assert t["trained_weights_held_by_rank0"] == pytest.approx(0.5, abs=0.02), regime
            assert t["checkpoint_every"] == 1  # auto for a small trained state: saved (gathered) after each step
            assert t["final_loss"] == pytest.approx(want["training"]["final_loss"], rel=1e-5), regime
            assert t["final_grad_norm"] == pytest.approx(want["training"]["final_grad_norm"], rel=1e-5), regime
            # the config's bf16 gave way to the tiny model's fp32, in both regimes
            assert t["deepspeed"]["config_values_replaced"] == {"bf16.enabled": True}, regime
            # FT-E2E: all trained weights (projector and LLM, kept in checkpoint.safetensors); both: the projector
            files = ["checkpoint.safetensors"] * (regime == "ft-e2e") + ["projector.safetensors"]
            # FT-Proj (lr 1e-3, 50x FT-E2E's): torch's default fp32 tolerance (atol 1e-5). ZeRO-3 reduce-scatters
            # every micro-batch's gradient and sums the partitions, DDP sums locally and all-reduces once; Adam
            # turns that rounding into up to 6.5e-6 on 1 of 2048 weights, with loss and gradient norm equal to 1e-5.
            tol = {"rtol": 1e-5, "atol": 1e-6} if regime == "ft-e2e" else {}
            for name in files:
                w2, w1 = (load_file(str(run_folder(r, regime) / name)) for r in (out, two_and_one[1]))
                assert w2.keys() == w1.keys() and len(w1) >= 4, (regime, name)
                for k in w1:
                    torch.testing.assert_close(w2[k], w1[k], **tol)
        preds = [(run_folder(r, regime) / "predictions.jsonl").read_text().splitlines() for r in (out, two_and_one[1])]
        assert [json.loads(x)["prediction"] for x in preds[0]] == [json.loads(x)["prediction"] for x in preds[1]]
        assert got["metrics"]["macro_f1"] == want["metrics"]["macro_f1"], regime
        assert got["metrics"]["confusion_matrix"] == want["metrics"]["confusion_matrix"], regime
        for name in want["probe"]:
            assert got["probe"][name]["macro_f1"] == want["probe"][name]["macro_f1"], (regime, name)


@pytest.mark.multiprocess
def test_deepspeed_stages_other_than_3_are_refused(tmp_path):
    """An accelerate DeepSpeed config with ZeRO-2 fails with one line naming the fix, before any work."""
    require_deepspeed()
    config = tmp_path / "zero2.yaml"
    config.write_text((ROOT / "configs" / "accelerate" / "2x80gb-zero3.yaml").read_text()
                      .replace("zero_stage: 3", "zero_stage: 2"))
    proc = accelerate_launch(config, ["run", *ARGS, "--regimes", "ft-e2e", "--results-dir", str(tmp_path / "r")])
    assert proc.returncode != 0
    assert "DeepSpeed ZeRO stage 2: projbench drives ZeRO-3 only" in proc.stderr
    assert not (tmp_path / "r" / "llava15-tiny").exists()


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
@pytest.mark.parametrize("engine", ["fsdp2", "deepspeed"])
def test_a_killed_sharded_run_resumes_to_the_one_process_results(tmp_path, two_and_one, engine):
    """Kill a 2-process FSDP2 / DeepSpeed ZeRO-3 FT-E2E job (workers included) at its first saved training state
    and run the same command again: it resumes from that state and ends with the uninterrupted 1-process run's
    trained weights and numbers. The state holds whole tensors in one process's layout, so one process resumes it
    as well."""
    if engine == "deepspeed":
        require_deepspeed()
    out = tmp_path / "killed"
    d = run_folder(out, "ft-e2e")
    args = ["run", *ARGS, "--regimes", "ft-e2e", "--engine", engine, "--checkpoint-every", "1",
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
        assert got["training"]["engine"] == (engine if processes == 2 else "single")
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

    root = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
    got = {p.name: load_config_from_file(str(p)) for p in sorted(root.glob("*.yaml"))}
    assert {k: (v.distributed_type.value, v.num_processes) for k, v in got.items()} == {
        "1gpu-lora.yaml": ("NO", 1), "2x80gb-fsdp.yaml": ("FSDP", 2), "2x80gb-zero3.yaml": ("DEEPSPEED", 2),
        "8gpu-ddp.yaml": ("MULTI_GPU", 8), "8gpu-fsdp.yaml": ("FSDP", 8)}
    for name in ("2x80gb-fsdp.yaml", "8gpu-fsdp.yaml"):
        fsdp = got[name].fsdp_config
        assert fsdp["fsdp_activation_checkpointing"] and fsdp["fsdp_reshard_after_forward"], name
    zero3 = got["2x80gb-zero3.yaml"]  # the paper's: ZeRO-3 on 2 GPUs in bf16, nothing offloaded
    assert zero3.deepspeed_config["zero_stage"] == 3 and zero3.mixed_precision == "bf16"
    assert zero3.deepspeed_config["offload_optimizer_device"] == zero3.deepspeed_config["offload_param_device"] == "none"
    assert "--gradient-checkpointing" in (root / "2x80gb-zero3.yaml").read_text()  # the launch line it documents


def test_deepspeed_batch_fields_multiply_to_the_global_batch():
    """The DeepSpeed batch fields projbench writes, for known layouts: the paper's FT-E2E (G 32 on 2 GPUs: micro 8
    x 2 steps), FT-Proj (G 64: 8 x 4), the test's (G 8, micro 2: 2 x 2), 8 GPUs (G 32: 4 x 1); DeepSpeed requires
    train_batch_size = micro x accumulation x processes."""
    from benchmark.distributed import DeepSpeedBatch, deepspeed_config
    from benchmark.validation import batch_layout

    cases = {(32, None, 2): (8, 2), (64, None, 2): (8, 4), (8, 2, 2): (2, 2), (32, None, 8): (4, 1), (6, 4, 2): (3, 1)}
    for (g, m, procs), (micro, accum) in cases.items():
        got = deepspeed_config(DeepSpeedBatch(g, *batch_layout(g, m, procs), 1.0, torch.float32))
        assert (got["train_micro_batch_size_per_gpu"], got["gradient_accumulation_steps"]) == (micro, accum)
        assert got["train_batch_size"] == g == micro * accum * procs
    assert deepspeed_config(DeepSpeedBatch(32, 8, 2, 0.5, torch.bfloat16))["gradient_clipping"] == 0.5
    assert deepspeed_config(DeepSpeedBatch(32, 8, 2, 1.0, torch.bfloat16))["bf16"] == {"enabled": True}
    assert deepspeed_config(DeepSpeedBatch(32, 8, 2, 1.0, torch.float32))["bf16"] == {"enabled": False}


def test_deepspeed_config_values_projbench_sets_are_reported_when_replaced():
    from benchmark.distributed.engines.deepspeed import overwrite as _overwrite

    config = {"train_batch_size": "auto", "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
              "bf16": {"enabled": True}, "zero_optimization": {"stage": 3}}
    replaced = _overwrite(config, {"train_batch_size": 8, "gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
                                   "bf16": {"enabled": False}, "fp16": {"enabled": False}})
    assert replaced == {"gradient_accumulation_steps": 1, "bf16.enabled": True}
    assert config == {"train_batch_size": 8, "gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
                      "bf16": {"enabled": False}, "fp16": {"enabled": False}, "zero_optimization": {"stage": 3}}


def test_deepspeed_requested_but_missing_or_mismatched_fails_before_any_work(monkeypatch):
    from benchmark import distributed
    from benchmark.errors import BenchmarkError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # not importable, as on a machine without it
    with pytest.raises(BenchmarkError, match=r"--engine deepspeed needs DeepSpeed, which is not installed: "
                                             r"DS_BUILD_OPS=0 pip install --no-build-isolation 'deepspeed>=0.19'"):
        distributed.setup("cpu", "deepspeed")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # accelerate launch with a DeepSpeed config
    with pytest.raises(BenchmarkError, match="--engine auto needs DeepSpeed"):
        distributed.setup("cpu", "auto")
    monkeypatch.delitem(sys.modules, "deepspeed")
    with pytest.raises(BenchmarkError, match="--engine fsdp2: accelerate was launched with a DeepSpeed config"):
        distributed.setup("cpu", "fsdp2")


def test_the_deepspeed_extra_is_what_the_error_tells_to_install():
    import tomllib

    from benchmark.distributed import DEEPSPEED_INSTALL

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["deepspeed"]
    assert DEEPSPEED_INSTALL.endswith(f"'{extra[0]}'") and len(extra) == 1


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


@pytest.mark.parametrize("engine, says", [("fsdp2", True), ("deepspeed", True), ("auto", False), ("ddp", False)])
def test_a_sharding_engine_in_one_process_is_named_not_silently_dropped(monkeypatch, capsys, engine, says):
    from benchmark import distributed

    for var in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(var, raising=False)
    ctx = distributed.setup("cpu", engine)
    assert not ctx.distributed
    err = capsys.readouterr().err
    assert (f"one process: --engine {engine} has nothing to shard over; training runs unsharded" in err) == says, err


def test_each_setup_gets_its_engine_by_name():
    """One engine per way of holding the weights, as metrics.json records it (training.engine)."""
    from types import SimpleNamespace

    from benchmark.distributed.engines import (
        DDP,
        FSDP2,
        AccelerateFSDP,
        BatchLayout,
        DeepSpeed,
        Single,
        engine_for,
    )

    def ctx(backend: str, world: int = 2, deepspeed: bool = False) -> Context:
        acc = SimpleNamespace(state=SimpleNamespace(distributed_type=SimpleNamespace(value=backend)))
        return Context(rank=0, world_size=world, accelerator=acc, deepspeed=deepspeed)

    layout = BatchLayout(8, 2, 2, 1.0, torch.float32)
    cases = [(ctx("NO", world=1), "fsdp2", Single, "single"), (ctx("MULTI_CPU"), "auto", DDP, "ddp"),
             (ctx("MULTI_GPU"), "ddp", DDP, "ddp"), (ctx("MULTI_CPU"), "fsdp2", FSDP2, "fsdp2"),
             (ctx("FSDP"), "auto", AccelerateFSDP, "fsdp"), (ctx("FSDP"), "ddp", AccelerateFSDP, "ddp"),
             (ctx("DEEPSPEED", deepspeed=True), "auto", DeepSpeed, "deepspeed")]
    for context, requested, kind, name in cases:
        engine = engine_for(context, requested, layout=layout)
        assert type(engine) is kind and engine.name == name, (requested, context.backend)
    assert engine_for(ctx("DEEPSPEED", deepspeed=True), "auto", layout=layout).keeps_master_weights
    assert not engine_for(ctx("MULTI_CPU"), "fsdp2", layout=layout).keeps_master_weights
