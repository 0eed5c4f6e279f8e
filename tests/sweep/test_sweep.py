"""`sweep` without a cluster: the grid, the finished check against real run identities, the manifest, and bad input.

Finished runs are written as `run` writes their identity files (config.json and a sealed metrics.json whose
config_hash is the digest of RunConfig.identity), so the sweep's skip rule is checked against the run's own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmark.cli import build_parser, main, run_config
from benchmark.schema import RESULT_SCHEMA_VERSION, config_record, digest
from benchmark.storage.integrity import seal
from benchmark.storage.results import atomic_write_json
from benchmark.sweep import executors, manifest, resources, status

FLAGS = ["--seeds", "0,1", "--max-per-class", "2", "--regimes", "zero-shot,ft-proj", "--no-progress"]
MODELS, TASKS = ("llava15-tiny", "paligemma-tiny"), ("textile", "digits")


def finish(results: Path, model: str, task: str, *, skip: tuple = ()) -> None:
    """The result folders `run` leaves for one cell of FLAGS, except the (regime, seed)s in ``skip``."""
    cfg = run_config(build_parser().parse_args(["run", "--model", model, "--task", task, *FLAGS,
                                                "--results-dir", str(results)]))
    for seed in cfg.seeds:
        for regime in cfg.regimes:
            if (regime, seed) in skip:
                continue
            d = cfg.run_key(regime, seed).under(results)
            identity = cfg.identity(regime, seed)
            atomic_write_json(d / "config.json", seal(config_record(identity, cfg)))
            atomic_write_json(d / "metrics.json", seal({
                "schema_version": RESULT_SCHEMA_VERSION, "model": model, "task": task, "regime": regime,
                "seed": seed, "config_hash": digest(identity), "metrics": {"macro_f1": 0.5, "accuracy": 0.5},
                "probe": {"post_projection": {"macro_f1": 0.5}}}))


def sweep(results: Path, *extra: str) -> int:
    return main(["sweep", "--models", ",".join(MODELS), "--tasks", ",".join(TASKS), *FLAGS,
                 "--results-dir", str(results), *extra])


@pytest.fixture
def submissions(monkeypatch):
    """Every job the sweep would submit, recorded instead of sent (the scheduler is what is replaced here)."""
    sent = []
    monkeypatch.setattr(executors, "check_sbatch", lambda: None)
    monkeypatch.setattr(resources, "cluster_has_gpus", lambda: False)

    def submit(cell, results, params, max_requeues=3):
        sent.append((cell.name, params))
        return str(100 + len(sent)), str(results / f"{len(sent)}.err")

    monkeypatch.setattr(executors, "submit_slurm", submit)
    monkeypatch.setattr(status, "scheduler_states", lambda ids: {i: "PENDING" for i in ids})
    return sent


def test_a_finished_grid_submits_nothing(tmp_path, submissions, capsys):
    for m in MODELS:
        for t in TASKS:
            finish(tmp_path, m, t)
    assert sweep(tmp_path, "--executor", "slurm") == 0
    out = capsys.readouterr().out
    assert out.count("[skip]") == 4 and "nothing to do: 4 cell(s) finished" in out
    assert submissions == []


def test_only_unfinished_cells_are_submitted_and_queued_ones_not_again(tmp_path, submissions, capsys):
    for m in MODELS:
        for t in TASKS:
            finish(tmp_path, m, t, skip=(("ft-proj", 1),) if (m, t) == ("paligemma-tiny", "digits") else ())
    assert sweep(tmp_path, "--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "1:30:00") == 0
    assert [name for name, _ in submissions] == ["paligemma-tiny/digits@max2"]
    params = submissions[0][1]
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 90
    assert "gpus_per_node" not in params  # the cluster has no GPU: none asked for, and said so
    assert "no GPU" in capsys.readouterr().out
    m = json.loads((tmp_path / "sweep.json").read_text())
    [e] = m["cells"]
    assert e["job_id"] == "101" and e["executor"] == "slurm" and e["command"][-len(FLAGS) - 2:-2] == FLAGS
    assert e["command"][2:8] == ["benchmark", "run", "--model", "paligemma-tiny", "--task", "digits"]
    # Again: the job is still pending, so nothing is submitted twice; --resume finds nothing either.
    assert sweep(tmp_path, "--executor", "slurm") == 0 and len(submissions) == 1
    assert main(["sweep", "--resume", "--results-dir", str(tmp_path)]) == 0 and len(submissions) == 1
    assert "paligemma-tiny/digits@max2: pending" in capsys.readouterr().out


def test_status_reads_the_results_tree_and_the_scheduler(tmp_path, submissions, monkeypatch, capsys):
    finish(tmp_path, "llava15-tiny", "textile", skip=(("ft-proj", 1),))
    assert main(["sweep", "--models", "llava15-tiny", "--tasks", "textile", *FLAGS, "--results-dir", str(tmp_path),
                 "--executor", "slurm"]) == 0
    log = tmp_path / "1.err"  # the stderr log the recorded submission named
    log.write_text("loading\nerror: the data folder vanished\nsrun: Job step aborted\n")
    monkeypatch.setattr(status, "scheduler_states", lambda ids: {i: "FAILED" for i in ids})
    capsys.readouterr()
    assert main(["sweep", "--status", "--results-dir", str(tmp_path)]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("llava15-tiny"))
    assert row.split()[2:5] == ["failed", "3/4", "101"] and "error: the data folder vanished" in row
    finish(tmp_path, "llava15-tiny", "textile")
    assert main(["sweep", "--status", "--results-dir", str(tmp_path)]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("llava15-tiny"))
    assert row.split()[2:4] == ["finished", "4/4"]
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"][0]["state"] == "finished"


def test_unknown_names_are_refused_before_anything_is_written(tmp_path, submissions, capsys):
    code = main(["sweep", "--models", "llava15-tiny,paligemma-tinyy", "--tasks", "textile", *FLAGS,
                 "--results-dir", str(tmp_path), "--executor", "slurm"])
    err = capsys.readouterr().err
    assert code == 2 and "Did you mean 'paligemma-tiny'" in err and len(err.strip().splitlines()) == 1
    assert submissions == [] and not (tmp_path / "sweep.json").exists()


def test_an_unknown_flag_is_named_with_the_closest_sweep_or_run_flag_before_anything_is_written(
        tmp_path, submissions, capsys):
    code = sweep(tmp_path, "--eval-mode", "loglik", "--slurm-partiton", "gpu", "--executor", "slurm")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--eval-mode (did you mean --eval?)" in err  # a run flag
    assert "--slurm-partiton (did you mean --slurm-partition?)" in err  # a sweep flag
    assert "`python -m benchmark run --help`" in err
    assert submissions == [] and not (tmp_path / "sweep.json").exists()


def test_slurm_without_sbatch_names_the_local_executor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = sweep(tmp_path, "--executor", "slurm")
    err = capsys.readouterr().err
    assert code == 2 and "sbatch" in err and "--executor local" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sweep.json").exists()


def test_manifest_is_refused_when_damaged_never_replaced(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text('{"format": 1, "cells": [')
    assert main(["sweep", "--status", "--results-dir", str(tmp_path)]) == 2
    assert "sweep.json" in capsys.readouterr().err
    assert (tmp_path / "sweep.json").read_text() == '{"format": 1, "cells": ['
    with pytest.raises(Exception, match="sweep.json"):
        manifest.update(tmp_path, lambda m: None)


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("1:30:00", 90), ("0:00:30", 1), ("1-00:00:00", 1440)])
def test_slurm_time_forms(text, minutes):
    assert resources.parse_time(text) == minutes


def test_local_cells_run_jobs_at_a_time_and_their_exit_codes_are_kept(tmp_path, monkeypatch, capsys):
    from benchmark.sweep import grid

    cells = grid.expand(("llava15-tiny", "paligemma-tiny"), ("textile",), [*FLAGS, "--results-dir", str(tmp_path)],
                        lambda f: (run_config(build_parser().parse_args(["run", *f])), None))
    # Each cell's command, replaced by a process that notes when it starts and ends; the second one fails.
    script = ("import sys, time; open(sys.argv[1], 'a').write(f'{time.time()} '); time.sleep(1.5); "
              "open(sys.argv[1], 'a').write(f'{time.time()}\\n'); print('error: no such thing'); sys.exit(int(sys.argv[2]))")
    commands = {c.key: [sys.executable, "-c", script, str(tmp_path / f"t{i}"), str(3 * i)] for i, c in enumerate(cells)}
    monkeypatch.setattr(grid.Cell, "command", lambda self, python=None: commands[self.key])
    said = []
    codes = executors.run_local(cells, tmp_path, jobs=2, log=said.append)
    assert [codes[c.key] for c in cells] == [0, 3]
    assert sum(s.startswith("[failed]") for s in said) == 2 and "exit code 3, 0/4 runs finished" in " ".join(said)
    (s0, e0), (s1, e1) = ([float(x) for x in (tmp_path / f"t{i}").read_text().split()] for i in (0, 1))
    assert s1 < e0 and s0 < e1  # they overlapped: two at a time
    m = manifest.read(tmp_path)
    # Exit code 0 is not "finished": only the results tree says that, and these runs wrote nothing.
    assert sorted((e["model"], e["state"], e["exit_code"], e["pid"] > 0) for e in m["cells"]) == [
        ("llava15-tiny", "failed", 0, True), ("paligemma-tiny", "failed", 3, True)]
    capsys.readouterr()
    assert main(["sweep", "--status", "--results-dir", str(tmp_path)]) == 0
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("llava", "pali"))}
    # The runs never wrote results: the cell that exited 0 is not finished either, and says so.
    assert rows["paligemma-tiny/textile@max2"].split()[2] == "failed"
    assert "exit code 3; error: no such thing" in rows["paligemma-tiny/textile@max2"]
    assert "exit code 0" in rows["llava15-tiny/textile@max2"]


def test_cells_never_submitted_are_missing(tmp_path, capsys):
    assert main(["sweep", "--status", "--models", "llava15-tiny", "--tasks", "textile", *FLAGS,
                 "--results-dir", str(tmp_path)]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("llava15-tiny"))
    assert row.split()[2:4] == ["missing", "0/4"]


def test_job_resources_come_from_plan(tmp_path, monkeypatch):
    """LLaVA-1.5-7B on derm: plan's hours and parameters give the job's time and memory; full FT-E2E, which does
    not fit one 80 GB GPU (tests/plan/test_plan.py), is refused before submission, naming the config that fits."""
    import functools
    import math

    import benchmark.plan
    from benchmark.sweep import grid

    real = functools.lru_cache(benchmark.plan.plan)  # the real plan, computed once for both cells below
    monkeypatch.setattr(benchmark.plan, "plan", lambda *a, **k: real(*a, **k))

    def cell(*flags):
        return grid.cell_of(["--model", "llava15", "--task", "derm", "--seeds", "0,1", "--results-dir",
                             str(tmp_path), *flags], lambda f: (run_config(build_parser().parse_args(["run", *f])), None))

    with pytest.raises(Exception, match=r"ft-e2e does not fit 1xA100-80GB.*2x80gb-fsdp\.yaml"):
        resources.resources_for(cell(), gpu_type="A100-80GB", has_gpus=True)
    res = resources.resources_for(cell("--lora"), gpu_type="A100-80GB", has_gpus=True)
    p = real("llava15", "derm", gpus="1xA100-80GB", model_path=None).to_json()
    single = {r: p["regimes"][r]["engines"]["single"] for r in ("zero-shot", "ft-proj", "ft-e2e-lora")}
    assert all(row["fits"] for row in single.values()) and not p["regimes"]["ft-e2e"]["engines"]["single"]["fits"]
    hours = p["hours_feature_extraction"] + 2 * sum(row["hours"] for row in single.values())
    assert res.gpus_per_node == 1 and res.source == "plan on 1xA100-80GB"
    assert res.time_min == math.ceil(90 * hours + 30) and res.time_min > 60
    assert res.mem_gb == math.ceil(2 * 2 * p["parameters"]["total"] / 1e9 + 16) == 45  # 7.06 B parameters
    # A CPU-only cluster: no GPU asked for, and the defaults say why.
    cpu = resources.resources_for(cell("--lora"), gpu_type=None, has_gpus=False)
    assert cpu.gpus_per_node is None and "no GPU" in cpu.source
