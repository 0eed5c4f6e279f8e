"""Joining the process group a launcher made, and picking this rank's device: errors before any work.

``setup`` is called once by the run; afterwards ``current()`` is this process's ``ProcessContext``. DeepSpeed
must be chosen here, when the group is made (its accelerator is built differently); the other engines are chosen
when training starts (``engines.engine_for``).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

from ..errors import BenchmarkError
from .context import ProcessContext
from .environment import check_environment, launched_with_deepspeed, launched_world_size

# DeepSpeed builds its ops at install time unless told not to; its setup imports torch, so build isolation would
# fetch a second torch. Its CPU communication op is compiled on first use (needs a C++ compiler).
DEEPSPEED_INSTALL = "DS_BUILD_OPS=0 pip install --no-build-isolation 'deepspeed>=0.19'"  # the `deepspeed` extra

_CURRENT = ProcessContext()


def current() -> ProcessContext:
    """The context ``setup`` made for this process (one process until then)."""
    return _CURRENT


def wants_deepspeed(engine: str) -> bool:
    """--engine deepspeed, or --engine auto under ``accelerate launch`` with a DeepSpeed config."""
    return engine == "deepspeed" or (engine == "auto" and launched_with_deepspeed())


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(processes_per_node: int, who: str, fix: str) -> None:
    """One process per GPU: refuse more processes on a machine than it has visible GPUs, naming ``fix``."""
    n = visible_gpus()
    if processes_per_node > n:
        raise BenchmarkError(f"{who + ' ' if who else ''}{processes_per_node} processes per node"
                             f"{'' if who else ' were launched'} but only {n} GPU(s) are visible: {fix}")


def setup(device: str = "auto", engine: str = "auto") -> ProcessContext:
    """Join the process group the launcher made (if any) and pick this rank's device; errors before any work."""
    global _CURRENT
    world = launched_world_size()
    deepspeed = world > 1 and wants_deepspeed(engine)
    _check_engine(engine, deepspeed, world)
    device = _resolve_device(device)
    on_cpu = not device.startswith("cuda")
    check_environment(on_cpu)  # what accelerate launch passed on (precision, FSDP / DeepSpeed), if it started us
    if world == 1:
        if engine in ("fsdp2", "deepspeed"):  # said, not silently ignored: metrics.json records engine "single"
            print(f"[engine] one process: --engine {engine} has nothing to shard over; training runs unsharded "
                  "(recorded as engine single). Launch several processes with torchrun or accelerate launch to "
                  "shard.", file=sys.stderr)
        _CURRENT = ProcessContext(device=device)
        return _CURRENT
    if not on_cpu:
        check_gpus(int(os.environ.get("LOCAL_WORLD_SIZE", world)), "",
                   "launch at most that many (--nproc_per_node / --num_processes), or use --device cpu.")
    acc = _join(world, on_cpu, deepspeed)
    _CURRENT = ProcessContext(rank=acc.process_index, world_size=acc.num_processes, device=str(acc.device),
                              accelerator=acc, deepspeed=deepspeed)
    return _CURRENT


def _check_engine(engine: str, deepspeed: bool, world: int) -> None:
    if deepspeed and not deepspeed_installed():
        raise BenchmarkError(f"--engine {engine} needs DeepSpeed, which is not installed: {DEEPSPEED_INSTALL} "
                             "(or `make install-deepspeed`), or choose --engine fsdp2.")
    if world > 1 and engine in ("ddp", "fsdp2") and launched_with_deepspeed():
        raise BenchmarkError(f"--engine {engine}: accelerate was launched with a DeepSpeed config; use --engine "
                             "deepspeed (or auto), or launch with another config.")


def _resolve_device(device: str) -> str:
    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device.startswith("cuda") and not cuda:
        raise BenchmarkError(f"--device {device}: no CUDA device is visible; use --device cpu.")
    return device


def _join(world: int, on_cpu: bool, deepspeed: bool):
    """accelerate's Accelerator for this rank, refused if it did not join all ``world`` processes."""
    from accelerate import Accelerator

    # On a machine without CUDA a plain Accelerator() does not join the group: every rank would run alone.
    acc = _deepspeed_accelerator(on_cpu) if deepspeed else Accelerator(cpu=on_cpu)
    if acc.num_processes != world:
        raise BenchmarkError(
            f"the launcher started {world} processes but accelerate joined {acc.num_processes}: each would run "
            "the whole job alone. Launch with `torchrun --nproc_per_node N -m benchmark run ...` or "
            "`accelerate launch --config_file F -m benchmark run ...`."
        )
    return acc


def _deepspeed_accelerator(on_cpu: bool):
    """An Accelerator running DeepSpeed ZeRO-3: the accelerate config's plugin (``accelerate launch``), else ZeRO-3
    with DeepSpeed's defaults (``torchrun ... --engine deepspeed``)."""
    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.utils import InitProcessGroupKwargs

    plugin = None if launched_with_deepspeed() else DeepSpeedPlugin(zero_stage=3)
    # accelerate picks no backend of its own for DeepSpeed on CPU: it would make the group through DeepSpeed yet
    # report 1 process on every rank (and DeepSpeed's batch check would fail). Naming gloo keeps both in step.
    handlers = [InitProcessGroupKwargs(backend="gloo")] if on_cpu else []
    acc = Accelerator(deepspeed_plugin=plugin, kwargs_handlers=handlers)
    stage = acc.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage")
    if stage != 3:
        raise BenchmarkError(f"DeepSpeed ZeRO stage {stage}: projbench drives ZeRO-3 only (the tested setup); set "
                             "zero_stage: 3 in the accelerate config (configs/accelerate/2x80gb-zero3.yaml), or use "
                             "--engine ddp for data parallelism.")
    # accelerate registers its ZeRO-3 config with transformers, which would then partition every model as it is
    # loaded. projbench loads whole models (zero-shot evaluation, probes) and DeepSpeed partitions the one it
    # trains when training starts.
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    return acc
