"""``python -m benchmark plan``: its options, their checks (before torch or transformers are imported, so a typo
costs no import time), and the command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import BenchmarkError
from .measure_settings import TRAINED_NAMES, Settings


def add_options(pl) -> None:
    pl.add_argument("--model", required=True)
    pl.add_argument("--task", required=True)
    pl.add_argument("--gpus", help="[COUNTx]NAME, e.g. 2xA100-80GB, H100, 1xH200, 8xA100-40GB (required without "
                                   "--measure; with it, default: the local device)")
    pl.add_argument("--model-path", help="a folder with config.json, for models whose config does not ship")
    pl.add_argument("--micro-batch", type=int, help="force this micro-batch (default: the largest that fits)")
    pl.add_argument("--mfu", type=float, default=0.35, help="model FLOP utilisation for time estimates")
    pl.add_argument("--peak-tflops", type=float, help="bf16 peak of a GPU not in the built-in table")
    pl.add_argument("--n-train", type=int, help="training images (default: the task's published size)")
    pl.add_argument("--n-test", type=int, help="test images (default: the task's published size)")
    pl.add_argument("--tokens", type=int, help="tokens per training sample (default: the task's real prompt)")
    pl.add_argument("--json", action="store_true", help="print JSON (keys: docs/plan.md)")
    m = pl.add_argument_group("measure (random weights on the local device; docs/plan.md, Measured)")
    m.add_argument("--measure", action="store_true",
                   help="also build the real architecture with random weights here and measure memory and speed")
    m.add_argument("--layers", type=int, help="measure a slice: the first K decoder layers at full width")
    m.add_argument("--steps", type=int, default=3, help="measured optimizer steps per regime (after warm-up)")
    m.add_argument("--warmup", type=int, default=1, help="warm-up optimizer steps per regime")
    m.add_argument("--eval-images", type=int, default=4, help="images of the scoring comparison")
    m.add_argument("--regimes",
                   help=f"trained regimes to measure, comma-separated (default: {','.join(TRAINED_NAMES)})")
    m.add_argument("--device", default="auto", help="device to measure on (default: cuda:0 if any, else cpu)")
    m.add_argument("--engine", default="auto", help="launched as several processes (torchrun, accelerate launch): "
                                                    "the training engine, as run's --engine (auto, ddp, fsdp2, "
                                                    "deepspeed); measured against the plan's row for it")
    m.add_argument("--measure-out", help="JSON of the measurement (default ./plan-measure/<model>-<task>.json; "
                                         "never inside the results folder)")


def check(a) -> None:
    """Every argument that can be checked without torch: numbers, GPU names, model and task names."""
    from ..registry import plugins
    from ..validation import check_int
    from .hardware import Gpus

    for name in ("micro_batch", "n_train", "n_test", "tokens", "layers", "steps", "eval_images"):
        if getattr(a, name) is not None:
            check_int(name, getattr(a, name), 1)
    check_int("warmup", a.warmup, 0)
    if not 0 < a.mfu <= 1:
        raise BenchmarkError(f"--mfu must be in (0, 1], got {a.mfu}.")
    if a.gpus:
        Gpus.parse(a.gpus, a.peak_tflops)
    elif not a.measure:
        raise BenchmarkError("plan needs --gpus [COUNTx]NAME (e.g. --gpus 2xA100-80GB), or --measure to plan "
                             "and measure the local device.")
    if not a.measure and (a.layers or a.measure_out or a.regimes or a.engine != "auto"):
        raise BenchmarkError("--layers, --regimes, --engine and --measure-out belong to --measure: add --measure.")
    from ..config import ENGINE_CHOICES

    unknown = [r for r in (a.regimes or "").split(",") if a.regimes and r not in TRAINED_NAMES]
    if unknown:
        raise BenchmarkError(f"--regimes {','.join(unknown)}: plan --measure trains {', '.join(TRAINED_NAMES)}.")
    if a.engine not in ENGINE_CHOICES:
        raise BenchmarkError(f"--engine {a.engine!r}: choose one of {', '.join(ENGINE_CHOICES)}.")
    reg = plugins()
    reg.adapters.get(a.model)  # unknown names fail here, with suggestions
    reg.tasks.get(a.task)


def default_out(a) -> Path:
    return Path(a.measure_out or Path("plan-measure") / f"{a.model}-{a.task}"
                f"{f'-L{a.layers}' if a.layers else ''}.json")


def run(a) -> int:
    check(a)
    from .render import render

    if not a.measure:
        from .estimate import plan

        p = plan(a.model, a.task, gpus=a.gpus, model_path=a.model_path, micro_batch=a.micro_batch, mfu=a.mfu,
                 peak_tflops=a.peak_tflops, n_train=a.n_train, n_test=a.n_test, train_tokens=a.tokens)
        print(json.dumps(p.to_json(), indent=2) if a.json else render(p))
        return 0
    from ..distributed import current
    from .measure_report import render_measured, write_json
    from .measuring import measure

    settings = Settings(steps=a.steps, warmup=a.warmup, micro_batch=a.micro_batch, eval_images=a.eval_images,
                        peak_tflops=a.peak_tflops, mfu=a.mfu, engine=a.engine,
                        regimes=tuple(a.regimes.split(",")) if a.regimes else TRAINED_NAMES)
    record, p = measure(a.model, a.task, out=default_out(a), gpus=a.gpus, layers=a.layers, device=a.device,
                        settings=settings)
    if not current().is_main:  # one answer for the whole group
        return 0
    path = write_json(record, default_out(a))
    if a.json:
        print(json.dumps(record, indent=2))
    else:
        note = ("" if record["device"]["peak_tflops_bf16"] else "(no peak FLOP/s known for this device: the plan's "
                "hours above assume 1 TFLOP/s; give --peak-tflops for MFU and predicted times)\n")
        print(render(p), note, render_measured(record), sep="\n")
    print(f"measurement (random-init): {path}", file=sys.stderr)
    return 0
