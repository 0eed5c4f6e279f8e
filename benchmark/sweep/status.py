"""The state of every cell, from the results tree first and the scheduler (or the local process) second.

- ``finished``: every (regime, seed) of the cell is finished with the cell's identity (the check ``run`` makes);
- ``running`` / ``pending``: its job runs / waits (SLURM's RUNNING, COMPLETING … / PENDING, REQUEUED …), or
  its local process is alive;
- ``failed``: its job or process ended (or the scheduler no longer knows it) and the cell is not finished; the
  last error line of its log and the log's path say why;
- ``missing``: never submitted (a cell of the grid absent from ``sweep.json``).

Job states come from ``squeue`` (every job the controller still holds, finished ones included) and, for jobs it
has forgotten, from ``sacct`` where accounting is enabled.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
ACTIVE = ("pending", "running")
# Lines that say why a job stopped: the run's own `error: …`, a traceback's last line, slurmstepd's verdict.
_ERROR = re.compile(r"error|exception|traceback|cancelled|time limit|killed|preempt|oom", re.I)


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def scheduler_states(job_ids: list[str]) -> dict[str, str]:
    """State of each job id the scheduler knows (``squeue``, then ``sacct``); ids it does not know are absent."""
    ids = {str(j) for j in job_ids if j}
    if not ids or not shutil.which("squeue"):
        return {}
    states = {}
    for line in _run(["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(sorted(ids))]).splitlines():
        job, _, state = line.strip().partition("|")
        if job in ids:
            states[job] = state.strip().split()[0] if state.strip() else "UNKNOWN"
    gone = sorted(ids - set(states))
    if gone and shutil.which("sacct"):  # without accounting sacct prints nothing usable: those stay unknown
        out = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(gone)])
        for line in out.splitlines():
            job, _, state = line.strip().partition("|")
            if job in ids and state:
                states[job] = state.split()[0]
    return states


def last_error_line(log: str | None) -> str:
    """The last line of ``log`` that says what went wrong (else its last line); '' without a log."""
    if not log or not Path(log).is_file():
        return ""
    with open(log, "rb") as f:
        f.seek(max(0, Path(log).stat().st_size - 64 * 1024))  # the tail is enough, whatever the log's size
        lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR.search(ln)]
    return (errors or lines or [""])[-1][:300]


def _alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cell_state(entry: dict | None, done: int, total: int, job_state: str | None) -> tuple[str, str]:
    """(state, why) of one cell from its manifest entry, its finished runs and its job's scheduler state."""
    if total and done == total:
        return "finished", ""
    if entry is None or not entry.get("attempts"):
        return "missing", "not submitted"
    if entry.get("executor") == "slurm":
        if job_state in PENDING:
            return "pending", job_state
        if job_state in RUNNING:
            return "running", job_state
        why = job_state or "no longer known to the scheduler"
    elif entry.get("state") == "running" and _alive(entry.get("pid"), entry.get("host")):
        return "running", f"process {entry['pid']}"
    else:
        why = f"exit code {entry['exit_code']}" if entry.get("exit_code") is not None else "process ended"
    line = last_error_line(entry.get("log"))
    return "failed", f"{why}; {line}" if line else why
