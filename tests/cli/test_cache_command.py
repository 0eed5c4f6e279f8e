"""`cache list|clean` on a real cache: a current and a stale tiny twin (both really built), projbench's other
entries, and the user's own files and links, which are never touched."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.adapters.tiny import materialise
from benchmark.cli import main
from benchmark.refs import resolve
from benchmark.registry import Plugins


def size_of(path: Path) -> int:
    """Bytes of a folder as `du --apparent-size` counts them: the folder, and everything below, links as links."""
    return path.lstat().st_size + sum(p.lstat().st_size for p in path.rglob("*"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache with the current llava15-tiny twin and a stale one (the same builder with a different build key, as
    an edit of the builder leaves behind); copied per test."""
    root = tmp_path_factory.mktemp("cache")
    factory = Plugins(autoload=False).adapters.get("llava15-tiny").factory
    build = resolve(factory.build)
    current = materialise(root, factory.name, build)
    stale = materialise(root, factory.name, functools.partial(build))  # another build key: another folder
    assert current != stale and current.parent == stale.parent
    return root, current.name, stale.name


@pytest.fixture
def cache(built, tmp_path):
    """The built cache plus the user's files (decoys) and projbench's other entries, in a fresh copy."""
    import shutil

    src, current, stale = built
    root = tmp_path / "cache"
    shutil.copytree(src, root, symlinks=True)
    tiny = root / "tiny"
    (tiny / "notes.txt").write_text("the user's own notes")
    (tiny / "my-model-0123456789ab").mkdir()  # a twin-like name without projbench's manifest
    (tiny / "my-model-0123456789ab" / "weights.bin").write_bytes(b"\0" * 100)
    outside = tmp_path / "outside"  # a link to a folder that looks exactly like a stale twin, manifest included
    shutil.copytree(tiny / stale, outside / stale)
    manifest = json.loads((outside / stale / "projbench-twin.json").read_text())
    (outside / stale / "projbench-twin.json").write_text(json.dumps({**manifest, "build_hash": "a" * 12}))
    (tiny / "llava15-tiny-aaaaaaaaaaaa").symlink_to(outside / stale)
    old_build = tiny / ".llava15-tiny-abcd_123"  # an interrupted build, two hours ago
    old_build.mkdir()
    (old_build / "config.json").write_text("{}")
    os.utime(old_build, (time.time() - 7200, time.time() - 7200))
    (tiny / ".llava15-tiny-zzzz_999").mkdir()  # a build in progress
    feats = root / "features" / ("ab" * 12)
    feats.mkdir(parents=True)
    (feats / "key.json").write_text("{}")
    (root / "features" / "README").write_text("mine")
    (root / "plugins").mkdir()
    (root / "plugins" / ("probe-" + "c" * 32 + ".json")).write_text('{"problem": null}')
    return root, current, stale, outside


def run(capsys, root, *args) -> list[str]:
    assert main(["cache", *args, "--cache-dir", str(root)]) == 0
    return capsys.readouterr().out.splitlines()


def test_clean_removes_stale_twins_only_and_says_what_it_freed(cache, capsys):
    root, current, stale, outside = cache
    tiny = root / "tiny"
    freed = size_of(tiny / stale) + size_of(tiny / ".llava15-tiny-abcd_123")
    before = sorted(p.name for p in tiny.iterdir())
    out = run(capsys, root, "clean", "--dry-run")
    assert sorted(p.name for p in tiny.iterdir()) == before  # a dry run removes nothing
    assert f"would remove tiny/{stale} (tiny twin, stale, " in "\n".join(out)
    out = run(capsys, root, "clean")
    assert sorted(p.name for p in tiny.iterdir()) == sorted(
        [current, "notes.txt", "my-model-0123456789ab", "llava15-tiny-aaaaaaaaaaaa", ".llava15-tiny-zzzz_999"])
    assert any(line.startswith(f"removed tiny/{stale} (tiny twin, stale, ") for line in out), out
    assert out[-1] == (f"{root}: removed 2 entries, freed {out[-1].split('freed ')[1].split(' (')[0]} ({freed} bytes); "
                       f"kept 4 (current or in progress).")  # the current twin, the build in progress, features, verdict
    assert "left alone: tiny/llava15-tiny-aaaaaaaaaaaa (a symbolic link)" in out
    assert "left alone: tiny/notes.txt (not a name projbench gives)" in out
    # What the link points to, and the user's files, are intact.
    assert (outside / stale / "projbench-twin.json").is_file() and (tiny / "notes.txt").read_text()
    assert (tiny / "my-model-0123456789ab" / "weights.bin").stat().st_size == 100
    assert (tiny / current / "projbench-twin.json").is_file() and (root / "features" / ("ab" * 12)).is_dir()
    # A second clean has nothing left to do.
    assert run(capsys, root, "clean")[-1].startswith(f"{root}: removed 0 entries, freed 0 B (0 bytes)")


def test_clean_all_removes_every_entry_of_projbench_and_nothing_else(cache, capsys):
    root, current, stale, outside = cache
    run(capsys, root, "clean", "--all")
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["features", "features/README", "plugins", "tiny", "tiny/.llava15-tiny-zzzz_999",
                    "tiny/llava15-tiny-aaaaaaaaaaaa", "tiny/my-model-0123456789ab",
                    "tiny/my-model-0123456789ab/weights.bin", "tiny/notes.txt"]
    assert (outside / stale / "projbench-twin.json").is_file()


def test_a_feature_folder_s_lock_file_is_projbench_s_and_kept_while_held(cache, capsys):
    from filelock import FileLock

    root = cache[0]
    held, free = root / "features" / ("ab" * 12 + ".lock"), root / "features" / ("cd" * 12 + ".lock")
    for lock in (held, free):
        with FileLock(str(lock)):  # written as feature extraction writes them: the file stays after release
            pass
    with FileLock(str(held)):  # another process is extracting these features now
        rows = run(capsys, root, "list")  # long names wrap: a row holds the name's start and the columns
        assert "feature lock" in next(row for row in rows if "cd" * 12 in row)
        assert "in progress" in next(row for row in rows if "ab" * 12 in row and "feature lock" in row)
        run(capsys, root, "clean", "--all")
        assert held.exists() and not free.exists()
    run(capsys, root, "clean", "--all")
    assert not held.exists()


def test_list_names_each_entry_and_its_status(cache, capsys):
    root, current, stale, _ = cache
    out = "\n".join(run(capsys, root, "list"))
    for entry, status in [(f"tiny/{current}", "current"), (f"tiny/{stale}", "stale"),
                          (".llava15-tiny-zzzz_999", "in progress"), ("features/" + "ab" * 12, "current")]:
        line = next(row for row in out.splitlines() if entry in row)
        assert status in line, line
    assert "left alone: a symbolic link" in out


def test_list_imports_neither_torch_nor_transformers(cache):
    """The twins' keys are read from their builders' files: `cache list` starts in a fraction of a second, and still
    tells the current twin (keyed by materialise, from the imported builder) from the stale one."""
    root, current, stale, _ = cache
    code = (f"import json, sys\nfrom benchmark.cli import main\nrc = main(['cache', 'list', '--cache-dir', {str(root)!r}])\n"
            "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert json.loads(lines[-1]) == []
    assert "current" in next(row for row in lines if f"tiny/{current}" in row)
    assert "stale" in next(row for row in lines if f"tiny/{stale}" in row)


def test_a_linked_tiny_folder_is_left_alone(cache, capsys, tmp_path):
    root, current, stale, _ = cache
    elsewhere = tmp_path / "elsewhere"
    (root / "tiny").rename(elsewhere)
    (root / "tiny").symlink_to(elsewhere)
    out = run(capsys, root, "clean", "--all")
    assert "left alone: tiny (a symbolic link)" in out
    assert (elsewhere / stale).is_dir() and (elsewhere / current).is_dir()
