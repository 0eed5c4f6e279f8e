"""Nothing is written or deleted through a symbolic link out of the results tree, the cache or a site folder; only
projbench's own temporaries are swept; the leaderboard reports a linked folder instead of dropping it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.leaderboard.collect import collect
from benchmark.storage.confined import OutsideRootError, confined
from benchmark.storage.results import clear_run_dir, remove_stale_temps

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"


def _victim(tmp_path: Path) -> Path:
    """A user's folder holding a config.json (as if a run's) and a dot-file that looks like a temporary."""
    victim = tmp_path / "home"
    victim.mkdir()
    (victim / "config.json").write_text('{"not": "projbench"}\n')
    (victim / ".bashrc.20241201").write_text("export PATH\n")
    (victim / "notes.txt").write_text("mine\n")
    return victim


def _contents(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_a_symlinked_run_folder_is_refused_and_its_files_survive(capsys, tmp_path):
    victim = _victim(tmp_path)
    before = _contents(victim)
    results = tmp_path / "R"
    seed_dir = results / "llava15-tiny" / "textile@max2" / "zero-shot"
    seed_dir.mkdir(parents=True)
    (seed_dir / "seed0").symlink_to(victim, target_is_directory=True)
    code = main(["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "2", "--regimes",
                 "zero-shot", "--no-progress", "--results-dir", str(results),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "symbolic link" in err and "seed0" in err and "Traceback" not in err
    assert _contents(victim) == before
    assert sorted(p.name for p in seed_dir.iterdir()) == ["seed0"]


def test_a_link_higher_up_the_run_folder_is_refused_too(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "R").mkdir()
    (tmp_path / "R" / "llava15-tiny").symlink_to(victim, target_is_directory=True)
    with pytest.raises(OutsideRootError, match="llava15-tiny"):
        confined(tmp_path / "R" / "llava15-tiny" / "textile" / "zero-shot" / "seed0", tmp_path / "R", "run folder")
    with pytest.raises(OutsideRootError, match="leads out"):
        confined(tmp_path / "R" / ".." / "home", tmp_path / "R", "run folder")
    plain = tmp_path / "R" / "other" / "textile"
    assert confined(plain, tmp_path / "R", "run folder") == plain  # a folder not made yet is fine


def test_only_projbench_temporaries_and_files_are_deleted(tmp_path):
    ours = [".metrics.json.tmp.1a2b3c4d", ".config.json.k3j4_x9a", "config.json", "checkpoint.safetensors",
            "train_state-step3.safetensors", "train_state.json"]
    theirs = [".bashrc.20241201", ".profile.abcdefgh", "notes.txt", ".lock", ".x.tmp.NOTHEX99"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_stale_temps(tmp_path)) == sorted(ours[:2])
    clear_run_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)


def test_a_symlinked_site_file_is_refused_and_its_target_kept(capsys, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    target = tmp_path / "precious.html"
    target.write_text("keep me\n")
    (site / "index.html").symlink_to(target)
    code = main(["leaderboard", "--results", str(FIXTURES), "--format", "html", "--output", str(site)])
    err = capsys.readouterr().err
    assert code == 2 and "symbolic link" in err and "index.html" in err, err
    assert target.read_text() == "keep me\n"
    assert sorted(p.name for p in site.iterdir()) == ["index.html"]  # nothing else written either


def test_the_leaderboard_lists_a_symlinked_model_folder_as_skipped(tmp_path):
    results = tmp_path / "R"
    results.mkdir()
    (results / "blip2-tiny").symlink_to(FIXTURES / "blip2-tiny", target_is_directory=True)
    (results / "idefics3-tiny").symlink_to(FIXTURES / "idefics3-tiny", target_is_directory=True)
    coll = collect(results)
    assert not coll.runs
    assert sorted(s.path for s in coll.skipped) == ["blip2-tiny", "idefics3-tiny"]
    assert all("symbolic link" in s.reason for s in coll.skipped)
