"""Numbers people can trust: intervals, control probes, known-answer richness, pinned revisions, replicate
identity, the LLaVA-1.5 template, length bias and duplicate test images.

Every computed number is checked against an independent computation (a plain loop, sklearn, exact arithmetic) or
a case whose answer is known without running the code under test.
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from benchmark.config import ProbeConfig, RunConfig
from benchmark.errors import BenchmarkError
from benchmark.evaluate.control import cluster_count, control_task
from benchmark.evaluate.intervals import score_interval
from benchmark.evaluate.probe import probe_with_control
from benchmark.registry import plugins
from benchmark.storage.features import (
    checkpoint_identity,
    extract,
    file_digest,
    hub_revision,
    pooled,
)
from conftest import make_image_folder, shared_data


# --- bootstrap intervals (their numbers: tests/evaluate/test_intervals.py) ------------------------------------------------
def test_unmatched_answers_are_wrong_for_every_class():
    # --eval generate marks unmatched answers -1: they must lower recall and no class's precision.
    y, p = [0, 0, 1, 1], [0, -1, 1, -1]
    lo, hi = score_interval(y, p, 2, samples=50)["ci95"]
    expected = f1_score(y, [0, 2, 1, 2], labels=[0, 1], average="macro", zero_division=0)  # 2 = outside the labels
    assert lo <= expected <= hi and hi <= 1.0


# --- control probe and known answers of the richness measure ----------------------------------------------------
SMALL_PROBE = ProbeConfig(hidden=(256,), lr=1e-3, max_epochs=60, patience=10)  # the A.2 MLP, narrowed for CPU


@pytest.fixture(scope="module")
def eurosat_features(tmp_path_factory):
    """Pre-projection features of real EuroSAT images (10 classes, 8 train / 4 test each) from llava15-tiny."""
    from benchmark.tasks.base import load_task

    reg = plugins()
    data = load_task(reg.tasks.get("eurosat"), shared_data("eurosat"), None, progress=False)
    adapter = reg.adapters.get("llava15-tiny").factory()
    cache = tmp_path_factory.mktemp("features")
    stores = {s: extract(adapter, data.splits[s], cache_dir=cache, task_fingerprint=data.fingerprint, split=s,
                         progress=False)[0]
              for s in ("train", "test")}
    return adapter, data, stores


def _probe(x_train, x_test, data):
    ytr, yte = [s.label for s in data.splits["train"]], [s.label for s in data.splits["test"]]
    return probe_with_control(x_train, ytr, uids_train=[s.uid for s in data.splits["train"]], x_test=x_test,
                              y_test=yte, num_classes=len(data.classes), seed=0, cfg=SMALL_PROBE)[0]


def test_richness_known_answers_on_real_images(eurosat_features):
    adapter, data, stores = eurosat_features
    k = len(data.classes)
    pre = _probe(pooled(stores["train"]), pooled(stores["test"]), data)
    dim = pre["input_dim"]
    original = adapter.model.model.multi_modal_projector
    try:
        # An invertible linear projector keeps every bit of information: the probe finds the same F1 (each
        # estimate inside the other's interval).
        torch.manual_seed(1)
        invertible = torch.nn.Linear(dim, dim)
        torch.nn.init.orthogonal_(invertible.weight)
        adapter.model.model.multi_modal_projector = invertible
        same = _probe(pooled(stores["train"], adapter), pooled(stores["test"], adapter), data)
        assert pre["ci95"][0] <= same["macro_f1"] <= pre["ci95"][1]
        assert same["ci95"][0] <= pre["macro_f1"] <= same["ci95"][1]

        # A constant projector carries no image information: every image gets the same class, and macro-F1 is
        # that of a constant guess on the balanced test split, (1/k) * 2 * (1/k) / (1/k + 1).
        class Constant(torch.nn.Module):
            def forward(self, x):
                return torch.ones(*x.shape[:-1], 8)

        adapter.model.model.multi_modal_projector = Constant()
        none = _probe(pooled(stores["train"], adapter), pooled(stores["test"], adapter), data)
        assert none["macro_f1"] == pytest.approx((1 / k) * 2 * (1 / k) / (1 / k + 1))
        assert none["ci95"][0] <= none["macro_f1"] <= none["ci95"][1]
    finally:
        adapter.model.model.multi_modal_projector = original
    # The features carry information here (else the test could not fail). The control task is a random label
    # per cluster of these features (4 clusters per class at most, one per 4 training images), scored on the test
    # images' control labels; selectivity is the gap on the same test images.
    assert pre["ci95"][0] > 1 / k
    n_train = len(data.splits["train"])
    assert pre["control"]["clusters"] == cluster_count(k, n_train) > k
    assert 0.0 <= pre["control"]["macro_f1"] <= 1.0 and len(pre["control"]["per_seed"]) == SMALL_PROBE.seeds
    assert pre["selectivity"] == pytest.approx(pre["macro_f1"] - pre["control"]["macro_f1"])


def test_early_stopping_keeps_the_epoch_with_the_lowest_validation_loss():
    from benchmark.evaluate.probe import train_probe

    g = torch.Generator().manual_seed(0)
    y = [i % 3 for i in range(60)]
    x = torch.randn(60, 8, generator=g) + torch.tensor(y)[:, None] * 0.5
    uids = [f"u{i}" for i in range(60)]
    # Patience as long as the run: both criteria see the same 25 epochs and only choose differently among them.
    # A quarter held out: 5 validation images per class, so the split is stopped on (not cross-validation).
    cfg = ProbeConfig(hidden=(16,), lr=1e-2, max_epochs=25, patience=25, seeds=1, val_fraction=0.25)
    loss_run = train_probe(x, y, uids_train=uids, x_test=x[:30], y_test=y[:30], num_classes=3, seed=0, cfg=cfg)
    f1_run = train_probe(x, y, uids_train=uids, x_test=x[:30], y_test=y[:30], num_classes=3, seed=0,
                         cfg=replace(cfg, early_stopping="f1"))
    assert loss_run["stopped_on"] == "loss" and f1_run["stopped_on"] == "f1"
    assert loss_run["stopping"]["method"] == f1_run["stopping"]["method"] == "validation split"
    (by_loss,), (by_f1,) = loss_run["per_seed"], f1_run["per_seed"]
    assert by_loss["epochs_run"] == by_f1["epochs_run"] == 25
    assert by_loss["val_loss"] <= by_f1["val_loss"] and by_f1["val_macro_f1"] >= by_loss["val_macro_f1"]
    # Rerunning up to the chosen epoch reproduces it: the kept weights are that epoch's, not the last ones.
    (again,) = train_probe(x, y, uids_train=uids, x_test=x[:30], y_test=y[:30], num_classes=3, seed=0,
                           cfg=replace(cfg, max_epochs=by_loss["best_epoch"] + 1))["per_seed"]
    assert again["val_loss"] == by_loss["val_loss"] and again["macro_f1"] == by_loss["macro_f1"]


def test_control_labels_are_a_fixed_function_of_the_training_features():
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(30, 4, generator=g), torch.randn(10, 4, generator=g)
    ctl = control_task(x_train, x_test, num_classes=3, seed=0)
    assert sorted(set(ctl.train)) == [0, 1, 2] and set(ctl.test) <= {0, 1, 2}
    assert control_task(x_train, x_test, num_classes=3, seed=0) == ctl
    assert control_task(x_train, x_test, num_classes=3, seed=1).train != ctl.train
    # A test image identical to a training image carries that image's control label.
    again = control_task(x_train, x_train[:10], num_classes=3, seed=0)
    assert again.test == ctl.train[:10]


# --- pinned revisions -----------------------------------------------------------------------------------------
def test_replaced_weights_of_equal_size_and_mtime_are_not_served_from_the_cache(tmp_path):
    from safetensors.torch import load_file, save_file

    from benchmark.storage.paths import cache_root
    from benchmark.tasks.base import load_task

    spec = plugins().adapters.get("llava15-tiny")
    spec.factory()  # builds the twin into the cache
    ckpt = tmp_path / "ckpt"
    shutil.copytree(cache_root() / "tiny" / next(p.name for p in (cache_root() / "tiny").iterdir()
                                                 if p.name.startswith("llava15-tiny")), ckpt)
    folder = make_image_folder(tmp_path / "data", {"a": (2, 1), "b": (2, 1)})
    data = load_task(plugins().tasks.get("folder"), folder, None, progress=False)
    cache = tmp_path / "cache"
    first = spec.factory(source=str(ckpt))
    revision = checkpoint_identity(first)["revision"]
    before = extract(first, data.splits["test"], cache_dir=cache, task_fingerprint=data.fingerprint, split="test",
                     progress=False)[0]

    weights = ckpt / "model.safetensors"
    stat = weights.stat()
    state = load_file(str(weights))
    for name in state:
        if "vision_tower" in name and name.endswith("weight"):
            state[name] = state[name] * 2
    save_file(state, str(weights), metadata={"format": "pt"})
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size and weights.stat().st_mtime_ns == stat.st_mtime_ns

    second = spec.factory(source=str(ckpt))
    assert checkpoint_identity(second)["revision"] != revision
    after = extract(second, data.splits["test"], cache_dir=cache, task_fingerprint=data.fingerprint, split="test",
                    progress=False)[0]
    assert after.directory != before.directory
    assert not torch.equal(after.get([0]), before.get([0]))  # recomputed with the new weights


def test_large_files_are_hashed_by_header_and_samples(tmp_path, monkeypatch):
    import benchmark.storage.features as features

    monkeypatch.setattr(features, "FULL_HASH_BYTES", 1024)
    monkeypatch.setattr(features, "SAMPLE_BYTES", 16)
    path = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(4096)}, str(path))
    base = file_digest(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last sample window always covers the end of the file
    path.write_bytes(bytes(data))
    assert file_digest(path) != base
    data[len(data) // 3] ^= 1  # between the sample windows of this file: documented as not seen
    path.write_bytes(bytes(data))
    assert file_digest(path) == file_digest(path)


def test_hub_revision_is_the_snapshot_commit_of_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert hub_revision("org/model") == {"kind": "hub", "repo": "org/model", "commit": commit}
    assert hub_revision("org/absent")["commit"] is None


# --- replicate identity ---------------------------------------------------------------------------------------
def test_replicate_identity_leaves_out_only_the_seed():
    cfg = RunConfig(model="m", task="t")
    ex = {"dtype": "float32", "global_batch": 8}
    a, b = cfg.replicate_identity("ft-proj", ex), replace(cfg, seeds=(5,)).replicate_identity("ft-proj", ex)
    assert a == b and "seed" not in a and a["resolved_dtype"] == "float32" and a["global_batch"] == 8
    assert replace(cfg, lr_proj=1e-4).replicate_identity("ft-proj", ex) != a
    assert cfg.replicate_identity("ft-proj", {**ex, "dtype": "bfloat16"}) != a
    for changed in (replace(cfg, score_norm="mean"), replace(cfg, template="short"), replace(cfg, drop_duplicates=True),
                    replace(cfg, probe=ProbeConfig(early_stopping="f1"))):
        assert changed.replicate_identity("zero-shot", ex) != cfg.replicate_identity("zero-shot", ex)
    # The setup (what the zero-shot baseline shares with the fine-tuned runs) has no training fields.
    assert cfg.setup_identity(a) == cfg.setup_identity(cfg.replicate_identity("zero-shot", ex))


# --- LLaVA-1.5 template ---------------------------------------------------------------------------------------
def test_llava_uses_the_vicuna_v1_template_by_default():
    # conv_vicuna_v1 of the LLaVA repository ("curious user"), what LLaVA-1.5's fine-tuning (--version v1) and
    # evaluation (--conv-mode vicuna_v1) scripts select; conv_llava_v1 ("curious human") stays selectable.
    adapter = plugins().adapters.get("llava15-tiny").factory()
    user = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions.")
    assert adapter.template_name == "vicuna_v1"
    assert adapter.format_prompt("Q?") == user + " USER: <image>\nQ? ASSISTANT:"
    adapter.use_template("llava_v1")
    assert adapter.format_prompt("Q?") == user.replace("user", "human") + " USER: <image>\nQ? ASSISTANT:"
    adapter.use_template("short")
    assert adapter.format_prompt("Q?") == "USER: <image>\nQ? ASSISTANT:"
    with pytest.raises(BenchmarkError, match="offers vicuna_v1, llava_v1, short"):
        adapter.use_template("vicuna")


# --- length bias ----------------------------------------------------------------------------------------------
def test_length_bias_counts_and_correlation():
    from benchmark.evaluate.loglik import length_bias

    out = length_bias([0, 0, 0, 1], [0, 1, 2, 1], [2, 3, 5])
    assert out["disagreement_rate"] == 0.5
    assert out["predictions_per_class"] == {"sum": [3, 1, 0], "mean": [1, 2, 1]}
    assert out["corr_predictions_vs_answer_tokens"]["sum"] == pytest.approx(
        statistics.correlation([3, 1, 0], [2, 3, 5]))
    assert out["corr_predictions_vs_answer_tokens"]["mean"] == pytest.approx(
        statistics.correlation([1, 2, 1], [2, 3, 5]))
    assert length_bias([0, 0], [0, 0], [2, 2])["corr_predictions_vs_answer_tokens"]["sum"] is None


# --- one small run: what metrics.json records ------------------------------------------------------------------
def test_a_run_records_intervals_controls_length_bias_and_dropped_duplicates(tmp_path):
    import json

    from benchmark.protocol import Runner

    folder = make_image_folder(tmp_path / "data", {"a": (3, 2), "b": (3, 2)})
    dup = folder / "test" / "a" / "img000.jpg"
    dup.write_bytes((folder / "train" / "a" / "img000.jpg").read_bytes())  # a test image the model trains on
    base = RunConfig(model="llava15-tiny", task="folder", data_dir=str(folder), domain="textile defects",
                     regimes=("zero-shot", "ft-proj"), probe=ProbeConfig(hidden=(32,), max_epochs=3),
                     progress=False, results_dir=str(tmp_path / "keep"))
    kept = Runner(base, log=lambda *_: None).run()
    dropped = Runner(replace(base, drop_duplicates=True, results_dir=str(tmp_path / "drop")), log=lambda *_: None).run()

    zs, ft = kept
    assert zs["data"]["duplicates"] == [["train/a/img000.jpg", "test/a/img000.jpg"]]
    assert zs["data"]["n_test"] == 4 and zs["data"]["dropped_duplicates"] == []
    assert dropped[0]["data"]["n_test"] == 3 and dropped[0]["data"]["dropped_duplicates"] == ["test/a/img000.jpg"]
    assert dropped[0]["replicate_hash"] != zs["replicate_hash"]
    # The test split does not reach training: the same fine-tuned projector with and without the duplicate.
    proj = [(Path(r) / "llava15-tiny/folder/ft-proj/seed0/projector.safetensors").read_bytes()
            for r in (tmp_path / "keep", tmp_path / "drop")]
    assert proj[0] == proj[1]

    for m in kept:
        lo, hi = m["metrics"]["ci95"]
        assert lo <= m["metrics"]["macro_f1"] <= hi
        post = m["probe"]["post_projection"]
        assert post["selectivity"] == pytest.approx(post["macro_f1"] - post["control"]["macro_f1"])
        assert post["stopped_on"] == "loss" and m["probe_config"]["early_stopping"] == "loss"
        assert m["template"] == "vicuna_v1" and m["execution"]["num_processes"] == 1
        assert m["revision"]["kind"] == "local" and len(m["replicate_hash"]) == 16
    assert ft["execution"]["global_batch"] == 64  # the paper scripts' FT-Proj global batch, the default
    assert ft["paired"]["gain"]["delta"] == pytest.approx(ft["metrics"]["macro_f1"] - zs["metrics"]["macro_f1"])
    assert ft["paired"]["richness"]["delta"] == pytest.approx(
        ft["probe"]["post_projection"]["macro_f1"] - zs["probe"]["post_projection"]["macro_f1"])

    # Per-token mean scores: the summed score over the answer's tokens, and their own argmax.
    rows = [json.loads(x) for x in (tmp_path / "keep/llava15-tiny/folder/zero-shot/seed0/predictions.jsonl")
            .read_text().splitlines()]
    lengths = zs["metrics"]["length_bias"]["answer_tokens"]
    classes = zs["data"]["classes"]
    for r in rows:
        assert r["scores_mean"] == pytest.approx([s / lengths[c] for s, c in zip(r["scores"], classes, strict=True)],
                                                 abs=1e-4)
        assert r["prediction_mean"] == classes[int(np.argmax(r["scores_mean"]))]
        assert r["prediction"] == r["prediction_sum"] == classes[int(np.argmax(r["scores"]))]
    disagree = np.mean([r["prediction_sum"] != r["prediction_mean"] for r in rows])
    assert zs["metrics"]["length_bias"]["disagreement_rate"] == pytest.approx(disagree)

    # Another seed with another FT-Proj learning rate, into the same results folder: the leaderboard keeps the
    # two configurations apart and names the field; the zero-shot runs (same setup) are shared baselines.
    from benchmark.leaderboard.collect import collect
    from benchmark.leaderboard.table import build

    Runner(replace(base, seeds=(1,), lr_proj=1e-4), log=lambda *_: None).run()
    board = build(collect(tmp_path / "keep"))
    rows = [r for r in board.rows if r.task == "folder"]
    assert sorted(r.variant for r in rows) == ["ft-proj:lr_proj=0.0001", "ft-proj:lr_proj=0.001"]
    assert all(r.f1["ft-proj"].n == 1 and r.f1["zero-shot"].n == 2 for r in rows)
    assert any("differ in: ft-proj:lr_proj" in w for w in board.warnings)
