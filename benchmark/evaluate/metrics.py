"""Classification metrics: macro-F1 (the paper's headline), accuracy, per-class scores, confusion matrix, and
seeded bootstrap intervals over test images (for one score, and paired for the change between two).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

BOOTSTRAP_SAMPLES = 1000   # resamples of the test images; percentile intervals are stable to ~0.005 at this count
BOOTSTRAP_SEED = 0         # fixed: the same predictions always give the same interval
CI_LEVEL = 0.95


def classification_metrics(y_true, y_pred, num_classes: int, class_names: list[str] | None = None) -> dict:
    labels = list(range(num_classes))
    present = sorted(set(y_true))  # macro-F1 over the classes present in the evaluated split
    out = {
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n": len(y_true),
    }
    if class_names is not None:
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        out["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        }
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def bootstrap_indices(n: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(samples, n) row indices drawn with replacement; the same for every score of one test split."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 of every row of (R, n) label arrays, over the classes present in that row's truth.

    The same definition as :func:`classification_metrics` (sklearn, ``labels=present``, zero_division=0), in
    closed form over per-row confusion counts so that a thousand resamples cost one pass. A negative prediction
    (``--eval generate``: no class matched) is wrong for every class: it goes to an extra column no truth has.
    """
    y_pred = np.where(y_pred < 0, num_classes, y_pred)
    num_classes += 1
    rows = np.arange(y_true.shape[0])[:, None] * num_classes
    size = y_true.shape[0] * num_classes
    hit = y_true == y_pred
    tp = np.bincount((rows + y_true)[hit], minlength=size).reshape(-1, num_classes)
    support = np.bincount((rows + y_true).ravel(), minlength=size).reshape(-1, num_classes)
    predicted = np.bincount((rows + y_pred).ravel(), minlength=size).reshape(-1, num_classes)
    denom = support + predicted  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = support > 0
    return (f1 * present).sum(1) / present.sum(1)


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [100 * (1 - CI_LEVEL) / 2, 100 * (1 + CI_LEVEL) / 2])
    return [float(lo), float(hi)]


def bootstrap_ci(y_true, y_pred, num_classes: int, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> dict:
    """Percentile 95% interval of macro-F1 over test images resampled with replacement (seeded)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    idx = bootstrap_indices(len(t), samples, seed)
    return {"ci95": _interval(macro_f1_rows(t[idx], p[idx], num_classes)), "method": "bootstrap over test images",
            "samples": samples, "seed": seed}


def paired_bootstrap(y_true, pred_new, pred_base, *, num_classes: int, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> dict:
    """Macro-F1(new) - macro-F1(base) on the same test images, with a paired percentile 95% interval.

    Both prediction lists are resampled with the same indices, so the interval reflects the change, not the
    spread of each score. ``p_value``: two-sided share of resamples on the other side of 0 (times 2, capped at 1).
    """
    t, a, b = np.asarray(y_true), np.asarray(pred_new), np.asarray(pred_base)
    idx = bootstrap_indices(len(t), samples, seed)
    diff = macro_f1_rows(t[idx], a[idx], num_classes) - macro_f1_rows(t[idx], b[idx], num_classes)
    delta = float(macro_f1_rows(t[None], a[None], num_classes)[0] - macro_f1_rows(t[None], b[None], num_classes)[0])
    other_side = np.mean(diff <= 0) if delta > 0 else np.mean(diff >= 0)
    return {"delta": delta, "ci95": _interval(diff), "p_value": float(min(1.0, 2 * other_side)),
            "method": "paired bootstrap over test images", "samples": samples, "seed": seed}
