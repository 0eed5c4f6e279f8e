"""The protocol end to end on llava15-tiny: result files, skipping, resuming, and refusing to mix configs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.evaluate.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner
from benchmark.run import evaluate as evaluate_stage
from benchmark.run import train as train_stage

QUICK = dict(model="llava15-tiny", task="textile", max_per_class=6, probe=ProbeConfig(max_epochs=3), progress=False)


def metrics_of(results: Path) -> dict:
    return {str(p.relative_to(results).parent): json.loads(p.read_text()) for p in sorted(results.rglob("metrics.json"))}


def comparable(m: dict) -> dict:
    """What must be identical between two runs of the same configuration."""
    return {"metrics": m["metrics"], "probe": m["probe"], "final_loss": (m["training"] or {}).get("final_loss")}


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    """The demo command, at reduced size (as CI runs it)."""
    out = tmp_path_factory.mktemp("demo")
    code = main(["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs",
                 "3", "--results-dir", str(out), "--no-progress"])
    assert code == 0
    return out


def test_demo_writes_complete_result_files(demo_results):
    runs = metrics_of(demo_results)
    assert sorted(runs) == [f"llava15-tiny/textile@max6/{r}/seed0" for r in ("ft-e2e", "ft-proj", "zero-shot")]
    for name, m in runs.items():
        d = demo_results / name
        for key in ("schema_version", "model", "checkpoint", "projector_family", "task", "task_version",
                    "task_fingerprint", "regime", "seed", "eval_mode", "limit", "config_hash"):
            assert key in m, key
        assert m["limit"] == {"max_per_class": 6}
        assert 0.0 <= m["metrics"]["macro_f1"] <= 1.0 and 0.0 <= m["metrics"]["accuracy"] <= 1.0
        # 6 images per class hold out 1 for validation: too few to stop on, so cross-validated stopping.
        post = m["probe"]["post_projection"]
        assert post["n_val"] == 0 and post["stopping"]["method"] == "5-fold cross-validation on the training rows"
        prov = m["provenance"]
        assert prov["versions"]["torch"] and prov["versions"]["transformers"] and "git_commit" in prov
        preds = (d / "predictions.jsonl").read_text().splitlines()
        assert len(preds) == m["data"]["n_test"] == 18
        assert set(json.loads(preds[0])) >= {"uid", "label", "prediction", "scores"}
        assert json.loads((d / "config.json").read_text())["config_hash"] == m["config_hash"]
        # Training state is removed when done, except FT-E2E's small one, which `analyze` reads.
        assert (d / "checkpoint.safetensors").exists() == (m["regime"] == "ft-e2e")
        if m["regime"] == "zero-shot":
            assert "pre_projection" in m["probe"] and m["training"] is None
        else:
            assert (d / "projector.safetensors").exists()
            assert m["training"]["supervised_answer_tokens"] > 0
            # The paper's global batches are the defaults, recorded with where they came from.
            want = {"ft-proj": 64, "ft-e2e": 32}[m["regime"]]
            assert m["training"]["global_batch"] == want and str(want) in m["training"]["global_batch_source"]
            assert m["training"]["optimizer_steps"] == 1  # 18 training images fit in one global batch


def test_finished_runs_are_skipped(demo_results, capsys):
    before = {p: p.stat().st_mtime_ns for p in demo_results.rglob("metrics.json")}
    assert main(["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs",
                 "3", "--results-dir", str(demo_results), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 3
    assert before == {p: p.stat().st_mtime_ns for p in demo_results.rglob("metrics.json")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the QUICK configuration."""
    out = tmp_path_factory.mktemp("reference")
    Runner(RunConfig(**QUICK, results_dir=str(out))).run()
    return out


def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, monkeypatch, reference):
    resumed = tmp_path / "resumed"
    real_finetune, real_eval = train_stage.finetune, evaluate_stage.evaluate_loglik

    def crash_in_e2e(adapter, regime, *a, **k):
        if regime == "ft-e2e":
            raise KeyboardInterrupt
        return real_finetune(adapter, regime, *a, **k)

    monkeypatch.setattr(train_stage, "finetune", crash_in_e2e)
    with pytest.raises(KeyboardInterrupt):
        Runner(RunConfig(**QUICK, results_dir=str(resumed))).run()
    done = metrics_of(resumed)
    assert sorted(done) == [f"llava15-tiny/textile@max6/{r}/seed0" for r in ("ft-proj", "zero-shot")]
    assert not list(resumed.rglob("ft-e2e/**/metrics.json")), "nothing half-done is written"

    # Second interruption: after FT-E2E training, during its evaluation. The trained state must be reused.
    monkeypatch.setattr(train_stage, "finetune", real_finetune)
    calls = []

    def crash_in_eval(adapter, *a, **k):
        # the first evaluation after FT-E2E training (its trained weights saved), none before
        if list(resumed.rglob("ft-e2e/seed0/checkpoint.safetensors")) and not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return real_eval(adapter, *a, **k)

    monkeypatch.setattr(evaluate_stage, "evaluate_loglik", crash_in_eval)
    with pytest.raises(KeyboardInterrupt):
        Runner(RunConfig(**QUICK, results_dir=str(resumed))).run()
    assert list(resumed.rglob("ft-e2e/seed0/checkpoint.safetensors"))

    logs = []
    monkeypatch.setattr(train_stage, "finetune", lambda *a, **k: pytest.fail("training must not be redone"))
    Runner(RunConfig(**QUICK, results_dir=str(resumed)), log=logs.append).run()
    assert any("[resume] ft-e2e" in line for line in logs)
    assert sum("[skip]" in line for line in logs) == 2
    got, want = metrics_of(resumed), metrics_of(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert comparable(got[name]) == comparable(want[name]), name


def test_a_different_config_never_overwrites_results(demo_results):
    cfg = RunConfig(**{**QUICK, "probe": ProbeConfig(max_epochs=3)}, results_dir=str(demo_results), lr_proj=5e-4)
    before = {p: p.read_bytes() for p in demo_results.rglob("*.json")}
    with pytest.raises(BenchmarkError, match="differs in: lr_proj"):
        Runner(replace(cfg, regimes=("ft-proj",))).run()
    assert before == {p: p.read_bytes() for p in demo_results.rglob("*.json")}


def test_seeds_give_one_directory_each(tmp_path):
    results = Runner(RunConfig(**QUICK, seeds=(0, 1), regimes=("zero-shot",), results_dir=str(tmp_path))).run()
    assert [m["seed"] for m in results] == [0, 1]
    assert (tmp_path / "llava15-tiny/textile@max6/zero-shot/seed1/metrics.json").exists()


@pytest.fixture(scope="module")
def reference_8(tmp_path_factory):
    """An uninterrupted FT-Proj run at global batch 8 (3 optimizer steps on 18 images)."""
    out = tmp_path_factory.mktemp("reference8")
    Runner(RunConfig(**QUICK, regimes=("zero-shot", "ft-proj"), global_batch=8, results_dir=str(out))).run()
    return out


def test_training_interrupted_mid_epoch_continues_from_its_last_checkpoint(tmp_path, monkeypatch, reference_8):
    from benchmark.train import loop as training

    real_loss, calls = training.answer_loss, []

    def crash_on_third_batch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    cfg = RunConfig(**QUICK, regimes=("zero-shot", "ft-proj"), results_dir=str(tmp_path), global_batch=8)  # 3 steps
    monkeypatch.setattr(training, "answer_loss", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg).run()
    d = tmp_path / "llava15-tiny/textile@max6/ft-proj/seed0"
    assert (d / "train_state.json").exists() and not (d / "metrics.json").exists()

    monkeypatch.setattr(training, "answer_loss", real_loss)
    logs = []
    [_, ft] = Runner(cfg, log=logs.append).run()
    assert any("continuing training from train_state.json" in line for line in logs)
    assert ft["training"]["resumed_from_step"] == 2 and ft["training"]["optimizer_steps"] == 3
    # Throughput counts the examples this call trained: the last, short global batch, 18 images - 2 steps x 8.
    assert ft["training"]["examples_per_second"] * ft["training"]["seconds"] == pytest.approx(18 - 2 * 8)
    assert not list(d.glob("train_state*")), "mid-training state is removed once training is done"
    want = metrics_of(reference_8)["llava15-tiny/textile@max6/ft-proj/seed0"]
    assert comparable(ft) == comparable(want)
