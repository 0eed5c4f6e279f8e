"""95% intervals for macro-F1 and for the change between two sets of predictions: stratified, BCa, hierarchical.

One method for every interval projbench reports, whatever the number of seeds:

- **Stratified** resampling of the test images: each class's rows are drawn with replacement from that class
  only, so every resample keeps the class supports the split fixed (an unstratified resample of a small split
  loses whole classes, which changes what macro-F1 averages over). Davison & Hinkley (1997), *Bootstrap Methods
  and their Application*, §3.7 (stratified data).
- **Hierarchical** over what varies between runs: the seeds of the runs (each a fine-tuned model, say) are drawn
  with replacement, then the replicates within each drawn seed (the probe seeds retrained on the same features)
  with replacement, then the test images within class (Davison & Hinkley 1997, §3.8, multi-stage sampling).
  Every seed scored the same test images, so one image resample serves every seed and replicate of a bootstrap
  draw: the test-sampling error is common to them and does not average away over seeds. With one seed and one
  replicate this is the stratified bootstrap over images alone; two seeds with identical predictions still get
  the images' spread, never a zero-width interval or p = 0.
- **BCa** (bias-corrected and accelerated, Efron 1987, "Better bootstrap confidence intervals", JASA 82:171-185):
  the percentiles of the bootstrap distribution are shifted by the bias correction z0 (from the share of
  resamples below the estimate, ties counted half) and the acceleration a (from the jackknife: leave one test
  image out within each class, and with several seeds leave one seed out, each a group of its own, as
  ``scipy.stats.bootstrap`` does for several independent samples).
- **Widened** for small samples: resampling n rows has (n-1)/n of the statistic's variance, so the bootstrap
  values are spread about the estimate by sqrt(jackknife / bootstrap variance) (:func:`_expansion`; Hesterberg
  2015). At 4 test images per class (23 classes) the percentile bootstrap over unstratified images covered the
  population macro-F1 86.7% of the time, plain stratified BCa about 88-89%, this method 94.0%; at 9 per class
  91.8% and 95.4% (``benchmarks/test_interval_coverage.py``, 2,000 and 1,000 trials).

A change's two-sided p-value inverts the BCa interval (the level at which one of its ends reaches 0), so
"the 95% interval includes 0" and "p >= 0.05" agree. It is never below 1/(B+1): B resamples cannot tell
smaller p-values apart.

Predictions are integer class indices; a negative one (``--eval generate``: no class matched) is wrong for every
class, as in :func:`macro_f1_rows`. Pure numpy (and the standard library).
"""

from __future__ import annotations

import hashlib
from statistics import NormalDist

import numpy as np

SAMPLES = 2000        # bootstrap draws: BCa's end points are stable to ~0.005 at this count (Efron 1987 asks >= 1000)
SEED = 0              # fixed: the same predictions always give the same interval
LEVEL = 0.95
SMALL_CLASS_N = 20    # an interval whose smallest class has fewer test images than this is marked (coverage drops)
METHOD = "stratified BCa bootstrap, widened for small samples (seeds, then probe seeds, then test images within class)"
# The fields of an interval a run records beside its ends.
RECORDED = ("method", "samples", "seed", "seeds", "replicates", "min_class_n", "small_classes")
_NORMAL = NormalDist()


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 of every row of (R, n) label arrays, over the classes present in that row's truth.

    The same definition as :func:`.metrics.classification_metrics` (sklearn, ``labels=present``, zero_division=0), in
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



def as_runs(preds, n: int, name: str = "preds") -> np.ndarray:
    """Predictions as an int array (seeds, replicates, test rows); (n,) and (replicates, n) are accepted."""
    try:
        a = np.asarray(preds)
    except ValueError:
        a = None
    if a is None or a.dtype == object or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name}: expected integer class indices in equal-length rows (seeds x replicates x "
                         f"test rows); got ragged or non-integer input")
    if a.ndim == 1:
        a = a[None, None]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != n or 0 in a.shape:
        raise ValueError(f"{name}: expected shape (n,), (replicates, n) or (seeds, replicates, n) with n = {n} test "
                         f"rows; got {np.shape(preds)}")
    return a.astype(np.int64)


def _truth(y_true) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or not y.size or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("y_true: expected a non-empty list of class indices (>= 0)")
    return y.astype(np.int64)


def _stratified_counts(y: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, n): how often each test row is drawn when each class's rows are drawn with replacement from
    that class only (n_c draws among the class's n_c rows)."""
    picks = np.empty((samples, y.size), dtype=np.int64)
    start = 0
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        picks[:, start:start + rows.size] = rows[rng.integers(0, rows.size, size=(samples, rows.size))]
        start += rows.size
    offsets = np.arange(samples)[:, None] * y.size
    return np.bincount((offsets + picks).ravel(), minlength=samples * y.size).reshape(samples, y.size)


def _class_sums(draws: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(B, k): per resample, the draws of the rows of each label (rows of ``draws`` (n, B) summed by label)."""
    out = np.zeros((k, draws.shape[1]), dtype=draws.dtype)
    if labels.size:
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        out[present] = np.add.reduceat(draws[order], starts, axis=0)
    return out.T


class _Memo:
    """A bounded memo: the leaderboard asks for the same run's resampled scores in several intervals (its F1,
    its gain, its richness), and the same test split's draws in all of them. Keyed by content, oldest dropped."""

    def __init__(self, size: int):
        self.size, self.items = size, {}

    def get(self, key: bytes, make):
        if key not in self.items:
            if len(self.items) >= self.size:
                self.items.pop(next(iter(self.items)))
            self.items[key] = make()
        return self.items[key]


_DRAWS, _SCORES, _LOO = _Memo(8), _Memo(4096), _Memo(4096)


def _key(*parts) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(repr((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
    return h.digest()


def _vector_scores(y: np.ndarray, pred: np.ndarray, draws: np.ndarray, num_classes: int) -> np.ndarray:
    """(B,): macro-F1 of one prediction vector on every image resample (``draws``: (n, B) row counts).

    The supports are fixed by the stratification, so a resample's macro-F1 needs only its per-class true
    positives and predicted counts: the resample's row counts summed by predicted class, and over the rows
    predicted right by true class.
    """
    k = num_classes + 1                                   # the extra column: unmatched (negative) predictions
    support = np.bincount(y, minlength=k)
    present = support > 0
    p = np.where(pred < 0, num_classes, pred)
    hit = p == y
    predicted, tp = _class_sums(draws, p, k), _class_sums(draws[hit], y[hit], k)
    denom = support + predicted                           # 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    return (f1 * present).sum(1) / present.sum()


def _resampled_scores(y: np.ndarray, preds: np.ndarray, *, samples: int, seed: int, num_classes: int) -> np.ndarray:
    """(B, S, R): macro-F1 of every seed and replicate on every image resample (the images' generator: ``seed``)."""
    split = _key(y, samples, seed)
    draws = _DRAWS.get(split, lambda: np.ascontiguousarray(
        _stratified_counts(y, samples, np.random.default_rng(seed)).T, dtype=np.int32))   # (n, B)
    s, r, _ = preds.shape
    out = np.empty((samples, s, r))
    for i in range(s):
        for j in range(r):
            out[:, i, j] = _SCORES.get(_key(split, preds[i, j], num_classes),
                                       lambda p=preds[i, j]: _vector_scores(y, p, draws, num_classes))
    return out


def _leave_one_out(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(n,): macro-F1 of ``pred`` with each test row left out in turn (classes present in what remains)."""
    k = num_classes + 1                                   # the extra column: unmatched (negative) predictions
    p = np.where(pred < 0, num_classes, pred)
    hit = (p == y).astype(np.int64)
    tp = np.bincount(y[hit == 1], minlength=k)
    support, predicted = np.bincount(y, minlength=k), np.bincount(p, minlength=k)
    eye = np.eye(k, dtype=np.int64)
    tp_i = tp - eye[y] * hit[:, None]
    support_i = support - eye[y]
    denom = support_i + predicted - eye[p]
    f1 = np.divide(2 * tp_i, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = support_i > 0
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def _jackknife_groups(y, runs, num_classes) -> list[np.ndarray]:
    """Jackknife values of the statistic, one group per class (leave one image out), and one for the seeds."""
    total = None
    for preds, sign in runs:   # the statistic: sum of sign * (mean over seeds and replicates of macro-F1)
        loo = np.mean([[_LOO.get(_key(y, preds[i, j], num_classes),
                                 lambda p=preds[i, j]: _leave_one_out(y, p, num_classes))
                        for j in range(preds.shape[1])] for i in range(preds.shape[0])], axis=(0, 1))
        total = sign * loo if total is None else total + sign * loo
    groups = [total[y == c] for c in np.unique(y)]
    seeds = runs[0][0].shape[0]
    if seeds > 1:
        means = sum(sign * macro_f1_rows(np.broadcast_to(y, p.shape[:2] + y.shape).reshape(-1, y.size),
                                         p.reshape(-1, y.size), num_classes).reshape(p.shape[:2]).mean(1)
                    for p, sign in runs)
        groups.append((means.sum() - means) / (seeds - 1))
    return groups


def _acceleration(groups: list[np.ndarray]) -> float:
    """Efron's acceleration from jackknife values, summed over independent groups (as scipy.stats.bootstrap)."""
    num = den = 0.0
    for g in groups:
        if g.size < 2:
            continue
        u = (g.size - 1) * (g.mean() - g)
        num += float((u ** 3).sum()) / g.size ** 3
        den += float((u ** 2).sum()) / g.size ** 2
    return num / (6 * den ** 1.5) if den > 0 else 0.0


def _expansion(groups: list[np.ndarray]) -> float:
    """How much wider the sampling spread is than the bootstrap's: sqrt(jackknife / bootstrap variance).

    Resampling n rows with replacement has (n-1)/n of the variance of the statistic (Hesterberg 2015, "What
    teachers should know about the bootstrap", The American Statistician 69:371-386, the expanded percentile
    interval); with 4 test images per class, 3/4, which alone leaves a 95% interval covering about 91%. For a
    statistic linear in its influence values U, the bootstrap variance is sum U^2/n^2 per group, the jackknife's
    sum U^2/(n(n-1)); their ratio widens the bootstrap distribution about the estimate.
    """
    boot = jack = 0.0
    for g in groups:
        if g.size < 2:
            continue
        u2 = float((((g.size - 1) * (g.mean() - g)) ** 2).sum())
        boot += u2 / g.size ** 2
        jack += u2 / (g.size * (g.size - 1))
    return float(np.sqrt(jack / boot)) if boot > 0 else 1.0


def _share_below(theta: np.ndarray, value: float) -> float:
    """Share of bootstrap values below ``value``, ties counted half, kept inside (0, 1)."""
    close = np.isclose(theta, value, rtol=0, atol=1e-12)
    share = (np.sum((theta < value) & ~close) + 0.5 * np.sum(close)) / theta.size
    return float(np.clip(share, 0.5 / theta.size, 1 - 0.5 / theta.size))


def _bca_level(z0: float, a: float, z: float) -> float:
    """The percentile level BCa uses in place of the normal quantile ``z`` (Efron 1987, eq. 2.3)."""
    w = z0 + z
    d = 1 - a * w
    if d <= 0:  # beyond the acceleration's range: the extreme end
        return 0.0 if w < 0 else 1.0
    return _NORMAL.cdf(z0 + w / d)


def _bca(theta: np.ndarray, estimate: float, a: float, level: float) -> tuple[list[float], float]:
    """(BCa interval of ``level``, z0)."""
    z0 = _NORMAL.inv_cdf(_share_below(theta, estimate))
    z = _NORMAL.inv_cdf((1 + level) / 2)
    lo, hi = (_bca_level(z0, a, -z), _bca_level(z0, a, z))
    ends = np.quantile(theta, [lo, hi])
    return [float(ends[0]), float(ends[1])], z0


def _bca_p_value(theta: np.ndarray, z0: float, a: float) -> float:
    """Two-sided p-value of "no change": the BCa level whose interval end is 0, at least 1/(B+1)."""
    if np.all(np.isclose(theta, 0.0, rtol=0, atol=1e-12)):
        return 1.0   # no resample moved: the two sets of predictions agree on every image
    w = _NORMAL.inv_cdf(_share_below(theta, 0.0)) - z0
    u = w / (1 + a * w) if 1 + a * w > 0 else np.sign(w) * np.inf
    one_sided = _NORMAL.cdf(u - z0)
    return float(min(1.0, max(2 * min(one_sided, 1 - one_sided), 1 / (theta.size + 1))))


def _draw_runs(rng, samples: int, seeds: int, replicates: list[int]):
    """Seed draws (B, S) and, per prediction set, replicate draws (B, S, R_k)."""
    seed_idx = rng.integers(0, seeds, size=(samples, seeds))
    return seed_idx, [rng.integers(0, r, size=(samples, seeds, r)) for r in replicates]


def _bootstrap(y, runs, num_classes, *, samples, seed) -> np.ndarray:
    """(B,) bootstrap values of sum(sign * mean over seeds and replicates of macro-F1) for ``runs``."""
    # The images from the generator of ``seed``, the seeds and replicates from one of their own: each run's
    # resampled scores are then the same in every interval it enters, and computed once (see _Memo).
    rng = np.random.default_rng([seed, 1])
    seed_idx, rep_idx = _draw_runs(rng, samples, runs[0][0].shape[0], [p.shape[1] for p, _ in runs])
    b = np.arange(samples)[:, None, None]
    theta = np.zeros(samples)
    for (preds, sign), reps in zip(runs, rep_idx, strict=True):
        scores = _resampled_scores(y, preds, samples=samples, seed=seed, num_classes=num_classes)  # (B, S, R)
        theta += sign * scores[b, seed_idx[:, :, None], reps].mean(axis=(1, 2))
    return theta


def _point(y, preds, num_classes) -> float:
    s, r, n = preds.shape
    return float(macro_f1_rows(np.broadcast_to(y, (s * r, n)), preds.reshape(-1, n), num_classes).mean())


def _interval(y, runs, num_classes, *, samples, seed) -> dict:
    estimate = sum(sign * _point(y, p, num_classes) for p, sign in runs)
    groups = _jackknife_groups(y, runs, num_classes)
    a, widen = _acceleration(groups), _expansion(groups)
    theta = estimate + widen * (_bootstrap(y, runs, num_classes, samples=samples, seed=seed) - estimate)
    # macro-F1 is in [0, 1], a change in [-1, 1]: the widening must not leave that range
    theta = np.clip(theta, -sum(sign < 0 for _, sign in runs), sum(sign > 0 for _, sign in runs))
    ci, z0 = _bca(theta, estimate, a, LEVEL)
    min_n = int(np.bincount(y)[np.unique(y)].min())
    return {"estimate": estimate, "ci95": ci, "method": METHOD, "samples": samples, "seed": seed,
            "seeds": int(runs[0][0].shape[0]), "replicates": [int(p.shape[1]) for p, _ in runs],
            "bias_z0": z0, "acceleration": a, "expansion": widen, "min_class_n": min_n, "small_classes": min_n < SMALL_CLASS_N,
            "_theta": theta}


def score_interval(y_true, preds, num_classes: int, *, samples: int = SAMPLES, seed: int = SEED) -> dict:
    """Macro-F1 averaged over seeds and replicates of ``preds`` (S, R, n), with its stratified BCa 95% interval.

    Returns ``estimate``, ``ci95``, ``method``, ``samples``, ``seed``, ``seeds``, ``replicates``, ``bias_z0``,
    ``acceleration``, ``min_class_n`` (test images of the smallest class) and ``small_classes`` (fewer than
    :data:`SMALL_CLASS_N`: the interval is less reliable there).
    """
    y = _truth(y_true)
    out = _interval(y, [(as_runs(preds, y.size), 1)], num_classes, samples=samples, seed=seed)
    out.pop("_theta")
    out["replicates"] = out["replicates"][0]
    return out


def change_interval(y_true, new, base, num_classes: int, *, samples: int = SAMPLES, seed: int = SEED) -> dict:
    """Macro-F1(new) - macro-F1(base), each averaged over seeds and replicates, with its 95% interval and p-value.

    ``new`` and ``base`` are (S, R, n) on the same test rows, paired by seed (seed s of ``new`` is compared with
    seed s of ``base``: a seed draw takes both); their replicates (probe seeds) are drawn independently, and may
    differ in number. Returns the keys of :func:`score_interval`, with ``delta`` (= ``estimate``) and ``p_value``
    (two-sided, never below 1/(samples+1)).
    """
    y = _truth(y_true)
    a, b = as_runs(new, y.size, "new"), as_runs(base, y.size, "base")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"new and base must have the same seeds (paired by seed); got {a.shape[0]} and "
                         f"{b.shape[0]}")
    out = _interval(y, [(a, 1), (b, -1)], num_classes, samples=samples, seed=seed)
    theta = out.pop("_theta")
    out["delta"] = out["estimate"]
    if np.all(a == b[:, :1]) and np.all(b == b[:, :1]):
        out["p_value"] = 1.0
    else:
        out["p_value"] = _bca_p_value(theta, out["bias_z0"], out["acceleration"])
    return out


def record_interval(y_true, preds, num_classes: int) -> dict:
    """What a run's record keeps of a score's interval: ``ci95`` and ``interval`` (how it was made)."""
    out = score_interval(y_true, preds, num_classes)
    return {"ci95": out["ci95"], "interval": {k: out[k] for k in RECORDED}}


def record_change(y_true, new, base, num_classes: int) -> dict:
    """What a run's record keeps of a change: ``delta``, ``ci95``, ``p_value`` and how they were made."""
    out = change_interval(y_true, new, base, num_classes)
    return {k: out[k] for k in ("delta", "ci95", "p_value", *RECORDED)}
