"""What a SLURM job of a cell asks for: GPUs per node, memory and a time limit, from ``plan`` unless overridden.

``plan`` (benchmark/plan) builds the real architecture on the meta device and gives, per regime and engine,
whether a run fits the GPUs and its wall hours. A cell asks for:

- GPUs per node: its processes (1, or its ``--accelerate-config``'s), each on one GPU; a regime that fits no
  engine on them is refused before submission, naming the accelerate config that would fit;
- memory (host RAM): twice the weights in bf16 per process (loading a checkpoint holds a copy) + 16 GB;
- time: 1.5 x (feature extraction + every requested regime's hours x seeds) + 30 minutes for loading, probes and
  queue noise, rounded up to minutes.

Where ``plan`` cannot answer (a tiny twin or a local checkpoint with no shipped config) or the cluster has no GPU
(``sinfo`` lists no ``gpu`` GRES), defaults are used and said: no GPU on a CPU-only cluster, 16 GB, 2 hours.
Every value can be overridden with the ``--slurm-*`` flags.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import BenchmarkError

DEFAULT_MEM_GB = 16
DEFAULT_TIME_MIN = 120
PLANNED_GPU = "A100-80GB"  # the plan's GPU when --slurm-gpu-type is not given


@dataclass(frozen=True)
class Resources:
    gpus_per_node: int | None  # None: ask for no GPU
    mem_gb: int
    time_min: int
    source: str  # where the numbers come from, shown to the user and kept in the manifest

    def to_json(self) -> dict:
        return {"gpus_per_node": self.gpus_per_node, "mem_gb": self.mem_gb, "time_min": self.time_min,
                "source": self.source}


def cluster_has_gpus() -> bool:
    """Whether any node of the cluster offers a ``gpu`` GRES (``sinfo -h -o %G``); False if sinfo cannot say."""
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "gpu" in out.lower()


def _plan_regime(regime: str, lora: bool) -> str | None:
    if regime == "baselines":
        return None
    return "ft-e2e-lora" if regime == "ft-e2e" and lora else regime


def _planned(cell, gpu_type: str) -> Resources:
    """The resources ``plan`` gives for ``cell`` on ``cell.processes`` x ``gpu_type``."""
    from ..plan import plan

    p = plan(cell.model, cell.task, gpus=f"{cell.processes}x{gpu_type}", model_path=cell.cfg.model_path)
    hours = p.hours_feature_extraction
    for regime in cell.cfg.regimes:
        name = _plan_regime(regime, cell.cfg.lora)
        if name is None:
            continue
        rows = {e: r for e, r in p.regimes[name].engines.items() if r.fits}
        if not rows:
            raise BenchmarkError(
                f"{cell.name}: plan says {name} does not fit {cell.processes}x{gpu_type} with any engine; pass an "
                "--accelerate-config that shards over more GPUs (e.g. configs/accelerate/2x80gb-fsdp.yaml), "
                f"--lora, or leave {regime} out of --regimes (see `python -m benchmark plan --model {cell.model} "
                f"--task {cell.task} --gpus 2x{gpu_type}`).")
        hours += min(r.hours for r in rows.values()) * len(cell.cfg.seeds)
    weights_gb = p.parameters["total"] * 2 / 1e9
    return Resources(gpus_per_node=cell.processes, mem_gb=math.ceil(2 * weights_gb * cell.processes + 16),
                     time_min=math.ceil(1.5 * hours * 60 + 30),
                     source=f"plan on {cell.processes}x{gpu_type}")


def resources_for(cell, *, gpu_type: str | None, has_gpus: bool) -> Resources:
    """``plan``'s resources for ``cell``, or the defaults (with the reason in ``source``)."""
    if not has_gpus:
        return Resources(None, DEFAULT_MEM_GB, DEFAULT_TIME_MIN,
                         source="defaults: the cluster lists no GPU (sinfo), so jobs ask for none")
    from ..registry import plugins

    if plugins().adapters.get(cell.model).architecture is None and cell.cfg.model_path is None:
        return Resources(cell.processes, DEFAULT_MEM_GB, DEFAULT_TIME_MIN,
                         source=f"defaults: plan has no configuration for {cell.model}")
    return _planned(cell, gpu_type or PLANNED_GPU)


def parse_time(text: str) -> int:
    """Minutes from ``MIN``, ``H:MM:SS`` or ``D-HH:MM:SS`` (sbatch's forms)."""
    try:
        days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
        parts = [int(x) for x in rest.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        else:
            parts = [0] * (3 - len(parts)) + parts
            minutes = parts[0] * 60 + parts[1] + math.ceil(parts[2] / 60)
        minutes += int(days or 0) * 24 * 60
    except ValueError:
        raise BenchmarkError(f"--slurm-time {text!r}: give minutes (90), H:MM:SS (1:30:00) or D-HH:MM:SS.") from None
    if minutes < 1:
        raise BenchmarkError(f"--slurm-time {text!r}: must be at least one minute.")
    return minutes
