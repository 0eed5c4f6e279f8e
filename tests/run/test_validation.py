"""Input validation before anything is loaded: property-based over CLI flags and task-folder layouts."""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmark.cli import build_parser, main, run_config
from benchmark.errors import DataError
from benchmark.evaluate.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner
from benchmark.registry import Plugins
from benchmark.tasks import load_task
from benchmark.train.loop import NonFiniteLossError
from benchmark.validation import MAX_SEED, InputError

BASE = ["run", "--model", "llava15-tiny", "--task", "textile", "--no-progress"]
INT_FLAGS = {"--global-batch": 1, "--eval-batch-size": 1, "--score-rows": 1, "--epochs": 1,
             "--lora-rank": 1, "--probe-max-epochs": 1, "--max-per-class": 1, "--checkpoint-every": 0}
FLOAT_FLAGS = ("--lr-proj", "--lr-e2e", "--lr-lora")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def validate(argv: list[str], results: Path):
    """Parse and validate like `run` does, without running: Runner() validates first and loads no model."""
    a = build_parser().parse_args(argv + ["--results-dir", str(results)])
    return Runner(run_config(a))


@SETTINGS
@given(flag=st.sampled_from(sorted(INT_FLAGS)),
       value=st.one_of(st.integers(-5, 5), st.integers(-2**70, 2**70)))
def test_integer_flags_are_range_checked(tmp_path, flag, value):
    results = tmp_path / "results"
    ok = INT_FLAGS[flag] <= value <= 2**31 - 1
    if ok:
        validate(BASE + [f"{flag}={value}"], results)
    else:
        with pytest.raises(InputError, match=flag):
            validate(BASE + [f"{flag}={value}"], results)
    assert not results.exists(), "validation writes nothing"


@SETTINGS
@given(flag=st.sampled_from(FLOAT_FLAGS), value=st.floats(allow_nan=True, allow_infinity=True))
def test_learning_rates_are_finite_and_positive(tmp_path, flag, value):
    results = tmp_path / "results"
    if math.isfinite(value) and 0 < value <= 10:
        validate(BASE + [f"{flag}={value!r}"], results)
    else:
        with pytest.raises(InputError, match=f"{flag} must be"):
            validate(BASE + [f"{flag}={value!r}"], results)
    assert not results.exists()


@SETTINGS
@given(text=st.text(alphabet="0123456789,- x", max_size=12))
@example(text="--")  # argparse takes "--" as the end of options: no value at all
@example(text="735 42")
def test_seeds_parse_and_are_in_range_or_fail_with_exit_code_2(tmp_path, text, capsys):
    """Any --seeds text: a valid list of distinct 32-bit seeds, or one error line and exit code 2."""
    capsys.readouterr()  # examples share the fixture: what an earlier one printed is not this one's error
    results = tmp_path / "results"
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = None
    ok = bool(seeds) and all(0 <= s <= MAX_SEED for s in seeds) and len(set(seeds)) == len(seeds)
    if ok:
        assert validate(BASE + [f"--seeds={text}"], results).cfg.seeds == tuple(seeds)
    else:
        try:  # not integers: argparse's own error (SystemExit); "--" reaches argparse as no value: "empty"
            code = main(BASE + [f"--seeds={text}", "--results-dir", str(results)])
        except SystemExit as exc:
            assert seeds is None, f"{text!r} are integers: the run's own check should refuse them"
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and "--seeds" in err and err.count("\n") == 1, err
    assert not results.exists()


@pytest.mark.parametrize("argv, message", [
    (["--regimes", ","], "--regimes is empty"),
    (["--regimes", "zero-shot,zero-shot"], "lists a regime twice"),
    (["--regimes", "ft-projj"], "unknown regime 'ft-projj'"),
    (["--seeds", "1,1"], "lists a seed twice"),
    (["--device", "bogus"], "--device 'bogus' is not a device"),
    (["--device", "cuda:7"], "--device 'cuda:7'"),
    (["--dtype", "float64"], "--dtype 'float64' is not supported"),
])
def test_other_bad_flags_give_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    results = tmp_path / "results"
    assert main(BASE + argv + ["--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not results.exists()


def test_results_dir_must_be_a_writable_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(BASE + ["--results-dir", str(tmp_path / "file")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(BASE + ["--results-dir", str(tmp_path / "file" / "sub")]) == 2
    assert "is a file" in capsys.readouterr().err
    if Path("/proc/self").exists():  # read-only even for root, where permission bits do not apply
        assert main(BASE + ["--results-dir", "/proc/projbench-results"]) == 2
        assert "/proc is not writable" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "nothing written"


def test_a_diverging_training_stops_with_a_clear_error_and_blocks_nothing(tmp_path, monkeypatch):
    """A NaN loss after a saved checkpoint: error, nothing finished, no state left to block the corrected run."""
    from benchmark.train import loop as training

    real_loss, calls = training.answer_loss, []

    def nan_on_second_batch(*a, **k):
        loss, n = real_loss(*a, **k)
        calls.append(1)
        return (loss * float("nan"), n) if len(calls) == 2 else (loss, n)

    cfg = RunConfig(model="llava15-tiny", task="textile", max_per_class=6, regimes=("ft-proj",), lr_proj=5.0,
                    checkpoint_every=1, global_batch=8, probe=ProbeConfig(max_epochs=1), progress=False, results_dir=str(tmp_path))
    monkeypatch.setattr(training, "answer_loss", nan_on_second_batch)
    with pytest.raises(NonFiniteLossError, match="diverged: the loss is nan at optimizer step 2.*lower the learning rate"):
        Runner(cfg).run()
    d = tmp_path / "llava15-tiny/textile@max6/ft-proj/seed0"
    assert not (d / "metrics.json").exists() and not list(d.glob("train_state*"))
    monkeypatch.setattr(training, "answer_loss", real_loss)
    logs = []
    fixed = replace(cfg, lr_proj=1e-3)  # the corrected command is not refused: its check passes, replacing the config
    assert Runner(fixed, log=logs.append).check_existing(d, fixed.identity("ft-proj", 0)) is False
    assert any("[replace]" in line for line in logs) and not (d / "config.json").exists()


def test_learning_rates_above_ten_are_refused(tmp_path):
    with pytest.raises(InputError, match="--lr-proj must be at most 10.0"):
        validate(BASE + ["--lr-proj=1e38"], tmp_path / "results")


# -- task-folder layouts ------------------------------------------------------------------------------------

def _png(k: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (k % 256, k // 256 % 256, 3)).save(buf, format="PNG")
    return buf.getvalue()


CLASS_NAMES = st.sampled_from(["a", "b", "Bell_pepper", "bell pepper", "C c", "ünï", "x.y", "-"])
FILES = st.lists(st.sampled_from(["png", "broken", "txt", "dir", "empty"]), max_size=3)
LAYOUT = st.dictionaries(st.sampled_from(["train", "test", "val"]),
                         st.dictionaries(CLASS_NAMES, FILES, max_size=3), max_size=3)


@settings(max_examples=40, deadline=None)
@given(layout=LAYOUT)
def test_any_task_folder_layout_loads_or_fails_with_a_data_error(layout):
    """Whatever the folder holds, load_task gives consistent data or a DataError; never another exception."""
    root = Path(tempfile.mkdtemp(prefix="projbench-layout-"))
    try:
        k = 0
        good = {}
        for split, classes in layout.items():
            for cls, files in classes.items():
                d = root / split / cls
                d.mkdir(parents=True, exist_ok=True)
                for i, kind in enumerate(files):
                    k += 1
                    if kind == "png":
                        (d / f"{i}.png").write_bytes(_png(k))
                        good[(split, cls)] = good.get((split, cls), 0) + 1
                    elif kind == "broken":
                        (d / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
                    elif kind == "txt":
                        (d / f"{i}.txt").write_text("notes")
                    elif kind == "dir":
                        (d / f"sub{i}").mkdir()
                    else:
                        (d / f"{i}.jpg").write_bytes(b"")
        try:
            data = load_task(Plugins(autoload=False).tasks.get("folder"), root, progress=False)
        except DataError as exc:
            assert str(exc)
            return
        # Loaded: every readable image is there, in the class its folder names, and nothing else.
        for split in ("train", "test"):
            want = sum(n for (s, _), n in good.items() if s == split)
            assert len(data.splits[split]) == want
            for x in data.splits[split]:
                folder = x.uid.split("/")[1]
                assert data.classes[x.label] == data.spec.class_for_key(folder)
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", ","], "--seeds is empty"),
    (["--seeds=-1"], "--seeds (seed -1) must be between 0"),
    (["--regimes", ","], "--regimes is empty"),
    (["--device", "bogus"], "--device 'bogus' is not a device"),
])
def test_analyze_checks_its_flags_too(tmp_path, capsys, argv, message):
    code = main(["analyze", "--model", "llava15-tiny", "--task", "textile", "--results-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())
