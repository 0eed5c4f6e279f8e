"""A feature cache of several parts: rows read across part boundaries, and damage to any one part found.

Parts of 2 images (instead of 256) make 5 real photos a 3-part cache (2 + 2 + 1 rows). Reference: the adapter's
own ``vision_features(preprocess(image))`` of each photo on its own.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.conformance import samples_for
from benchmark.registry import Plugins
from benchmark.storage import features
from benchmark.storage.features import FeatureStore, extract
from benchmark.storage.integrity import CorruptFileError


@pytest.fixture
def three_parts(real_images, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "PART_SIZE", 2)
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    images = real_images[:5]
    store, _ = extract(adapter, samples_for(images), cache_dir=tmp_path, task_fingerprint="t", split="test",
                       progress=False, log=lambda *_: None)
    want = torch.cat([adapter.vision_features(adapter.preprocess([im])).cpu() for im, _ in images])
    return adapter, images, store, want


def test_rows_are_read_from_the_right_part(three_parts):
    _, _, store, want = three_parts
    assert sorted(p.name for p in store.directory.glob("part-*.safetensors")) == [
        "part-00000.safetensors", "part-00001.safetensors", "part-00002.safetensors"]
    order = [4, 0, 3, 2, 1]
    assert torch.allclose(store.get(order), want[order], atol=1e-5)
    assert torch.allclose(store.get(torch.arange(5)), want, atol=1e-5)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_damage_to_any_part_is_found_and_recomputed(three_parts, tmp_path, part):
    adapter, images, store, want = three_parts
    path = store.directory / f"part-{part:05d}.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last feature row's data, past the header
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        FeatureStore(store.directory)
    logged = []
    again, _ = extract(adapter, samples_for(images), cache_dir=tmp_path, task_fingerprint="t", split="test",
                       progress=False, log=logged.append)
    assert any("[discard]" in line for line in logged)
    assert torch.allclose(again.get(range(5)), want, atol=1e-5)
