"""Starting a multi-process job from an accelerate config file, checked before any work.

``python -m benchmark run ... --accelerate-config F`` reads ``F`` within limits (size, no YAML aliases, the type of
every value: ``benchmark.launch_yaml``), builds accelerate's own ``ClusterConfig`` from it and checks what
projbench needs of it (a local launch, a distributed type projbench drives, no more processes per machine than
visible GPUs, a precision its training loop handles, FSDP / DeepSpeed settings that ``accelerate launch`` knows),
checks the run's own flags for that many processes, and only then hands over to
``accelerate launch --quiet --config_file F -m benchmark run <the same flags>`` (the process is replaced: its exit
status is accelerate launch's, 0, or 1 when the job failed). Every problem is one line naming the file, the setting
and the fix; nothing is loaded or written.

A job started by ``accelerate launch`` directly gets the same checks on what accelerate passed through the
environment (``check_environment``, called by ``distributed.setup`` before the process group is joined).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from . import distributed
from .distributed.environment import PRECISIONS, LaunchConfigError, check_environment, under_accelerate
from .launch_yaml import short

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "accelerate"  # in a source checkout
# What projbench's training drives (benchmark.distributed.engines): one process, DDP on GPUs, accelerate's FSDP,
# DeepSpeed ZeRO-3. MULTI_CPU is left out on purpose: accelerate launch (1.15) starts a single process for it, as
# for `--cpu` (DESIGN §4). Several CPU processes: a MULTI_GPU / DeepSpeed config with --device cpu (accelerate
# launch starts them all), or torchrun.
DRIVEN = ("NO", "MULTI_GPU", "FSDP", "DEEPSPEED")

__all__ = ["DRIVEN", "PRECISIONS", "LaunchConfig", "LaunchConfigError", "check_environment", "check_here",
           "check_run", "hand_over", "launch_command", "read_config", "under_accelerate"]


@dataclass(frozen=True)
class LaunchConfig:
    """The parts of an accelerate config that decide how projbench runs."""

    path: str
    distributed_type: str
    num_processes: int
    num_machines: int
    mixed_precision: str
    use_cpu: bool

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.num_processes // max(1, self.num_machines))


def _shipped() -> str:
    """Where the shipped configs are, for error messages (empty outside a source checkout)."""
    names = sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    return f" (shipped: configs/accelerate/{{{','.join(n.removesuffix('.yaml') for n in names)}}}.yaml)" if names else ""


def _launch_options() -> set[str]:
    """Option names of ``accelerate launch``: the keys under fsdp_config / deepspeed_config become these."""
    from accelerate.commands.launch import launch_command_parser

    return {a.dest for a in launch_command_parser()._actions}


def read_config(path: str) -> LaunchConfig:
    """Parse and check ``path`` without GPUs in mind (the shipped configs pass on any machine)."""
    where = f"--accelerate-config {path}"
    file = Path(path).expanduser()
    if not file.is_file():
        raise LaunchConfigError(f"{where}: no such file; give the path of an accelerate config YAML{_shipped()}.")
    from .launch_yaml import read_settings

    raw = read_settings(file, where, _shipped())
    cfg = _load_with_accelerate(where, raw)
    kind = cfg.distributed_type.value
    n, machines, precision = _check_counts_and_precision(cfg, kind, where)
    _check_sections(cfg, kind, where)
    return LaunchConfig(path=str(path), distributed_type=kind, num_processes=n, num_machines=machines,
                        mixed_precision=precision, use_cpu=bool(cfg.use_cpu))


def _load_with_accelerate(where: str, raw: dict):
    """accelerate's own config class built from the checked mapping (no second read of the file), every error of
    its as one line naming the key and the values it accepts."""
    from accelerate.commands.config.config_args import ClusterConfig

    from .launch_yaml import check_types

    if "distributed_type" not in raw:
        raise LaunchConfigError(f"{where}: no distributed_type; set it to one of {', '.join(DRIVEN)}.")
    check_types(raw, ClusterConfig, where, DRIVEN)
    settings = ClusterConfig.process_config(dict(raw))  # accelerate's defaults, and its renames of older keys
    unknown = sorted(set(settings) - set(ClusterConfig.__dataclass_fields__))
    if unknown:
        known = sorted(ClusterConfig.__dataclass_fields__)
        raise LaunchConfigError(f"{where}: unknown key(s) {short(unknown)} for accelerate's config; fix or remove "
                                f"them (known keys: {', '.join(known)}).")
    try:
        return ClusterConfig(**settings)
    except Exception as exc:  # noqa: BLE001  (whatever accelerate objects to, as the one line)
        raise LaunchConfigError(f"{where}: accelerate cannot read it ({' '.join(str(exc).split())[:200]}); "
                                f"compare with a shipped config{_shipped()}.") from None


def _check_counts_and_precision(cfg, kind: str, where: str) -> tuple[int, int, str]:
    """A distributed type projbench drives, process and machine counts that fit, a precision it trains in."""
    if kind not in DRIVEN:
        fix = ("accelerate launch starts a single process for it; for several CPU processes use a MULTI_GPU config "
               "with --device cpu, or `torchrun --nproc_per_node N -m benchmark run ...`"
               if kind == "MULTI_CPU" else f"use one of {', '.join(DRIVEN)}")
        raise LaunchConfigError(f"{where}: distributed_type {kind} is not one projbench drives; {fix}.")
    n, machines = cfg.num_processes, cfg.num_machines
    for key, value in (("num_processes", n), ("num_machines", machines)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LaunchConfigError(f"{where}: {key} is {short(value)}; set it to the number of "
                                    f"{'processes (one per GPU)' if key == 'num_processes' else 'machines'}.")
    if n % machines:
        raise LaunchConfigError(f"{where}: num_processes {n} does not split over num_machines {machines}; give "
                                f"a multiple of {machines} (the total over all machines).")
    precision = str(cfg.mixed_precision if cfg.mixed_precision is not None else "no")
    if precision not in PRECISIONS:
        known = precision in ("fp16", "fp8")
        raise LaunchConfigError(
            f"{where}: mixed_precision {short(precision)} " + (
                "is not supported by projbench's training loop (no loss scaler / fp8 recipe); "
                if known else "is not a precision accelerate knows; ")
            + "set mixed_precision: 'no' (projbench runs the model in bf16 on GPUs itself, --dtype) or 'bf16'.")
    if kind in ("NO",) and n != 1:
        raise LaunchConfigError(f"{where}: distributed_type NO runs one process, but num_processes is {n}; set "
                                "distributed_type: MULTI_GPU (or FSDP / DEEPSPEED) or num_processes: 1.")
    return n, machines, precision


def _check_sections(cfg, kind: str, where: str) -> None:
    """fsdp_config / deepspeed_config: keys accelerate launch knows, for the matching type, versions it drives."""
    options = _launch_options()
    for section, prefix in (("fsdp_config", "fsdp_"), ("deepspeed_config", "")):
        settings = getattr(cfg, section) or {}
        # accelerate launch copies these onto its options and silently ignores names it does not have.
        unknown = sorted(k for k in settings if (k if k.startswith(prefix) else prefix + k) not in options)
        if unknown:
            known = sorted(o for o in options if o.startswith("fsdp_")) if prefix else sorted(
                o for o in options if o.startswith(("zero", "offload_", "deepspeed_", "gradient_")))
            raise LaunchConfigError(f"{where}: unknown {section} key(s) {unknown}: accelerate launch would ignore "
                                    f"them silently; fix or remove them (known: {', '.join(known)}).")
        if settings and kind != section.split("_")[0].upper():
            raise LaunchConfigError(f"{where}: has {section} but distributed_type {kind}: it would be ignored; set "
                                    f"distributed_type: {section.split('_')[0].upper()} or remove {section}.")
    if kind == "FSDP" and str((cfg.fsdp_config or {}).get("fsdp_version", 1)) != "2":
        raise LaunchConfigError(f"{where}: FSDP version {short((cfg.fsdp_config or {}).get('fsdp_version', 1))} (accelerate's "
                                f"default is 1); projbench drives FSDP2 only (it saves and gathers the trained weights "
                                "as FSDP2's DTensors); set `fsdp_version: 2` under fsdp_config, as "
                                "configs/accelerate/2x80gb-fsdp.yaml does.")
    if kind == "DEEPSPEED":
        ds_file = (cfg.deepspeed_config or {}).get("deepspeed_config_file")
        if ds_file and ds_file != "none" and not Path(ds_file).expanduser().is_file():
            raise LaunchConfigError(f"{where}: deepspeed_config_file {short(ds_file)} does not exist (relative paths are "
                                    "read from the directory you launch in); fix the path.")


def check_here(cfg: LaunchConfig, device: str = "auto") -> None:
    """What ``cfg`` needs of this machine for a run on ``device``: DeepSpeed installed for a DeepSpeed config, and
    a GPU per process unless the processes run on the CPU (``--device cpu``; accelerate launch starts them there
    too, and projbench joins them over gloo)."""
    where = f"--accelerate-config {cfg.path}"
    if cfg.distributed_type == "DEEPSPEED" and not distributed.deepspeed_installed():
        raise LaunchConfigError(f"{where}: distributed_type DEEPSPEED needs the deepspeed package, which is not "
                                f"installed; install it with `{distributed.DEEPSPEED_INSTALL}` (or `make install-deepspeed`), or "
                                "use an FSDP config (configs/accelerate/2x80gb-fsdp.yaml: the same sharding as "
                                "ZeRO-3).")
    if cfg.use_cpu and (device not in ("cpu", "auto") or (device == "auto" and distributed.visible_gpus())):
        raise LaunchConfigError(f"{where}: use_cpu: true, but the run would use the GPU (--device {device}); pass "
                                "--device cpu, or set use_cpu: false.")
    if cfg.use_cpu or device == "cpu":
        if cfg.distributed_type == "FSDP":
            raise LaunchConfigError(f"{where}: distributed_type FSDP on the CPU: accelerate ignores FSDP there (the "
                                    "trained weights would not be sharded); on the CPU shard with --engine fsdp2 "
                                    "under a MULTI_GPU config or torchrun, or with --engine deepspeed.")
        return  # accelerate launch starts the processes on the CPU; projbench joins them over gloo
    distributed.check_gpus(cfg.processes_per_machine, f"{where} starts", "set num_processes (per machine: num_processes / "
               "num_machines) to at most that, or pass --device cpu to run the processes on the CPU.")


def check_run(cfg, processes: int) -> None:
    """The run's own flags, for ``processes`` processes, as the run will check them (before anything starts)."""
    from .registry import plugins
    from .validation import resolve

    resolve(cfg, processes=processes)  # every flag, and the training layout for that many processes
    reg = plugins()
    reg.adapters.get(cfg.model)  # unknown names fail here, with suggestions
    reg.tasks.get(cfg.task)


def launch_command(config_path: str, run_argv: list[str]) -> list[str]:
    """``accelerate launch --quiet --config_file F -m benchmark <run_argv without --accelerate-config>``."""
    rest, skip = [], False
    for arg in run_argv:
        if skip:
            skip = False
        elif arg == "--accelerate-config":
            skip = True
        elif not arg.startswith("--accelerate-config="):
            rest.append(arg)
    # --quiet: a failing job's own one-line error is the last thing printed (not the launcher's traceback of it).
    return [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--config_file", str(config_path),
            "-m", "benchmark", *rest]


def hand_over(cmd: list[str]) -> None:
    """Replace this process by the launcher (its exit code becomes the command's)."""
    print("launching: accelerate launch " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
