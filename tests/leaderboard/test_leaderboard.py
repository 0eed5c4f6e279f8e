"""The leaderboard: a pure, deterministic function of result files that never hides a missing or broken run.

The fixtures under tests/fixtures/results/ are config.json + metrics.json of real tiny runs (see the README
there). Regenerate the golden Markdown after an intended change with ``UPDATE_GOLDEN=1 pytest tests/leaderboard/test_leaderboard.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main as cli_main
from benchmark.leaderboard.collect import collect
from benchmark.leaderboard.render import render
from benchmark.leaderboard.table import build
from benchmark.storage.integrity import seal

FIXTURES = Path(__file__).parents[1] / "fixtures"
RESULTS = FIXTURES / "results"
GOLDEN = FIXTURES / "leaderboard.md"
FORMATS = ("markdown", "csv", "json")


def board_of(root: Path):
    return build(collect(root))


def rendered(root: Path, fmt: str = "markdown", reference: bool = False) -> str:
    return render(board_of(root), fmt, with_reference=reference)


def run_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.json"))


@pytest.fixture
def results(tmp_path) -> Path:
    """A private copy of the fixture tree to damage."""
    return Path(shutil.copytree(RESULTS, tmp_path / "results"))


def edit_metrics(path: Path, edit) -> None:
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(seal(m), indent=2))   # resealed: a file of schema 2 on is refused without its seal


TINY_ADAPTERS = {"llava15-tiny", "blip2-tiny", "instructblip-tiny", "paligemma-tiny", "limber-gemma2-tiny",
                 "smolvlm-tiny", "idefics3-tiny", "qwen2vl-tiny"}


def row(board, task: str, limit=None, lora=None, model="llava15-tiny"):
    rows = [r for r in board.rows
            if r.model == model and r.task == task and r.limit == limit and (lora is None or r.lora == lora)]
    assert len(rows) == 1, rows
    return rows[0]


# -- the checked-in fixtures -----------------------------------------------------------------------------------
def test_fixtures_are_real_complete_runs():
    board = board_of(RESULTS)
    assert board.skipped == () and board.incomplete == () and board.warnings == ()
    # One row per tiny adapter (every projector family) on limited textile, plus llava15-tiny on full textile
    # (LoRA FT-E2E) and limited digits.
    assert {(r.model, r.task, r.limit, r.lora) for r in board.rows} == {
        ("llava15-tiny", "textile", None, True), ("llava15-tiny", "digits", 10, False),
        *((m, "textile", 10, False) for m in TINY_ADAPTERS)}
    assert {f for r in board.rows for f in r.projector_families} == {"mlp", "q-former", "linear", "pixel-shuffle",
                                                                    "patch-merger"}
    for m in RESULTS.rglob("metrics.json"):
        d = json.loads(m.read_text())
        assert d["model"] in TINY_ADAPTERS and d["provenance"]["versions"]["torch"]  # written by a real run
    assert not list(RESULTS.rglob("*.safetensors")) and not list(RESULTS.rglob("*.jsonl"))


def test_golden_markdown():
    text = rendered(RESULTS)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "leaderboard Markdown changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff")


def test_markdown_marks_limited_lora_and_seeds():
    text = rendered(RESULTS)
    full, limited = text.split("## Limited runs")
    assert "textile (limited: ≤10/class)" in limited and "digits (limited: ≤10/class)" in limited
    assert "limited" not in full.split("## Full runs")[1]  # no limited row shown among full runs
    assert "(LoRA)" in full  # the full textile run tuned the LLM with LoRA
    assert " ± " in text and "Reference" not in text


def test_values_match_the_files_and_gains_are_paired_per_seed(results):
    # Give the runs distinct numbers so that pairing by seed is visible: gain = ft(seed) - zs(seed).
    base = results / "llava15-tiny" / "digits@max10"
    f1 = {("zero-shot", 0): 0.2, ("zero-shot", 1): 0.4, ("ft-proj", 0): 0.5, ("ft-proj", 1): 0.5}
    probe = {("zero-shot", 0): 0.8, ("zero-shot", 1): 0.6, ("ft-proj", 0): 0.4, ("ft-proj", 1): 0.6}
    for (regime, seed), v in f1.items():
        def set_values(m, r=regime, s=seed, v=v):
            m["metrics"]["macro_f1"] = v
            m["probe"]["post_projection"]["macro_f1"] = probe[r, s]
        edit_metrics(base / regime / f"seed{seed}" / "metrics.json", set_values)
    r = row(board_of(results), "digits", 10)
    assert r.gain["ft-proj"].values == pytest.approx((0.3, 0.1))
    assert r.gain["ft-proj"].mean == pytest.approx(0.2) and r.gain["ft-proj"].std == pytest.approx(0.1414214)
    # The paper's % estimator: change of seed-averaged means over the seed-averaged baseline, (0.5 - 0.3) / 0.3,
    # not the mean of per-seed ratios ((150% + 25%) / 2 = 87.5%, biased upwards by the small baseline).
    assert r.gain_pct["ft-proj"].mean == pytest.approx(100 * 0.2 / 0.3)
    assert r.richness["ft-proj"].values == pytest.approx((-0.4, 0.0))
    assert r.richness_pct["ft-proj"].mean == pytest.approx(100 * (0.5 - 0.7) / 0.7)
    assert r.f1["zero-shot"].mean == pytest.approx(0.3) and r.seeds == (0, 1)
    # Two seeds: Student t with 1 degree of freedom (Cauchy): t_0.975 = tan(0.475 pi) = 12.7062; se = 0.1.
    # Paired t-test of "no gain": t = 0.2 / 0.1 = 2, p = 1 - 2 atan(2) / pi.
    half = math.tan(0.475 * math.pi) * 0.1
    assert r.gain["ft-proj"].ci == pytest.approx((0.2 - half, 0.2 + half))
    assert r.gain["ft-proj"].p_value == pytest.approx(1 - 2 * math.atan(2) / math.pi)
    assert r.gain["ft-proj"].includes_zero and r.gain["ft-proj"].ci_method == "t over seeds"
    text = render(board_of(results), "markdown")
    # Schema-1 files without predictions: the older method, marked as such.
    assert "+0.2000 ± 0.1414 [-1.0706, +1.4706]† (n.s.)" in text and "+66.7%" in text
    assert "-0.2000 ± 0.2828" in text and "87.5%" not in text


def test_zero_baseline_gives_undefined_percent(results):
    for seed in (0, 1):
        edit_metrics(results / "llava15-tiny/digits@max10/zero-shot" / f"seed{seed}" / "metrics.json",
                     lambda m: m["metrics"].__setitem__("macro_f1", 0.0))
    board = board_of(results)
    r = row(board, "digits", 10)
    assert r.gain["ft-proj"] is not None and r.gain_pct["ft-proj"] is None
    assert "| n/a " in render(board, "markdown")


# -- determinism ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_rendering_twice_gives_identical_bytes(fmt):
    assert rendered(RESULTS, fmt, True).encode() == rendered(RESULTS, fmt, True).encode()


def test_file_creation_order_and_location_do_not_matter(tmp_path):
    files = run_files(RESULTS)
    for name, order in (("forward", files), ("backward", files[::-1]), ("interleaved", files[1::2] + files[::2])):
        copy = tmp_path / name / "deep" / "results"
        for rel in order:
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(RESULTS / rel, copy / rel)
        for fmt in FORMATS:
            assert rendered(copy, fmt, True) == rendered(RESULTS, fmt, True), (name, fmt)


def test_output_has_no_timestamps_or_absolute_paths(results):
    for fmt in FORMATS:
        text = rendered(results, fmt, True)
        assert str(results) not in text and "written_at" not in text and "2026-" not in text


# -- broken and unfinished runs ---------------------------------------------------------------------------------
def test_malformed_files_are_reported_by_path_and_the_rest_renders(results, capsys):
    tex = results / "llava15-tiny" / "textile@max10"
    dig = results / "llava15-tiny" / "digits@max10"
    text = (tex / "ft-proj/seed1/metrics.json").read_text()
    (tex / "ft-proj/seed1/metrics.json").write_text(text[: len(text) // 2])  # truncated JSON
    edit_metrics(tex / "zero-shot/seed1/metrics.json", lambda m: m["metrics"].pop("macro_f1"))
    edit_metrics(dig / "ft-e2e/seed0/metrics.json", lambda m: m.__setitem__("schema_version", 99))
    edit_metrics(dig / "ft-proj/seed0/metrics.json", lambda m: m.__setitem__("seed", 7))
    shutil.copytree(dig / "ft-e2e", dig / "ft-unknown")  # unknown regime folder
    (results / "stray").mkdir()
    (results / "stray" / "metrics.json").write_text("{}")  # not in a run folder

    board = board_of(results)
    reasons = {s.path: s.reason for s in board.skipped}
    assert set(reasons) == {
        "llava15-tiny/textile@max10/ft-proj/seed1/metrics.json",
        "llava15-tiny/textile@max10/zero-shot/seed1/metrics.json",
        "llava15-tiny/digits@max10/ft-e2e/seed0/metrics.json",
        "llava15-tiny/digits@max10/ft-proj/seed0/metrics.json",
        "llava15-tiny/digits@max10/ft-unknown/seed0/metrics.json",
        "llava15-tiny/digits@max10/ft-unknown/seed1/metrics.json",
        "stray/metrics.json",
    }
    assert "invalid JSON" in reasons["llava15-tiny/textile@max10/ft-proj/seed1/metrics.json"]
    assert "missing field 'metrics.macro_f1'" in reasons["llava15-tiny/textile@max10/zero-shot/seed1/metrics.json"]
    assert "unknown schema_version 99" in reasons["llava15-tiny/digits@max10/ft-e2e/seed0/metrics.json"]
    assert "says seed 7" in reasons["llava15-tiny/digits@max10/ft-proj/seed0/metrics.json"]
    assert "unknown regime folder 'ft-unknown'" in reasons["llava15-tiny/digits@max10/ft-unknown/seed0/metrics.json"]

    # The rest still renders: the full textile run is untouched, the damaged cells show as partial/missing.
    assert row(board, "textile", None).f1["zero-shot"].n == 2
    assert row(board, "textile", 10).f1["ft-proj"].seeds == (0,)
    md = render(board, "markdown")
    skipped_section = md.split("## Skipped files")[1]
    for path, reason in reasons.items():
        shown = reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # "<model>": no tag
        assert f"- `{path}`: {shown}" in skipped_section
    assert "`llava15-tiny/textile@max10/ft-proj/seed1`: metrics.json could not be used" in md
    assert "(1/2 seeds)" in md
    # ... and the command line says so on stderr, by path, while still succeeding.
    assert cli_main(["leaderboard", "--results", str(results), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    for path in reasons:
        assert str(results / path) in err


def test_limited_run_in_a_full_run_folder_is_never_shown_as_full(results):
    src = results / "llava15-tiny" / "textile@max10"
    dst = results / "llava15-tiny" / "digits"
    shutil.copytree(src, dst)
    for m in dst.rglob("metrics.json"):
        edit_metrics(m, lambda m: m.__setitem__("task", "digits"))
    board = board_of(results)
    # The folders are on disk, so a full digits row appears, but with nothing in it: all its runs are refused.
    full = row(board, "digits", None)
    assert all(v is None for v in (*full.f1.values(), *full.probe.values(), full.probe_pre))
    assert len(full.missing) == 6 and len(board.skipped) == 6
    assert all("says limited to 10 per class but the folder name says a full run" in s.reason
               for s in board.skipped)


def test_incomplete_runs_show_as_missing(results):
    tex = results / "llava15-tiny" / "textile@max10"
    dig = results / "llava15-tiny" / "digits@max10"
    (tex / "ft-proj/seed1/metrics.json").unlink()          # crashed: config.json without metrics.json
    shutil.rmtree(dig / "ft-e2e/seed1")                      # a seed never run for one regime
    shutil.rmtree(dig / "ft-proj")                           # a regime never run
    # A new seed that crashed before finishing anything: the row now expects seed 2 everywhere.
    shutil.copytree(tex / "zero-shot/seed0", tex / "zero-shot/seed2")
    (tex / "zero-shot/seed2/metrics.json").unlink()

    board = board_of(results)
    assert board.skipped == ()
    incomplete = {i.path: i.reason for i in board.incomplete}
    assert incomplete == {
        "llava15-tiny/digits@max10/ft-proj/seed0": "regime not run",
        "llava15-tiny/digits@max10/ft-proj/seed1": "regime not run",
        "llava15-tiny/digits@max10/ft-e2e/seed1": "seed not run for this regime (other regimes have it)",
        "llava15-tiny/textile@max10/zero-shot/seed2": (
            "config.json without metrics.json (crashed, interrupted or still running)"),
        "llava15-tiny/textile@max10/ft-proj/seed1": (
            "config.json without metrics.json (crashed, interrupted or still running)"),
        "llava15-tiny/textile@max10/ft-proj/seed2": "seed not run for this regime (other regimes have it)",
        "llava15-tiny/textile@max10/ft-e2e/seed2": "seed not run for this regime (other regimes have it)",
    }
    d = row(board, "digits", 10)
    assert d.f1["ft-proj"] is None and d.gain["ft-proj"] is None and d.f1["ft-e2e"].n == 1
    t = row(board, "textile", 10)
    assert t.seeds == (0, 1, 2) and t.f1["ft-proj"].seeds == (0,) and t.f1["zero-shot"].seeds == (0, 1)

    md = render(board, "markdown")
    digits_line = next(line for line in md.splitlines()
                       if [c.strip() for c in line.split("|")[1:3]] == ["llava15-tiny", "digits (limited: ≤10/class)"])
    assert "| —" in digits_line and "(1/2 seeds)" in digits_line
    assert "(1/3 seeds)" in md and "(2/3 seeds)" in md
    for path, reason in incomplete.items():
        assert f"- `{path}`: {reason}" in md
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    digits = next(r for r in rows if r["task"] == "digits")
    assert digits["f1_ft_proj_mean"] == "" and "llava15-tiny/digits@max10/ft-proj/seed0" in digits["missing"]
    assert json.loads(render(board, "json"))["incomplete"][0]["path"] == "llava15-tiny/digits@max10/ft-proj/seed0"


def test_full_and_lora_ft_e2e_get_separate_rows(results):
    dig = results / "llava15-tiny" / "digits@max10"
    shutil.copytree(dig / "ft-e2e", dig / "ft-e2e-lora")
    for m in (dig / "ft-e2e-lora").rglob("metrics.json"):
        edit_metrics(m, lambda m: m.update(lora=True))
    board = board_of(results)
    full, lora = row(board, "digits", 10, lora=False), row(board, "digits", 10, lora=True)
    assert full.e2e_dir == "ft-e2e" and lora.e2e_dir == "ft-e2e-lora" and board.incomplete == ()
    summary = next(s for s in board.summary if s.limit == 10 and s.model == "llava15-tiny")
    assert set(summary.gain) == {"ft-proj", "ft-e2e", "ft-e2e-lora"}
    assert "Gain FT-E2E (LoRA)" in render(board, "markdown")


def test_lora_run_in_the_full_ft_e2e_folder_is_skipped(results):
    edit_metrics(results / "llava15-tiny/digits@max10/ft-e2e/seed0/metrics.json", lambda m: m.update(lora=True))
    (skipped,) = board_of(results).skipped
    assert "says regime 'ft-e2e-lora' but the folder says 'ft-e2e'" in skipped.reason


def test_mixed_task_versions_are_warned_about(results):
    edit_metrics(results / "llava15-tiny/digits@max10/ft-e2e/seed0/metrics.json",
                 lambda m: m.update(task_version="2.0"))
    board = board_of(results)
    assert any("different task versions" in w and "1.0, 2.0" in w for w in board.warnings)
    assert "| 1.0, 2.0 " in render(board, "markdown")


def test_empty_results_folder_renders_an_empty_board(tmp_path):
    text = rendered(tmp_path)
    assert "No runs of this kind yet." in text and "## Skipped files" in text


# -- reference numbers ------------------------------------------------------------------------------------------
def test_reference_numbers_are_a_separate_labelled_section():
    md = rendered(RESULTS, reference=True)
    measured, ref = md.split("## Reference: published paper numbers (not measured by projbench)")
    assert "0.1064" not in measured and "LLaVA-1.5-7B" not in measured
    assert "| Agriculture (PlantDoc; agri) " in ref and "+108.7%" in ref and "-27.5%" in ref
    rows = list(csv.DictReader(io.StringIO(rendered(RESULTS, "csv", reference=True))))
    assert [r["section"] for r in rows] == ["measured"] * 10 + ["reference"] * 4
    assert float(rows[10]["f1_zero_shot_mean"]) == 0.1064
    doc = json.loads(rendered(RESULTS, "json", reference=True))
    assert {r["model"] for r in doc["rows"]} == TINY_ADAPTERS and len(doc["reference"]["rows"]) == 4
    assert "reference" not in json.loads(rendered(RESULTS, "json"))


# -- plot (more in test_leaderboard_plot.py) ----------------------------------------------------------------------
def test_plot_is_a_png_and_deterministic(tmp_path):
    from PIL import Image

    from benchmark.leaderboard.plot import draw
    from benchmark.leaderboard.scatter import points_of

    board = board_of(RESULTS)
    labels = [p.label for p in points_of(board)]
    assert "llava15-tiny/textile FT-E2E (LoRA)" in labels and len(labels) == 2 * len(board.rows)
    a, b = draw(board, tmp_path / "a.png"), draw(board, tmp_path / "sub" / "b.png")
    with Image.open(a) as img:
        assert img.format == "PNG" and img.width >= 1000 and img.height >= 500
        img.verify()
    assert a.read_bytes() == b.read_bytes()
    assert b"Software" not in a.read_bytes()[:4096]
    with Image.open(draw(board_of(tmp_path / "empty"), tmp_path / "empty.png")) as img:
        assert img.width >= 400


# -- command line -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_formats_to_stdout_and_file(fmt, tmp_path, capsys):
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", fmt]) == 0
    stdout = capsys.readouterr().out
    assert stdout == rendered(RESULTS, fmt)
    out = tmp_path / "out" / f"board.{fmt}"
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--format", fmt, "--output", str(out),
                     "--reference"]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_bytes() == rendered(RESULTS, fmt, reference=True).encode()
    if fmt == "json":
        assert json.loads(out.read_text())["format"] == "projbench-leaderboard"
    elif fmt == "csv":
        assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 14  # 10 measured + 4 reference rows


def test_cli_plot_and_default_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROJBENCH_RESULTS", str(RESULTS))
    png = tmp_path / "plot.png"
    assert cli_main(["leaderboard", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot:" in capsys.readouterr().err


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli_main(["leaderboard", "--results", str(tmp_path / "nope")]) == 2
    assert "error: Results folder" in capsys.readouterr().err
    assert cli_main(["leaderboard", "--results", str(RESULTS), "--plot", str(tmp_path / "p.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err


# -- baselines (random, CLIP zero-shot, CLIP-embedding probe) -----------------------------------------------------
def test_baselines_are_shown_under_their_row_and_gains_read_against_clip(results):
    dig = results / "llava15-tiny" / "digits@max10"
    for seed, clip in ((0, 0.25), (1, 0.25)):
        edit_metrics(dig / f"baselines/seed{seed}/metrics.json",
                     lambda m, c=clip, s=seed: (m["baselines"]["clip_zero_shot"].update(macro_f1=c),
                                                m["baselines"]["clip_probe"].update(macro_f1=0.5 + 0.1 * s)))
    for seed, f1 in ((0, 0.5), (1, 0.7)):
        edit_metrics(dig / f"ft-e2e/seed{seed}/metrics.json", lambda m, v=f1: m["metrics"].update(macro_f1=v))
    board = board_of(results)
    r = row(board, "digits", 10)
    b = r.baselines
    assert b.clips == ("tiny-clip",) and b.clip_matches and b.templates == ("This is a photo of {}.",)
    assert b.random_f1.values == pytest.approx((0.0977, 0.0977), abs=5e-5) and b.random_accuracy.mean == 0.1
    assert b.clip_probe.values == pytest.approx((0.5, 0.6))
    assert r.gain_vs_clip["ft-e2e"].values == pytest.approx((0.25, 0.45))      # F1 - CLIP zero-shot, per seed
    assert row(board, "textile", 10).baselines is None and board.warnings == ()
    md = render(board, "markdown")
    line = next(x for x in md.splitlines() if "tiny-clip" in x)
    assert "| 0.0977 " in line and "| 0.2500 " in line and "| 0.5500 ± 0.0707 " in line and "+0.3500 ± 0.1414" in line
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    digits = next(x for x in rows if x["task"] == "digits")
    assert float(digits["clip_zero_shot_f1_mean"]) == 0.25 and float(digits["gain_vs_clip_ft_e2e_mean"]) == 0.35
    rows = json.loads(render(board, "json"))["rows"]
    assert next(x for x in rows if x["task"] == "digits")["clip_embedding_probe"]["values"] == [0.5, 0.6]


def test_a_mismatching_clip_is_warned_and_an_unfinished_stage_listed(results):
    dig = results / "llava15-tiny" / "digits@max10" / "baselines"
    edit_metrics(dig / "seed0/metrics.json", lambda m: m["clip"].update(matches_adapter=False))
    (dig / "seed1/metrics.json").unlink()
    board = board_of(results)
    assert board.warnings == ("llava15-tiny/digits@max10: the CLIP baselines use tiny-clip, not the CLIP matching "
                              "the model's vision encoder",)
    assert {i.path: i.reason for i in board.incomplete} == {
        "llava15-tiny/digits@max10/baselines/seed1": "config.json without metrics.json (crashed, interrupted or "
                                                     "still running)"}
    assert "tiny-clip (not the model's encoder)" in render(board, "markdown")


def test_reference_section_has_the_papers_baselines():
    ref = rendered(RESULTS, reference=True).split("## Reference")[1]
    # Table 1 (random, CLIP zero-shot) and Table 3 (probe on the CLIP embedding), and FT-E2E - CLIP ZS.
    assert "| Dermatology (DermNet, 23 classes; derm)           | 0.0451      | 0.1783       | 0.6046 " in ref
    assert "+0.3164" in ref  # 0.4947 - 0.1783
    doc = json.loads(rendered(RESULTS, "json", reference=True))
    hum = doc["reference"]["rows"][3]
    assert (hum["random_f1"], hum["clip_zero_shot_f1"], hum["clip_embedding_probe"]) == (0.2425, 0.4139, 0.7506)


# -- replicates, revisions, intervals ---------------------------------------------------------------------------
def _as_schema2(results: Path, lr_proj_of_seed: dict[int, float] | None = None) -> None:
    """Give the digits@max10 runs the identity fields a schema-2 run writes, optionally with FT-Proj seeds run at
    different learning rates (what happens when seeds are run one by one with different flags)."""
    for m in (results / "llava15-tiny" / "digits@max10").rglob("metrics.json"):
        if "baselines" in m.parts:
            continue

        def edit(d):
            ident = {"model": "llava15-tiny", "task": "digits", "regime": d["regime"], "dtype": None,
                     "resolved_dtype": "float32", "max_per_class": 10}
            if d["regime"] != "zero-shot":
                ident.update(batch_size=8, epochs=1, global_batch=8)
            if d["regime"] == "ft-proj":
                ident["lr_proj"] = (lr_proj_of_seed or {}).get(d["seed"], 0.001)
            setup = {k: v for k, v in ident.items() if k in ("model", "task", "dtype", "resolved_dtype", "max_per_class")}
            d["replicate_identity"] = ident
            d["replicate_hash"] = json.dumps(ident, sort_keys=True)   # any text that differs when the identity does
            d["setup_hash"] = json.dumps(setup, sort_keys=True)
            d["revision"] = {"kind": "local", "content_hash": "abc"}
        edit_metrics(m, edit)


def test_runs_of_different_configurations_are_never_averaged(results):
    _as_schema2(results, {0: 0.001, 1: 0.0001})
    board = board_of(results)
    rows = [r for r in board.rows if r.task == "digits"]
    assert sorted(r.variant for r in rows) == ["ft-proj:lr_proj=0.0001", "ft-proj:lr_proj=0.001"]
    for r in rows:  # each row averages one learning rate's single seed, against the shared zero-shot runs
        assert r.f1["ft-proj"].n == 1 and r.f1["zero-shot"].n == 2 and r.missing == ()
    assert any("never averaged" in w and "ft-proj:lr_proj" in w for w in board.warnings)
    md = render(board, "markdown")
    assert "llava15-tiny [ft-proj:lr_proj=0.0001]" in md and "llava15-tiny [ft-proj:lr_proj=0.001]" in md
    variants = {r["variant"] for r in csv.DictReader(io.StringIO(render(board, "csv"))) if r["task"] == "digits"}
    assert variants == {"ft-proj:lr_proj=0.0001", "ft-proj:lr_proj=0.001"}
    # Equal identities: one row, as before.
    _as_schema2(results)
    assert [r.variant for r in board_of(results).rows if r.task == "digits"] == [""]


def test_mixed_model_revisions_are_warned_about(results):
    _as_schema2(results)
    edit_metrics(results / "llava15-tiny/digits@max10/ft-e2e/seed1/metrics.json",
                 lambda m: m.update(revision={"kind": "hub", "repo": "x/y", "commit": "c0ffee"}))
    board = board_of(results)
    assert row(board, "digits", 10).revisions == ("hub@c0ffee", "local:abc")
    assert any("different model revisions" in w and "hub@c0ffee, local:abc" in w for w in board.warnings)


def test_single_seed_intervals_come_from_the_runs_bootstrap(results):
    dig = results / "llava15-tiny" / "digits@max10"
    for regime in ("zero-shot", "ft-proj", "ft-e2e"):
        shutil.rmtree(dig / regime / "seed1")
    edit_metrics(dig / "zero-shot/seed0/metrics.json", lambda m: m["metrics"].update(ci95=[0.01, 0.05]))
    edit_metrics(dig / "ft-proj/seed0/metrics.json",
                 lambda m: m.update(paired={"gain": {"ci95": [0.02, 0.30]}, "richness": {"ci95": [-0.1, 0.2]}}))
    r = row(board_of(results), "digits", 10)
    assert r.f1["zero-shot"].ci == (0.01, 0.05)
    assert r.f1["zero-shot"].ci_method == "unstratified bootstrap over test images"  # schema 1: the older method
    assert r.gain["ft-proj"].ci == (0.02, 0.30) and not r.gain["ft-proj"].includes_zero
    assert r.richness["ft-proj"].includes_zero and r.f1["ft-e2e"].ci is None  # schema 1: no interval recorded
    md = render(board_of(results), "markdown")
    assert "[+0.0200, +0.3000]†" in md and "[-0.1000, +0.2000]† (n.s.)" in md


def test_control_probes_and_selectivity(results):
    for m in (results / "llava15-tiny" / "digits@max10").rglob("metrics.json"):
        def add_control(d):
            for where in ("post_projection", "pre_projection"):
                if where in d.get("probe", {}):  # not the baselines stage
                    d["probe"][where]["control"] = {"macro_f1": 0.01}
        edit_metrics(m, add_control)
    board = board_of(results)
    r = row(board, "digits", 10)
    z = [json.loads((results / f"llava15-tiny/digits@max10/zero-shot/seed{s}/metrics.json").read_text())
         for s in (0, 1)]
    assert r.control["zero-shot"].mean == pytest.approx(0.01)
    assert r.selectivity["pre"].values == pytest.approx(
        tuple(m["probe"]["pre_projection"]["macro_f1"] - 0.01 for m in z))
    assert "### Control task" in render(board, "markdown")
    assert "### Control task" not in rendered(RESULTS)  # schema-1 fixtures have none


def test_paper_table2_percentages_follow_from_table1(tmp_path):
    """The paper's Table 2 gives % changes of its Table 1 means. Rebuild Table 1 as two seeds per task whose means
    are the published numbers (a large spread, where the two estimators disagree) and check the leaderboard's %
    against exact rational arithmetic on Table 1, to 0.01 pp; also the reference rows' own % values."""
    from fractions import Fraction

    from benchmark.leaderboard import reference

    template = json.loads((RESULTS / "llava15-tiny/digits@max10/zero-shot/seed0/metrics.json").read_text())
    cols = {"zero-shot": ("zero_shot", "probe_original"), "ft-proj": ("ft_proj", "probe_ft_proj"),
            "ft-e2e": ("ft_e2e", "probe_ft_e2e")}
    for i, ref in enumerate(reference.ROWS):
        task = f"paper{i}"
        for regime, (f1_name, probe_name) in cols.items():
            for seed, sign in ((0, -1), (1, 1)):
                m = json.loads(json.dumps(template))
                m.update(task=task, regime=regime, seed=seed, limit=None)
                # The seeds' mean is the published number; the baseline varies more than the fine-tuned runs.
                step = 0.05 if regime == "zero-shot" else 0.01
                m["metrics"]["macro_f1"] = getattr(ref, f1_name) + sign * step
                m["probe"]["post_projection"]["macro_f1"] = getattr(ref, probe_name) + sign * step
                d = tmp_path / "llava15-tiny" / task / regime / f"seed{seed}"
                d.mkdir(parents=True)
                (d / "metrics.json").write_text(json.dumps(m))
    board = board_of(tmp_path)
    for i, ref in enumerate(reference.ROWS):
        r = row(board, f"paper{i}", None)
        table1 = {k: Fraction(str(getattr(ref, k))) for k in ("zero_shot", "ft_proj", "ft_e2e", "probe_original",
                                                              "probe_ft_proj", "probe_ft_e2e")}
        for regime, (f1_name, probe_name) in cols.items():
            if regime == "zero-shot":
                continue
            gain = 100 * (table1[f1_name] - table1["zero_shot"]) / table1["zero_shot"]
            rich = 100 * (table1[probe_name] - table1["probe_original"]) / table1["probe_original"]
            assert r.gain_pct[regime].mean == pytest.approx(float(gain), abs=0.01)
            assert r.richness_pct[regime].mean == pytest.approx(float(rich), abs=0.01)
            assert ref.gain_pct(regime) == pytest.approx(float(gain), abs=0.01)
            assert ref.richness_pct(regime) == pytest.approx(float(rich), abs=0.01)
            # ... and not the mean of per-seed ratios, which differs here by far more than 0.01 pp
            per_seed = [100 * (v - z) / z for v, z in zip(r.f1[regime].values, r.f1["zero-shot"].values,
                                                          strict=True)]
            assert abs(sum(per_seed) / 2 - float(gain)) > 0.5
