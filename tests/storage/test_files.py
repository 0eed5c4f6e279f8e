"""Result files: written with the user's umask, never left half-written, temporaries of killed writes removed."""

from __future__ import annotations

import os
import stat

import pytest

from benchmark.storage.results import atomic_write_text, remove_stale_temps


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_get_the_users_umask_not_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "metrics.json", "old\n")

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    from benchmark.storage.results import atomic_write_with

    with pytest.raises(OSError):
        atomic_write_with(tmp_path / "metrics.json", crash)
    assert (tmp_path / "metrics.json").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    keep = ["metrics.json", ".lock", "part-00000.safetensors", "part-00000.safetensors.sha256", ".hidden"]
    stale = [".metrics.json.tmp.1a2b3c4d", ".part-00000.safetensors.tmp.ffff0000", ".config.json.k3j4_x9a"]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
