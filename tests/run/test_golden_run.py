"""A golden run: the science numbers of one small deterministic `run` are pinned, so that a change of structure
(where code lives, how configuration is read, how records are written) cannot change a result unnoticed.

The run goes through the command line, as a user runs it, and the test reads only the files it writes. What is
pinned is what a result means: task scores and predictions, probe scores (with their controls and intervals),
paired intervals, training loss and gradient norm, the trained projector, the baselines, and the identity hashes
that decide whether an existing folder is the same run (changing them would make every stored result look like
another configuration). Timings, paths, versions and provenance are not pinned.

If a number has to change on purpose, regenerate the fixture and say in the change which number and why:

    PROJBENCH_REGENERATE_GOLDEN=1 pytest tests/run/test_golden_run.py
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from benchmark.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

FIXTURE = Path(__file__).parents[1] / "fixtures" / "golden_run.json"
ARGS = ["run", "--model", "llava15-tiny", "--task", "textile", "--max-per-class", "8", "--seeds", "0",
        "--probe-max-epochs", "20", "--probe-seeds", "1", "--baselines", "--global-batch", "8", "--epochs", "3",
        "--lr-proj", "0.01", "--lr-e2e", "0.001", "--no-progress"]
REGIMES = ("zero-shot", "ft-proj", "ft-e2e", "baselines")
# Fields of metrics.json that carry science numbers or identity; everything else (timing, provenance, paths) is not.
PINNED = ("config_hash", "replicate_hash", "setup_hash", "task_fingerprint", "metrics", "probe", "paired",
          "baselines", "lora", "limit", "eval_mode", "score_norm", "schema_version")
TRAINING = ("accumulation_steps", "final_grad_norm", "final_loss", "first_loss", "global_batch",
            "mean_loss_last_10pct", "micro_batch", "optimizer_steps", "supervised_answer_tokens",
            "trainable_parameters")
REL, ABS = 1e-5, 1e-6  # float noise of one machine's arithmetic, far below any change of meaning


def science(folder: Path) -> dict:
    """The pinned view of one run folder."""
    m = json.loads((folder / "metrics.json").read_text())
    out = {k: m[k] for k in PINNED if k in m}
    if "baselines" in out:  # the tiny CLIP's content digest follows the files of its cache folder, not a result
        out["baselines"]["clip_zero_shot"]["clip_identity"].pop("content", None)
    if m.get("training"):
        out["training"] = {k: m["training"][k] for k in TRAINING}
    if (folder / "predictions.jsonl").exists():
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        out["predictions"] = [{k: r[k] for k in ("uid", "label", "prediction", "scores", "scores_mean")}
                              for r in rows]
    if (folder / "probe_predictions.json").exists():
        out["probe_predictions"] = json.loads((folder / "probe_predictions.json").read_text())
    if (folder / "projector.safetensors").exists():
        weights = load_file(str(folder / "projector.safetensors"))
        out["projector"] = {k: [float(v.astype("float64").sum()), float(abs(v.astype("float64")).sum())]
                            for k, v in sorted(weights.items())}
    return out


def differences(want, got, where="") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in want if k not in got]
        out += [f"{where}.{k}: unexpected" for k in got if k not in want]
        for k in want.keys() & got.keys():
            out += differences(want[k], got[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: length {len(got)} != {len(want)}"]
        return [d for i, (w, g) in enumerate(zip(want, got, strict=True)) for d in differences(w, g, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(want, got, rel_tol=REL, abs_tol=ABS) else [f"{where}: {got!r} != {want!r}"]
    return [] if want == got else [f"{where}: {got!r} != {want!r}"]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    assert main([*ARGS, "--results-dir", str(out)]) in (0, None)
    root = out / "llava15-tiny" / "textile@max8"
    return {r: science(root / r / "seed0") for r in REGIMES}


def test_golden_run_numbers_are_unchanged(golden):
    if os.environ.get("PROJBENCH_REGENERATE_GOLDEN"):
        FIXTURE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"regenerated {FIXTURE}")
    want = json.loads(FIXTURE.read_text())
    found = differences(want, json.loads(json.dumps(golden)))
    assert not found, f"{len(found)} pinned value(s) changed:\n  " + "\n  ".join(sorted(found)[:40])


def test_golden_run_is_not_degenerate():
    """The pinned run must be able to notice a change: trained projectors move and the probes differ."""
    want = json.loads(FIXTURE.read_text())
    assert want["ft-proj"]["projector"] != want["ft-e2e"]["projector"]
    assert want["ft-proj"]["training"]["final_loss"] < want["ft-proj"]["training"]["first_loss"]
    probes = {want[r]["probe"]["post_projection"]["macro_f1"] for r in ("zero-shot", "ft-proj", "ft-e2e")}
    assert len(probes) > 1
    scores = {tuple(p["scores"]) for p in want["zero-shot"]["predictions"]}
    assert len(scores) == len(want["zero-shot"]["predictions"])  # per-image scores, not one constant row
