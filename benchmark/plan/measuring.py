"""``plan --measure`` end to end: device, model, the plan of exactly that model and device, the measurements, and
the record (:func:`measure`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import BenchmarkError
from .hardware import Gpus, canonical_gpu

REAL_SIZE_CPU_LIMIT = 2e9  # parameters: above this, a CPU measurement needs --layers (fp32: 4 bytes each)


def local_hardware(device, gpus: str | None, peak_tflops: float | None) -> tuple[Gpus, float | None]:
    """The plan's hardware for ONE local device (the measurement is one process), and its known peak or None.

    A CUDA device is named by ``--gpus`` or by the driver (``NVIDIA H200`` resolves to H200-141GB); a CPU has
    no table peak: MFU and predicted times then need ``--peak-tflops``."""
    import torch

    if device.type == "cuda":
        name = gpus or torch.cuda.get_device_name(device)
        hw = Gpus.parse(name, peak_tflops) if (gpus or canonical_gpu(name)) else None
        if hw is None:  # a GPU the table does not know: its memory from the driver, its peak only if given
            total = torch.cuda.get_device_properties(device).total_memory / 1e9
            return Gpus(1, name, total, peak_tflops or 1.0), peak_tflops
        return Gpus(1, hw.name, hw.memory_gb, hw.peak_tflops), hw.peak_tflops
    from .measure_device import available_memory_gb

    return Gpus(1, "CPU", available_memory_gb(), peak_tflops or 1.0), peak_tflops


def refuse_real_size_on_cpu(spec, device, layers: int | None) -> None:
    """A whole 7B config in fp32 on a CPU: refused with what it would need, before anything is built."""
    if device.type != "cpu" or layers is not None or spec.tiny or spec.architecture is None:
        return
    import torch

    arch = spec.architecture()
    with torch.device("meta"):
        n = sum(p.numel() for p in arch.build().parameters())
    if n > REAL_SIZE_CPU_LIMIT:
        layers_total = arch.llm_config.num_hidden_layers
        raise BenchmarkError(
            f"--measure {spec.name} on CPU: no accelerator here, and {n / 1e9:.2f} B parameters would need "
            f"{n * 4 / 1e9:.0f} GB in fp32 before any activation (and hours per step); run it on a GPU, or measure "
            f"a real-width slice with --layers K (e.g. --layers 2 of its {layers_total} decoder layers).")


def sample_tokens(adapter, task) -> int:
    """Tokens of one training sample with the longest answer, as the measured adapter encodes it."""
    from ..evaluate.prompt import build_question

    classes = list(task.classes)
    longest = max(classes, key=len)
    parts = adapter.encode(build_question(task.domain, classes, 0, "plan"), longest)
    return len(parts.prompt_ids) + len(parts.answer_ids)


def plan_engine(ctx, requested: str) -> str:
    """The plan's row for how this group trains (``benchmark.distributed.engine_for`` decides the same way)."""
    if not ctx.distributed:
        return "single"
    if ctx.deepspeed:
        return "zero3"
    return "fsdp" if requested == "fsdp2" or ctx.backend == "FSDP" else "ddp"


def measure(model: str, task_name: str, *, out: Path, gpus: str | None = None, layers: int | None = None,
            device: str | None = None, settings=None, cache_dir: str | None = None) -> tuple[dict, object]:
    """Measure ``model`` on ``task_name`` on the local device, or on every device of a launched group (torchrun,
    accelerate launch: one process per device); returns (record, plan of the measured model and devices)."""
    import dataclasses

    import torch

    from .. import distributed
    from ..registry import plugins
    from .estimate import plan
    from .measure import Settings, run_measurements, scratch_folder
    from .measure_device import DeviceMeter
    from .measure_model import load_measured
    from .measure_report import refuse_results_folder

    s = settings or Settings()
    reg = plugins()
    spec, task = reg.adapters.get(model), reg.tasks.get(task_name)
    if not task.classes:
        raise BenchmarkError(f"--measure needs the class names of {task_name!r}; its classes come from folders.")
    ctx = distributed.setup(device or "auto", s.engine)  # one process: no group, the local device
    dev = torch.device(ctx.device)
    refuse_real_size_on_cpu(spec, dev, layers)
    out = refuse_results_folder(out)
    hw, peak = local_hardware(dev, gpus, s.peak_tflops)
    hw = dataclasses.replace(hw, count=ctx.world_size)
    meter = DeviceMeter(dev)
    measured = load_measured(spec, layers=layers, device=str(dev), scratch=scratch_folder(out), cache_dir=cache_dir,
                             ctx=ctx)
    p = plan(model, task_name, gpus="", hardware=hw, architecture=measured.architecture, mfu=s.mfu,
             dtype_bytes=measured.adapter.dtype.itemsize, tokenizer_source=str(measured.folder),
             micro_batch=s.micro_batch, train_tokens=sample_tokens(measured.adapter, task))
    engine = plan_engine(ctx, s.engine)
    about = {"dtype": str(measured.adapter.dtype).removeprefix("torch."),
             "attention": measured.adapter.model.config._attn_implementation}
    raw = run_measurements(measured, p, task, meter=meter, s=s, engine=engine, ctx=ctx)
    return _record(spec, task, p, raw, layers=layers, source=measured.architecture.source, about=about,
                   device={"type": dev.type, "name": hw.name, "memory_gb": hw.memory_gb, "peak_tflops_bf16": peak},
                   group={"processes": ctx.world_size, "engine": engine, "engine_requested": s.engine},
                   meter=meter, s=s), p


def _record(spec, task, p, raw, *, layers, source, about, device, group, meter, s) -> dict:
    import torch

    from .measure_report import scoring_record, train_record

    peak = device["peak_tflops_bf16"]
    return {
        "kind": "plan-measure", "random_init": True, "model": spec.name, "task": task.name, "layers": layers,
        "config_source": source, "device": device, **group, "dtype": about["dtype"],
        "memory_method": meter.method, "torch": torch.__version__, "attention": about["attention"],
        "settings": {"steps": s.steps, "warmup": s.warmup, "micro_batch": s.micro_batch,
                     "eval_images": s.eval_images, "mfu_planned": s.mfu},
        "training": {r: train_record(p, r, v, peak_tflops=peak, mfu=s.mfu, engine=group["engine"],
                                     processes=group["processes"]) for r, v in raw["training"].items()},
        "scoring": scoring_record(p, raw["scoring"], peak_tflops=peak, mfu=s.mfu),
        "plan": p.to_json(),
    }
