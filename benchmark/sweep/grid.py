"""The grid of a sweep: one cell per (model, task), all its seeds in one ``run`` so that they share the feature
cache, and whether a cell is already finished in the results tree.

A cell *is* its ``run`` command line: ``--model M --task T`` followed by the sweep's own run flags, checked by the
``run`` parser and :func:`benchmark.validation.resolve` before anything is submitted. Whether a (regime, seed) of
a cell is finished is decided by the very check ``run`` makes before it starts
(:func:`benchmark.run.folders.check_existing` on the folder ``RunConfig.run_key`` names, against
``RunConfig.identity``), so a sweep skips exactly what ``run`` would skip.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import BASELINES, STAGES, RunConfig
from ..errors import BenchmarkError
from ..registry import plugins
from ..run.folders import check_existing
from ..schema import task_dir_name
from ..storage.confined import confined
from ..storage.paths import results_root
from ..validation import InputError, resolve

# What `run` parses from its flags: the RunConfig and the --accelerate-config file (None for one process).
ParseRun = Callable[[list[str]], tuple[RunConfig, str | None]]


@dataclass(frozen=True)
class Cell:
    """One (model, task) of the grid with all its seeds: the ``run`` flags it runs with, and their configuration."""

    cfg: RunConfig
    run_args: tuple[str, ...]  # the flags after `python -m benchmark run`
    processes: int = 1  # per machine: 1, or the --accelerate-config's (a GPU each)

    @property
    def model(self) -> str:
        return self.cfg.model

    @property
    def task(self) -> str:
        return self.cfg.task

    @property
    def name(self) -> str:
        """``model/task folder``, as the results tree names it (e.g. ``llava15-tiny/textile@max4``)."""
        return f"{self.cfg.model}/{task_dir_name(self.cfg.task, self.cfg.max_per_class)}"

    @property
    def key(self) -> str:
        """The cell's identity in the manifest: its run flags, as typed."""
        return " ".join(self.run_args)

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "benchmark", "run", *self.run_args]

    def runs(self) -> list[tuple[str, int]]:
        """Every (regime, seed) the cell's run writes a folder for, in the order `run` does them."""
        return [(r, s) for s in self.cfg.seeds for r in STAGES if r in self.cfg.regimes]


def results_of(cfg: RunConfig) -> Path:
    return Path(cfg.results_dir) if cfg.results_dir else results_root()


def _with_clip(cfg: RunConfig) -> RunConfig:
    """The configuration with its CLIP resolved as ``Runner`` resolves it: the baselines' identity names it. Only
    the baselines stage reads it (and only then is open_clip's module, with torch, imported)."""
    if BASELINES not in cfg.regimes:
        return cfg
    from ..baselines import choose_clip

    declared = plugins().adapters.get(cfg.model).clip
    if callable(declared):  # the encoder depends on the checkpoint (a composed model's spec)
        declared = declared(cfg.model_path)
    clip = choose_clip(cfg.model, declared, cfg.clip_model, cfg.clip_pretrained)
    return replace(cfg, clip_model=clip.model, clip_pretrained=clip.pretrained)


def cell_of(run_args: list[str] | tuple[str, ...], parse_run: ParseRun) -> Cell:
    """The cell of a ``run`` command line, checked as ``run`` checks it (one line naming the flag on a problem)."""
    cfg, accelerate_config = parse_run(list(run_args))
    processes = 1
    if accelerate_config:  # started as `run --accelerate-config F` starts it: F's processes, checked as it checks
        from ..launch import check_run, read_config

        lc = read_config(accelerate_config)
        processes = lc.processes_per_machine
        check_run(cfg, lc.num_processes)
    else:
        resolve(cfg)  # every range and folder check of `run`, before anything is submitted
    return Cell(cfg=_with_clip(cfg), run_args=tuple(run_args), processes=processes)


def expand(models: tuple[str, ...], tasks: tuple[str, ...], run_flags: list[str], parse_run: ParseRun) -> list[Cell]:
    """The cells of ``models`` x ``tasks``; unknown names are refused first, with suggestions."""
    if not models or not tasks:
        raise InputError("sweep needs --models A,B and --tasks X,Y (or --resume / --status to use sweep.json).")
    for flag in ("--model", "--task"):
        if any(f == flag or f.startswith(flag + "=") for f in run_flags):
            raise InputError(f"sweep takes {flag}s (comma-separated), not {flag}: e.g. {flag}s a,b.")
    for kind, names in (("model", models), ("task", tasks)):
        if len(set(names)) != len(names):
            raise InputError(f"--{kind}s lists a {kind} twice: {','.join(names)}.")
    reg = plugins()
    for m in models:
        reg.adapters.get(m)  # UnknownNameError: "Did you mean ...", the known names
    for t in tasks:
        reg.tasks.get(t)
    return [cell_of(["--model", m, "--task", t, *run_flags], parse_run) for m in models for t in tasks]


def progress(cell: Cell, results: Path) -> tuple[int, int]:
    """(finished runs, runs) of ``cell`` in ``results``: a run counts when ``run`` would skip it.

    Raises :class:`BenchmarkError` (a folder of another configuration, a corrupt result) as ``run`` would.
    """
    done = 0
    for regime, seed in cell.runs():
        folder = confined(cell.cfg.run_key(regime, seed).under(results), results, "run folder")
        if check_existing(folder, cell.cfg.identity(regime, seed), log=lambda *_: None):
            done += 1
    return done, len(cell.runs())


def problem_of(cell: Cell, results: Path) -> tuple[int, int, str | None]:
    """:func:`progress`, with a problem as its message instead of an exception (for ``--status``)."""
    try:
        return (*progress(cell, results), None)
    except BenchmarkError as exc:
        return 0, len(cell.runs()), str(exc)
