"""The leaderboard's intervals: the hierarchical bootstrap of the runs' own test predictions, for any seed count,
and the older methods only where predictions are missing, marked; schema-2 records read and labelled; variant
rows that do not count another configuration's seeds as missing.

Expected intervals are computed here from the predictions written to disk, with the seeds stacked in order
(benchmark.evaluate.intervals is checked against scipy in tests/evaluate/test_intervals.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_leaderboard import RESULTS, _as_schema2, board_of, edit_metrics, row

from benchmark.evaluate.intervals import METHOD, change_interval, macro_f1_rows, score_interval
from benchmark.leaderboard.render import render

DIGITS = Path("llava15-tiny") / "digits@max10"
REGIMES = ("zero-shot", "ft-proj", "ft-e2e")
PER_CLASS = 4


@pytest.fixture
def results(tmp_path) -> Path:
    return Path(shutil.copytree(RESULTS, tmp_path / "results"))


def classes_of(results: Path) -> list[str]:
    return json.loads((results / DIGITS / "zero-shot/seed0/metrics.json").read_text())["data"]["classes"]


def truth(k: int) -> np.ndarray:
    return np.repeat(np.arange(k), PER_CLASS)


def draw(k: int, accuracy: float, seed: int, shape=()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.broadcast_to(truth(k), (*shape, k * PER_CLASS))
    return np.where(rng.random(y.shape) < accuracy, y, rng.integers(0, k, y.shape))


def write_predictions(results: Path, *, schema: int = 3, same_seeds: bool = False) -> dict:
    """Predictions for every digits run (FT-Proj probes: 3 probe seeds as a list per seed; the others: one
    list, the older form); returns them by (regime, seed, what)."""
    names = classes_of(results)
    k, y = len(names), truth(len(names))
    uids = [f"img{i}" for i in range(y.size)]
    out = {}
    for i, regime in enumerate(REGIMES):
        for seed in (0, 1):
            d = results / DIGITS / regime / f"seed{seed}"
            s = 0 if same_seeds else seed
            task = draw(k, 0.3 + 0.2 * i, 10 * i + s)
            task[::7] = -1                                            # a few unmatched answers
            post = draw(k, 0.6 - 0.1 * i, 100 + 10 * i + s, (3,) if regime == "ft-proj" else ())
            rows = [{"uid": u, "label": names[t], "prediction": None if p < 0 else names[p]}
                    for u, t, p in zip(uids, y, task, strict=True)]
            (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            probe = {"uids": uids, "post_projection": post.tolist()}
            if regime == "zero-shot":
                probe["pre_projection"] = draw(k, 0.5, 200 + s).tolist()
            (d / "probe_predictions.json").write_text(json.dumps(probe))
            def f1_of(p):
                p = np.asarray(p).reshape(-1, y.size)
                return float(np.mean(macro_f1_rows(np.broadcast_to(y, p.shape), p, k)))

            def update(m, task=task, post=post, probe=probe, d=d):   # the recorded scores are the predictions'
                m.update(schema_version=schema, artifacts={n: hashlib.sha256((d / n).read_bytes()).hexdigest()
                                                           for n in ("predictions.jsonl", "probe_predictions.json")})
                m["metrics"].update(macro_f1=f1_of(task), accuracy=float(np.mean(task == y)))
                m["probe"]["post_projection"]["macro_f1"] = f1_of(post)
                if "pre_projection" in probe:
                    m["probe"]["pre_projection"]["macro_f1"] = f1_of(probe["pre_projection"])
            edit_metrics(d / "metrics.json", update)
            out.update({(regime, seed, "task"): task, (regime, seed, "post"): post})
            if regime == "zero-shot":
                out[regime, seed, "pre"] = np.asarray(probe["pre_projection"])
    return out


def stacked(preds: dict, regime: str, what: str) -> np.ndarray:
    return np.stack([np.asarray(preds[regime, s, what]).reshape(-1, preds[regime, s, what].shape[-1])
                     for s in (0, 1)])


def test_every_mean_gets_the_hierarchical_interval_of_its_runs_predictions(results):
    preds = write_predictions(results)
    y, k = truth(len(classes_of(results))), len(classes_of(results))
    r = row(board_of(results), "digits", 10)
    want = score_interval(y, stacked(preds, "ft-proj", "task"), k)
    assert r.f1["ft-proj"].ci == tuple(want["ci95"]) and r.f1["ft-proj"].ci_method == METHOD
    assert r.f1["ft-proj"].mean == pytest.approx(want["estimate"], abs=1e-12)   # the same runs, seeds in order
    assert r.probe_pre.ci == tuple(score_interval(y, stacked(preds, "zero-shot", "pre"), k)["ci95"])
    gain = change_interval(y, stacked(preds, "ft-e2e", "task"), stacked(preds, "zero-shot", "task"), k)
    assert (r.gain["ft-e2e"].ci, r.gain["ft-e2e"].p_value) == (tuple(gain["ci95"]), gain["p_value"])
    # Richness: 3 probe seeds per FT-Proj run (list of lists) against the zero-shot runs' single lists.
    rich = change_interval(y, stacked(preds, "ft-proj", "post"), stacked(preds, "zero-shot", "post"), k)
    assert rich["replicates"] == [3, 1] and r.richness["ft-proj"].ci == tuple(rich["ci95"])
    # 4 test images per class: every such interval is marked, none as the older method.
    md = render(board_of(results), "markdown")
    lo, hi = r.gain["ft-e2e"].ci
    assert f"[{lo:+.4f}, {hi:+.4f}]‡" in md
    line = next(line for line in md.splitlines() if f"[{lo:+.4f}, {hi:+.4f}]‡" in line)
    assert "digits" in line and "†" not in line


def test_the_interval_does_not_depend_on_repeating_a_seed(results):
    """Two seeds with identical predictions: the images' spread, as with one seed; never zero width or p = 0."""
    write_predictions(results, same_seeds=True)
    two = row(board_of(results), "digits", 10)
    assert all(two.gain[g].ci is not None for g in ("ft-proj", "ft-e2e"))   # read before the folders go
    for regime in REGIMES:
        shutil.rmtree(results / DIGITS / regime / "seed1")
    one = row(board_of(results), "digits", 10)
    for regime in ("ft-proj", "ft-e2e"):
        g2, g1 = two.gain[regime], one.gain[regime]
        assert g2.n == 2 and g1.n == 1 and g2.ci[1] - g2.ci[0] > 0.05 and g2.p_value > 0
        assert g2.ci == pytest.approx(g1.ci) and g2.includes_zero == g1.includes_zero


def test_a_schema_2_record_reads_with_its_intervals_and_control_labelled_as_the_older_methods(results):
    _as_schema2(results)
    for m in (results / DIGITS).rglob("metrics.json"):
        def schema2(d):
            d["schema_version"] = 2
            for where in ("post_projection", "pre_projection"):
                if where in d.get("probe", {}):
                    d["probe"][where]["control"] = {"macro_f1": 0.01}
        edit_metrics(m, schema2)
    board = board_of(results)
    r = row(board, "digits", 10)
    assert board.skipped == () and r.probe_pre.ci_method == "t over seeds" and r.probe_pre.interval.older
    md = render(board, "markdown")
    assert "0.0100§" in md and "]†" in md
    # With its predictions on disk, a schema-2 run gets the new interval; its control stays the older one.
    write_predictions(results, schema=2)
    r = row(board_of(results), "digits", 10)
    assert r.probe_pre.ci_method == METHOD and not r.probe_pre.interval.older
    assert r.control["zero-shot"].mark == "§"


def test_damaged_predictions_fall_back_to_the_older_method(results):
    write_predictions(results)
    (results / DIGITS / "ft-proj/seed1/probe_predictions.json").write_text("{not json")
    r = row(board_of(results), "digits", 10)
    assert r.f1["ft-proj"].ci_method == METHOD                      # the task predictions are fine
    assert r.probe["ft-proj"].ci_method == "t over seeds" and r.probe["ft-proj"].interval.older
    assert r.richness["ft-proj"].interval.older


def test_variant_rows_do_not_count_the_other_configurations_seed_as_missing(results):
    _as_schema2(results, {0: 0.001, 1: 0.0001})      # FT-Proj seed 0 and seed 1 ran with different learning rates
    board = board_of(results)
    rows = [r for r in board.rows if r.task == "digits"]
    assert len(rows) == 2 and all(r.missing == () for r in rows)
    md = render(board, "markdown")
    assert "(1/2 seeds)" not in md
    # A seed truly missing is still flagged: drop one FT-E2E run.
    shutil.rmtree(results / DIGITS / "ft-e2e/seed1")
    assert "(1/2 seeds)" in render(board_of(results), "markdown")


def test_the_page_marks_small_classes_and_explains_the_marks(results):
    from benchmark.leaderboard.collect import collect
    from benchmark.leaderboard.html import INDEX, site
    from benchmark.leaderboard.table import build

    write_predictions(results)
    coll = collect(results)
    page = site(build(coll), coll)[INDEX]
    r = row(build(coll), "digits", 10)
    lo, hi = r.gain["ft-e2e"].ci
    assert f'<span class="ci"> [{lo:+.4f}, {hi:+.4f}]‡</span>' in page   # the mark stays with its interval
    assert "‡: the smallest class has fewer than 20 test images" in page
    assert "†: interval by the older method" in page and "§: control of results before schema 3" in page
