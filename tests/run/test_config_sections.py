"""Configuration in sections: one declaration per field drives the identity, the `run` parser and the run plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmark.cli import build_parser, run_config
from benchmark.config import OUTSIDE_IDENTITY, SECTIONS, RunConfig, TrainingLayout
from benchmark.validation import InputError, resolve

BASE = ["run", "--model", "llava15-tiny", "--task", "textile"]


def test_every_field_has_a_known_section():
    for f in dataclasses.fields(RunConfig):
        assert f.metadata.get("section") in SECTIONS, f.name


def test_execution_settings_are_outside_every_identity_by_construction():
    assert set(RunConfig._NOT_IDENTITY) == set(RunConfig.fields_of(*OUTSIDE_IDENTITY))
    cfg = RunConfig(model="m", task="t", lora=True)
    for stage in ("zero-shot", "ft-proj", "ft-e2e", "baselines"):
        assert not set(cfg.identity(stage, 0)) & set(RunConfig._NOT_IDENTITY), stage


def test_section_views_are_frozen_and_hold_their_fields():
    cfg = RunConfig(model="m", task="t", lr_proj=0.5, micro_batch=2)
    training = cfg.section("training")
    assert training.lr_proj == 0.5 and not hasattr(training, "micro_batch")
    assert cfg.section("execution").micro_batch == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        training.lr_proj = 1.0
    with pytest.raises(KeyError, match="no configuration section"):
        cfg.section("nope")


def test_run_parser_has_one_group_per_section():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    titles = [g.title for g in run._action_groups]
    assert all(title in titles for title in SECTIONS.values())


def test_parsed_flags_land_in_their_fields():
    a = build_parser().parse_args(BASE + ["--batch-size", "2", "--eval", "generate", "--no-progress",
                                          "--no-control-probe", "--probe-max-epochs", "3", "--baselines"])
    cfg = run_config(a)
    assert (cfg.micro_batch, cfg.eval_mode, cfg.progress) == (2, "generate", False)
    assert (cfg.probe.control, cfg.probe.max_epochs) == (False, 3)
    assert cfg.regimes[-1] == "baselines"


def test_resolve_yields_the_training_layout_of_each_fine_tuned_regime(tmp_path: Path):
    cfg = RunConfig(model="m", task="t", micro_batch=4)
    plan = resolve(cfg, processes=2, results_dir=tmp_path / "r", cache_dir=tmp_path / "c")
    assert plan.training == {"ft-proj": TrainingLayout(64, 4, 8, 2), "ft-e2e": TrainingLayout(32, 4, 4, 2)}
    assert plan.train_config("ft-proj").batch_size == 64 and plan.train_config("ft-proj").lr == cfg.lr_proj
    with pytest.raises(InputError, match="not divisible by the 3 processes"):
        resolve(cfg, processes=3, results_dir=tmp_path / "r", cache_dir=tmp_path / "c")


