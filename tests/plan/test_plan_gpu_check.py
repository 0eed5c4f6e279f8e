"""The prepared GPU check's CPU path (``benchmarks/gpu_check.py --cpu-smoke``): the same steps on the tiny twin,
one JSON and one Markdown report, the short ``run --model-path`` trained as many steps as its data gives, from a
checkpoint marked random-init: its records carry the mark and the leaderboard refuses them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_runs_its_steps_on_the_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["random_init"] is True and report["measure"]["random_init"] is True
    training = report["measure"]["training"]
    assert set(training) == {"ft-proj", "ft-e2e", "ft-e2e-lora"}
    # Full FT-E2E with activation checkpointing, as asked of the check; the others as the plan recommends.
    assert [training[r]["gradient_checkpointing"] for r in ("ft-proj", "ft-e2e", "ft-e2e-lora")] == [False, True, False]
    assert report["measure"]["scoring"]["classes"] == 23 and report["measure"]["scoring"]["same_predictions"]
    run = report["run"]
    # 3 classes x 8 synthetic training images at a global batch of 8: 3 optimizer steps of micro-batches of 4.
    assert run["ok"] and run["training"]["optimizer_steps"] == 3 and run["training"]["micro_batch"] == 4
    # Run from a checkpoint marked random-init: its records say so and the leaderboard refuses every one of them.
    assert run["random_init_recorded"] and run["leaderboard_runs"] == 0 and run["leaderboard_refused"] >= 2
    md = (tmp_path / "report.md").read_text()
    assert "RANDOM-INIT" in md and "`run --model-path` (FT-Proj, synthetic images): ok" in md
