"""The last tracebacks become one-line errors naming the file and the fix: an analysis summary of the wrong type,
"$" in a name on a plot, a full disk, a damaged tiny-twin cache."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from benchmark.cli import main
from benchmark.errors import BenchmarkError, ModelLoadError
from benchmark.registry import Plugins
from benchmark.schema import RESULT_SCHEMA_VERSION
from benchmark.storage.integrity import seal
from benchmark.storage.results import DiskFullError, atomic_write_with

RESULTS = Path(__file__).parents[1] / "fixtures" / "results"
DOLLARS = "a$\\x$"  # matplotlib's mathtext cannot parse "$\x$"


def _analysis(root: Path, model: str, summary) -> Path:
    record = {
        "schema_version": RESULT_SCHEMA_VERSION, "projbench_version": "0", "analysis": "mir", "folder": "mir",
        "citation": "Huang et al. 2024", "model": model, "checkpoint": "ckpt", "projector_family": "mlp",
        "task": "textile", "task_version": "1", "task_fingerprint": "f" * 16, "regime": "zero-shot", "seed": 0,
        "limit": None, "identity": {}, "identity_hash": "h" * 16, "options": {}, "timing": {}, "provenance": {},
        "result": {"x": [0, 1, 2], "curves": {"mir": [0.5, 0.25, 0.125]}, "primary": "mir", "summary": summary},
    }
    path = root / model / "textile" / "analyses" / "mir" / "zero-shot" / "seed0" / "analysis.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(seal(record)))
    return path


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_an_analysis_summary_that_is_a_list_is_a_skipped_file(tmp_path, capsys, fmt):
    _analysis(tmp_path, "good", {"mean mir": 0.25})
    _analysis(tmp_path, "bad", [0.1, 0.2])
    assert main(["leaderboard", "--results", str(tmp_path), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "bad/textile/analyses/mir/zero-shot/seed0/analysis.json" in out
    assert "'result.summary' is a list, not an object" in out
    if fmt == "markdown":
        assert "mean mir 0.25" in out  # the good one is shown
    else:
        assert [r["model"] for r in json.loads(out)["analyses"]["rows"]] == ["good"]


def test_a_dollar_in_a_model_folder_is_drawn_as_text(tmp_path, capsys):
    root = tmp_path / "results"
    shutil.copytree(RESULTS / "blip2-tiny", root / DOLLARS)
    for p in (root / DOLLARS).rglob("metrics.json"):
        m = json.loads(p.read_text())
        m.pop("_sha256", None)
        m["model"] = DOLLARS
        p.write_text(json.dumps(m))
    _analysis(root, DOLLARS, {"mean mir": 0.25})
    png, curves = tmp_path / "board.png", tmp_path / "curves"
    code = main(["leaderboard", "--results", str(root), "--plot", str(png), "--analysis-plots", str(curves)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in curves.iterdir()] == [f"{DOLLARS}__textile__mir.png"]

    from benchmark.leaderboard.cli import leaderboard_for
    from benchmark.leaderboard.plot import figure

    texts = [t.get_text() for t in figure(leaderboard_for(root)).findobj(lambda a: hasattr(a, "get_text"))]
    assert any(DOLLARS in t for t in texts)  # the name itself, not its mathtext rendering


def test_a_full_disk_is_one_line_naming_the_folder_and_nothing_is_damaged(tmp_path):
    target = tmp_path / "run" / "metrics.json"
    target.parent.mkdir()
    target.write_text("old\n")

    def to_a_full_disk(tmp):  # what the OS says when a write finds no free block
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    with pytest.raises(DiskFullError, match=rf"No space left to write metrics.json in {target.parent}.*run the same"):
        atomic_write_with(target, to_a_full_disk)
    assert target.read_text() == "old\n" and [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_a_safetensors_write_that_finds_the_disk_full_is_one_line(tmp_path):
    def full(tmp):
        save_file({"x": torch.zeros(2)}, str(tmp))
        # What safetensors raises when its Rust writer gets ENOSPC (its error text, as the issue reported it).
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    with pytest.raises(DiskFullError, match="No space left to write projector.safetensors"):
        atomic_write_with(tmp_path / "projector.safetensors", full)
    assert not list(tmp_path.iterdir())
    with pytest.raises(OSError, match="Permission"):  # other failures are not taken for a full disk
        atomic_write_with(tmp_path / "x.json", lambda tmp: (_ for _ in ()).throw(
            OSError(errno.EACCES, "Permission denied")))


def test_a_pickle_in_a_cached_tiny_twin_is_one_line_naming_the_folder(tmp_path):
    spec = Plugins(autoload=False).adapters.get("llava15-tiny")
    twin = Path(spec.factory(cache_dir=tmp_path).checkpoint)
    (twin / "model.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    with pytest.raises(ModelLoadError) as caught:
        spec.factory(cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and f"{twin} is damaged (model.safetensors does not read back" in message
    assert f"rm -r '{twin}'" in message
    assert isinstance(caught.value, BenchmarkError)  # the CLI prints it as one line, exit 2
    shutil.rmtree(twin)
    assert spec.factory(cache_dir=tmp_path).checkpoint == str(twin)  # the fix it names works
