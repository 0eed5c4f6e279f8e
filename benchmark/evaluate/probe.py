"""The richness probe (paper A.2): an MLP on mean-pooled image embeddings, with probe seeds and a control task.

Improvements over the paper's released code: early stopping uses a validation split carved from train (never
the test split); the same architecture (input width aside) probes pre- and post-projection features; inputs
are z-scored with statistics of the probe's own training rows, so that features at different scales (a projector's
output vs. CLIP's hidden states) are compared on the information they carry.

**Probe seeds.** A probe's score moves with its initial weights and batch order, by as much as a richness change
on small data. Every feature set is probed with ``ProbeConfig.seeds`` probe seeds (derived from the run seed by
:func:`probe_seeds`), trained together (:mod:`benchmark.evaluate.ensemble`); the reported score is their mean,
each seed's score is recorded, and the interval (:func:`benchmark.evaluate.intervals.record_interval`) resamples
probe seeds and test images within class.

**Early stopping** follows the paper: on the validation loss (``ProbeConfig.early_stopping="loss"``, patience 5
epochs); stopping on validation macro-F1 stays available (``"f1"``). Where the validation split would hold fewer
than ``MIN_VAL_PER_CLASS`` images of some class, its loss says little about the epoch: the epoch count is then
chosen by ``CV_FOLDS``-fold cross-validation on the training rows (each seed's mean best epoch over the folds) and
the probe trained on all training rows for that many epochs. ``stopping`` records which was used.

**Control task** (Hewitt & Liang 2019; :mod:`benchmark.evaluate.control` for the construction and what differs
for images): the same probe, with the same seeds, trained on control labels (a fixed random label per cluster of
the feature set), early-stopped on the validation rows' control labels and scored on the test rows' control
labels. ``selectivity`` = task macro-F1 - control macro-F1 on the same test rows: what the features make
learnable beyond what the probe could memorise.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.config import ProbeConfig
from benchmark.errors import DataError
from benchmark.evaluate.control import control_task
from benchmark.evaluate.ensemble import fit_members, probe_mlp  # noqa: F401  (probe_mlp: the probe's one member)
from benchmark.evaluate.intervals import macro_f1_rows, record_interval
from benchmark.splits import stratified_holdout, uid_order

PROBE_SEED_KEY = 7919     # the probe seeds' stream, distinct from the run's other seeded streams
MIN_VAL_PER_CLASS = 5     # fewer validation images of a class than this: cross-validated stopping instead
CV_FOLDS = 5


def probe_seeds(seed: int, count: int) -> list[int]:
    """``count`` probe seeds derived from the run seed; the first ``c`` are the same for every count >= c."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence([PROBE_SEED_KEY, seed]).spawn(count)]


def validation_split(uids: list[str], labels: list[int], fraction: float) -> np.ndarray:
    """Boolean mask of the validation rows: a stratified, seed-independent hold-out of the training split."""
    counts = np.bincount(np.asarray(labels))
    too_small = [int(c) for c in np.flatnonzero(counts < 2)]
    if too_small:
        raise DataError(
            f"The probe needs at least 2 training images per class to hold one out for early stopping; "
            f"class indices {too_small} have fewer. Add images or raise --max-per-class."
        )
    held = stratified_holdout(list(zip(uids, [str(x) for x in labels], strict=True)), fraction)
    return np.array([u in held for u in uids])


def cv_folds(uids: list[str], labels: list[int], folds: int) -> np.ndarray:
    """Fold index of each row: each class's rows in uid-hash order dealt round the folds, continuing from one
    class to the next so that the folds' sizes differ by at most one."""
    fold, turn = np.zeros(len(uids), dtype=int), 0
    for c in sorted(set(labels)):
        for i in sorted((i for i, y in enumerate(labels) if y == c), key=lambda i: uid_order(uids[i])):
            fold[i], turn = turn % folds, turn + 1
    return fold


def _standardize(fit: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    # Post-projection tokens can live at a very different scale from pre-projection features (and from one model
    # to another); without this the same MLP and learning rate would compare scales, not information.
    mean, std = fit.mean(0), fit.std(0).clamp_min(1e-6)
    return [(x - mean) / std for x in (fit, *others)]


def fit_label_sets(x_train: torch.Tensor, labels: torch.Tensor, *, uids_train: list[str], x_test: torch.Tensor,
                   seeds: list[int], num_classes: int, cfg: ProbeConfig, progress: bool = False,
                   desc: str = "probe") -> tuple[dict, np.ndarray, dict]:
    """Train one member per (label set, seed) on rows ``x_train`` with ``labels`` (sets * seeds, n), sets first.

    Stopping: on the validation split of the task labels (``labels[0]``), or cross-validated where that split
    would be tiny. Returns (per-member fit facts, test predictions (members, n_test), the split's sizes and
    stopping).
    """
    task = labels[0].tolist()
    val = torch.as_tensor(validation_split(uids_train, task, cfg.val_fraction))
    counts = np.bincount(np.asarray(task)[val.numpy()], minlength=num_classes)[sorted(set(task))]
    member_seeds = seeds * (len(labels) // len(seeds))
    if counts.min() >= MIN_VAL_PER_CLASS:
        xtr, xval, xte = _standardize(x_train[~val], x_train[val], x_test)
        fit = fit_members(xtr, labels[:, ~val], seeds=member_seeds, num_classes=num_classes, cfg=cfg,
                          validation=(xval, labels[:, val]), progress=progress, desc=desc)
        stopping = {"method": "validation split", "fraction": cfg.val_fraction}
        sizes = {"n_train": int((~val).sum()), "n_val": int(val.sum())}
        facts = {"best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "val_loss": fit.val_loss,
                 "val_macro_f1": fit.val_macro_f1}
    else:
        fit, facts, stopping = _cross_validated(x_train, labels, uids_train=uids_train, seeds=member_seeds,
                                                num_classes=num_classes, cfg=cfg, progress=progress, desc=desc)
        stopping["reason"] = (f"the validation split would hold {int(counts.min())} image(s) of some class, "
                              f"fewer than {MIN_VAL_PER_CLASS}")
        xte = _standardize(x_train, x_test)[1]
        sizes = {"n_train": len(task), "n_val": 0}
    return facts, fit.model.predict(xte), {**sizes, "stopping": stopping}


def _cross_validated(x: torch.Tensor, labels: torch.Tensor, *, uids_train: list[str], seeds: list[int],
                     num_classes: int, cfg: ProbeConfig, progress: bool, desc: str):
    """Each member's epoch count = its mean best epoch over ``CV_FOLDS`` folds of the training rows (early
    stopping on the held-out fold, as on a validation split); then every member trains on all rows for that
    many epochs."""
    fold = torch.as_tensor(cv_folds(uids_train, labels[0].tolist(), min(CV_FOLDS, len(uids_train))))
    best = []
    for f in range(int(fold.max()) + 1):
        out = fold == f
        xtr, xval = _standardize(x[~out], x[out])
        fit = fit_members(xtr, labels[:, ~out], seeds=seeds, num_classes=num_classes, cfg=cfg,
                          validation=(xval, labels[:, out]), progress=progress, desc=f"{desc} [fold {f}]")
        best.append([e + 1 for e in fit.best_epoch])
    by_member = np.array(best).T  # (members, folds) epochs up to and including the best one
    epochs = [max(1, int(np.floor(e.mean() + 0.5))) for e in by_member]
    fit = fit_members(_standardize(x)[0], labels, seeds=seeds, num_classes=num_classes, cfg=cfg, budget=epochs,
                      progress=progress, desc=desc)
    facts = {"best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "cv_epochs": by_member.tolist()}
    return fit, facts, {"method": f"{int(fold.max()) + 1}-fold cross-validation on the training rows"}


def _summary(y_test: list[int], preds: np.ndarray, facts: dict, rows: slice, *, seeds: list[int],
             num_classes: int) -> dict:
    """The record of one label set: the mean over its seeds, each seed's scores, and the interval."""
    t = np.asarray(y_test)
    per_seed = []
    for i, r in enumerate(range(rows.start, rows.stop)):
        f1 = float(macro_f1_rows(t[None], preds[r][None], num_classes)[0])
        per_seed.append({"seed": seeds[i], "macro_f1": f1, "accuracy": float(np.mean(preds[r] == t)),
                         **{k: v[r] for k, v in facts.items()}})
    return {"macro_f1": float(np.mean([s["macro_f1"] for s in per_seed])),
            "accuracy": float(np.mean([s["accuracy"] for s in per_seed])),
            **record_interval(y_test, preds[rows], num_classes), "per_seed": per_seed}


def train_probe(x_train: torch.Tensor, y_train: list[int], *, uids_train: list[str], x_test: torch.Tensor,
                y_test: list[int], num_classes: int, seed: int, cfg: ProbeConfig, progress: bool = False,
                desc: str = "probe", with_predictions: bool = False) -> dict:
    """The probe alone (``cfg.seeds`` probe seeds): mean test macro-F1, per-seed scores, interval (and the test
    predictions (seeds, n) if asked)."""
    seeds = probe_seeds(seed, cfg.seeds)
    facts, preds, info = fit_label_sets(x_train, torch.tensor([y_train] * len(seeds)), uids_train=uids_train,
                                        x_test=x_test, seeds=seeds, num_classes=num_classes, cfg=cfg,
                                        progress=progress, desc=desc)
    out = {**_summary(y_test, preds, facts, slice(0, len(seeds)), seeds=seeds, num_classes=num_classes),
           "probe_seeds": seeds, "stopped_on": cfg.early_stopping, **info, "input_dim": int(x_train.shape[1])}
    return {**out, "predictions": preds.tolist()} if with_predictions else out


def probe_with_control(x_train: torch.Tensor, y_train: list[int], *, uids_train: list[str], x_test: torch.Tensor,
                       y_test: list[int], num_classes: int, seed: int, cfg: ProbeConfig, progress: bool = False,
                       desc: str = "probe") -> tuple[dict, list[list[int]]]:
    """The probe, its control task (if ``cfg.control``) and selectivity, every probe seed trained together;
    returns (record, test predictions (seeds, n))."""
    if not cfg.control:
        out = train_probe(x_train, y_train, uids_train=uids_train, x_test=x_test, y_test=y_test,
                          num_classes=num_classes, seed=seed, cfg=cfg, progress=progress, desc=desc,
                          with_predictions=True)
        return out, out.pop("predictions")
    seeds, r = probe_seeds(seed, cfg.seeds), cfg.seeds
    ctl = control_task(x_train, x_test, num_classes=num_classes, seed=seed)
    labels = torch.tensor([y_train] * r + [ctl.train] * r)
    facts, preds, info = fit_label_sets(x_train, labels, uids_train=uids_train, x_test=x_test, seeds=seeds,
                                        num_classes=num_classes, cfg=cfg, progress=progress, desc=desc)
    out = {**_summary(y_test, preds, facts, slice(0, r), seeds=seeds, num_classes=num_classes),
           "probe_seeds": seeds, "stopped_on": cfg.early_stopping, **info, "input_dim": int(x_train.shape[1])}
    control = _summary(ctl.test, preds, facts, slice(r, 2 * r), seeds=seeds, num_classes=num_classes)
    out["control"] = {**ctl.describe(), **control}
    out["selectivity"] = out["macro_f1"] - control["macro_f1"]
    return out, preds[:r].tolist()
