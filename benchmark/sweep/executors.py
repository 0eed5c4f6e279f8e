"""Where the cells run: on this machine (``local``: one after another, or ``--jobs N`` at a time) or as SLURM jobs
(``slurm``: one job per cell through submitit, https://github.com/facebookincubator/submitit).

Either way a cell is its ``python -m benchmark run …`` command line and writes only to the results tree; nothing
is read back from a job but the files it wrote there. On SLURM the job is submitit's command-function helper
(``submitit.helpers.CommandFunction``) made checkpointable: when the scheduler pre-empts the job or its time
limit nears (submitit's USR2 signal, ``--signal USR2@90``), submitit requeues the same command line, and the run
resumes from its own saved state (finished folders are skipped, training continues from its last checkpoint).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import BenchmarkError
from . import manifest
from .grid import problem_of

NO_SBATCH = ("--executor slurm: `sbatch` is not on the PATH, so there is no SLURM cluster to submit to from here. "
             "Run the sweep on the cluster's login node, or use --executor local to run the cells on this machine.")


# -- local -----------------------------------------------------------------------------------------------------
def run_local(cells, results: Path, *, jobs: int = 1, log=print) -> dict[str, int]:
    """Run each cell's command here (``jobs`` at a time), its output in ``sweep-logs/<cell>.log``; exit codes by
    cell key. The manifest records each process when it starts and its exit code when it ends."""
    logs = Path(results) / manifest.LOGS
    logs.mkdir(parents=True, exist_ok=True)
    codes: dict[str, int] = {}
    lock = threading.Lock()

    def one(cell) -> None:
        log_path = logs / (cell.name.replace("/", "__") + ".log")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(cell.command(), stdout=out, stderr=subprocess.STDOUT)
            manifest.update(results, lambda m: manifest.record_job(
                m, cell, executor="local", pid=proc.pid, log=str(log_path), state="running"))
            with lock:
                log(f"[run] {cell.name}: process {proc.pid}, log {log_path}")
            code = proc.wait()
        codes[cell.key] = code

        done, total, _problem = problem_of(cell, results)  # finished means: in the results tree

        def ended(m):
            e = manifest.entry(m, cell.key)
            e.update(exit_code=code, finished_at=manifest.now(), state="finished" if done == total else "failed")

        manifest.update(results, ended)
        with lock:
            ok = code == 0 and done == total
        log(f"[{'done' if ok else 'failed'}] {cell.name}" + ("" if ok else f": exit code {code}, {done}/{total} "
                                                                         f"runs finished, see {log_path}"))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(one, c) for c in cells]:
            future.result()
    return codes


# -- SLURM -----------------------------------------------------------------------------------------------------
def check_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise BenchmarkError(NO_SBATCH)


def _scheduler_line(exc: Exception) -> str:
    """The scheduler's own message on one line (sbatch's `sbatch: error: …` lines, joined)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln.removeprefix("sbatch: error: ") for ln in lines if "error" in ln.lower()]
    return "; ".join(dict.fromkeys(errors or lines[-1:] or [type(exc).__name__]))


def slurm_parameters(cell, res, options: dict) -> dict:
    """submitit AutoExecutor parameters of ``cell``'s job: ``res`` (from plan) with the user's overrides."""
    params = {"name": f"projbench:{cell.name}", "timeout_min": res.time_min, "mem_gb": res.mem_gb,
              "nodes": 1, "tasks_per_node": 1,
              # Requeue-able on pre-emption (PreemptMode=REQUEUE), as well as by submitit on its signal.
              "slurm_additional_parameters": {"requeue": True}}
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    for key, value in options.items():
        if value is not None:
            params[key] = value
    return params


def submit_slurm(cell, results: Path, params: dict, *, max_requeues: int = 3) -> tuple[str, str]:
    """Submit ``cell`` as one SLURM job; (job id, its stderr log path). A rejection is one line, nothing recorded."""
    import submitit
    from submitit.core.utils import FailedJobError

    from .job import RunCommand

    check_sbatch()
    folder = Path(results) / manifest.LOGS / "%j"
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_requeues)
        ex.update_parameters(**params)
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's refusal: said once, below
            job = ex.submit(RunCommand(cell.command(), verbose=True, cwd=os.getcwd()))
    except (FailedJobError, subprocess.CalledProcessError) as exc:
        raise BenchmarkError(f"the scheduler refused the job of {cell.name}: {_scheduler_line(exc)}") from None
    except ValueError as exc:  # submitit's check of a parameter
        raise BenchmarkError(f"--slurm-* setting refused for {cell.name}: {_scheduler_line(exc)}") from None
    return str(job.job_id), str(job.paths.stderr)
