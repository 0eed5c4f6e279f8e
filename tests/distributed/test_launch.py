"""`run --accelerate-config F`: a bad accelerate config (or launch environment) is one clear line before any work.

Each failure kind is checked through the command line: exit code 2, one line on stderr naming the file, the
setting and the fix, and nothing written (neither the results nor the cache folder exists afterwards). The shipped
configs pass; a good config hands the same flags over to `accelerate launch`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark import distributed, launch
from benchmark.cli import main
from benchmark.errors import BenchmarkError

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs" / "accelerate").glob("*.yaml"))
RUN = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "2"]


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``n`` CUDA GPUs (only the count is read before the launch)."""

    def set_count(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


@pytest.fixture(autouse=True)
def not_launched(monkeypatch):
    for var in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_FSDP", "FSDP_VERSION",
                "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)


def refused(capsys, tmp_path, config, *flags) -> str:
    """Run the CLI with ``--accelerate-config config``; assert exit 2, one stderr line, nothing written."""
    results, cache = tmp_path / "results", tmp_path / "cache"
    code = main([*RUN, *flags, "--results-dir", str(results), "--cache-dir", str(cache),
                 "--accelerate-config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not results.exists() and not cache.exists()
    return lines[0]


def write(tmp_path, text: str, name: str = "acc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_passes(path, gpus, monkeypatch):
    cfg = launch.read_config(str(path))
    assert cfg.distributed_type in launch.DRIVEN and cfg.mixed_precision in launch.PRECISIONS
    gpus(cfg.num_processes)
    # The machine has what the config needs (CI installs without DeepSpeed: that case is tested below).
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: True)
    launch.check_here(cfg)  # enough GPUs: nothing to object to


def test_missing_file(capsys, tmp_path):
    line = refused(capsys, tmp_path, tmp_path / "nope.yaml")
    assert f"--accelerate-config {tmp_path / 'nope.yaml'}: no such file" in line
    assert "configs/accelerate/{1gpu-lora,2x80gb-fsdp,2x80gb-zero3,8gpu-ddp,8gpu-fsdp}.yaml" in line


def test_bad_yaml_names_the_line(capsys, tmp_path):
    path = write(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: [2\n")
    line = refused(capsys, tmp_path, path)
    assert f"{path}: not valid YAML at line 3" in line and "fix the syntax" in line
    line = refused(capsys, tmp_path, write(tmp_path, "- MULTI_GPU\n- 2\n"))
    assert "holds list, not a mapping of accelerate settings" in line


def test_unknown_key_is_named_with_the_known_ones(capsys, tmp_path):
    line = refused(capsys, tmp_path, write(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: 2\nnum_proceses: 2\n"))
    assert "unknown key(s) ['num_proceses'] for accelerate's config; fix or remove them" in line
    assert "num_processes" in line.split("known keys:")[1]


def test_unknown_fsdp_key_that_accelerate_launch_would_ignore(capsys, tmp_path):
    text = "distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n  fsdp_activation_checkpoiting: true\n"
    line = refused(capsys, tmp_path, write(tmp_path, text))
    assert "unknown fsdp_config key(s) ['fsdp_activation_checkpoiting']: accelerate launch would ignore" in line
    assert "fsdp_activation_checkpointing," in line


@pytest.mark.parametrize("version", ["", "  fsdp_version: 1\n"])
def test_fsdp1_is_refused(capsys, tmp_path, gpus, version):
    """FSDP1's flat shards are neither saved for a resume nor gathered after training: FSDP2 only."""
    gpus(2)
    text = f"distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n  fsdp_sharding_strategy: FULL_SHARD\n{version}"
    line = refused(capsys, tmp_path, write(tmp_path, text))
    assert "FSDP version 1 (accelerate's default is 1); projbench drives FSDP2 only" in line
    assert "set `fsdp_version: 2` under fsdp_config" in line


@pytest.mark.parametrize("kind, says", [
    ("MULTI_CPU", "distributed_type MULTI_CPU is not one projbench drives; accelerate launch starts a single "
                  "process for it; for several CPU processes use a MULTI_GPU config with --device cpu, or `torchrun"),
    ("XLA", "distributed_type XLA is not one projbench drives; use one of NO, MULTI_GPU, FSDP, DEEPSPEED"),
    ("BANANA", "distributed_type 'BANANA' is not one accelerate knows; projbench drives NO, MULTI_GPU, FSDP"),
])
def test_unsupported_distributed_type(capsys, tmp_path, kind, says):
    assert says in refused(capsys, tmp_path, write(tmp_path, f"distributed_type: {kind}\nnum_processes: 2\n"))


def test_more_processes_than_gpus(capsys, tmp_path, gpus):
    ddp8 = next(p for p in SHIPPED if p.name == "8gpu-ddp.yaml")
    gpus(2)
    line = refused(capsys, tmp_path, ddp8)
    assert f"--accelerate-config {ddp8} starts 8 processes per node but only 2 GPU(s) are visible" in line
    assert "set num_processes" in line and "or pass --device cpu" in line
    gpus(0)  # this machine: no GPU at all
    assert "8 processes per node but only 0 GPU(s)" in refused(capsys, tmp_path, ddp8)


def test_processes_on_the_cpu_need_no_gpu_but_fsdp_is_refused_there(capsys, tmp_path, gpus, monkeypatch):
    """--device cpu: accelerate launch starts the config's processes on the CPU (gloo); FSDP would be ignored."""
    gpus(0)
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: True)
    for name in ("8gpu-ddp.yaml", "2x80gb-zero3.yaml"):
        launch.check_here(launch.read_config(str(next(p for p in SHIPPED if p.name == name))), "cpu")
    fsdp2 = next(p for p in SHIPPED if p.name == "2x80gb-fsdp.yaml")
    line = refused(capsys, tmp_path, fsdp2, "--device", "cpu")
    assert "distributed_type FSDP on the CPU: accelerate ignores FSDP there" in line
    # use_cpu: true with MULTI_GPU starts its processes on the CPU (MULTI_CPU would start one: refused above).
    launch.check_here(launch.read_config(str(write(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: 2\n"
                                                             "use_cpu: true\n"))), "auto")
    gpus(2)
    use_cpu = write(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: 2\nuse_cpu: true\n")
    assert "use_cpu: true, but the run would use the GPU (--device auto); pass --device cpu" in refused(
        capsys, tmp_path, use_cpu)


@pytest.mark.parametrize("precision, says", [("fp16", "is not supported by projbench's training loop"),
                                             ("int3", "is not a precision accelerate knows")])
def test_mixed_precision(capsys, tmp_path, precision, says):
    line = refused(capsys, tmp_path, write(tmp_path, f"distributed_type: MULTI_GPU\nnum_processes: 2\n"
                                                     f"mixed_precision: {precision}\n"))
    assert f"mixed_precision '{precision}' {says}" in line and "set mixed_precision: 'no'" in line


def test_deepspeed_config_without_deepspeed_says_how_to_install(capsys, tmp_path, gpus, monkeypatch):
    gpus(2)
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: False)
    text = "distributed_type: DEEPSPEED\nnum_processes: 2\ndeepspeed_config:\n  zero_stage: 3\n"
    line = refused(capsys, tmp_path, write(tmp_path, text))
    assert "distributed_type DEEPSPEED needs the deepspeed package, which is not installed; install it with " \
        "`DS_BUILD_OPS=0 pip install" in line
    line = refused(capsys, tmp_path, write(tmp_path, text.replace("zero_stage", "zero_stag")))
    assert "unknown deepspeed_config key(s) ['zero_stag']" in line


def test_run_flags_are_checked_for_the_configs_processes(capsys, tmp_path, gpus):
    gpus(2)
    fsdp2 = next(p for p in SHIPPED if p.name == "2x80gb-fsdp.yaml")
    line = refused(capsys, tmp_path, fsdp2, "--global-batch", "7")
    assert "--global-batch 7 is not divisible by the 2 processes" in line


def test_a_good_config_hands_the_same_flags_to_accelerate_launch(tmp_path, monkeypatch, capsys):
    config = write(tmp_path, 'distributed_type: "NO"\nnum_processes: 1\nuse_cpu: true\n')
    seen = {}

    def execv(path, args):  # the process would be replaced here
        seen.update(path=path, args=args)

    monkeypatch.setattr(os, "execv", execv)
    flags = [*RUN, "--results-dir", str(tmp_path / "r"), "--accelerate-config", str(config), "--no-progress"]
    assert main(flags) == 0
    assert seen["args"] == [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--config_file", str(config),
                            "-m", "benchmark", *RUN, "--results-dir", str(tmp_path / "r"), "--no-progress"]
    assert "launching: accelerate launch --quiet --config_file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert launch.launch_command("F", ["run", f"--accelerate-config={config}", "--seeds", "1"])[-3:] == \
        ["run", "--seeds", "1"]


def test_accelerate_config_under_a_launcher_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = refused(capsys, tmp_path, SHIPPED[0])
    assert "already started by a launcher (torchrun / accelerate launch): drop --accelerate-config" in line


@pytest.mark.parametrize("env, says", [
    ({"ACCELERATE_MIXED_PRECISION": "fp16"}, "passed mixed precision 'fp16', which projbench's training loop"),
    ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"},
     "given an FSDP config but this run is on the CPU, where accelerate ignores it"),
    ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"},
     "given an FSDP version 1 config; projbench drives FSDP2 only"),
    ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_FSDP": "true"},  # no FSDP_VERSION: accelerate's 1
     "given an FSDP version 1 config; projbench drives FSDP2 only"),
    ({"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_DEEPSPEED": "true",
      "ACCELERATE_DEEPSPEED_CONFIG_FILE": "/nowhere/ds.json"}, "DeepSpeed config file '/nowhere/ds.json', which does"),
])
def test_what_accelerate_launch_passed_is_checked_before_the_group_is_joined(monkeypatch, env, says):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(BenchmarkError, match=says.replace("(", r"\(").replace(")", r"\)")):
        distributed.setup("cpu")


def test_environment_checks_only_what_accelerate_launch_passed():
    launch.check_environment(on_cpu=True, environ={})  # not started by accelerate: nothing to check
    # DeepSpeed runs on CPU too (projbench's engine makes a gloo group for it): not refused.
    launch.check_environment(on_cpu=True, environ={"ACCELERATE_MIXED_PRECISION": "bf16",
                                                   "ACCELERATE_USE_DEEPSPEED": "true"})


@pytest.mark.multiprocess
def test_accelerate_config_runs_the_job_through_accelerate_launch(tmp_path):
    """End to end: a one-CPU-process config goes through `accelerate launch` and the run finishes; a run that fails
    inside the launched job fails the command."""
    config = write(tmp_path, 'distributed_type: "NO"\nnum_processes: 1\nuse_cpu: true\nmixed_precision: "no"\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "benchmark", *RUN, "--regimes", "zero-shot", "--probe-max-epochs", "1",
            "--no-control-probe", "--no-progress", "--cache-dir", str(tmp_path / "c"), "--accelerate-config", str(config)]
    proc = subprocess.run([*base, "--results-dir", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching: accelerate launch --quiet --config_file" in proc.stderr
    metrics = json.loads((tmp_path / "r" / "llava15-tiny" / "textile@max2" / "zero-shot" / "seed0"
                          / "metrics.json").read_text())
    assert metrics["processes"] == 1
    (tmp_path / "empty").mkdir()
    bad = [*base[:7], "folder", *base[8:], "--data-dir", str(tmp_path / "empty"), "--results-dir", str(tmp_path / "r2")]
    proc = subprocess.run(bad, capture_output=True, text=True, env=env, timeout=300)
    # accelerate launch exits 1 for any failing job; the job's own error line is the last one, no traceback.
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Data folder") and "Traceback" not in proc.stderr
