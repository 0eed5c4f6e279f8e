"""Run identity and feature-cache key: complete, so that a changed input is never served an old result.

Every ``RunConfig`` field (and every ``ProbeConfig`` field) either changes the run's ``config_hash`` in the regimes
it affects, or is on ``RunConfig._NOT_IDENTITY``, the documented list of fields that do not change results. The
enumeration is over ``dataclasses.fields``, so a new field fails here until it is classified. Likewise every input
of the feature-cache key (checkpoint identity, task data, split, preprocessing, dtype) changes the key.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import typing
from pathlib import Path

import pytest
import torch

from benchmark.config import BASELINES, REGIMES, STAGES, ProbeConfig, RunConfig
from benchmark.protocol import config_hash

BASE = RunConfig(model="llava15-tiny", task="textile")

# Fields that change the training only: they must leave the zero-shot hash alone (so that, e.g., trying another
# learning rate reuses the finished zero-shot runs), and change both fine-tuned ones.
TRAINING_ONLY = {"global_batch", "epochs", "warmup_ratio", "gradient_checkpointing"}
# Fields that belong to one fine-tuned regime.
ONE_REGIME = {"lr_proj": {"ft-proj"}, "lr_e2e": {"ft-e2e"}, "lora": {"ft-e2e"}}
# Fields that only matter when another field is set: the base configuration they are varied from.
CONDITIONS = {"lora_rank": {"lora": True}, "lr_lora": {"lora": True}, "lora_dropout": {"lora": True}}
for _name in CONDITIONS:
    ONE_REGIME.setdefault(_name, {"ft-e2e"})
# The baselines stage (random, CLIP zero-shot, CLIP-embedding probe) uses the CLIP settings, which no MLLM regime
# uses, and of the rest only what selects the task's data.
ONE_REGIME.update({"clip_model": {BASELINES}, "clip_pretrained": {BASELINES}, "clip_templates": {BASELINES}})
ALSO_BASELINES = {"data_dir", "max_per_class", "probe"}

HOW_TO_CLASSIFY = (
    "Classify every RunConfig field: if it can change any number in metrics.json, keep it in "
    "RunConfig.identity() (and, if it affects only some regimes, list it in TRAINING_ONLY or ONE_REGIME in "
    "tests/run/test_identity.py); if it cannot, add it to RunConfig._NOT_IDENTITY in benchmark/config.py with a "
    "comment saying why."
)


def not_identity() -> set[str]:
    return set(RunConfig._NOT_IDENTITY)


def affected_regimes(name: str) -> set[str]:
    if name in ONE_REGIME:
        return ONE_REGIME[name]
    if name in TRAINING_ONLY:
        return {"ft-proj", "ft-e2e"}
    return set(REGIMES) | ({BASELINES} if name in ALSO_BASELINES else set())


def altered(cls, name: str, value):
    """A different, valid value for field ``name`` of dataclass ``cls`` (chosen from its type)."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(value):
        first = dataclasses.fields(value)[0]
        return dataclasses.replace(value, **{first.name: altered(type(value), first.name, getattr(value, first.name))})
    if value is None:
        kind = next((a for a in args if a is not type(None)), None)
        value = {str: "x", int: 0, float: 0.0, bool: False}.get(kind)
        if value is None:
            raise AssertionError(f"tests/run/test_identity.py cannot make a value for {cls.__name__}.{name} ({hint}): "
                                 "teach altered() this type.")
        return value if kind is not int else 5
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.125
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, tuple):
        return (*value, value[-1] if value else 1)
    raise AssertionError(f"tests/run/test_identity.py cannot make a value for {cls.__name__}.{name} ({hint}): "
                         "teach altered() this type.")


def hashes(cfg: RunConfig, seed: int = 0) -> dict[str, str]:
    return {r: config_hash(cfg.identity(r, seed)) for r in STAGES}


RUN_FIELDS = [f.name for f in dataclasses.fields(RunConfig) if f.name not in ("model", "task")]


# The fields reviewed as unable to change any number in metrics.json, and why. A second copy of the list on
# purpose: moving a field into RunConfig._NOT_IDENTITY is a claim about results that needs a reviewer's eye.
REVIEWED_NOT_IDENTITY = {
    "results_dir": "where results are written",
    "cache_dir": "where features and tiny twins are cached; the cache key covers what they depend on",
    "progress": "progress bars only",
    "keep_checkpoints": "whether the temporary training state is deleted after the run",
    "regimes": "which run folders are produced; each folder has its own identity",
    "seeds": "idem; the seed of each folder is part of its identity",
    "device": "the same computation on another device (recorded in provenance)",
    "checkpoint_every": "mid-training saves; a resumed run equals an uninterrupted one (tests/run/test_protocol.py)",
    "score_rows": "memory bound of loglik scoring; scores do not depend on the chunking",
    "engine": "how processes hold the weights (DDP, FSDP2); same gradient, tests/distributed/test_distributed.py",
    "micro_batch": "splits the global batch; the token-weighted loss gives the same gradient for any split "
                   "(tests/train/test_global_batch.py)",
}


def test_not_identity_is_the_reviewed_list():
    names = {f.name for f in dataclasses.fields(RunConfig)}
    stale = not_identity() - names
    assert not stale, f"RunConfig._NOT_IDENTITY names fields that do not exist: {sorted(stale)}"
    unreviewed = not_identity() - set(REVIEWED_NOT_IDENTITY)
    assert not unreviewed, (
        f"RunConfig._NOT_IDENTITY claims that {sorted(unreviewed)} cannot change results. If that is so, add each to "
        "REVIEWED_NOT_IDENTITY in tests/run/test_identity.py with the reason (ideally a test showing the results do not "
        "change); otherwise take it out of _NOT_IDENTITY so that it is part of the run identity.")
    gone = set(REVIEWED_NOT_IDENTITY) - not_identity()
    assert not gone, (f"{sorted(gone)} left RunConfig._NOT_IDENTITY: remove them from REVIEWED_NOT_IDENTITY in "
                      "tests/run/test_identity.py too.")


@pytest.mark.parametrize("name", RUN_FIELDS)
def test_every_run_config_field_is_classified(name):
    base = dataclasses.replace(BASE, **CONDITIONS.get(name, {}))
    changed = dataclasses.replace(base, **{name: altered(RunConfig, name, getattr(base, name))})
    before, after = hashes(base), hashes(changed)
    differs = {r for r in STAGES if before[r] != after[r]}
    if name in not_identity():
        assert not differs, (f"RunConfig.{name} is listed in _NOT_IDENTITY (does not change results) but changes "
                             f"the config_hash of {sorted(differs)}. {HOW_TO_CLASSIFY}")
        return
    want = affected_regimes(name)
    assert differs == want, (
        f"RunConfig.{name} changes the config_hash of {sorted(differs) or 'no regime'}, expected {sorted(want)}. "
        + HOW_TO_CLASSIFY)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(ProbeConfig)])
def test_every_probe_config_field_changes_every_regime(name):
    """Each regime's metrics.json holds probe results, so every probe setting is part of every identity."""
    probe = dataclasses.replace(BASE.probe, **{name: altered(ProbeConfig, name, getattr(BASE.probe, name))})
    before, after = hashes(BASE), hashes(dataclasses.replace(BASE, probe=probe))
    assert all(before[r] != after[r] for r in STAGES), (
        f"ProbeConfig.{name} does not change the config_hash of every regime. " + HOW_TO_CLASSIFY)


def test_model_task_and_seed_change_the_identity():
    base = hashes(BASE)
    for other in (dataclasses.replace(BASE, model="blip2-tiny"), dataclasses.replace(BASE, task="digits")):
        assert all(base[r] != h for r, h in hashes(other).items())
    assert all(base[r] != h for r, h in hashes(BASE, seed=1).items())
    assert len(set(base.values())) == len(STAGES)  # the regime itself is part of it


# --- the feature-cache key --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(hermetic_cache):
    from benchmark.adapters.llava import load_llava_tiny

    return load_llava_tiny(cache_dir=hermetic_cache)


def test_every_input_of_the_feature_cache_key_changes_it(tiny, monkeypatch):
    from benchmark.storage.features import cache_key

    base = cache_key(tiny, "fingerprint-a", "train")
    assert base == cache_key(tiny, "fingerprint-a", "train")  # deterministic, or nothing would ever be reused
    assert cache_key(tiny, "fingerprint-b", "train") != base, "task data"
    assert cache_key(tiny, "fingerprint-a", "test") != base, "split"

    ip = tiny.processor.image_processor
    for attr, value in (("image_mean", [0.1, 0.2, 0.3]), ("do_normalize", not ip.do_normalize),
                        ("crop_size", {"height": 8, "width": 8})):
        with monkeypatch.context() as m:
            m.setattr(ip, attr, value)
            assert cache_key(tiny, "fingerprint-a", "train") != base, f"preprocessing: image processor {attr}"
    for attr in ("_feature_layer", "_strategy"):  # which hidden states enter the projector
        with monkeypatch.context() as m:
            m.setattr(tiny, attr, -1 if attr == "_feature_layer" and getattr(tiny, attr) != -1 else "full")
            assert cache_key(tiny, "fingerprint-a", "train") != base, f"feature selection {attr}"

    with monkeypatch.context() as m:
        m.setattr(tiny, "dtype", torch.float16)
        assert cache_key(tiny, "fingerprint-a", "train") != base, "dtype"
    with monkeypatch.context() as m:
        m.setattr(tiny, "name", "other-adapter")
        assert cache_key(tiny, "fingerprint-a", "train") != base, "adapter"


def test_the_checkpoint_changes_the_feature_cache_key(tiny, tmp_path, monkeypatch):
    from benchmark.storage.features import cache_key

    ckpt = tmp_path / "ckpt"
    shutil.copytree(Path(tiny.checkpoint), ckpt)
    monkeypatch.setattr(tiny, "checkpoint", str(ckpt))
    base = cache_key(tiny, "f", "train")

    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    monkeypatch.setattr(tiny, "checkpoint", str(other))
    assert cache_key(tiny, "f", "train") != base, "another checkpoint folder"
    monkeypatch.setattr(tiny, "checkpoint", str(ckpt))

    config = ckpt / "config.json"
    config.write_text(config.read_text().replace('"vocab_size"', '"vocab_size" ', 1) + " ")
    changed_config = cache_key(tiny, "f", "train")
    assert changed_config != base, "a changed config"

    weights = sorted(ckpt.rglob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, new bytes, newer modification time: replaced weights
    weights.write_bytes(bytes(data))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache_key(tiny, "f", "train") != changed_config, "replaced weights"


def test_the_task_fingerprint_follows_the_data(tmp_path):
    """Image bytes, labels, split membership and the limit each change the fingerprint that keys the cache."""
    from benchmark.registry import Plugins
    from benchmark.tasks import load_task
    from conftest import make_image_folder

    spec = Plugins(autoload=False).tasks.get("textile")
    root = make_image_folder(tmp_path / "data", {"nominal": (3, 2), "global": (3, 2), "local": (3, 2)})

    def fingerprint(limit=None):
        return load_task(spec, root, limit, progress=False).fingerprint

    seen = [fingerprint()]
    assert fingerprint() == seen[0]
    seen.append(fingerprint(2))                                            # a limited run sees other images
    img = root / "test" / "local" / "img000.jpg"
    img.write_bytes((root / "train" / "nominal" / "img000.jpg").read_bytes())  # other bytes, same name
    seen.append(fingerprint())
    (root / "test" / "global" / "moved.jpg").write_bytes(img.read_bytes())   # another label for those bytes
    img.unlink()
    seen.append(fingerprint())
    shutil.move(root / "train" / "global" / "img000.jpg", root / "test" / "global" / "img009.jpg")  # split
    seen.append(fingerprint())
    assert len(set(seen)) == len(seen), seen


def test_replicate_identity_is_the_run_identity_without_the_seed():
    """Runs that may be averaged as replicates: equal replicate identities across seeds, nothing else."""
    execution = {"dtype": "torch.float32", "global_batch": 8}
    for regime in REGIMES:
        rep = BASE.replicate_identity(regime, execution)
        assert "seed" not in rep
        assert all(rep[k] == v for k, v in BASE.identity(regime, 5).items() if k not in ("seed", "global_batch"))
        assert rep["resolved_dtype"] == "torch.float32"
        assert rep.get("global_batch") == (None if regime == "zero-shot" else 8)  # as resolved at run time
        assert BASE.replicate_identity(regime, {**execution, "dtype": "torch.bfloat16"}) != rep
        assert dataclasses.replace(BASE, max_per_class=4).replicate_identity(regime, execution) != rep
