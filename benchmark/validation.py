"""Checks of a run's configuration before anything is loaded or written: one clear line per problem.

Every numeric setting is range-checked (a zero batch size or a NaN learning rate would otherwise fail deep in
training, or worse, produce a "finished" run with a NaN loss), seeds and regimes must be non-empty, the device
must exist, the results folder must be a writable directory, and the choices (evaluation mode, score
normalisation, probe early stopping) must be known ones. ``validate_run`` raises :class:`InputError`
naming the flag and the fix; the CLI turns it into one line on stderr and exit code 2.

:func:`resolve` runs the checks once and yields the run plan (:class:`~benchmark.config.RunPlan`): the folders
and, per fine-tuned regime, the training layout (global batch, micro-batch, accumulation, processes) that every
later reader takes from the plan instead of deriving it again.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from .config import (
    DEFAULT_MICRO_BATCH,
    EARLY_STOPPING,
    ENGINE_CHOICES,
    EVAL_MODES,
    FINE_TUNED,
    SCORE_NORMS,
    STAGES,
    ProbeConfig,
    RunConfig,
    RunPlan,
    TrainingLayout,
)
from .errors import BenchmarkError

MAX_SEED = 2**32 - 1         # numpy's and sklearn's seeds are 32-bit; torch's are wider
MAX_COUNT = 2**31 - 1        # sizes and counts: beyond this, a typo rather than a setting
MAX_LR = 10.0                # AdamW overflows near 1e38; anything above 10 is a typo (paper: 2e-5 to 1e-3)
DTYPES = ("float32", "bfloat16", "float16")


class InputError(BenchmarkError):
    """A command-line flag (or RunConfig field) has a value that cannot work."""


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_int(field: str, value, low: int, high: int = MAX_COUNT, flag: str | None = None) -> None:
    flag = flag or _flag(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{flag} must be an integer, got {value!r}.")
    if not low <= value <= high:
        raise InputError(f"{flag} must be between {low} and {high}, got {value}.")


def check_rate(field: str, value, flag: str | None = None, high: float | None = None) -> None:
    """A learning rate or similar: a finite number > 0 (and <= ``high``)."""
    flag = flag or _flag(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{flag} must be a finite number greater than 0, got {value!r}.")
    if high is not None and value > high:
        raise InputError(f"{flag} must be at most {high}, got {value!r}.")


def check_fraction(field: str, value, open_low: bool, open_high: bool, flag: str | None = None) -> None:
    flag = flag or _flag(field)
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and (value > 0 if open_low else value >= 0) and (value < 1 if open_high else value <= 1))
    if not ok:
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise InputError(f"{flag} must be a number in {interval}, got {value!r}.")


def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda[:i]`` with an existing GPU ``i``, or ``mps`` where available."""
    if device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InputError(f"--device {device!r}: no CUDA GPU is available here; use --device cpu (or auto).")
        if dev.index is not None and dev.index >= n:
            raise InputError(f"--device {device!r}: there are {n} CUDA device(s), cuda:0 to cuda:{n - 1}.")
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise InputError(f"--device {device!r} is not available here; use auto, cpu or cuda.")


def _can_write_in(directory: Path) -> bool:
    """Try it: permission bits say nothing for root, read-only mounts or /proc. The probe leaves no file."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def check_writable_dir(path, flag: str) -> None:
    """``path`` is a writable directory, or can be created as one (nothing is created here)."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{flag} {str(path)!r} is a file, not a directory; give a directory.")
        if not _can_write_in(p):
            raise InputError(f"{flag} {str(path)!r} is not writable; choose a directory you can write to.")
        return
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {str(path)!r} cannot be created: {parent} is a file.")
    if not _can_write_in(parent):
        raise InputError(f"{flag} {str(path)!r} cannot be created: {parent} is not writable.")


def validate_run(cfg: RunConfig, results_dir: Path, cache_dir: Path) -> None:
    """Raise :class:`InputError` for the first setting of ``cfg`` that cannot work."""
    _check_plan(cfg)
    _check_numbers(cfg)
    _check_probe(cfg.probe)
    if cfg.dtype is not None and cfg.dtype not in (*DTYPES, "auto"):
        raise InputError(f"--dtype {cfg.dtype!r} is not supported; use {', '.join(DTYPES)}.")
    if cfg.data_dir is not None and not Path(cfg.data_dir).expanduser().is_dir():
        raise InputError(f"--data-dir {cfg.data_dir!r} does not exist or is not a directory.")
    check_device(cfg.device)
    check_writable_dir(results_dir, "--results-dir")
    check_writable_dir(cache_dir, "--cache-dir")
    _check_choices(cfg)


def _check_plan(cfg: RunConfig) -> None:
    """Seeds and regimes: non-empty, known, no repeats."""
    if not cfg.seeds:
        raise InputError("--seeds is empty; give at least one seed, e.g. --seeds 0 or --seeds 0,1,2.")
    for s in cfg.seeds:
        check_int("seeds", s, 0, MAX_SEED, flag=f"--seeds (seed {s!r})")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise InputError(f"--seeds lists a seed twice: {','.join(map(str, cfg.seeds))}.")
    if not cfg.regimes:
        raise InputError(f"--regimes is empty; give one or more of {','.join(STAGES)}.")
    for r in cfg.regimes:
        if r not in STAGES:
            raise InputError(f"--regimes: unknown regime {r!r}; choose from {','.join(STAGES)}.")
    if len(set(cfg.regimes)) != len(cfg.regimes):
        raise InputError(f"--regimes lists a regime twice: {','.join(cfg.regimes)}.")


def _check_numbers(cfg: RunConfig) -> None:
    """Sizes, counts and rates of the run."""
    for field in ("eval_batch_size", "score_rows", "epochs", "lora_rank"):
        check_int(field, getattr(cfg, field), 1)
    for field in ("global_batch", "micro_batch"):
        if getattr(cfg, field) is not None:
            check_int(field, getattr(cfg, field), 1)
    if cfg.max_per_class is not None:
        check_int("max_per_class", cfg.max_per_class, 1)
    if cfg.checkpoint_every is not None:
        check_int("checkpoint_every", cfg.checkpoint_every, 0)
    for field in ("lr_proj", "lr_e2e", "lr_lora"):
        check_rate(field, getattr(cfg, field), high=MAX_LR)
    check_fraction("warmup_ratio", cfg.warmup_ratio, open_low=False, open_high=False, flag="warmup_ratio")
    check_fraction("lora_dropout", cfg.lora_dropout, open_low=False, open_high=True)


def _check_probe(p: ProbeConfig) -> None:
    check_int("max_epochs", p.max_epochs, 1, flag="--probe-max-epochs")
    check_int("seeds", p.seeds, 1, flag="--probe-seeds")
    check_int("batch_size", p.batch_size, 1, flag="probe batch_size")
    check_int("patience", p.patience, 1, flag="probe patience")
    check_rate("lr", p.lr, flag="probe lr")
    check_fraction("val_fraction", p.val_fraction, open_low=True, open_high=True, flag="probe val_fraction")
    if not p.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in p.hidden):
        raise InputError(f"probe hidden sizes must be positive integers, got {p.hidden!r}.")


def _check_choices(cfg: RunConfig) -> None:
    if cfg.eval_mode not in EVAL_MODES:
        raise InputError(f"Evaluation mode {cfg.eval_mode!r} is not available; use one of {EVAL_MODES}.")
    if cfg.score_norm not in SCORE_NORMS:
        raise InputError(f"--score-norm {cfg.score_norm!r} is not available; use one of {SCORE_NORMS}.")
    if cfg.probe.early_stopping not in EARLY_STOPPING:
        raise InputError(f"Probe early stopping {cfg.probe.early_stopping!r} is not available; use one of "
                         f"{EARLY_STOPPING}.")
    if cfg.engine not in ENGINE_CHOICES:
        raise InputError(f"--engine {cfg.engine!r}: choose one of {', '.join(ENGINE_CHOICES)}.")


def batch_layout(global_batch: int, micro_batch: int | None, processes: int) -> tuple[int, int]:
    """(micro-batch, accumulation steps) with global = micro x processes x accumulation; errors name the fix.

    ``micro_batch`` None picks the largest divisor of a process's share of the global batch up to
    ``DEFAULT_MICRO_BATCH``; a micro-batch larger than the share shrinks to it.
    """
    if global_batch < 1 or (micro_batch is not None and micro_batch < 1):
        raise InputError(f"--global-batch ({global_batch}) and --micro-batch ({micro_batch}) must be positive.")
    if global_batch % processes:
        raise InputError(f"--global-batch {global_batch} is not divisible by the {processes} processes: use a "
                         f"multiple of {processes}.")
    share = global_batch // processes
    if micro_batch is None:
        micro = max(d for d in range(1, min(DEFAULT_MICRO_BATCH, share) + 1) if share % d == 0)
    else:
        micro = min(micro_batch, share)
    if share % micro:
        raise InputError(
            f"--global-batch {global_batch} is not divisible by {processes} process(es) x --micro-batch {micro}: "
            f"choose a micro-batch that divides {share}, or a global batch that is a multiple of {processes * micro}."
        )
    return micro, share // micro


def resolve(cfg: RunConfig, *, processes: int = 1, results_dir: Path | None = None,
            cache_dir: Path | None = None) -> RunPlan:
    """Check ``cfg`` once and resolve what it leaves open: the folders, and the training layout of each fine-tuned
    regime for ``processes`` processes. Raises :class:`InputError` naming the flag and the fix."""
    from benchmark.storage.paths import cache_root, results_root

    results_dir = Path(results_dir or cfg.results_dir or results_root())
    cache_dir = Path(cache_dir or cfg.cache_dir or cache_root())
    validate_run(cfg, results_dir, cache_dir)
    layouts = {}
    for regime in cfg.regimes:
        if regime in FINE_TUNED:  # a global batch that cannot be split fails here, before any work
            global_batch = cfg.global_batch_for(regime)
            micro, accumulation = batch_layout(global_batch, cfg.micro_batch, processes)
            layouts[regime] = TrainingLayout(global_batch=global_batch, micro_batch=micro,
                                             accumulation=accumulation, processes=processes)
    return RunPlan(cfg=cfg, results_dir=results_dir, cache_dir=cache_dir, processes=processes, training=layouts)
