"""The defaults are the published recipes they claim to be, and a bad value of each is refused.

Each expected value below is read from its source, not from the code: LLaVA-1.5's training scripts
(`scripts/v1_5/pretrain.sh`, `finetune.sh`, `finetune_lora.sh`: lr 1e-3 / 2e-5 / LoRA r 128, alpha 256, lr 2e-4,
warmup ratio 0.03, weight decay 0, 1 epoch, cosine), the paper's scripts (global batch 64 FT-Proj, 32 FT-E2E) and
its appendix A.2 (probe 2048-1536-1024-512-256, Adam 1e-4, batch 128, early stopping on the loss).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config import PAPER_GLOBAL_BATCH, ProbeConfig, RunConfig, TrainConfig
from benchmark.errors import BenchmarkError
from benchmark.validation import validate_run

LLAVA_15 = {"lr_proj": 1e-3, "lr_e2e": 2e-5, "warmup_ratio": 0.03, "epochs": 1, "lora_rank": 128,
            "lr_lora": 2e-4, "lora_dropout": 0.05, "gradient_checkpointing": False, "lora": False}


def test_run_defaults_are_llava_15s_recipe():
    cfg = RunConfig(model="m", task="t")
    assert {k: getattr(cfg, k) for k in LLAVA_15} == LLAVA_15
    assert (cfg.eval_mode, cfg.score_norm, cfg.drop_duplicates) == ("loglik", "sum", False)


def test_training_defaults_are_llava_15s_optimiser_settings():
    t = TrainConfig(lr=1.0)
    assert (t.warmup_ratio, t.weight_decay, t.max_grad_norm, t.epochs) == (0.03, 0.0, 1.0, 1)
    assert (t.lora, t.lora_rank, t.lr_lora, t.lora_dropout, t.gradient_checkpointing) == (False, 128, 2e-4, 0.05,
                                                                                           False)


def test_global_batch_defaults_are_the_papers_scripts():
    assert PAPER_GLOBAL_BATCH == {"ft-proj": 64, "ft-e2e": 32}
    cfg = RunConfig(model="m", task="t")
    assert (cfg.global_batch_for("ft-proj"), cfg.global_batch_for("ft-e2e")) == (64, 32)
    assert RunConfig(model="m", task="t", global_batch=8).global_batch_for("ft-proj") == 8


def test_probe_defaults_are_the_papers_appendix():
    p = ProbeConfig()
    assert (p.hidden, p.lr, p.batch_size, p.early_stopping) == ((2048, 1536, 1024, 512, 256), 1e-4, 128, "loss")
    assert p.control and p.standardize


@pytest.mark.parametrize(("regime", "lora", "folder"), [
    ("ft-e2e", True, "ft-e2e-lora"), ("ft-e2e", False, "ft-e2e"),
    ("ft-proj", True, "ft-proj"), ("zero-shot", True, "zero-shot"), ("baselines", True, "baselines"),
])
def test_only_lora_ft_e2e_gets_its_own_folder(regime, lora, folder):
    assert RunConfig(model="m", task="t", lora=lora).regime_dir_name(regime) == folder


@pytest.mark.parametrize(("field", "value"), [
    ("warmup_ratio", -0.01), ("warmup_ratio", 1.5), ("lr_lora", -2e-4), ("lr_lora", 0.0),
    ("lr_proj", float("nan")), ("lr_e2e", float("inf")), ("lora_dropout", -0.1), ("lora_dropout", 1.0),
])
def test_a_bad_recipe_value_is_refused(tmp_path: Path, field, value):
    cfg = RunConfig(model="m", task="t", **{field: value})
    with pytest.raises(BenchmarkError, match=field.replace("_", "[-_]")):
        validate_run(cfg, tmp_path / "results", tmp_path / "cache")
    assert not (tmp_path / "results").exists()
