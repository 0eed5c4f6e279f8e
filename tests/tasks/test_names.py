"""One spelling per name: class folders are NFC-normalised and stripped, refused when empty or when two spell one
name; model and task names that cannot be one results folder are refused where they enter."""

from __future__ import annotations

import unicodedata
from dataclasses import replace

import pytest
from test_tasks import write_tree

from benchmark.errors import BenchmarkError, DataError
from benchmark.leaderboard.collect import collect
from benchmark.registry import Plugins, Registry
from benchmark.schema import RunKey, SchemaError
from benchmark.tasks import load_task, normalize_class_name

NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


@pytest.fixture(scope="module")
def folder_task():
    return Plugins(autoload=False).tasks.get("folder")


def test_nfc_and_nfd_spellings_are_one_class_name():
    assert NFC != NFD
    assert normalize_class_name(NFD) == normalize_class_name(NFC) == NFC
    assert normalize_class_name("  Café_au_lait \t") == "café au lait"


def test_two_folders_spelling_one_name_are_refused(folder_task, tmp_path):
    root = write_tree(tmp_path, {"train": {NFC: 2, NFD: 2, "tea": 2}, "test": {NFC: 1, "tea": 1}})
    if len({p.name for p in (root / "train").iterdir()}) < 3:
        pytest.skip("this file system stores one normal form only")
    with pytest.raises(DataError, match="normalise to \\['café'\\]"):
        load_task(folder_task, root, progress=False)


def test_a_class_folder_of_separators_only_is_refused(folder_task, tmp_path):
    root = write_tree(tmp_path, {"train": {"___": 2, "tea": 2}, "test": {"___": 1, "tea": 1}})
    with pytest.raises(DataError, match=r"Class folder\(s\) \['___'\] in .* give an empty class name.*Rename"):
        load_task(folder_task, root, progress=False)


def test_a_clean_folder_task_still_loads(folder_task, tmp_path):
    root = write_tree(tmp_path, {"train": {NFD: 2, "tea": 2}, "test": {NFD: 1, "tea": 1}})
    data = load_task(folder_task, root, progress=False)
    assert data.classes == [NFC, "tea"]


@pytest.mark.parametrize("name", [NFD, " llava ", "", "a/b", "..", "x\ny"])
def test_a_plugin_name_that_cannot_be_a_folder_is_refused(name):
    spec = replace(Plugins(autoload=False).adapters.get("llava15-tiny"), name=name)
    with pytest.raises(BenchmarkError, match="registered|without a name"):
        Registry("model").add(spec, "projbench-example")


def test_the_leaderboard_skips_a_model_folder_not_in_nfc(tmp_path):
    for model in (NFC, NFD):
        d = tmp_path / model / "textile" / "zero-shot" / "seed0"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text("{}")
    with pytest.raises(SchemaError, match="not in Unicode NFC"):
        RunKey.parse((NFD, "textile", "zero-shot", "seed0"))
    coll = collect(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert [k.model for k in coll.unfinished] == [NFC]
    assert [s.path.split("/")[0] for s in coll.skipped] == ([NFD] if NFD in names else [])
