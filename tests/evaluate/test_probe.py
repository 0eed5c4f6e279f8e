"""The richness probe and its inputs, against known answers: what it trains on, stops on and is scored on.

Test rows must have no influence on anything but the test scores: the same training rows with other test rows
give the same validation results, best epoch and trained weights. Pooled features are the mean over the tokens,
checked against the adapter's own features computed directly from the images. Probe seeds trained together equal
the same seeds trained one by one; the interval resamples test images and probe seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from benchmark.config import ProbeConfig
from benchmark.evaluate import probe
from benchmark.evaluate.probe import train_probe, validation_split

SMALL = ProbeConfig(hidden=(32,), lr=1e-2, batch_size=8, max_epochs=40, patience=4, seeds=1, val_fraction=0.25)
# Keys of the probe's result that depend on training and validation rows only (not on test rows).
TRAIN_SIDE = ("best_epoch", "epochs_run", "n_train", "n_val", "input_dim", "stopping", "probe_seeds", "cv_epochs")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def blobs(n_per_class: int, classes: int, dim: int, spread: float, seed: int, prefix: str = "train"):
    """Gaussian clusters, one per class: (features, labels, uids)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(0, 1, (classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    x = centres[y] + rng.normal(0, spread, (len(y), dim))
    uids = [f"{prefix}/c{c}/img{i:03d}.jpg" for i, c in enumerate(y)]
    return torch.tensor(x, dtype=torch.float32), y.tolist(), uids


@pytest.fixture
def trained_models(monkeypatch):
    """The member MLPs that the probe trains (the real ones, in their kept state), to compare their weights."""
    built = []
    real = probe.fit_members

    def record(*args, **kwargs):
        fitted = real(*args, **kwargs)
        built.append(fitted.model)
        return fitted

    monkeypatch.setattr(probe, "fit_members", record)
    return built


def weights(models) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]


def train_side(result: dict) -> dict:
    per_seed = [{k: v for k, v in s.items() if k in TRAIN_SIDE or k.startswith("val")} for s in result["per_seed"]]
    return {**{k: v for k, v in result.items() if k in TRAIN_SIDE}, "per_seed": per_seed}


@pytest.mark.parametrize(("criterion", "per_class"), [("loss", 20), ("f1", 20), ("loss", 12)])
def test_test_rows_have_no_influence_on_training(trained_models, criterion, per_class):
    """Other test rows (another scale, other labels, another count) change nothing but the test scores; with 20
    images per class the probe stops on its validation split, with 12 (3 validation images per class) on
    cross-validation."""
    cfg = dataclasses.replace(SMALL, early_stopping=criterion)
    x, y, uids = blobs(per_class, 3, 8, spread=1.5, seed=0)   # overlapping clusters: validation F1 varies by epoch
    x_test, y_test, _ = blobs(5, 3, 8, spread=1.5, seed=1, prefix="test")
    x_other = torch.randn(11, 8, generator=torch.Generator().manual_seed(5)) * 1000 + 50
    y_other = torch.randint(0, 3, (11,), generator=torch.Generator().manual_seed(6)).tolist()

    first = train_probe(x, y, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=3, seed=3, cfg=cfg)
    w_first = weights(trained_models)
    trained_models.clear()
    second = train_probe(x, y, uids_train=uids, x_test=x_other, y_test=y_other, num_classes=3, seed=3,
                         cfg=cfg)
    w_second = weights(trained_models)

    assert train_side(first) == train_side(second)
    assert len(w_first) == len(w_second) > 0
    for a, b in zip(w_first, w_second, strict=True):
        assert same(a, b), "test rows changed the trained weights"
    if per_class == 12:
        assert first["stopping"]["method"] == "5-fold cross-validation on the training rows"
        return

    # The probe that is scored is the one of the best validation epoch: training for exactly that many epochs
    # gives the same weights and scores (early stopping happened here, some epochs after the best one).
    assert first["stopping"] == {"method": "validation split", "fraction": 0.25} and first["n_val"] == 15
    (seed,) = first["per_seed"]
    assert seed["best_epoch"] + 1 < seed["epochs_run"] < cfg.max_epochs
    assert seed["epochs_run"] == seed["best_epoch"] + 1 + cfg.patience  # stops after `patience` bad epochs
    trained_models.clear()
    until_best = train_probe(x, y, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=3, seed=3,
                             cfg=dataclasses.replace(cfg, max_epochs=seed["best_epoch"] + 1))
    assert [same(a, b) for a, b in zip(w_first, weights(trained_models), strict=True)] == [True] * len(w_first)
    assert (until_best["macro_f1"], until_best["accuracy"]) == (first["macro_f1"], first["accuracy"])


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_separable_classes_are_found_and_scored_on_the_test_labels():
    x, y, uids = blobs(10, 4, 6, spread=0.05, seed=0)
    x_test, y_test, _ = blobs(3, 4, 6, spread=0.05, seed=1, prefix="test")
    cfg = dataclasses.replace(SMALL, seeds=3, val_fraction=0.5)  # 5 validation images per class
    right = train_probe(x, y, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=4, seed=0, cfg=cfg)
    assert right["macro_f1"] == 1.0 and right["accuracy"] == 1.0 and len(right["per_seed"]) == 3
    assert all(s["macro_f1"] == 1.0 and s["val_macro_f1"] == 1.0 for s in right["per_seed"])
    # The same test rows with every label shifted to the next class: every prediction is now wrong.
    wrong = train_probe(x, y, uids_train=uids, x_test=x_test, y_test=[(c + 1) % 4 for c in y_test],
                        num_classes=4, seed=0, cfg=cfg)
    assert wrong["macro_f1"] == 0.0 and wrong["accuracy"] == 0.0
    assert train_side(wrong) == train_side(right)


def test_validation_rows_are_a_stratified_hash_ordered_holdout():
    y = [0] * 20 + [1] * 7 + [2] * 2 + [3] * 31
    uids = [f"train/c{c}/{i}.png" for i, c in enumerate(y)]
    held = validation_split(uids, y, 0.1)
    for c in set(y):
        members = [u for u, label in zip(uids, y, strict=True) if label == c]
        k = max(1, round(len(members) * 0.1))
        first_k = sorted(members, key=lambda u: hashlib.sha256(u.encode()).hexdigest())[:k]
        assert {u for u, h in zip(uids, held, strict=True) if h and u in members} == set(first_k), c
    x = torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0))
    cfg = ProbeConfig(hidden=(4,), max_epochs=1, seeds=1)
    result = train_probe(x, y, uids_train=uids, x_test=x[:4], y_test=y[:4], num_classes=4, seed=0, cfg=cfg)
    # 1 validation image of classes 1 and 2: not stopped on; cross-validation on all training rows instead.
    assert (result["n_val"], result["n_train"]) == (0, len(y)) and result["input_dim"] == 4
    assert "1 image(s)" in result["stopping"]["reason"]
    # With a fraction that holds out >= 5 of every class, the split is used: its size is the hold-out's.
    y5 = [0] * 20 + [1] * 25
    u5 = [f"train/c{c}/{i}.png" for i, c in enumerate(y5)]
    result = train_probe(x[:45], y5, uids_train=u5, x_test=x[:4], y_test=y5[:4], num_classes=2, seed=0,
                         cfg=dataclasses.replace(cfg, val_fraction=0.25))
    assert (result["n_val"], result["n_train"]) == (5 + 6, 45 - 11)
    assert result["stopping"]["method"] == "validation split"


def test_standardised_probe_ignores_the_scale_of_each_feature():
    """z-scoring with training statistics: an affine rescaling of each feature (train and test alike) changes
    nothing, even over eight orders of magnitude (as between a projector's output and a vision tower's)."""
    x, y, uids = blobs(12, 3, 6, spread=1.0, seed=0)
    x_test, y_test, _ = blobs(6, 3, 6, spread=1.0, seed=1, prefix="test")
    scale = torch.tensor([1e-4, 1e-2, 1.0, 10.0, 1e3, 1e4])
    shift = torch.tensor([5.0, -3.0, 0.0, 100.0, -1e4, 7.0])
    plain = train_probe(x, y, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=3, seed=1, cfg=SMALL)
    scaled = train_probe(x * scale + shift, y, uids_train=uids, x_test=x_test * scale + shift, y_test=y_test,
                         num_classes=3, seed=1, cfg=SMALL)
    assert close(scaled, plain)


def close(a, b) -> bool:
    """Equal structure and values, floats to 1% (float32 drift)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == (pytest.approx(b, rel=1e-2) if isinstance(b, float) else b)


# --- pooled features ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(hermetic_cache):
    from benchmark.adapters.llava import load_llava_tiny

    return load_llava_tiny(cache_dir=hermetic_cache)


def test_pooled_features_are_the_mean_over_tokens(tiny, real_images, tmp_path):
    from benchmark.conformance import samples_for
    from benchmark.storage.features import extract, pooled

    images = real_images[:5]
    store, _ = extract(tiny, samples_for(images), cache_dir=tmp_path, task_fingerprint="fingerprint", split="train",
                       batch_size=2, progress=False)
    with torch.no_grad():
        direct = tiny.vision_features(tiny.preprocess([img for img, _ in images])).float()  # (N, T, D)
        projected = tiny.project(direct.to(tiny.dtype)).float()
    n, t, d = direct.shape
    assert t != d and projected.shape[1] != projected.shape[2]  # so that the wrong axis cannot pass by shape
    pre = pooled(store, batch_size=2)                            # batches of 2 over 5 rows: a ragged last one
    assert pre.shape == (n, d)
    np.testing.assert_allclose(pre.numpy(), direct.numpy().sum(axis=1) / t, rtol=1e-4, atol=1e-5)
    post = pooled(store, tiny, batch_size=2)
    assert post.shape == (n, projected.shape[2])
    np.testing.assert_allclose(post.numpy(), projected.numpy().sum(axis=1) / projected.shape[1], rtol=1e-4,
                               atol=1e-5)


def test_a_class_with_one_training_image_is_refused():
    from benchmark.errors import DataError

    y = [0, 0, 0, 1, 1, 2]  # class 2: one image, which the hold-out would take whole
    with pytest.raises(DataError, match=r"at least 2 training images per class.*\[2\]"):
        validation_split([f"u{i}" for i in range(len(y))], y, 0.1)
    assert validation_split([f"u{i}" for i in range(5)], [0, 0, 1, 1, 1], 0.1).sum() == 2


def test_the_task_members_trained_with_the_control_are_the_probe_alone():
    """The control members share the ensemble and nothing else: the task's scores and predictions are those of
    the same seeds trained without a control, and selectivity is the gap of the two means."""
    from benchmark.evaluate.probe import probe_with_control

    x, y, uids = blobs(20, 3, 6, spread=1.0, seed=0)
    x_all, y_all, _ = blobs(6, 3, 6, spread=1.0, seed=1, prefix="test")
    keep = [i for i, c in enumerate(y_all) if i % 6 < (6, 3, 1)[c]]   # imbalanced test split: F1 != accuracy
    x_test, y_test = x_all[keep], [y_all[i] for i in keep]
    cfg = dataclasses.replace(SMALL, seeds=2)
    out, pred = probe_with_control(x, y, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=3, seed=0,
                                   cfg=cfg)
    alone = train_probe(x, y, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=3, seed=0, cfg=cfg,
                        with_predictions=True)
    assert pred == alone["predictions"] and len(pred) == 2
    assert out["macro_f1"] == pytest.approx(alone["macro_f1"]) and out["ci95"] == alone["ci95"]
    assert out["macro_f1"] != out["accuracy"]
    assert out["selectivity"] == pytest.approx(out["macro_f1"] - out["control"]["macro_f1"])
    assert out["control"]["macro_f1"] == pytest.approx(np.mean([s["macro_f1"] for s in out["control"]["per_seed"]]))
    assert [s["seed"] for s in out["control"]["per_seed"]] == out["probe_seeds"] == alone["probe_seeds"]
