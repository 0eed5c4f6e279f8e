"""Files a results folder or cache may receive (synced from elsewhere) never execute code when read back."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.leaderboard.collect import collect

RUN = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "6", "--probe-max-epochs", "2",
       "--regimes", "zero-shot,ft-proj", "--checkpoint-every", "1", "--no-progress"]


class Payload:
    """Unpickling this writes a marker file: proof that a loader ran code from the file."""

    marker: Path

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def plant(path: Path, marker: Path) -> None:
    payload = Payload()
    payload.marker = marker
    if path.suffix == ".pt":
        torch.save({"x": payload}, path)  # the zip format torch.load reads
    else:
        path.write_bytes(pickle.dumps(payload))


def test_the_payload_does_run_when_unpickled(tmp_path):
    """The planted files are live: unpickling one does write the marker (else the test below proves nothing)."""
    marker = tmp_path / "marker"
    plant(tmp_path / "x.pkl", marker)
    pickle.loads((tmp_path / "x.pkl").read_bytes())
    assert marker.exists()


@pytest.mark.slow  # a whole run (RUN), then every file it wrote is replaced by a pickle
def test_no_file_in_a_results_folder_or_cache_is_unpickled(tmp_path, capsys):
    results, cache, marker = tmp_path / "results", tmp_path / "cache", tmp_path / "marker"
    argv = RUN + ["--results-dir", str(results), "--cache-dir", str(cache)]
    assert main(argv) == 0
    run = results / "llava15-tiny/textile@max6/ft-proj/seed0"
    features = sorted(p for p in (cache / "features").iterdir() if p.is_dir())
    assert len(features) == 2

    # An unfinished FT-Proj run and a damaged cache: every file name the code reads there gets a pickle.
    for name in ("metrics.json", "projector.safetensors", "predictions.jsonl"):
        (run / name).unlink()
    for name in ("config.json", "train_state.pt", "train_state.json", "train_state-step00000002.safetensors",
                 "checkpoint.safetensors", "training.json"):
        plant(run / name, marker)
    for d in features:
        for name in ("index.json", "key.json", "part-00000.safetensors"):
            plant(d / name, marker)
    assert main(argv) == 0, "damaged caches and unfinished state are discarded and recomputed"
    assert not marker.exists()
    assert "[discard]" in capsys.readouterr().out

    # A finished run: its result files, read by `run` (skip) and by the leaderboard.
    zero = results / "llava15-tiny/textile@max6/zero-shot/seed0"
    for name in ("metrics.json", "projector.safetensors", "predictions.jsonl", "config.json"):
        plant(zero / name, marker)
    assert main(argv) == 2
    assert f"{zero / 'metrics.json'} is corrupt" in capsys.readouterr().err, "a finished result is reported"
    board = collect(results)
    assert [s.path for s in board.skipped] == ["llava15-tiny/textile@max6/zero-shot/seed0/metrics.json"]
    assert main(["leaderboard", "--results", str(results), "--format", "json"]) == 0
    assert not marker.exists()
