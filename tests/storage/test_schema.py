"""The result schema: one folder layout, one set of regime names, records that read every supported version,
and a leaderboard that reads them without the model code."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.schema import (
    RESULT_SCHEMA_VERSION,
    AnalysisRecord,
    BaselinesRecord,
    Regime,
    RunKey,
    RunRecord,
    SchemaError,
    digest,
    migrate,
    record_of,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"


def test_importing_the_leaderboard_loads_neither_torch_nor_the_core():
    code = ("import sys, benchmark.leaderboard.cli, benchmark.leaderboard.collect, benchmark.leaderboard.table, "
            "benchmark.leaderboard.render, benchmark.leaderboard.analyses, benchmark.leaderboard.html\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('benchmark.')"
            " and not m.startswith('benchmark.leaderboard')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # The schema (with the folder-name rule) and the integrity seal (with the error base it raises), the check
    # that site files are no links, the package's own __init__, the intervals (numpy only: the
    # leaderboard's intervals are the runs'), the bundle reader (standard library) and verify's checks of the
    # numbers it shows (numpy only).
    assert json.loads(out.replace("'", '"')) == ["benchmark.errors", "benchmark.evaluate",
                                                 "benchmark.evaluate.intervals", "benchmark.hookspecs",
                                                 "benchmark.names", "benchmark.schema", "benchmark.storage",
                                                 "benchmark.storage.bundle", "benchmark.storage.confined",
                                                 "benchmark.storage.integrity", "benchmark.verify",
                                                 "benchmark.verify.points"]


@pytest.mark.parametrize("key", [RunKey("llava15-tiny", "textile", None, "zero-shot", 0),
                                 RunKey("m", "digits", 10, "ft-e2e-lora", 3),
                                 RunKey("m", "derm", 2, "baselines", -1)])
def test_a_run_key_parses_back_from_its_folder(key, tmp_path):
    folder = key.under(tmp_path)
    assert folder.relative_to(tmp_path).as_posix() == key.path
    assert RunKey.parse(folder.relative_to(tmp_path)) == key
    assert RunKey.parse(key.path) == key


@pytest.mark.parametrize("rel, reason", [("m/t/zero-shot", "not in a <model>/<task>[@max<k>]/<regime>/seed<k>/"),
                                         ("m/t/ft-all/seed0", "unknown regime folder 'ft-all'"),
                                         ("m/t/ft-proj/s0", "seed folder 's0' is not named seed<k>")])
def test_a_path_outside_the_layout_is_refused_with_its_reason(rel, reason):
    with pytest.raises(SchemaError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        RunKey.parse(rel)


def test_regimes_equal_their_folder_names_and_carry_their_labels():
    assert [r.value for r in Regime] == ["zero-shot", "ft-proj", "ft-e2e", "ft-e2e-lora", "baselines"]
    assert {"ft-proj": 1}[Regime.FT_PROJ] == 1 and f"{Regime.FT_E2E}" == "ft-e2e"
    assert (Regime.ZERO_SHOT.short, Regime.ZERO_SHOT.state_label) == ("ZS", "original")
    assert Regime.FT_E2E_LORA.label == "FT-E2E (LoRA)" and Regime.FT_E2E_LORA.recorded is Regime.FT_E2E
    assert [r for r in Regime if r.fine_tuned] == [Regime.FT_PROJ, Regime.FT_E2E, Regime.FT_E2E_LORA]
    assert Regime.folder_of("ft-e2e", lora=True) is Regime.FT_E2E_LORA
    assert Regime.folder_of("ft-proj", lora=True) is Regime.FT_PROJ


def test_the_digest_is_the_truncated_sha256_of_sorted_json():
    identity = {"seed": 0, "model": "m", "probe": {"hidden": (8, 4)}}
    text = '{"model": "m", "probe": {"hidden": [8, 4]}, "seed": 0}'
    assert digest(identity) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert digest(identity, 24) == hashlib.sha256(text.encode()).hexdigest()[:24]


def test_schema_1_records_read_with_the_later_fields_absent():
    raw = json.loads((FIXTURES / "llava15-tiny/textile@max10/ft-proj/seed0/metrics.json").read_text())
    assert raw["schema_version"] == 1 and "replicate_hash" not in raw
    record = RunRecord.from_json(raw)
    assert record.schema_version == 1 and record.replicate_hash is None and record.paired is None
    assert record.key == RunKey("llava15-tiny", "textile", 10, "ft-proj", 0)
    assert {k: v for k, v in record.to_json().items() if k in raw} == raw


def test_every_fixture_record_round_trips_and_names_its_own_folder():
    paths = sorted(FIXTURES.rglob("metrics.json"))
    assert paths
    for path in paths:
        raw = json.loads(path.read_text())
        raw.pop("_sha256", None)
        record = record_of(raw)
        assert isinstance(record, BaselinesRecord if raw["regime"] == "baselines" else RunRecord)
        assert record.to_json() == {**raw, **{k: None for k in record.to_json() if k not in raw}}
        if isinstance(record, RunRecord):
            assert record.key == RunKey.parse(path.parent.relative_to(FIXTURES))


def test_unknown_versions_are_refused_with_the_versions_this_projbench_reads():
    with pytest.raises(SchemaError, match=r"unknown schema_version 99 \(this projbench reads 1, 2, 3; upgrade"):
        migrate({"schema_version": 99})
    with pytest.raises(SchemaError, match="missing field 'schema_version'"):
        migrate({})
    with pytest.raises(SchemaError, match="is not an integer"):
        migrate({"schema_version": True})


def test_a_record_keeps_the_fields_it_does_not_know():
    fields = {f: f"value-{f}" for f in AnalysisRecord.__dataclass_fields__ if f != "extra"}
    raw = {**fields, "schema_version": RESULT_SCHEMA_VERSION, "from_a_later_version": [1, 2]}
    record = AnalysisRecord.from_json(raw)
    assert record.extra == {"from_a_later_version": [1, 2]} and record.to_json() == raw
