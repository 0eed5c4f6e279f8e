"""Every artifact is checksummed: damage (bytes flipped at the same size, or truncation) is caught on read.

Caches and unfinished state are discarded and recomputed, to the same numbers; a damaged finished result is
reported with the file named and never used.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.evaluate.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner
from benchmark.storage.features import FeatureStore
from benchmark.storage.integrity import (
    CorruptFileError,
    load_safetensors,
    read_finished,
    read_sealed_json,
    seal,
)
from benchmark.train import loop as training
from benchmark.train import state as train_state

QUICK = dict(model="llava15-tiny", task="textile", max_per_class=6, probe=ProbeConfig(max_epochs=2), progress=False,
             regimes=("zero-shot", "ft-proj"), checkpoint_every=1, global_batch=8)  # 3 optimizer steps
FT = "llava15-tiny/textile@max6/ft-proj/seed0"
ZS = "llava15-tiny/textile@max6/zero-shot/seed0"


def flip(path: Path) -> None:
    """Invert 64 bytes in the middle: same size, different content."""
    data = bytearray(path.read_bytes())
    mid = max(0, len(data) // 2 - 32)
    for i in range(mid, min(len(data), mid + 64)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished run (checkpoint kept), and the state of the same FT-Proj run interrupted mid-training."""
    root = tmp_path_factory.mktemp("pristine")
    cfg = RunConfig(**QUICK, results_dir=str(root / "results"), cache_dir=str(root / "cache"), keep_checkpoints=True)
    real_loss, calls = training.answer_loss, []

    def crash_on_third_batch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    training.answer_loss = crash_on_third_batch
    try:
        with pytest.raises(KeyboardInterrupt):
            Runner(cfg).run()
    finally:
        training.answer_loss = real_loss
    shutil.copytree(root / "results" / FT, root / "interrupted")
    Runner(cfg).run()
    return root


def copy(pristine: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the results; the cache stays where it is (its keys include the tiny twin's path in it)."""
    shutil.copytree(pristine / "results", tmp_path / "results")
    return tmp_path / "results", pristine / "cache"


def feature_dirs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "features").iterdir() if p.is_dir())


def readers(pristine: Path):
    """(file, reader) for every artifact; each reader checks what the code checks before using the file."""
    run, state = pristine / "results" / FT, pristine / "interrupted"
    [tensors] = train_state.tensor_files(state / "train_state.json")
    out = [(run / name, lambda r=run: read_finished(r)) for name in ("metrics.json", "projector.safetensors",
                                                                    "predictions.jsonl")]
    out.append((run / "config.json", lambda r=run: read_sealed_json(r / "config.json")))
    out.append((run / "checkpoint.safetensors",
                lambda r=run: load_safetensors(r / "checkpoint.safetensors",
                                               read_sealed_json(r / "training.json")["checkpoint_sha256"])))
    out.append((run / "training.json", lambda r=run: read_sealed_json(r / "training.json")))
    out += [(state / "train_state.json", lambda s=state: train_state.read(s / "train_state.json")),
            (tensors, lambda s=state: train_state.read(s / "train_state.json"))]
    for d in feature_dirs(pristine / "cache"):
        out += [(d / "index.json", lambda d=d: FeatureStore(d)), (d / "part-00000.safetensors", lambda d=d: FeatureStore(d))]
    return out


@pytest.mark.parametrize("damage", [flip, truncate])
def test_each_damaged_artifact_is_caught_on_read(pristine, tmp_path, damage):
    shutil.copytree(pristine, tmp_path / "p")
    checked = readers(tmp_path / "p")
    assert len(checked) == 12
    for path, read in checked:
        read()  # intact: reads fine
        backup = path.read_bytes()
        damage(path)
        with pytest.raises(CorruptFileError) as info:
            read()
        assert str(path) in str(info.value), (path, str(info.value))
        path.write_bytes(backup)


def metrics(results: Path) -> dict:
    out = {}
    for p in sorted(results.rglob("metrics.json")):
        m = json.loads(p.read_text())
        out[str(p.relative_to(results).parent)] = (m["metrics"], m["probe"], (m["training"] or {}).get("final_loss"))
    return out


@pytest.mark.parametrize("damage", [flip, truncate])
def test_damaged_caches_and_checkpoints_are_recomputed_to_the_same_numbers(pristine, tmp_path, damage, capsys):
    results, cache = copy(pristine, tmp_path)
    want = metrics(results)
    for name in ("metrics.json", "projector.safetensors", "predictions.jsonl"):  # FT-Proj: evaluation interrupted
        (results / FT / name).unlink()
    damage(results / FT / "checkpoint.safetensors")
    train, test = feature_dirs(cache)
    damage(train / "part-00000.safetensors")
    damage(test / "index.json")
    argv = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs", "2",
            "--regimes", "zero-shot,ft-proj", "--checkpoint-every", "1", "--global-batch", "8", "--no-progress",
            "--results-dir", str(results), "--cache-dir", str(cache)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("[discard]") == 3, out
    assert f"{results / FT / 'checkpoint.safetensors'} is corrupt" in out
    assert metrics(results) == want


def test_a_damaged_training_state_restarts_training_to_the_same_numbers(pristine, tmp_path):
    results, cache = copy(pristine, tmp_path)
    want = metrics(results)[FT]
    shutil.rmtree(results / FT)
    shutil.copytree(pristine / "interrupted", results / FT)
    truncate(results / FT / "train_state.json")
    logs = []
    [_, ft] = Runner(RunConfig(**QUICK, results_dir=str(results), cache_dir=str(cache)), log=logs.append).run()
    assert any("[discard]" in line and "train_state.json is corrupt" in line for line in logs), logs
    assert ft["training"]["resumed_from_step"] == 0
    assert (ft["metrics"], ft["probe"], ft["training"]["final_loss"]) == want


def test_a_damaged_finished_result_is_reported_not_used(pristine, tmp_path, capsys):
    results, cache = copy(pristine, tmp_path)
    truncate(results / FT / "projector.safetensors")
    flip(results / ZS / "predictions.jsonl")
    argv = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs", "2",
            "--regimes", "zero-shot,ft-proj", "--results-dir", str(results), "--cache-dir", str(cache)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    for path in (results / FT / "projector.safetensors", results / ZS / "predictions.jsonl"):
        assert f"{path} is corrupt" in err
    assert f"Delete the folder {results / FT}" in err
    assert (results / FT / "projector.safetensors").stat().st_size > 0, "nothing is overwritten or removed"


def test_a_valid_looking_result_with_edited_numbers_fails_its_seal(tmp_path):
    m = seal({"schema_version": 2, "model": "m", "task": "t", "regime": "zero-shot", "seed": 0,
              "metrics": {"macro_f1": 0.25, "accuracy": 0.5}, "probe": {"post_projection": {"macro_f1": 0.5}}})
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    assert read_finished(tmp_path)["metrics"]["macro_f1"] == 0.25
    (tmp_path / "metrics.json").write_text(json.dumps(m).replace("0.25", "0.75"))  # same size, still valid JSON
    with pytest.raises(CorruptFileError, match="does not match its recorded SHA-256"):
        read_finished(tmp_path)
