"""Coverage of a macro-F1 interval, simulated against a population value known exactly.

The population: ``classes`` classes; a prediction of class c is right with probability ``acc_c`` (spread evenly
from ``low`` to ``high``) and otherwise one of the other classes uniformly at random (the confusion matrix M).
With equal class shares the population F1 of class c is 2 M[c, c] / (1 + sum_k M[k, c]) (TP, FP and FN per image
in the limit), and macro-F1 is their mean. Each trial draws ``per_class`` test images per class (the split fixes
the supports), predicts them from M and asks whether the interval holds the population value.

The old method (percentile bootstrap over test images drawn without regard to class) is written out here, as a
reference the new one must beat.
"""

from __future__ import annotations

import numpy as np

from benchmark.evaluate.intervals import macro_f1_rows, score_interval


def confusion(classes: int, low: float, high: float) -> np.ndarray:
    acc = np.linspace(low, high, classes)
    m = np.repeat(((1 - acc) / (classes - 1))[:, None], classes, axis=1)
    m[np.arange(classes), np.arange(classes)] = acc
    return m


def population_macro_f1(m: np.ndarray) -> float:
    return float(np.mean(2 * np.diag(m) / (1 + m.sum(0))))


def unstratified_percentile(y, p, classes: int, samples: int, seed: int) -> tuple[float, float]:
    idx = np.random.default_rng(seed).integers(0, len(y), size=(samples, len(y)))
    lo, hi = np.percentile(macro_f1_rows(y[idx], p[idx], classes), [2.5, 97.5])
    return float(lo), float(hi)


def coverage(*, classes=23, per_class=4, low=0.1, high=0.5, trials=300, samples=1000, seed=123) -> dict:
    """Shares of trials whose interval holds the population macro-F1: the new method and the old one."""
    m = confusion(classes, low, high)
    truth = population_macro_f1(m)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    hits = {"stratified_bca": 0, "unstratified_percentile": 0}
    for t in range(trials):
        p = (m[y].cumsum(1) > rng.random((y.size, 1))).argmax(1)   # one draw per row from its row of M
        lo, hi = score_interval(y, p, classes, samples=samples, seed=t)["ci95"]
        hits["stratified_bca"] += lo <= truth <= hi
        lo, hi = unstratified_percentile(y, p, classes, samples, t)
        hits["unstratified_percentile"] += lo <= truth <= hi
    return {"population_macro_f1": truth, "trials": trials, "per_class": per_class, "classes": classes,
            **{k: v / trials for k, v in hits.items()}}
