"""Processes and devices: the only package that knows a run can span several processes.

A plain ``python -m benchmark run`` is one process and everything here is a no-op. Started by ``torchrun`` or
``accelerate launch`` (both set ``WORLD_SIZE``), the run becomes one rank of a group managed by accelerate (gloo
on CPU, nccl on GPUs). The rooms:

- ``context``: this process's place (rank, world size, ``share`` of a list, ``gather``, ``broadcast``,
  ``barrier``, main-only writes, ``run_split``);
- ``group``: ``setup`` joins the launcher's group and picks the device, ``current()`` is the context it made;
- ``environment``: what ``accelerate launch`` passed on, checked before the group is joined;
- ``engines``: how training holds its weights (single, DDP, FSDP2, DeepSpeed ZeRO-3), behind one protocol;
- ``tensors``: trained parameters by plain name, whole, and the share this process holds.

Everything else in projbench is written as if there were one process.
"""

from __future__ import annotations

from .context import Context, ProcessContext
from .engines import DeepSpeedBatch, deepspeed_config, engine_for, engine_notes
from .environment import LaunchConfigError, check_environment, launched_world_size, under_accelerate
from .group import (
    DEEPSPEED_INSTALL,
    check_gpus,
    current,
    deepspeed_installed,
    setup,
    visible_gpus,
    wants_deepspeed,
)
from .tensors import is_sharded, local_numel, optimizer_param_names, plain_name, trained_parameters, whole

__all__ = [
    "DEEPSPEED_INSTALL", "Context", "DeepSpeedBatch", "LaunchConfigError", "ProcessContext",
    "check_environment", "check_gpus", "current", "deepspeed_config", "deepspeed_installed", "engine_for", "engine_notes",
    "is_sharded", "launched_world_size", "local_numel", "optimizer_param_names", "plain_name", "setup",
    "trained_parameters", "under_accelerate", "visible_gpus", "wants_deepspeed", "whole",
]
