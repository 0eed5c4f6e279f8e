"""`plan`'s arguments: GPU names in their common spellings, refusals that name the fix, checks made before torch
is imported, and a regime that does not fit saying in one line what would."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from benchmark.errors import BenchmarkError
from benchmark.plan import Gpus
from benchmark.plan.hardware import GB, USABLE


@pytest.mark.parametrize("text, count, name", [
    ("H100", 1, "H100-80GB"), ("1xH100", 1, "H100-80GB"), ("A100", 1, "A100-80GB"), ("H200", 1, "H200-141GB"),
    ("A100-40GB", 1, "A100-40GB"), ("2xA100-80GB", 2, "A100-80GB"), ("8 x a100_40gb", 8, "A100-40GB"),
    ("NVIDIA H200", 1, "H200-141GB"), ("NVIDIA A100-SXM4-80GB", 1, "A100-80GB"), ("4xL40S", 4, "L40S-48GB"),
])
def test_common_gpu_spellings_resolve(text, count, name):
    g = Gpus.parse(text)
    assert (g.count, g.name) == (count, name)


def test_an_unknown_gpu_is_refused_with_the_one_meant_and_the_known_list():
    with pytest.raises(BenchmarkError) as err:
        Gpus.parse("2xH10")
    msg = str(err.value)
    assert "did you mean H100-80GB?" in msg and "A100-40GB, A100-80GB, H100-80GB, H200-141GB" in msg
    with pytest.raises(BenchmarkError, match="COUNT >= 1"):
        Gpus.parse("0xH100")


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys; from benchmark.cli import main; rc = main(sys.argv[1:]); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, "plan", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, says", [
    (("--model", "llava15", "--task", "derm", "--gpus", "3xTPU"), "unknown GPU"),
    (("--model", "llava15", "--task", "dermm", "--gpus", "H100"), "Did you mean 'derm'"),
    (("--model", "llava15", "--task", "derm", "--gpus", "H100", "--micro-batch", "0"), "micro"),
    (("--model", "llava15", "--task", "derm"), "--gpus"),
    (("--model", "llava15", "--task", "derm", "--gpus", "H100", "--layers", "2"), "add --measure"),
])
def test_arguments_are_refused_before_torch_is_imported(args, says):
    done = _cli(*args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "torch imported: False" in done.stdout


def test_measure_on_cpu_without_layers_says_what_a_7b_config_needs(tmp_path):
    done = _cli("--model", "llava15", "--task", "derm", "--measure", "--device", "cpu",
                "--measure-out", str(tmp_path / "m.json"))
    assert done.returncode == 2
    assert "7.06 B parameters would need 28 GB in fp32" in done.stderr and "--layers" in done.stderr
    assert not (tmp_path / "m.json").exists()


def test_a_regime_that_does_not_fit_says_what_would():
    from benchmark.plan import plan, render

    p = plan("llava15", "derm", gpus="1xH100", train_tokens=726)
    row = p.regimes["ft-e2e"].engines["single"]
    assert not row.fits
    # Independently: the unsharded training state over n GPUs plus one checkpointed sample must fit 90% of 80 GB.
    room = 80 * GB * USABLE - row.memory.activations.checkpointed
    n = math.ceil(row.memory.state / room)
    assert n == 2
    assert row.instead == f"would fit: {n}xH100-80GB fsdp/zero3 + checkpointing, or LoRA (--lora)"
    assert p.regimes["ft-e2e-lora"].engines["single"].fits and p.regimes["ft-proj"].engines["single"].instead is None
    line = next(x for x in render(p).splitlines() if x.startswith("ft-e2e ") and "single" in x)
    assert "NO" in line and "would fit: 2xH100-80GB" in line and line.rstrip().endswith("-")  # no hours
    two = plan("llava15", "derm", gpus="2xH100", train_tokens=726).regimes["ft-e2e"].engines
    assert two["single"].instead.startswith("would fit: fsdp/zero3 here")
