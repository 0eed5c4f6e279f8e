"""The control task (Hewitt & Liang 2019, adapted to images) against hand-built clusters with known answers.

A control label is a fixed random function of a cluster of the probed features: training and test rows of one
cluster share it, and the control probe is scored on the test rows' *control* labels. On features that carry the
cluster identity a high-capacity probe learns the cluster -> label map and a linear one cannot (a control class is
a union of scattered cells); on pure noise neither gets above chance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from benchmark.baselines import expected_random
from benchmark.config import ProbeConfig
from benchmark.evaluate.control import cluster_count, control_task
from benchmark.evaluate.probe import probe_with_control

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def circle_blobs(blobs: int, per_blob: int, spread: float, seed: int):
    """``blobs`` tight Gaussian blobs on a circle of radius 10 in 2-D: (features, blob of each row)."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(blobs) / blobs
    centres = 10 * np.stack([np.cos(angle), np.sin(angle)], 1)
    blob = np.repeat(np.arange(blobs), per_blob)
    return torch.tensor(centres[blob] + rng.normal(0, spread, (len(blob), 2)), dtype=torch.float32), blob


def test_a_test_row_takes_the_control_label_of_the_training_cluster_nearest_to_it():
    k_classes = 2
    corners = 10.0 * np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])  # 8 far-apart clusters
    rng = np.random.default_rng(0)
    train_blob, test_blob = np.repeat(np.arange(8), 4), rng.integers(0, 8, 40)
    x_train = torch.tensor(corners[train_blob] + rng.normal(0, 0.3, (32, 3)))
    x_test = torch.tensor(corners[test_blob] + rng.normal(0, 0.3, (40, 3)))
    assert cluster_count(k_classes, 32) == 8   # as many clusters as planted ones
    ctl = control_task(x_train, x_test, num_classes=k_classes, seed=0)
    train, test = np.array(ctl.train), np.array(ctl.test)
    by_blob = {b: set(train[train_blob == b].tolist()) for b in range(8)}
    assert all(len(v) == 1 for v in by_blob.values())            # one label per planted cluster
    label_of = {b: next(iter(v)) for b, v in by_blob.items()}
    assert sorted(label_of.values()) == [0] * 4 + [1] * 4       # balanced over range(K)
    assert test.tolist() == [label_of[b] for b in test_blob]      # the label of the cluster the row was drawn from
    assert ctl == control_task(x_train, x_test, num_classes=k_classes, seed=0)  # fixed by the seed
    assert ctl.train != control_task(x_train, x_test, num_classes=k_classes, seed=1).train
    # Test rows never move the clusters: other test rows leave the training labels unchanged.
    assert control_task(x_train, x_test[:5] * 3, num_classes=k_classes, seed=0).train == ctl.train


def test_the_number_of_clusters_exceeds_the_classes_within_the_training_rows():
    assert cluster_count(3, 1600) == 12      # 4 per class
    assert cluster_count(3, 20) == 5         # one per 4 training rows
    assert cluster_count(23, 46) == 23       # never fewer than the classes
    # Duplicated rows (fewer distinct points than clusters) still give a label to every row.
    x = torch.ones(12, 4)
    ctl = control_task(x, x[:3], num_classes=3, seed=0)
    assert len(ctl.train) == 12 and set(ctl.train) == {ctl.test[0]} and len(set(ctl.test)) == 1


def control_of(x_train, x_test, y_train, y_test, hidden, seeds=2):
    cfg = ProbeConfig(hidden=hidden, lr=1e-2, batch_size=32, max_epochs=150, patience=15, seeds=seeds,
                      val_fraction=0.25)
    uids = [f"train/{i:04d}.png" for i in range(len(y_train))]
    out, _ = probe_with_control(x_train, y_train, uids_train=uids, x_test=x_test, y_test=y_test, num_classes=3,
                                seed=0, cfg=cfg)
    return out


def test_cluster_identity_is_learned_by_a_high_capacity_probe_and_not_by_a_linear_one():
    x_train, blob_train = circle_blobs(12, 20, 0.3, seed=0)
    x_test, blob_test = circle_blobs(12, 8, 0.3, seed=1)
    rng = np.random.default_rng(5)
    y_train, y_test = rng.integers(0, 3, len(blob_train)).tolist(), rng.integers(0, 3, len(blob_test)).tolist()
    ctl = control_task(x_train, x_test, num_classes=3, seed=0)
    assert ctl.clusters == 12
    label_of = {b: ctl.train[i] for i, b in enumerate(blob_train)}
    assert [label_of[b] for b in blob_test] == ctl.test       # the planted blobs are the clusters
    arcs = [label_of[b] for b in range(12)]
    assert sum(arcs[i] != arcs[i - 1] for i in range(12)) > 3  # labels not in 3 arcs: no linear K-way split

    mlp = control_of(x_train, x_test, y_train, y_test, hidden=(128, 128))
    linear = control_of(x_train, x_test, y_train, y_test, hidden=())
    assert mlp["control"]["macro_f1"] > 0.9
    assert linear["control"]["macro_f1"] < mlp["control"]["macro_f1"] - 0.2
    # Scored against the control labels of the test rows: against the true labels (random here) the same
    # predictions would be near chance, so a control scored on true labels fails the first assertion.
    chance = expected_random(ctl.test, 3)["macro_f1"]
    assert mlp["control"]["macro_f1"] > chance + 0.5
    assert mlp["selectivity"] == pytest.approx(mlp["macro_f1"] - mlp["control"]["macro_f1"])
    assert mlp["control"]["clusters"] == 12 and "Hewitt" in mlp["control"]["method"]


def test_pure_noise_gives_chance_on_the_task_and_the_control():
    rng = np.random.default_rng(3)
    x_train, x_test = (torch.tensor(rng.normal(size=(n, 256)), dtype=torch.float32) for n in (120, 600))
    y_train, y_test = rng.integers(0, 3, 120).tolist(), rng.integers(0, 3, 600).tolist()
    ctl = control_task(x_train, x_test, num_classes=3, seed=0)
    for hidden in ((128, 128), ()):
        out = control_of(x_train, x_test, y_train, y_test, hidden=hidden, seeds=3)
        for truth, score in ((y_test, out["macro_f1"]), (ctl.test, out["control"]["macro_f1"])):
            chance = expected_random(truth, 3)["macro_f1"]
            assert abs(score - chance) < 0.08, (hidden, score, chance)


def test_the_control_score_is_the_macro_f1_of_the_control_predictions_against_the_control_labels():
    """Task labels equal to the control labels on the training rows: the control members (same seeds, same labels)
    predict exactly as the task members, whose predictions are returned; the control's score must be their
    macro-F1 against the test rows' control labels (scikit-learn), not against the true test labels."""
    x_train, _ = circle_blobs(6, 12, 0.5, seed=2)
    x_test, _ = circle_blobs(6, 5, 0.5, seed=3)
    ctl = control_task(x_train, x_test, num_classes=3, seed=4)
    y_test = [(c + 1) % 3 for c in ctl.test]  # true test labels: never the control's
    cfg = ProbeConfig(hidden=(16,), lr=1e-2, batch_size=16, max_epochs=20, patience=3, seeds=2)
    uids = [f"u{i}" for i in range(len(ctl.train))]
    out, preds = probe_with_control(x_train, ctl.train, uids_train=uids, x_test=x_test, y_test=y_test,
                                    num_classes=3, seed=4, cfg=cfg)
    assert len(preds) == 2 and all(len(p) == len(y_test) for p in preds)
    f1 = [f1_score(ctl.test, p, labels=sorted(set(ctl.test)), average="macro", zero_division=0) for p in preds]
    assert [s["macro_f1"] for s in out["control"]["per_seed"]] == pytest.approx(f1, abs=1e-9)
    assert out["control"]["macro_f1"] == pytest.approx(np.mean(f1), abs=1e-9) and np.mean(f1) > 0.5
    task = [f1_score(y_test, p, labels=[0, 1, 2], average="macro", zero_division=0) for p in preds]
    assert out["macro_f1"] == pytest.approx(np.mean(task), abs=1e-9) and np.mean(task) < 0.2
