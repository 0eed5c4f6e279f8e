"""Hostile or damaged metrics.json files are skipped with a reason; the rest of the leaderboard is unaffected."""

from __future__ import annotations

import json

import pytest
from synthetic_results import write_results

from benchmark.leaderboard import collect as collect_module
from benchmark.leaderboard.collect import collect
from benchmark.storage.integrity import seal

RUN = "model-000/task0/zero-shot/seed0/metrics.json"


@pytest.fixture
def results(tmp_path):
    write_results(tmp_path, models=1, tasks=1)
    return tmp_path


def edit(results, **fields):
    path = results / RUN
    m = json.loads(path.read_text())
    for dotted, value in fields.items():
        cur = m
        *head, last = dotted.split("__")
        for part in head:
            cur = cur[part]
        cur[last] = value
    path.write_text(json.dumps(seal(m)))   # resealed, as an editor who knows the seal would


def reason(results) -> str:
    board = collect(results)
    assert len(board.runs) == 2, "the other runs are still read"
    [skipped] = board.skipped
    assert skipped.path == RUN
    return skipped.reason


@pytest.mark.parametrize("value", [7.5, -3.0, 1.0000001, float("nan"), True, "0.5"])
def test_scores_outside_0_1_or_not_numbers_are_skipped(results, value):
    edit(results, metrics__macro_f1=value)
    assert "metrics.macro_f1" in reason(results)


def test_probe_scores_and_accuracy_are_range_checked(results):
    edit(results, probe__post_projection__macro_f1=1.5)
    assert "probe.post_projection.macro_f1" in reason(results) and "outside [0, 1]" in reason(results)
    write_results(results, models=1, tasks=1)
    edit(results, metrics__accuracy=-0.1)
    assert "metrics.accuracy" in reason(results)


@pytest.mark.parametrize("value", [True, 2.0, "2", None])
def test_schema_version_must_be_an_integer(results, value):
    edit(results, schema_version=value)
    assert "schema_version" in reason(results)


def test_deeply_nested_json_is_skipped_not_a_crash(results):
    (results / RUN).write_text("[" * 100_000 + "]" * 100_000)
    assert reason(results) == "JSON nested too deeply to be a metrics.json"


def test_oversized_file_is_skipped_unread(results, monkeypatch):
    monkeypatch.setattr(collect_module, "MAX_METRICS_BYTES", 1000)
    edit(results, padding="x" * 2000)
    assert "larger than any metrics.json projbench writes" in reason(results)


def test_an_edited_sealed_result_is_skipped_as_corrupt(results):
    m = seal(json.loads((results / RUN).read_text()))
    (results / RUN).write_text(json.dumps(m))
    assert len(collect(results).runs) == 3, "a sealed, intact file is read"
    (results / RUN).write_text(json.dumps(m).replace('"macro_f1": 0.', '"macro_f1": 0.0', 1))
    assert reason(results).startswith("corrupt: its content does not match its recorded SHA-256")
