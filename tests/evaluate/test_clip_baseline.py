"""The CLIP baselines against open_clip's own zero-shot code, and their embedding cache against replaced weights.

The CLIP here is the tiny open_clip twin with its text projection stretched column by column, so that class
text embeddings have clearly unequal norms (with near-equal norms, a missing normalisation changes no score's
argmax and little else). Two templates, so that normalising each template embedding before averaging matters.
The reference is ``open_clip.zero_shot_classifier.build_zero_shot_classifier`` and ``encode_image(normalize=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmark.backbones import LOCAL_DIR, ClipChoice, load_clip, tiny_clip_dir
from benchmark.baselines import BaselineJob, clip_embeddings, run_baselines
from benchmark.config import ProbeConfig
from benchmark.conformance import samples_for

TEMPLATES = ("This is a photo of {}.", "a blurry close-up of the {}")
CLASSES = ["nominal", "global defect", "local defect"]
WEIGHTS = "open_clip_model.safetensors"


@pytest.fixture
def stretched_clip(tmp_path):
    """A local-dir CLIP: the tiny twin with text_projection columns scaled from 0.05 to 5."""
    d = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir("tiny-clip", tmp_path / "cache"), d)
    sd = load_file(str(d / WEIGHTS))
    sd["text_projection"] = sd["text_projection"] * torch.linspace(0.05, 5.0, sd["text_projection"].shape[1])
    save_file(sd, str(d / WEIGHTS))
    return d


def test_recorded_zero_shot_scores_are_open_clips_cosines(stretched_clip, real_images, tmp_path):
    import open_clip
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    choice = ClipChoice(LOCAL_DIR + str(stretched_clip), None, None)
    images = real_images[::2]  # 6 photos, 2 per class
    split = samples_for(images)
    data = SimpleNamespace(classes=CLASSES, splits={"train": split, "test": split}, fingerprint="textile6")
    job = BaselineJob(directory=tmp_path, clip=choice, templates=TEMPLATES, seed=0, cache_dir=tmp_path / "cache",
                      device="cpu", progress=False)
    run_baselines(job, data, ProbeConfig(max_epochs=1), log=lambda *_: None)
    recorded = json.loads((tmp_path / "clip_predictions.json").read_text())

    model, _, pre = open_clip.create_model_and_transforms(choice.model)
    tok = open_clip.get_tokenizer(choice.model)
    with torch.no_grad():
        norms = model.encode_text(tok([TEMPLATES[0].format(c) for c in CLASSES])).norm(dim=-1)
        assert float(norms.max() / norms.min()) > 1.15, norms  # the input that makes a skipped norm visible
        text = build_zero_shot_classifier(model, tok, CLASSES, [t.format for t in TEMPLATES], num_classes_per_batch=None,
                                          device="cpu", use_tqdm=False)                           # (D, C)
        img = model.encode_image(torch.stack([pre(im) for im, _ in images]), normalize=True)
    cosines = img @ text
    got = torch.tensor([r["scores"] for r in recorded])
    assert torch.allclose(got, cosines, atol=2e-6), (got - cosines).abs().max()
    assert [r["prediction"] for r in recorded] == cosines.argmax(-1).tolist()


def test_replaced_weights_of_the_same_size_and_mtime_are_not_read_from_the_cache(stretched_clip, real_images,
                                                                                 tmp_path):
    choice = ClipChoice(LOCAL_DIR + str(stretched_clip), None, None)
    samples = samples_for(real_images[:3])
    first = clip_embeddings(load_clip(choice, tmp_path), samples, cache_dir=tmp_path, task_fingerprint="t",
                            split="test", progress=False)
    weights = stretched_clip / WEIGHTS
    stat = weights.stat()
    sd = load_file(str(weights))
    sd["visual.proj"] = sd["visual.proj"] * 2.0  # other weights, the same shapes: the same file size
    save_file(sd, str(weights))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    clip = load_clip(choice, tmp_path)
    second = clip_embeddings(clip, samples, cache_dir=tmp_path, task_fingerprint="t", split="test", progress=False)
    assert torch.allclose(second["projected"], 2.0 * first["projected"], rtol=1e-5)  # recomputed with the new weights
    assert torch.equal(second["pooled"], first["pooled"])
    assert len(list((tmp_path / "features" / "clip").glob("*.safetensors"))) == 2
