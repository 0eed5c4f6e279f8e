"""The richness probe (paper A.2): an MLP on mean-pooled image embeddings, early-stopped on a validation split.

Improvements over the paper's released code: early stopping uses a validation split carved from train (never
the test split); the same architecture (input width aside) probes pre- and post-projection features; inputs
are z-scored with statistics of the probe's own training rows, so that features at different scales (a projector's
output vs. CLIP's hidden states) are compared on the information they carry.

Early stopping follows the paper: on the validation loss (``ProbeConfig.early_stopping="loss"``, patience 5
epochs); stopping on validation macro-F1 stays available (``"f1"``), and the choice is recorded in
``probe_config``. Every probe comes with a control probe (Hewitt & Liang, 2019): the same probe trained on the
training labels shuffled with a fixed seed. Its test F1 is what memorising labels alone reaches; the gap
(``selectivity``) is what the features add.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.config import ProbeConfig
from benchmark.errors import DataError
from benchmark.evaluate.metrics import bootstrap_ci, classification_metrics
from benchmark.splits import stratified_holdout

CONTROL_SEED = 104729  # the control probe's label shuffle: fixed, and distinct from every run seed's stream


def probe_mlp(in_dim: int, num_classes: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


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


def train_probe(x_train: torch.Tensor, y_train: list[int], *, uids_train: list[str], x_test: torch.Tensor,
                y_test: list[int], num_classes: int, seed: int, cfg: ProbeConfig, progress: bool = False,
                desc: str = "probe", with_predictions: bool = False) -> dict:
    """Train one probe; its test macro-F1 with a bootstrap interval (and the test predictions if asked)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    val = validation_split(uids_train, y_train, cfg.val_fraction)
    y = torch.tensor(y_train)
    xtr, ytr, xval, yval = x_train[~val], y[~val], x_train[val], y[val]
    if cfg.standardize:
        # Post-projection tokens can live at a very different scale from pre-projection features (and from one
        # model to another); without this the same MLP and learning rate would compare scales, not information.
        mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
        xtr, xval, x_test = (xtr - mean) / std, (xval - mean) / std, (x_test - mean) / std
    model = probe_mlp(x_train.shape[1], num_classes, cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    # Best so far, by the stopping criterion: lower validation loss, or higher validation macro-F1.
    best = {"score": None, "state": None, "epoch": 0, "val_loss": None, "val_macro_f1": None}
    bad_epochs = 0
    bar = tqdm(range(cfg.max_epochs), desc=desc, leave=False, disable=not progress)
    for epoch in bar:
        model.train()
        for idx in torch.randperm(len(xtr), generator=gen).split(cfg.batch_size):
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_loss, val_pred = _evaluate(model, xval, yval)
        val_f1 = classification_metrics(yval.tolist(), val_pred, num_classes)["macro_f1"]
        score = -val_loss if cfg.early_stopping == "loss" else val_f1
        if best["score"] is None or score > best["score"]:
            best = {"score": score, "state": {k: v.clone() for k, v in model.state_dict().items()}, "epoch": epoch,
                    "val_loss": val_loss, "val_macro_f1": val_f1}
            bad_epochs = 0
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                break
    bar.close()
    model.load_state_dict(best["state"])
    pred = _evaluate(model, x_test, None)[1]
    test = classification_metrics(y_test, pred, num_classes)
    out = {
        "macro_f1": test["macro_f1"], "accuracy": test["accuracy"],
        "ci95": bootstrap_ci(y_test, pred, num_classes)["ci95"],
        "val_macro_f1": best["val_macro_f1"], "val_loss": best["val_loss"], "stopped_on": cfg.early_stopping,
        "best_epoch": best["epoch"], "epochs_run": epoch + 1, "n_train": int((~val).sum()), "n_val": int(val.sum()),
        "input_dim": int(x_train.shape[1]),
    }
    return {**out, "predictions": pred} if with_predictions else out


def control_labels(y_train: list[int], seed: int) -> list[int]:
    """The training labels shuffled with a fixed generator (per seed): same class counts, no link to the image."""
    rng = np.random.default_rng([CONTROL_SEED, seed])
    return [int(y) for y in rng.permutation(np.asarray(y_train))]


def probe_with_control(x_train: torch.Tensor, y_train: list[int], *, uids_train: list[str], x_test: torch.Tensor,
                       y_test: list[int], num_classes: int, seed: int, cfg: ProbeConfig, progress: bool = False,
                       desc: str = "probe") -> tuple[dict, list[int]]:
    """The probe, its control probe (if ``cfg.control``) and selectivity; returns (record, test predictions)."""
    out = train_probe(x_train, y_train, uids_train=uids_train, x_test=x_test, y_test=y_test,
                      num_classes=num_classes, seed=seed, cfg=cfg, progress=progress, desc=desc,
                      with_predictions=True)
    pred = out.pop("predictions")
    if cfg.control:
        ctl = train_probe(x_train, control_labels(y_train, seed), uids_train=uids_train, x_test=x_test,
                          y_test=y_test, num_classes=num_classes, seed=seed, cfg=cfg, progress=progress,
                          desc=desc + " [control]")
        out["control"] = {k: ctl[k] for k in ("macro_f1", "accuracy", "ci95", "best_epoch", "epochs_run")}
        out["selectivity"] = out["macro_f1"] - ctl["macro_f1"]
    return out, pred


@torch.no_grad()
def _evaluate(model, x, y) -> tuple[float | None, list[int]]:
    """(mean cross-entropy against ``y`` or None, argmax predictions)."""
    model.eval()
    logits = model(x)
    loss = None if y is None else float(nn.functional.cross_entropy(logits, y))
    return loss, logits.argmax(-1).tolist()
