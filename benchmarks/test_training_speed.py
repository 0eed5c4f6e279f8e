"""Speed of training from cached vision features against re-encoding the images at every step.

Run with ``make bench``. Both paths are timed in the same run on the same model and data; the ratio is
stored in the benchmark's ``extra_info`` and printed.
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmark.config import TrainConfig
from benchmark.conformance import MemoryStore, real_photos, samples_for
from benchmark.registry import Plugins
from benchmark.tasks.base import decode_image
from benchmark.train.loop import finetune

CLASSES = ["nominal", "global defect", "local defect"]


@pytest.fixture(scope="module")
def setup():
    images = real_photos(per_class=16)
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    samples = samples_for(images)
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
    return adapter, samples, store


def run_epoch(adapter, samples, store, from_pixels: bool):
    def features_from_pixels(idx):
        images = [decode_image(samples[i].load_bytes()) for i in idx.tolist()]
        return adapter.vision_features(adapter.preprocess(images))

    finetune(adapter, "ft-proj", store=store, samples=samples,
             classes=CLASSES, domain="textile surface defects", seed=0,
             cfg=TrainConfig(lr=1e-3, batch_size=8), progress=False,
             features_fn=features_from_pixels if from_pixels else None)


def test_cached_features_vs_reencoding(benchmark, setup):
    adapter, samples, store = setup
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    for _ in range(3):
        run_epoch(adapter, samples, store, from_pixels=True)
    pixels = (time.perf_counter() - start) / 3
    benchmark.pedantic(run_epoch, args=(adapter, samples, store, False), rounds=3, iterations=1)
    cached = benchmark.stats.stats.mean
    benchmark.extra_info["reencode_epoch_s"] = pixels
    benchmark.extra_info["cached_epoch_s"] = cached
    benchmark.extra_info["speedup"] = pixels / cached
    print(f"\ncached features: {cached:.3f} s/epoch, re-encoding: {pixels:.3f} s/epoch, "
          f"speed-up {pixels / cached:.2f}x (llava15-tiny, 48 images, batch 8)")
