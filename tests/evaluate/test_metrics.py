"""The reported numbers against independent computations on inputs whose answer is known.

``classification_metrics`` (task and probe macro-F1, accuracy, per-class scores, confusion matrix) is checked
against hand-worked values and a plain-Python count of true/false positives, never against sklearn itself; the
run summary's paired gains and richness changes against values computed here from per-seed inputs.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from benchmark.evaluate.metrics import classification_metrics


def reference_scores(y_true, y_pred, labels):
    """Per-class (precision, recall, F1, support) by counting, with 0 wherever a denominator is 0."""
    out = {}
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[c] = (precision, recall, f1, tp + fn)
    return out


def reference_macro_f1(y_true, y_pred):
    """Macro-F1 over the classes of the evaluated split (those with support), whatever was predicted."""
    scores = reference_scores(y_true, y_pred, sorted(set(y_true)))
    return sum(f for _, _, f, _ in scores.values()) / len(scores)


# y_true covers all 4 classes; class 3 is never predicted; -1 is an answer outside the label set (generate mode's
# unmatched). Worked by hand: F1 = 2/3 (class 0), 0.4 (class 1), 2/3 (class 2), 0 (class 3) -> 26/60.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 3]
Y_PRED = [0, 0, 1, 1, -1, 2, 0, 1]
HAND_MACRO_F1 = (2 / 3 + 0.4 + 2 / 3 + 0.0) / 4
HAND_ACCURACY = 4 / 8


def test_macro_f1_and_accuracy_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, 4)
    assert m["macro_f1"] == pytest.approx(HAND_MACRO_F1, abs=1e-12)
    assert m["accuracy"] == pytest.approx(HAND_ACCURACY, abs=1e-12)
    assert m["n"] == 8
    assert HAND_MACRO_F1 == pytest.approx(reference_macro_f1(Y_TRUE, Y_PRED), abs=1e-12)


@pytest.mark.parametrize("y_true, y_pred", [
    # A class that is never predicted scores F1 0 and still counts in the average (not "predicted labels only").
    ([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1]),
    # Answers outside the label set are wrong answers, never a class of their own (not sklearn's default labels).
    ([0, 0, 1, 1, 2, 2], [0, -1, 1, -1, 2, -1]),
    ([0, 1, 2, 0, 1, 2, 0, 1, 2], [-1, -1, -1, 0, 0, 0, 2, 2, 2]),
    # Everything wrong; everything right.
    ([0, 1, 2], [1, 2, 0]),
    ([2, 1, 0, 1], [2, 1, 0, 1]),
    # A single class, and strongly imbalanced supports.
    ([1, 1, 1], [1, 0, 1]),
    ([0] * 9 + [1], [0] * 10),
])
def test_macro_f1_and_accuracy_against_counting(y_true, y_pred):
    m = classification_metrics(y_true, y_pred, 3)
    assert m["macro_f1"] == pytest.approx(reference_macro_f1(y_true, y_pred), abs=1e-12)
    assert m["accuracy"] == pytest.approx(sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true))
    assert m["n"] == len(y_true)


def test_a_label_without_test_images_is_left_out_of_the_average():
    """Documented: macro-F1 averages over the classes present in the evaluated split (class 2 has no image)."""
    m = classification_metrics([0, 0, 1, 1], [0, 0, 1, 2], 3)
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2, abs=1e-12)


def test_per_class_scores_and_confusion_matrix():
    names = ["a", "b", "c", "d"]
    m = classification_metrics(Y_TRUE, Y_PRED, 4, names)
    want = reference_scores(Y_TRUE, Y_PRED, range(4))
    for i, name in enumerate(names):
        got = m["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(want[i], abs=1e-12)
    # Rows: true class, columns: predicted class; the answer outside the label set (row 1) has no column.
    assert m["confusion_matrix"] == [
        [2, 1, 0, 0],
        [0, 1, 0, 0],
        [1, 0, 1, 0],
        [0, 1, 0, 0],
    ]


# --- the run summary -------------------------------------------------------------------------------------------


def run_metrics(regime: str, seed: int, f1: float, probe: float, acc: float = 0.5, pre: float = 0.0) -> dict:
    m = {"regime": regime, "seed": seed, "lora": False, "metrics": {"macro_f1": f1, "accuracy": acc},
         "probe": {"post_projection": {"macro_f1": probe}}}
    if regime == "zero-shot":
        m["probe"]["pre_projection"] = {"macro_f1": pre}
    return m


def write_runs(root, results) -> None:
    """The runs as the protocol writes them: one record per (regime, seed) folder of one model on one task."""
    from benchmark.schema import RunKey
    from benchmark.storage.integrity import seal

    for m in results:
        record = {"schema_version": 2, "projbench_version": "0", "model": "m", "task": "t", "limit": None,
                  "projector_family": "mlp", "task_version": "1", "task_fingerprint": "fp", "eval_mode": "loglik",
                  "checkpoint": "org/m", **m}
        d = RunKey("m", "t", None, m["regime"], m["seed"]).under(root)
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(seal(record)))   # sealed, as every schema-2 record is


def summary_row(root, results):
    """The leaderboard's row of ``results``, which `run` prints for the folders it wrote."""
    # Imported here: the metrics tests need no model code (fast mutants).
    from benchmark.leaderboard.collect import collect
    from benchmark.leaderboard.table import build

    write_runs(root, results)
    [row] = build(collect(root)).rows
    return row


def test_summary_pairs_each_seed_with_its_own_zero_shot(tmp_path):
    # Seeds listed out of order, and FT-Proj missing seed 1: gains must still pair seed with seed.
    zs = {0: (0.20, 0.50, 0.30), 1: (0.60, 0.40, 0.35), 2: (0.10, 0.70, 0.25)}  # seed: (task F1, probe, pre probe)
    ft = {2: (0.45, 0.60), 0: (0.30, 0.55)}                                    # seed: (task F1, probe)
    e2e = {1: (0.90, 0.10), 0: (0.25, 0.20), 2: (0.20, 0.90)}
    results = ([run_metrics("zero-shot", s, f, p, pre=q) for s, (f, p, q) in zs.items()]
               + [run_metrics("ft-proj", s, f, p) for s, (f, p) in ft.items()]
               + [run_metrics("ft-e2e", s, f, p) for s, (f, p) in e2e.items()])
    row = summary_row(tmp_path, results)

    def mean_std(xs):
        return [statistics.fmean(xs), statistics.stdev(xs)]

    def numbers(stat):
        return [stat.mean, stat.std]

    for regime, runs in (("ft-proj", ft), ("ft-e2e", e2e)):
        gain = [f - zs[s][0] for s, (f, _) in sorted(runs.items())]
        rich = [p - zs[s][1] for s, (_, p) in sorted(runs.items())]
        assert numbers(row.gain[regime]) == pytest.approx(mean_std(gain), abs=1e-4), regime
        assert numbers(row.richness[regime]) == pytest.approx(mean_std(rich), abs=1e-4), regime
        assert numbers(row.f1[regime]) == pytest.approx(mean_std([f for f, _ in runs.values()]), abs=1e-4)
        assert numbers(row.probe[regime]) == pytest.approx(mean_std([p for _, p in runs.values()]), abs=1e-4)
        assert row.f1[regime].n == len(runs)
        # The paper's Table 2 %: change of the seed means over the seed-mean baseline, on the paired seeds.
        base_f1, base_probe = (statistics.fmean(zs[s][i] for s in runs) for i in (0, 1))
        assert row.gain_pct[regime].mean == pytest.approx(
            100 * (statistics.fmean(f for f, _ in runs.values()) - base_f1) / base_f1, abs=0.05)
        assert row.richness_pct[regime].mean == pytest.approx(
            100 * (statistics.fmean(p for _, p in runs.values()) - base_probe) / base_probe, abs=0.05)
    assert numbers(row.f1["zero-shot"]) == pytest.approx(mean_std([f for f, _, _ in zs.values()]), abs=1e-4)
    assert numbers(row.probe_pre) == pytest.approx(mean_std([q for _, _, q in zs.values()]), abs=1e-4)


def test_summary_of_one_seed_shows_the_paired_difference(tmp_path):
    from benchmark.leaderboard.cli import run_table

    results = [run_metrics("zero-shot", 3, 0.25, 0.40, acc=0.3), run_metrics("ft-proj", 3, 0.75, 0.30, acc=0.8)]
    row = summary_row(tmp_path, results)
    assert row.gain["ft-proj"].values == pytest.approx((0.5,), abs=1e-4)
    assert row.richness["ft-proj"].values == pytest.approx((-0.1,), abs=1e-4)
    printed = run_table(tmp_path, "m", "t")
    assert "Task accuracy (mean over seeds): zero-shot 0.3000, FT-Proj 0.8000." in printed


# --- bootstrap intervals and length bias --------------------------------------------------------------------


def resamples(n: int, samples: int, seed: int):
    """``samples`` draws of n test rows with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n)).tolist()


RNG = np.random.default_rng(7)
Y30 = RNG.integers(0, 4, 30).tolist()
P30 = [y if RNG.random() < 0.6 else int(RNG.integers(-1, 4)) for y in Y30]   # 60% right, some unmatched (-1)
Q30 = [y if RNG.random() < 0.4 else int(RNG.integers(0, 4)) for y in Y30]


def test_macro_f1_of_many_rows_at_once():
    from benchmark.evaluate.intervals import macro_f1_rows

    idx = resamples(30, 50, 3)
    t = np.asarray(Y30)[idx]
    p = np.asarray(P30)[idx]
    want = [reference_macro_f1(list(a), list(b)) for a, b in zip(t.tolist(), p.tolist(), strict=True)]
    assert macro_f1_rows(t, p, 4).tolist() == pytest.approx(want, abs=1e-12)


def test_bootstrap_interval():
    # The run's one-score interval is the stratified BCa one (tests/evaluate/test_intervals.py checks it against scipy).
    from benchmark.evaluate.intervals import score_interval

    got = score_interval(Y30, P30, 4)
    assert got["ci95"][0] < classification_metrics(Y30, P30, 4)["macro_f1"] < got["ci95"][1]
    # Known answers: every image right, every image wrong (no resample can change either).
    assert score_interval(Y30, Y30, 4)["ci95"] == [1.0, 1.0]
    assert score_interval(Y30, [(y + 1) % 4 for y in Y30], 4)["ci95"] == [0.0, 0.0]


def test_paired_change():
    from benchmark.evaluate.intervals import change_interval

    got = change_interval(Y30, P30, Q30, 4)
    assert got["delta"] == pytest.approx(reference_macro_f1(Y30, P30) - reference_macro_f1(Y30, Q30), abs=1e-12)
    assert got["ci95"][0] < got["delta"] < got["ci95"][1]
    # Known answers: everything right against everything wrong; a model against itself. Never p = 0.
    wrong = [(y + 1) % 4 for y in Y30]
    best = change_interval(Y30, Y30, wrong, 4)
    assert (best["delta"], best["ci95"]) == (1.0, [1.0, 1.0]) and 0 < best["p_value"] <= 2 / best["samples"]
    worst = change_interval(Y30, wrong, Y30, 4)
    assert (worst["delta"], worst["ci95"]) == (-1.0, [-1.0, -1.0]) and 0 < worst["p_value"] <= 2 / best["samples"]
    same = change_interval(Y30, P30, P30, 4)
    assert (same["delta"], same["ci95"], same["p_value"]) == (0.0, [0.0, 0.0], 1.0)


def pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5


def test_length_bias():
    from benchmark.evaluate.loglik import length_bias

    by_sum, by_mean, tokens = [0, 0, 1, 2, 0], [0, 1, 1, 2, 2], [2, 5, 3]
    got = length_bias(by_sum, by_mean, tokens)
    assert got["disagreement_rate"] == pytest.approx(2 / 5)
    assert got["predictions_per_class"] == {"sum": [3, 1, 1], "mean": [1, 2, 2]}
    corr = got["corr_predictions_vs_answer_tokens"]
    assert corr["sum"] == pytest.approx(pearson([3, 1, 1], tokens))
    assert corr["mean"] == pytest.approx(pearson([1, 2, 2], tokens))
    assert corr["sum"] < 0  # the shortest answer is predicted most often: the bias summed scores have
    flat = length_bias([0, 1, 2], [0, 1, 2], tokens)
    assert flat["disagreement_rate"] == 0.0 and flat["corr_predictions_vs_answer_tokens"]["sum"] is None
