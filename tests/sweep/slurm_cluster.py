"""A real one-node SLURM cluster in a temporary folder, for the sweep tests (DESIGN.md §4, checked with Debian
bookworm's slurm-wlm 22.05 and munge 0.5): ``munged`` as user munge with its own 1,024-byte key and socket,
``slurmctld`` and ``slurmd`` as root with process tracking by /proc (no cgroups), no accounting, one node named
``hostname -s`` with ``CPUs=2`` in one default partition. Clients find it through ``SLURM_CONF``.

Each daemon runs in the foreground as a child of the test process and is stopped by its process id.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
INSTALL = "apt-get install -y slurm-wlm munge"
NODE_MEMORY_MB = 20000
PARTITION = "debug"


def missing() -> str | None:
    """Why a cluster cannot be started here (None if it can)."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing): install it with `{INSTALL}` (as root)"
    if os.geteuid() != 0:
        return "the test SLURM cluster runs its daemons as root (SlurmUser=root); run the tests as root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return f"no user 'munge' (the munge package makes it): `{INSTALL}`"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def write_config(root: Path) -> Path:
    """slurm.conf (and an empty cgroup.conf: nothing uses cgroups) for a one-node cluster under ``root``."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=projbench-test", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        # cred_expire: a requeued job may start again after this many seconds (default 120).
        "AuthType=auth/munge", f"AuthInfo=socket={root / 'munge' / 'munge.socket'},cred_expire=5",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none", "ReturnToService=2", "SchedulerType=sched/backfill",
        # Scheduling and job state changes are seen within a second or two, not the default tens of seconds.
        "SchedulerParameters=sched_interval=1,bf_interval=1", "MessageTimeout=30", "KillWait=5",
        "JobRequeue=1",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={NODE_MEMORY_MB} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    (root / "cgroup.conf").write_text("")
    return conf


def _start_munged(root: Path) -> subprocess.Popen:
    d = root / "munge"
    d.mkdir(mode=0o700)
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    munge = pwd.getpwnam("munge")
    for p in (d, key):
        os.chown(p, munge.pw_uid, munge.pw_gid)
    key.chmod(0o400)
    d.chmod(0o755)
    cmd = ["setpriv", f"--reuid={munge.pw_uid}", f"--regid={munge.pw_gid}", "--clear-groups", _exe("munged"),
           "--foreground", f"--socket={d / 'munge.socket'}", f"--key-file={key}", f"--pid-file={d / 'munged.pid'}",
           f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}", "--force"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(what: str, check, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p}:\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise RuntimeError(f"test SLURM cluster: {what} not ready after {timeout:.0f} s\n{tails}")


def _node_idle(env) -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env).stdout
    return out.strip() == "idle"


def _stop(procs: list[subprocess.Popen], env) -> None:
    jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env).stdout.split()
    if jobs:
        subprocess.run(["scancel", *jobs], env=env, capture_output=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env).stdout.strip():
            time.sleep(0.5)
    for proc in reversed(procs):  # slurmd, slurmctld, then munged: each by its own process id
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def cluster():
    """Start the cluster in a new temporary folder; yield the environment its clients need (``SLURM_CONF``).

    The folder is made here, readable by all, and not under pytest's (mode 700) tmp folder: munged runs as the
    munge user and must reach its socket and key."""
    root = Path(tempfile.mkdtemp(prefix="projbench-slurm-"))
    root.chmod(0o755)
    conf = write_config(root)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs = [_start_munged(root)]
    try:
        _wait("munged", lambda: (root / "munge" / "munge.socket").exists(), 30, [root / "munge" / "munged.log"])
        procs.append(subprocess.Popen([_exe("slurmctld"), "-D", "-i", "-f", str(conf)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([_exe("slurmd"), "-D", "-f", str(conf)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait("the node", lambda: _node_idle(env), 90, [root / "slurmctld.log", root / "slurmd.log"])
        yield env
    finally:
        _stop(procs, env)
        shutil.rmtree(root, ignore_errors=True)
