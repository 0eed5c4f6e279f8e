"""The intervals of benchmark/evaluate/intervals.py against independent computations with known answers.

- scipy.stats.bootstrap(method="BCa") with one sample per class (scipy resamples several samples independently:
  the stratified bootstrap) on the same macro-F1 statistic, widened by the small-sample factor computed here
  from a hand-rolled jackknife (scikit-learn's f1_score per left-out row): equal within Monte-Carlo error;
- the acceleration equals Efron's jackknife formula computed row by row;
- coverage of the population macro-F1 at 4 test images per class (tests/coverage_sim.py), where the old
  unstratified percentile bootstrap falls short;
- seeds: identical seeds still get the images' spread (never zero width or p = 0), disagreeing seeds widen it.
"""

from __future__ import annotations

import numpy as np
import pytest
from coverage_sim import coverage
from scipy import stats
from sklearn.metrics import f1_score

from benchmark.evaluate.intervals import SMALL_CLASS_N, change_interval, macro_f1_rows, score_interval

K, PER = 5, 6
RNG = np.random.default_rng(11)
Y = np.repeat(np.arange(K), PER)
P = np.where(RNG.random(Y.size) < 0.75, Y, RNG.integers(0, K, Y.size))
Q = np.where(RNG.random(Y.size) < 0.45, Y, RNG.integers(0, K, Y.size))


def sk_f1(y, p) -> float:
    return f1_score(y, np.where(p < 0, K, p), labels=sorted(set(y.tolist())), average="macro", zero_division=0)


def per_class_statistic(*samples, axis=-1):
    """Macro-F1 from one prediction array per class (the class is the truth), batched as scipy asks."""
    shape = np.broadcast_shapes(*[s.shape[:-1] for s in samples])
    preds = np.concatenate([np.broadcast_to(s, shape + s.shape[-1:]) for s in samples], axis=-1)
    truth = np.concatenate([np.full(s.shape[-1], c) for c, s in enumerate(samples)])
    flat = preds.reshape(-1, preds.shape[-1])
    return macro_f1_rows(np.broadcast_to(truth, flat.shape), flat, K).reshape(shape)


def hand_jackknife(y, p):
    """Leave-one-row-out macro-F1 by scikit-learn, one group per class."""
    keep = np.ones(y.size, bool)
    out = {}
    for i in range(y.size):
        keep[i] = False
        out.setdefault(int(y[i]), []).append(sk_f1(y[keep], p[keep]))
        keep[i] = True
    return [np.asarray(v) for _, v in sorted(out.items())]


def test_estimate_is_the_mean_over_seeds_and_replicates_of_sklearn_macro_f1():
    preds = np.stack([np.stack([P, Q]), np.stack([Q, Q])])          # 2 seeds x 2 replicates
    got = score_interval(Y, preds, K, samples=200)
    assert got["estimate"] == pytest.approx((sk_f1(Y, P) + 3 * sk_f1(Y, Q)) / 4, abs=1e-12)
    assert (got["seeds"], got["replicates"]) == (2, 2)
    with_unmatched = np.where(np.arange(Y.size) % 4 == 0, -1, P)
    assert score_interval(Y, with_unmatched, K, samples=50)["estimate"] == pytest.approx(sk_f1(Y, with_unmatched))


def test_acceleration_is_efrons_jackknife_formula():
    num = den = 0.0
    for g in hand_jackknife(Y, P):
        u = (g.size - 1) * (g.mean() - g)
        num, den = num + (u ** 3).sum() / g.size ** 3, den + (u ** 2).sum() / g.size ** 2
    got = score_interval(Y, P, K, samples=100)
    assert got["acceleration"] == pytest.approx(num / (6 * den ** 1.5), abs=1e-12)
    boot = sum(((g.size - 1) * (g.mean() - g)) ** 2 / g.size ** 2 for g in hand_jackknife(Y, P)).sum()
    jack = sum(((g.size - 1) * (g.mean() - g)) ** 2 / (g.size * (g.size - 1)) for g in hand_jackknife(Y, P)).sum()
    assert got["expansion"] == pytest.approx(np.sqrt(jack / boot), abs=1e-12)
    assert got["expansion"] == pytest.approx(np.sqrt(PER / (PER - 1)), rel=0.02)  # equal classes: n/(n-1)


@pytest.mark.parametrize(("accuracy", "seed"), [(0.9, 0), (0.15, 2)])
def test_interval_equals_scipys_stratified_bca(accuracy, seed):
    rng = np.random.default_rng(seed)
    pred = np.where(rng.random(Y.size) < accuracy, Y, rng.integers(0, K, Y.size))
    kw = {"n_resamples": 20000, "random_state": 1, "vectorized": True}
    ref = stats.bootstrap([pred[Y == c] for c in range(K)], per_class_statistic, method="BCa", **kw)
    pct = stats.bootstrap([pred[Y == c] for c in range(K)], per_class_statistic, method="percentile", **kw)
    ref, pct = ref.confidence_interval, pct.confidence_interval
    got = score_interval(Y, pred, K, samples=20000)
    est, f = sk_f1(Y, pred), got["expansion"]
    want = [est + f * (ref.low - est), min(1.0, est + f * (ref.high - est))]
    assert got["ci95"] == pytest.approx(want, abs=0.01)      # Monte-Carlo error of two 20,000-draw bootstraps
    # The check tells BCa from the percentile interval, and the widening from none:
    assert abs(ref.low - pct.low) > 0.025 and abs(want[0] - ref.low) > 0.01


def test_coverage_at_four_test_images_per_class_beats_the_old_percentile_bootstrap():
    got = coverage(trials=300, samples=500)
    assert got["stratified_bca"] >= 0.90, got
    assert got["unstratified_percentile"] < 0.90, got   # the old method fails the same bar on the same draws


def test_identical_seeds_still_carry_the_test_images_spread():
    one = change_interval(Y, P, Q, K)
    two = change_interval(Y, np.stack([P, P])[:, None], np.stack([Q, Q])[:, None], K)
    assert two["delta"] == pytest.approx(one["delta"]) and two["ci95"][1] - two["ci95"][0] > 0.05
    assert two["p_value"] > 0 and two["seeds"] == 2
    # A change every resample agrees on still has p >= 1/(B+1), not 0.
    sure = change_interval(Y, np.stack([Y, Y])[:, None], np.stack([(Y + 1) % K] * 2)[:, None], K, samples=300)
    assert sure["ci95"] == [1.0, 1.0] and 1 / 301 <= sure["p_value"] <= 2 / 300
    same = change_interval(Y, P, P, K)
    assert (same["delta"], same["ci95"], same["p_value"]) == (0.0, [0.0, 0.0], 1.0)


def test_disagreeing_seeds_widen_the_interval():
    agree = score_interval(Y, np.stack([P, P, P])[:, None], K)
    disagree = score_interval(Y, np.stack([P, Q, P])[:, None], K)
    width = [r["ci95"][1] - r["ci95"][0] for r in (agree, disagree)]
    assert width[1] > width[0] + 0.05
    # Probe seeds within one run add their spread too.
    reps = score_interval(Y, np.stack([P, Q, P])[None], K)
    assert reps["ci95"][1] - reps["ci95"][0] > width[0] + 0.02


def test_change_p_value_agrees_with_the_interval():
    for new, base in ((P, Q), (Q, P), (P, np.where(RNG.random(Y.size) < 0.9, P, Q))):
        got = change_interval(Y, new, base, K)
        assert got["delta"] == pytest.approx(sk_f1(Y, new) - sk_f1(Y, base), abs=1e-12)
        excludes_zero = not got["ci95"][0] <= 0 <= got["ci95"][1]
        assert excludes_zero == (got["p_value"] < 0.05), got


def test_small_classes_are_flagged():
    assert score_interval(Y, P, K, samples=50)["min_class_n"] == PER < SMALL_CLASS_N
    y = np.repeat(np.arange(3), [20, 25, 30])
    got = score_interval(y, y, 3, samples=50)
    assert (got["min_class_n"], got["small_classes"]) == (20, False)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="shape"):
        score_interval(Y, P[:-1], K)
    with pytest.raises(ValueError, match="ragged"):
        score_interval(Y, [list(P), list(P[:-1])], K)
    with pytest.raises(ValueError, match="same seeds"):
        change_interval(Y, np.stack([P, P])[:, None], Q, K)
    with pytest.raises(ValueError, match="y_true"):
        score_interval([], [], K)
