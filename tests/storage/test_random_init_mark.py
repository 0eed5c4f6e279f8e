"""The random-init mark of a skeleton checkpoint: it changes the folder's revision, which every record of a run
carries, and the leaderboard refuses a sealed, otherwise valid record because of it, and only that one."""

from __future__ import annotations

import json

from benchmark.storage.features import model_revision
from benchmark.storage.integrity import SEAL, seal
from benchmark.storage.random_init import RANDOM_INIT_MARKER, is_random_init, mark_random_init


def _checkpoint(folder):
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_a_marked_folder_says_random_init_in_its_revision_and_an_unmarked_one_does_not(tmp_path):
    plain, marked = _checkpoint(tmp_path / "plain"), _checkpoint(tmp_path / "marked")
    mark_random_init(marked, "test")
    assert json.loads((marked / RANDOM_INIT_MARKER).read_text())["random_init"] is True
    assert is_random_init(marked) and not is_random_init(plain) and not is_random_init(tmp_path / "absent")
    assert model_revision(marked)["random_init"] is True
    assert "random_init" not in model_revision(plain)
    # A hub id is not a folder: never marked.
    assert "random_init" not in model_revision("org/not-a-local-folder")


def test_the_leaderboard_refuses_a_sealed_record_of_a_marked_checkpoint_and_keeps_the_rest(tmp_path):
    from synthetic_results import write_results

    from benchmark.leaderboard.collect import collect

    root = tmp_path / "board"
    write_results(root, models=1, tasks=1)
    before = collect(root)
    path = root / "model-000" / "task0" / "ft-proj" / "seed0" / "metrics.json"
    record = json.loads(path.read_text())
    record.pop(SEAL)
    record["revision"] = {"kind": "local", "content_hash": "0" * 16, "files": 5, "random_init": True}
    path.write_text(json.dumps(seal(record)))
    after = collect(root)
    assert len(after.runs) == len(before.runs) - 1
    assert [s.reason for s in after.skipped if "skeleton" in s.reason]
    # The same record with the mark's key false is a result like any other.
    record["revision"]["random_init"] = False
    path.write_text(json.dumps(seal(record)))
    assert len(collect(root).runs) == len(before.runs)
