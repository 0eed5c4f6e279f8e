"""Finite or refused: cached features and training state with NaN/Inf or of the wrong shape are never used.

A cache part whose checksums were recomputed after NaN rows were planted is found by its content and recomputed
to the adapter's own features; a model that produces NaN features caches nothing; a training state whose tensor
has another (broadcastable) shape, holds NaN, or records more steps than the run plans is refused before anything
is restored.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train_state import SAVED_AT, STEPS, build, data, engine, train

from benchmark.conformance import samples_for
from benchmark.errors import BenchmarkError
from benchmark.registry import Plugins
from benchmark.storage import features
from benchmark.storage.features import FeatureStore, extract
from benchmark.storage.integrity import CorruptFileError, read_sealed_json, seal, sha256_file
from benchmark.storage.results import atomic_write_json
from benchmark.train import state as train_state


@pytest.fixture
def cached(real_images, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "PART_SIZE", 2)
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    samples = samples_for(real_images[:4])
    store, _ = extract(adapter, samples, cache_dir=tmp_path, task_fingerprint="t", split="train",
                       progress=False, log=lambda *_: None)
    want = torch.cat([adapter.vision_features(adapter.preprocess([im])).cpu() for im, _ in real_images[:4]])
    return adapter, samples, store, want


def _replant(store, part: int, poison) -> None:
    """Change part ``part``'s rows with ``poison`` and recompute every checksum, as a careless edit or a bad copy
    tool that re-indexes would: only the content itself can tell."""
    path = store.directory / f"part-{part:05d}.safetensors"
    tensor = load_file(str(path))["features"]
    poison(tensor)
    save_file({"features": tensor}, str(path))
    path.with_name(path.name + ".sha256").write_text(sha256_file(path) + "\n")
    index = read_sealed_json(store.directory / "index.json")
    index["part_sha256"][path.name] = sha256_file(path)
    atomic_write_json(store.directory / "index.json", seal(index))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_rows_in_a_cached_part_are_recomputed(cached, tmp_path, value):
    adapter, samples, store, want = cached
    _replant(store, 1, lambda t: t[0].fill_(value))
    with pytest.raises(CorruptFileError, match=r"1 feature row\(s\) hold NaN or Inf \(rows \[0\]\)"):
        FeatureStore(store.directory)
    logged = []
    again, _ = extract(adapter, samples, cache_dir=tmp_path, task_fingerprint="t", split="train", progress=False,
                       log=logged.append)
    assert any("[discard]" in line and "NaN or Inf" in line for line in logged), logged
    got = again.get(range(4))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_part_of_another_row_shape_is_recomputed(cached, tmp_path):
    adapter, samples, store, want = cached
    path = store.directory / "part-00001.safetensors"
    narrow = load_file(str(path))["features"][:, :, :-1].contiguous()  # one feature fewer per token
    save_file({"features": narrow}, str(path))
    _replant(store, 1, lambda t: None)
    with pytest.raises(CorruptFileError, match="expected rows of"):
        FeatureStore(store.directory)
    again, _ = extract(adapter, samples, cache_dir=tmp_path, task_fingerprint="t", split="train", progress=False,
                       log=lambda *_: None)
    torch.testing.assert_close(again.get(range(4)), want, atol=1e-5, rtol=1e-5)


def test_a_model_giving_nan_features_caches_nothing(real_images, tmp_path):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    with torch.no_grad():
        next(adapter.vision_module().parameters()).fill_(float("nan"))  # weights that overflowed
    with pytest.raises(BenchmarkError, match="NaN or Inf.*Nothing was cached"):
        extract(adapter, samples_for(real_images[:2]), cache_dir=tmp_path, task_fingerprint="t", split="train",
                progress=False, log=lambda *_: None)
    assert not list((tmp_path / "features").rglob("part-*.safetensors"))


def _saved(tmp_path):
    path = tmp_path / "train_state.json"
    net, opt, sched = build()
    train(net, opt, sched, data()[:SAVED_AT], [])
    train_state.save(path, engine("plain").state_out(net, opt), scheduler=sched, losses=[1.0, 0.9], supervised=12,
                     step=SAVED_AT)
    return path


def _edit(path, *, tensors=None, record=None) -> None:
    """Rewrite the state's tensors and/or JSON with consistent checksums (only the content is wrong)."""
    state = read_sealed_json(path)
    if tensors is not None:
        file = path.parent / state["tensors"]
        loaded = load_file(str(file))
        tensors(loaded)
        save_file(loaded, str(file))
        state["tensors_sha256"] = sha256_file(file)
    if record is not None:
        record(state)
    atomic_write_json(path, seal(state))


def _load(path, max_step=STEPS):
    net, opt, sched = build()
    return train_state.load(path, engine("plain"), model=net, optimizer=opt, scheduler=sched, max_step=max_step)


@pytest.mark.parametrize(("edit", "message"), [
    ({"tensors": lambda t: t.__setitem__("param.head.bias", t["param.head.bias"][:1].clone())},
     r"'param.head.bias' has shape \(1,\), but the parameter 'head.bias' has \(3,\)"),
    ({"tensors": lambda t: t.__setitem__("optim.0.exp_avg", t["optim.0.exp_avg"][:1].clone())},
     r"'optim.0.exp_avg' has shape \(1, 8\)"),
    ({"tensors": lambda t: t["param.head.weight"].view(-1)[3:5].fill_(float("nan"))},
     r"'param.head.weight' holds NaN or Inf"),
    ({"record": lambda r: r.__setitem__("step", 10**9)}, rf"records step 1000000000, but this run plans {STEPS}"),
    ({"record": lambda r: r.__setitem__("step", -1)}, "recorded step -1 is not a count"),
    ({"record": lambda r: r.__setitem__("losses", [1.0, float("nan")])}, "losses are not a list of finite numbers"),
], ids=["broadcastable-weight", "moment-shape", "nan-weight", "step-1e9", "negative-step", "nan-loss"])
def test_a_training_state_that_is_not_real_is_refused(tmp_path, edit, message):
    path = _saved(tmp_path)
    assert _load(path)["step"] == SAVED_AT  # intact, it resumes
    _edit(path, **edit)
    with pytest.raises(CorruptFileError, match=message):
        _load(path)


def test_a_projector_giving_nan_is_refused_as_probe_input(cached):
    adapter, _, store, want = cached
    clean = features.pooled(store, adapter)
    torch.testing.assert_close(clean, adapter.project(want).float().mean(dim=1), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        next(adapter.projector_module().parameters()).view(-1)[0] = float("inf")  # one weight overflowed
    with pytest.raises(BenchmarkError, match="projector of llava15-tiny gave NaN or Inf for 4 image"):
        features.pooled(store, adapter)


def test_a_diverged_training_state_is_never_written(tmp_path):
    net, opt, sched = build()
    train(net, opt, sched, data()[:SAVED_AT], [])
    with torch.no_grad():
        net.head.bias[1] = float("nan")
    with pytest.raises(BenchmarkError, match=r"diverged before step 2: param.head.bias hold NaN or Inf"):
        train_state.save(tmp_path / "train_state.json", engine("plain").state_out(net, opt), scheduler=sched,
                         losses=[1.0, 0.9], supervised=12, step=SAVED_AT)
    assert not list(tmp_path.iterdir())
