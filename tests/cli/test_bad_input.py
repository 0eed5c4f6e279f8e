"""Bad input gets a clear error that names the problem and the fix, and writes nothing half-done."""

from __future__ import annotations

import time

import pytest

from benchmark.cli import main
from benchmark.errors import DataError
from benchmark.evaluate.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner
from benchmark.registry import Plugins
from benchmark.tasks import load_task
from conftest import make_image_folder


def run_cli(capsys, *args):
    code = main(["run", *args, "--no-progress", "--probe-max-epochs", "2"])
    return code, capsys.readouterr()


def test_unknown_model_suggests_the_closest(capsys, tmp_path):
    code, out = run_cli(capsys, "--model", "llava15-tiyn", "--task", "textile", "--results-dir", str(tmp_path))
    assert code == 2
    assert "Unknown model 'llava15-tiyn'" in out.err and "Did you mean 'llava15-tiny'" in out.err
    assert "Traceback" not in out.err
    assert not any(tmp_path.iterdir())


def test_unknown_task_suggests_the_closest(capsys, tmp_path):
    code, out = run_cli(capsys, "--model", "llava15-tiny", "--task", "textiles", "--results-dir", str(tmp_path))
    assert code == 2 and "Unknown task 'textiles'" in out.err and "'textile'" in out.err


def test_unknown_flag_suggests_the_closest(capsys, tmp_path):
    code, out = run_cli(capsys, "--model", "llava15-tiny", "--task", "textile", "--seedz", "1",
                        "--results-dir", str(tmp_path))
    assert code == 2 and "--seedz (did you mean --seeds?): no such run flag" in out.err
    assert "`python -m benchmark run --help`" in out.err and not any(tmp_path.iterdir())


def test_missing_data_dir(capsys, tmp_path):
    code, out = run_cli(capsys, "--model", "llava15-tiny", "--task", "derm", "--data-dir", str(tmp_path / "nowhere"),
                        "--results-dir", str(tmp_path / "res"))
    assert code == 2 and "does not exist" in out.err and "--data-dir" in out.err
    assert not (tmp_path / "res").exists()


def test_empty_data_dir(capsys, tmp_path):
    (tmp_path / "data" / "train" / "eczema").mkdir(parents=True)
    (tmp_path / "data" / "test" / "eczema").mkdir(parents=True)
    code, out = run_cli(capsys, "--model", "llava15-tiny", "--task", "folder", "--data-dir", str(tmp_path / "data"),
                        "--results-dir", str(tmp_path / "res"))
    assert code == 2 and "holds no images" in out.err
    assert not (tmp_path / "res").exists()


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    data = make_image_folder(tmp_path / "data", {"nominal": (4, 2), "global": (4, 2), "local": (4, 2)})
    (data / "train" / "global" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "test" / "local" / "truncated.jpg").write_bytes((data / "test" / "local" / "img000.jpg").read_bytes()[:300])
    results = Runner(RunConfig(model="llava15-tiny", task="textile", data_dir=str(data), regimes=("zero-shot",),
                               results_dir=str(tmp_path / "res"), probe=ProbeConfig(max_epochs=2),
                               progress=False)).run()
    skipped = results[0]["data"]["skipped_unreadable"]
    assert skipped == {"train": 1, "test": 1}
    assert results[0]["data"]["n_train"] == 12 and results[0]["data"]["n_test"] == 6


def test_test_class_missing_from_train(tmp_path):
    data = make_image_folder(tmp_path / "data", {"nominal": (3, 2), "global": (3, 2)})
    (data / "test" / "local").mkdir()
    (data / "test" / "local" / "x.jpg").write_bytes((data / "test" / "global" / "img000.jpg").read_bytes())
    spec = Plugins(autoload=False).tasks.get("textile")
    with pytest.raises(DataError, match=r"test class\(es\) \['local defect'\] have no training images"):
        load_task(spec, data, progress=False)


def test_folder_that_matches_no_class(tmp_path):
    data = make_image_folder(tmp_path / "data", {"nominal": (3, 1), "stripes": (3, 1)})
    spec = Plugins(autoload=False).tasks.get("textile")
    with pytest.raises(DataError, match=r"\['stripes'\] match no class"):
        load_task(spec, data, progress=False)


def test_too_little_data_for_the_probe_split(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", {"nominal": (1, 1), "global": (3, 1), "local": (3, 1)})
    code, out = run_cli(capsys, "--model", "llava15-tiny", "--task", "textile", "--data-dir", str(data),
                        "--regimes", "zero-shot", "--results-dir", str(tmp_path / "res"))
    assert code == 2 and "at least 2 training images per class" in out.err
    assert not (tmp_path / "res").exists()


def test_unreachable_hub_fails_fast_with_the_fix(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    code, out = run_cli(capsys, "--model", "llava15", "--task", "textile", "--max-per-class", "2",
                        "--results-dir", str(tmp_path))
    assert time.perf_counter() - start < 60
    assert code == 2 and "llava-hf/llava-1.5-7b-hf" in out.err and "--model-path" in out.err
    assert "Traceback" not in out.err


def test_unreachable_dataset_hub_names_the_dataset(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run_cli(capsys, "--model", "llava15-tiny", "--task", "derm", "--results-dir", str(tmp_path))
    assert code == 2 and "rkdeva/Dermnet-Train" in out.err and "--data-dir" in out.err
    assert "llava-1.5" not in out.err, "a tiny model needs no hub: only the data is reported"


def test_missing_model_and_data_are_reported_together(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run_cli(capsys, "--model", "llava15", "--task", "derm", "--results-dir", str(tmp_path))
    assert code == 2 and "rkdeva/Dermnet-Train" in out.err and "llava-hf/llava-1.5-7b-hf" in out.err
    assert "--model-path" in out.err and "--data-dir" in out.err
