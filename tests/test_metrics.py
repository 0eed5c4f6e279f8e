"""The reported numbers against independent computations on inputs whose answer is known.

``classification_metrics`` (task and probe macro-F1, accuracy, per-class scores, confusion matrix) is checked
against hand-worked values and a plain-Python count of true/false positives, never against sklearn itself; the
run summary's paired gains and richness changes against values computed here from per-seed inputs.
"""

from __future__ import annotations

import statistics

import pytest

from benchmark.metrics import classification_metrics
from benchmark.protocol import summary_table


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


def summary_cells(table: str) -> dict[str, dict[str, str]]:
    """{regime: {column header: cell}} of the Markdown table."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = split[0], [r for r in split[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


def column(cells: dict[str, str], word: str) -> str:
    # The % columns and the control probe have their own lookups (``pct_column``, "control").
    (name,) = [h for h in cells if word in h.lower() and "%" not in h and ("control" not in h or word == "control")]
    return cells[name]


def pct_column(cells: dict[str, str], word: str) -> float:
    (name,) = [h for h in cells if word in h.lower() and "%" in h]
    return float(cells[name].rstrip("%"))


def numbers(cell: str) -> list[float]:
    """The numbers of a cell, e.g. "0.1500 ± 0.0707" -> [0.15, 0.0707]."""
    return [float(x) for x in cell.replace("±", " ").replace("(", " ").replace(")", " ").split()
            if x.replace(".", "", 1).replace("-", "", 1).isdigit()]


def test_summary_pairs_each_seed_with_its_own_zero_shot():
    # Seeds listed out of order, and FT-Proj missing seed 1: gains must still pair seed with seed.
    zs = {0: (0.20, 0.50, 0.30), 1: (0.60, 0.40, 0.35), 2: (0.10, 0.70, 0.25)}  # seed: (task F1, probe, pre probe)
    ft = {2: (0.45, 0.60), 0: (0.30, 0.55)}                                    # seed: (task F1, probe)
    e2e = {1: (0.90, 0.10), 0: (0.25, 0.20), 2: (0.20, 0.90)}
    results = ([run_metrics("zero-shot", s, f, p, pre=q) for s, (f, p, q) in zs.items()]
               + [run_metrics("ft-proj", s, f, p) for s, (f, p) in ft.items()]
               + [run_metrics("ft-e2e", s, f, p) for s, (f, p) in e2e.items()])
    rows = summary_cells(summary_table(results))

    def mean_std(xs):
        return [statistics.fmean(xs), statistics.stdev(xs)]

    for regime, runs in (("ft-proj", ft), ("ft-e2e", e2e)):
        gain = [f - zs[s][0] for s, (f, _) in sorted(runs.items())]
        rich = [p - zs[s][1] for s, (_, p) in sorted(runs.items())]
        assert numbers(column(rows[regime], "gain")) == pytest.approx(mean_std(gain), abs=1e-4), regime
        assert numbers(column(rows[regime], "richness")) == pytest.approx(mean_std(rich), abs=1e-4), regime
        task = numbers(column(rows[regime], "task macro"))
        assert task[:2] == pytest.approx(mean_std([f for f, _ in runs.values()]), abs=1e-4)
        assert numbers(column(rows[regime], "probe"))[:2] == pytest.approx(
            mean_std([p for _, p in runs.values()]), abs=1e-4)
        assert numbers(column(rows[regime], "seeds")) == [len(runs)]
        # The paper's Table 2 %: change of the seed means over the seed-mean baseline, on the paired seeds.
        base_f1, base_probe = (statistics.fmean(zs[s][i] for s in runs) for i in (0, 1))
        assert pct_column(rows[regime], "gain") == pytest.approx(
            100 * (statistics.fmean(f for f, _ in runs.values()) - base_f1) / base_f1, abs=0.05)
        assert pct_column(rows[regime], "richness") == pytest.approx(
            100 * (statistics.fmean(p for _, p in runs.values()) - base_probe) / base_probe, abs=0.05)
    assert numbers(column(rows["zero-shot"], "task macro"))[:2] == pytest.approx(
        mean_std([f for f, _, _ in zs.values()]), abs=1e-4)
    pre = [row for name, row in rows.items() if name.startswith("pre-projection")]
    assert numbers(column(pre[0], "probe"))[:2] == pytest.approx(mean_std([q for _, _, q in zs.values()]), abs=1e-4)


def test_summary_of_one_seed_shows_the_paired_difference():
    results = [run_metrics("zero-shot", 3, 0.25, 0.40, acc=0.3), run_metrics("ft-proj", 3, 0.75, 0.30, acc=0.8)]
    rows = summary_cells(summary_table(results))
    assert numbers(column(rows["ft-proj"], "gain")) == pytest.approx([0.5], abs=1e-4)
    assert numbers(column(rows["ft-proj"], "richness")) == pytest.approx([-0.1], abs=1e-4)
    assert numbers(column(rows["ft-proj"], "accuracy")) == pytest.approx([0.8], abs=1e-4)
    assert numbers(column(rows["zero-shot"], "accuracy")) == pytest.approx([0.3], abs=1e-4)
