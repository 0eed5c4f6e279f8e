"""``python -m benchmark sweep``: expand the grid, skip what is finished or already queued, run or submit the rest,
and keep ``sweep.json``; ``--status`` shows every cell, ``--resume`` re-submits the failed and missing ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from ..errors import BenchmarkError
from ..storage.paths import results_root
from . import executors, grid, manifest, resources, status

# `sweep` flag -> submitit AutoExecutor parameter
SLURM_OPTIONS = {"slurm_partition": "slurm_partition", "slurm_account": "slurm_account", "slurm_qos": "slurm_qos",
                 "slurm_constraint": "slurm_constraint", "slurm_gpus_per_node": "gpus_per_node",
                 "slurm_time": "timeout_min", "slurm_mem_gb": "mem_gb", "slurm_cpus_per_task": "cpus_per_task"}


def results_dir(run_flags: list[str]) -> Path:
    """The results folder the run flags name (``--results-dir``), else run's default."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--results-dir")
    known, _ = p.parse_known_args(run_flags)
    return Path(known.results_dir) if known.results_dir else results_root()


def _cells(a, parse_run, m: dict) -> list:
    """The grid's cells, or with --resume / --status and no grid, the manifest's."""
    if a.models or a.tasks:
        return grid.expand(a.models, a.tasks, a.run_flags, parse_run)
    if not (a.resume or a.status):
        raise BenchmarkError("sweep needs --models A,B and --tasks X,Y (or --resume / --status to use sweep.json).")
    if not m["cells"]:
        raise BenchmarkError(f"no sweep recorded in {manifest.path_of(results_dir(a.run_flags))}: start one with "
                             "--models A,B --tasks X,Y (and the same --results-dir).")
    return [grid.cell_of(e["run_args"], parse_run) for e in m["cells"]]


def _states(cells, m: dict, results: Path) -> list[tuple]:
    """(cell, entry, done, total, state, why) of every cell."""
    entries = [manifest.entry(m, c.key) for c in cells]
    jobs = status.scheduler_states([e["job_id"] for e in entries if e and e.get("executor") == "slurm"
                                    and e.get("job_id")]) if any(entries) else {}
    rows = []
    for cell, e in zip(cells, entries, strict=True):
        done, total, problem = grid.problem_of(cell, results)
        state, why = status.cell_state(e, done, total, jobs.get(str((e or {}).get("job_id"))))
        if problem:
            state, why = "failed", problem
        rows.append((cell, e, done, total, state, why))
    return rows


def _record_states(results: Path, rows) -> None:
    def change(m):
        for cell, _e, _done, _total, state, _why in rows:
            e = manifest.entry(m, cell.key)
            if e is not None:
                e["state"] = state

    if manifest.path_of(results).exists():
        manifest.update(results, change)


def show_status(a, parse_run) -> int:
    results = results_dir(a.run_flags)
    m = manifest.read(results)
    rows = _states(_cells(a, parse_run, m), m, results)
    _record_states(results, rows)
    table = [[cell.name, ",".join(map(str, cell.cfg.seeds)), state, f"{done}/{total}",
              (e or {}).get("job_id") or (e or {}).get("pid") or "-", why, (e or {}).get("log") or "-"]
             for cell, e, done, total, state, why in rows]
    print(tabulate(table, headers=["cell", "seeds", "state", "runs done", "job", "why", "log"],
                   maxcolwidths=[None, None, None, None, None, 60, None], disable_numparse=True))
    counts = {s: sum(r[4] == s for r in rows) for s in ("finished", "running", "pending", "failed", "missing")}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (manifest: {manifest.path_of(results)})")
    return 0


def _slurm_options(a, m: dict) -> dict:
    """The --slurm-* overrides: this command's, over those the manifest kept from earlier ones."""
    options = dict(m.get("slurm") or {})
    for flag, param in SLURM_OPTIONS.items():
        value = getattr(a, flag)
        if value is not None:
            options[param] = resources.parse_time(value) if flag == "slurm_time" else value
    return options


def _submit(todo, a, m: dict, results: Path) -> int:
    """Submit every cell of ``todo`` as a SLURM job; resources are settled for all before the first is sent."""
    executors.check_sbatch()
    options = _slurm_options(a, m)
    has_gpus = resources.cluster_has_gpus()
    planned = []
    for cell in todo:
        if {"gpus_per_node", "mem_gb", "timeout_min"} <= set(options):
            res = resources.Resources(options["gpus_per_node"], options["mem_gb"], options["timeout_min"],
                                      source="--slurm-* flags")
        else:
            res = resources.resources_for(cell, gpu_type=a.slurm_gpu_type, has_gpus=has_gpus)
        params = executors.slurm_parameters(cell, res, options)
        if not params.get("gpus_per_node"):
            params.pop("gpus_per_node", None)
        planned.append((cell, res, params))
    for cell, res, params in planned:
        job_id, log = executors.submit_slurm(cell, results, params, max_requeues=a.slurm_max_requeues)
        job = {"executor": "slurm", "job_id": job_id, "log": log, "state": "pending",
               "resources": {**res.to_json(), "submitted_with": params}}

        def record(m, cell=cell, job=job):
            manifest.record_job(m, cell, **job)
            m.update(executor="slurm", slurm=options)

        manifest.update(results, record)
        gpus = params.get("gpus_per_node") or 0
        print(f"[submitted] {cell.name}: job {job_id} ({gpus} GPU, {params['mem_gb']} GB, "
              f"{params['timeout_min']} min; {res.source}), log {log}")
    print(f"{len(planned)} job(s) submitted; `python -m benchmark sweep --status` shows them.")
    return 0


def run_sweep(a, parse_run) -> int:
    """Submit (or run here) every cell of the grid that is neither finished nor queued."""
    results = results_dir(a.run_flags)
    m = manifest.read(results)
    cells = _cells(a, parse_run, m)
    executor = a.executor or m.get("executor") or "local"
    todo, busy = [], 0
    for cell in cells:
        done, total = grid.progress(cell, results)  # a folder of another configuration: refused, as run does
        if done == total:
            print(f"[skip] {cell.name}: finished ({total} runs)")
        else:
            todo.append(cell)
    if todo:  # ask the scheduler only about cells that are not finished
        rows = _states(todo, m, results)
        for cell, _e, _done, _total, state, why in rows:
            if state in status.ACTIVE:
                print(f"[skip] {cell.name}: {state} ({why})")
        busy = sum(r[4] in status.ACTIVE for r in rows)
        todo = [r[0] for r in rows if r[4] not in status.ACTIVE]
    if not todo:
        print(f"nothing to do: {len(cells) - busy} cell(s) finished, {busy} queued or running.")
        return 0
    if executor == "slurm":
        return _submit(todo, a, m, results)
    codes = executors.run_local(todo, results, jobs=a.jobs)
    failed = [c.name for c in todo if codes.get(c.key)]
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(failed)}; `sweep --status` shows why.")
        return 1
    return 0


def sweep_main(a, parse_run) -> int:
    if a.jobs < 1:
        raise BenchmarkError(f"--jobs must be at least 1, got {a.jobs}.")
    if a.status:
        return show_status(a, parse_run)
    return run_sweep(a, parse_run)
