"""Probe seeds: trained together as one batched ensemble, equal to separate trainings; their interval; the
cross-validated stopping used where the validation split is tiny.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import ProbeConfig
from benchmark.evaluate import ensemble
from benchmark.evaluate.ensemble import fit_members
from benchmark.evaluate.intervals import score_interval
from benchmark.evaluate.probe import cv_folds, probe_seeds, train_probe

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CFG = ProbeConfig(hidden=(24, 12), lr=1e-2, batch_size=16, max_epochs=30, patience=3, seeds=1)


def data(n: int = 90, d: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, d, generator=g) + y[:, None] * 0.7
    return x, y


def test_members_trained_together_equal_members_trained_alone():
    """Three members with their own seeds and labels (two tasks): the batched training gives each member the
    weights, best epoch and stopping epoch it gets alone. Sharing anything between members (a batch order, a
    gradient, a stopping decision) breaks this."""
    x, y = data()
    other = (y + torch.arange(len(y)) % 2) % 3          # a second label set
    labels = torch.stack([y, other, y])
    xv, yv = x[:30] + 0.1, torch.stack([y[:30], other[:30], y[:30]])
    seeds = [11, 12, 13]
    together = fit_members(x, labels, seeds=seeds, num_classes=3, cfg=CFG, validation=(xv, yv))
    assert len(set(together.epochs_run)) > 1, "members should stop at different epochs for this test to bite"
    for r, seed in enumerate(seeds):
        alone = fit_members(x, labels[r:r + 1], seeds=[seed], num_classes=3, cfg=CFG,
                            validation=(xv, yv[r:r + 1]))
        assert (alone.best_epoch[0], alone.epochs_run[0]) == (together.best_epoch[r], together.epochs_run[r])
        assert alone.val_loss[0] == pytest.approx(together.val_loss[r], rel=1e-5)
        for (name, a), b in zip(alone.model.state_dict().items(), together.model.state_dict().values(),
                                strict=True):
            torch.testing.assert_close(a[0], b[r], rtol=1e-4, atol=1e-5, msg=f"member {r}: {name}")
        np.testing.assert_array_equal(alone.model.predict(x)[0], together.model.predict(x)[r])


def test_a_member_starts_as_the_probe_mlp_under_its_seed():
    model = ensemble.MemberMLP([3, 4], 5, 2, (7,))
    for r, seed in enumerate((3, 4)):
        torch.manual_seed(seed)
        mlp = ensemble.probe_mlp(5, 2, (7,))
        x = torch.randn(4, 5)
        torch.testing.assert_close(model(x[None].expand(2, 4, 5))[r], mlp(x), rtol=1e-6, atol=1e-6)


def test_linearly_separable_features_give_f1_one_for_every_seed():
    x, y = data()
    x = torch.cat([x, 10 * torch.nn.functional.one_hot(y, 3).float()], 1)
    uids = [f"u{i}" for i in range(len(y))]
    out = train_probe(x, y.tolist(), uids_train=uids, x_test=x[:30], y_test=y[:30].tolist(), num_classes=3, seed=0,
                      cfg=ProbeConfig(hidden=(16,), lr=1e-2, max_epochs=30, seeds=3))
    assert [s["macro_f1"] for s in out["per_seed"]] == [1.0] * 3 and out["ci95"] == [1.0, 1.0]


def test_probe_seeds_are_derived_from_the_run_seed():
    assert probe_seeds(0, 3) == probe_seeds(0, 3) and probe_seeds(0, 5)[:3] == probe_seeds(0, 3)
    assert len(set(probe_seeds(0, 5) + probe_seeds(1, 5))) == 10


def test_the_probe_interval_is_the_hierarchical_one_over_its_seeds_predictions():
    # The interval's own numbers are checked against scipy in test_intervals.py; here: the probe hands it every
    # probe seed's test predictions (a bug passing one seed, or the training rows, changes the interval).
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    x = torch.tensor(np.eye(3)[y] * 0.6 + rng.normal(0, 1, (36, 3)), dtype=torch.float32)
    cfg = ProbeConfig(hidden=(8,), max_epochs=5, seeds=3, control=False)
    out = train_probe(x, y.tolist(), uids_train=[f"u{i}" for i in range(36)], x_test=x, y_test=y.tolist(),
                      num_classes=3, seed=0, cfg=cfg, with_predictions=True)
    preds = np.asarray(out["predictions"])
    assert preds.shape == (3, 36)
    expected = score_interval(y, preds[None], 3)
    assert out["ci95"] == expected["ci95"] and out["interval"]["replicates"] == 3
    assert out["macro_f1"] == pytest.approx(expected["estimate"], abs=1e-12)


def test_cross_validation_folds_are_stratified_and_cover_every_row_once():
    y = [0] * 7 + [1] * 4 + [2] * 9
    fold = cv_folds([f"u{i}" for i in range(20)], y, 5)
    assert sorted(np.bincount(fold).tolist()) == [4] * 5
    for c in range(3):
        counts = np.bincount(fold[np.array(y) == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_tiny_validation_chooses_the_epochs_by_cross_validation(monkeypatch):
    """4 validation images per class: each seed trains for its mean best epoch over 5 folds (each fold stopping on
    its held-out rows, as a validation split would), on all training rows."""
    x, y = data(n=60)     # 20 per class: 10% holds out 2
    uids = [f"u{i}" for i in range(60)]
    cfg = ProbeConfig(hidden=(16,), lr=1e-2, batch_size=16, max_epochs=30, patience=3, seeds=2)
    calls = []
    real = fit_members

    def watch(x_train, y_train, **kw):
        fitted = real(x_train, y_train, **kw)
        calls.append({"n": len(x_train), "budget": kw.get("budget"), "best": fitted.best_epoch,
                      "val": None if kw.get("validation") is None else len(kw["validation"][0])})
        return fitted

    from benchmark.evaluate import probe

    monkeypatch.setattr(probe, "fit_members", watch)
    out = train_probe(x, y.tolist(), uids_train=uids, x_test=x[:9], y_test=y[:9].tolist(), num_classes=3, seed=0,
                      cfg=cfg)
    assert out["stopping"]["method"] == "5-fold cross-validation on the training rows"
    folds, final = calls[:5], calls[5]
    assert [c["n"] + c["val"] for c in folds] == [60] * 5 and sum(c["val"] for c in folds) == 60
    want = [int(np.floor(np.mean([c["best"][r] + 1 for c in folds]) + 0.5)) for r in range(2)]
    assert final == {"n": 60, "budget": want, "best": [e - 1 for e in want], "val": None}
    assert [s["epochs_run"] for s in out["per_seed"]] == want
    assert [s["cv_epochs"] for s in out["per_seed"]] == [[c["best"][r] + 1 for c in folds] for r in range(2)]


def test_a_fixed_budget_keeps_each_member_at_its_epoch():
    """Member r with budget e_r ends as a member trained alone for e_r epochs (the others train on)."""
    x, y = data()
    labels = torch.stack([y, y])
    both = fit_members(x, labels, seeds=[1, 2], num_classes=3, cfg=CFG, budget=[3, 7])
    for r, (seed, e) in enumerate(((1, 3), (2, 7))):
        alone = fit_members(x, labels[:1], seeds=[seed], num_classes=3, cfg=CFG, budget=[e])
        for a, b in zip(alone.model.state_dict().values(), both.model.state_dict().values(), strict=True):
            torch.testing.assert_close(a[0], b[r], rtol=1e-4, atol=1e-5)
    assert both.epochs_run == [3, 7] and both.best_epoch == [2, 6]
    with pytest.raises(ValueError, match="either validation rows or an epoch budget"):
        fit_members(x, labels, seeds=[1, 2], num_classes=3, cfg=CFG)
