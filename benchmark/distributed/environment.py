"""What a launcher passed on through the environment, checked before the process group is joined.

``torchrun`` and ``accelerate launch`` both set ``WORLD_SIZE``; ``accelerate launch`` also passes its config's
precision and FSDP / DeepSpeed settings. A setup projbench's training cannot run is one line naming the fix, before
any work. (The accelerate config file itself is checked by ``benchmark.launch`` before the launch.)
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BenchmarkError

# Precisions projbench's training loop handles. It casts the model itself (--dtype, bf16 on GPU) and keeps fp32
# master copies of what it trains; on GPUs, accelerate's bf16 autocast repeats projbench's own. fp16 would need a
# loss scaler and fp8 a TransformerEngine recipe, which the loop does not have.
PRECISIONS = ("no", "bf16")


class LaunchConfigError(BenchmarkError):
    """An accelerate config file (or what accelerate launch passed on) that projbench cannot run with."""


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def under_accelerate(environ=None) -> bool:
    """Started by ``accelerate launch`` (it always passes the precision on)."""
    return "ACCELERATE_MIXED_PRECISION" in (os.environ if environ is None else environ)


def launched_with_deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def check_environment(on_cpu: bool, environ=None) -> None:
    """Catch, before the process group is joined, a setup accelerate launch passed on that cannot work."""
    env = os.environ if environ is None else environ
    if not under_accelerate(env):
        return
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision not in PRECISIONS:
        raise LaunchConfigError(f"accelerate launch passed mixed precision {precision!r}, which projbench's training "
                                "loop does not support (no loss scaler / fp8 recipe); launch with "
                                "--mixed_precision no (projbench runs the model in bf16 on GPUs itself) or bf16.")
    # A DeepSpeed config without the deepspeed package is refused by setup (the engine's own check).
    deepspeed = env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    fsdp = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    ds_file = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if deepspeed and ds_file and ds_file.lower() != "none" and not Path(ds_file).expanduser().is_file():
        raise LaunchConfigError(f"accelerate launch passed the DeepSpeed config file {ds_file!r}, which does not "
                                "exist here; fix deepspeed_config_file in the accelerate config.")
    # accelerate launch passes the config's fsdp_version on (1 when the config has none).
    if fsdp and env.get("FSDP_VERSION", "1") != "2":
        raise LaunchConfigError(f"accelerate launch was given an FSDP version {env.get('FSDP_VERSION', '1')} config; "
                                "projbench drives FSDP2 only (it saves and gathers the trained weights as FSDP2's "
                                "DTensors): set `fsdp_version: 2` under fsdp_config (as "
                                "configs/accelerate/2x80gb-fsdp.yaml does).")
    if on_cpu and fsdp:
        raise LaunchConfigError("accelerate launch was given an FSDP config but this run is on the CPU, where "
                                "accelerate ignores it (the trained weights would not be sharded); on CPU use "
                                "`torchrun --nproc_per_node N -m benchmark run ... --engine fsdp2`, or run on GPUs.")
