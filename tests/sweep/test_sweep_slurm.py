"""`sweep --executor slurm` on a real one-node SLURM cluster (tests/sweep/slurm_cluster.py): 2 tiny twins x 1 task
x 2 seeds give the numbers of the same cells run here, a job cancelled part way is reported and `--resume` finishes
it with the same numbers, and the scheduler's refusal is one line with no manifest.

The two jobs ask for more than half the node's memory, so they run one after the other: the second is seen
pending while the first runs, the first is cancelled after its first seed, and the second is pre-empted after its
first seed (the USR2 signal SLURM sends before a time limit, as submitit's own tests do): submitit requeues it
and the run resumes from its saved state."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import slurm_cluster

from benchmark.cli import main

pytestmark = pytest.mark.slow

RUN = ["--seeds", "0,1", "--max-per-class", "2", "--probe-max-epochs", "1", "--probe-seeds", "1",
       "--no-control-probe", "--regimes", "zero-shot", "--no-progress"]
MODELS = ("llava15-tiny", "paligemma-tiny")
CELLS = tuple(f"{m}/textile@max2" for m in MODELS)
SERIAL = ["--slurm-mem-gb", str(slurm_cluster.NODE_MEMORY_MB * 6 // 10 // 1000)]  # > half the node: one at a time


@pytest.fixture(scope="module")
def slurm():
    """The cluster, its clients reached through SLURM_CONF in this process and every process it starts."""
    why = slurm_cluster.missing()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {why}", pytrace=False)
        pytest.skip(why)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "OMP_NUM_THREADS")}
    with slurm_cluster.cluster() as env:
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]
        os.environ["OMP_NUM_THREADS"] = "1"  # tiny models on 2 shared cores: threads only cost hand-offs
        try:
            yield env
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def sweep(results: Path, *extra: str) -> int:
    return main(["sweep", "--models", ",".join(MODELS), "--tasks", "textile", *RUN, "--results-dir", str(results),
                 *extra])


def states(results: Path, capsys) -> dict[str, list[str]]:
    """`sweep --status`, parsed: cell -> [state, runs done, job, why…]."""
    capsys.readouterr()
    assert main(["sweep", "--status", "--results-dir", str(results)]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith(MODELS)]
    return {r[0]: r[2:] for r in rows}


def wait_until(what: str, check, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(1)


def numbers(results: Path) -> dict:
    out = {}
    for p in sorted(results.rglob("metrics.json")):
        m = json.loads(p.read_text())
        out[str(p.relative_to(results).parent)] = (m["metrics"], m["probe"], m["config_hash"])
    return out


def requeued(results: Path, job: str) -> bool:
    """Whether submitit requeued ``job`` (its log says so: slurmstepd's "DUE TO JOB REQUEUE")."""
    return any("DUE TO JOB REQUEUE" in p.read_text(errors="replace")
               for p in (results / "sweep-logs" / job).glob("*_log.err"))


def job_ids() -> list[str]:
    return subprocess.run(["squeue", "-h", "--states=all", "-o", "%i"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_slurm_sweep_equals_local_and_resumes_a_cancelled_job(slurm, tmp_path, capsys):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    t = time.perf_counter()
    assert sweep(local, "--executor", "local") == 0
    local_s = time.perf_counter() - t
    assert sorted(numbers(local)) == [f"{c}/zero-shot/seed{s}" for c in CELLS for s in (0, 1)]

    t = time.perf_counter()
    assert sweep(remote, "--executor", "slurm", *SERIAL) == 0
    first, second = (json.loads((remote / "sweep.json").read_text())["cells"][i]["job_id"] for i in (0, 1))
    seen = states(remote, capsys)
    assert seen[CELLS[1]][0] == "pending" and seen[CELLS[0]][0] in ("pending", "running")

    # Cancel the first job once its first seed is written: the cell is half done.
    half = remote / CELLS[0] / "zero-shot" / "seed0" / "metrics.json"
    wait_until("the first seed of the first job is finished", half.exists)
    assert states(remote, capsys)[CELLS[0]][:3] == ["running", "1/2", first]
    subprocess.run(["scancel", first], check=True)
    wait_until("the cancelled cell is reported failed", lambda: states(remote, capsys)[CELLS[0]][0] == "failed")
    row = states(remote, capsys)[CELLS[0]]
    assert row[1] == "1/2" and "CANCELLED" in " ".join(row[3:])
    assert not (remote / CELLS[0] / "zero-shot" / "seed1" / "metrics.json").exists()

    # Pre-empt the second job after its first seed: requeued under the same job id, it finishes by itself.
    half = remote / CELLS[1] / "zero-shot" / "seed0" / "metrics.json"
    wait_until("the first seed of the second job is finished", half.exists)
    subprocess.run(["scancel", "--signal=USR2", second], check=True)
    wait_until("the pre-empted job is requeued", lambda: requeued(remote, second))
    assert states(remote, capsys)[CELLS[1]][0] in ("pending", "running")

    # --resume re-submits only the cancelled cell (the requeued one is not submitted twice).
    capsys.readouterr()
    assert main(["sweep", "--resume", "--results-dir", str(remote)]) == 0
    out = capsys.readouterr().out
    assert out.count("[submitted]") == 1 and f"[submitted] {CELLS[0]}" in out and f"[skip] {CELLS[1]}" in out
    wait_until("every cell is finished",
                lambda: [r[0] for r in states(remote, capsys).values()] == ["finished", "finished"])
    cells = json.loads((remote / "sweep.json").read_text())["cells"]
    assert [len(c["attempts"]) for c in cells] == [2, 1] and cells[1]["job_id"] == second
    slurm_s = time.perf_counter() - t
    assert numbers(remote) == numbers(local)

    # Nothing left to do: no job is submitted.
    before = job_ids()
    assert sweep(remote, "--executor", "slurm") == 0
    assert "nothing to do: 2 cell(s) finished" in capsys.readouterr().out and job_ids() == before
    print(f"\nlocal, one after another: {local_s:.0f} s; SLURM, one job cancelled and resumed, one pre-empted and "
          f"requeued: {slurm_s:.0f} s")


def test_a_partition_the_scheduler_rejects_is_one_line_and_no_manifest(slurm, tmp_path, capsys):
    assert sweep(tmp_path, "--executor", "slurm", "--slurm-partition", "no-such-partition") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid partition specified: no-such-partition" in err, err
    assert not (tmp_path / "sweep.json").exists()
