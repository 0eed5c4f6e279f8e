"""The baselines stage: exact random expectation, CLIP zero-shot on a tiny open_clip twin, CLIP-embedding probe."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from benchmark.baselines import PAPER_CLIP, choose_clip, expected_random, load_clip, tiny_clip_dir
from benchmark.config import ProbeConfig, RunConfig
from benchmark.errors import BenchmarkError, ModelLoadError
from benchmark.protocol import Runner
from conftest import SHARED_DATA, shared_data


def enumerate_random(labels: list[int], k: int) -> tuple[float, float]:
    """Mean macro-F1 and accuracy over all k**N equally likely prediction vectors, F1 from its definition."""
    y = np.array(labels)
    preds = np.array(list(itertools.product(range(k), repeat=len(y))))          # (k**N, N)
    f1 = []
    for c in sorted(set(labels)):
        tp = ((preds == c) & (y == c)).sum(1)
        f1.append(2 * tp / ((y == c).sum() + (preds == c).sum(1)))  # 2TP / (2TP + FP + FN)
    return float(np.mean(np.mean(f1, axis=0))), float(np.mean(preds == y))


def test_enumeration_agrees_with_sklearn_on_a_few_vectors():
    y = [0, 0, 0, 1, 2]
    for preds in ([0, 1, 2, 2, 2], [1, 1, 1, 1, 1], [0, 0, 0, 1, 2]):
        mean_f1 = np.mean([2 * sum(p == c == t for p, t in zip(preds, y, strict=True))
                           / (y.count(c) + preds.count(c)) for c in (0, 1, 2)])
        assert mean_f1 == pytest.approx(f1_score(y, preds, labels=[0, 1, 2], average="macro", zero_division=0))


@pytest.mark.parametrize("labels,k", [([0, 0, 0, 1, 2], 3),          # imbalanced
                                      ([0, 1, 1, 3, 3, 3, 3, 1], 4),  # class 2 absent from the test split
                                      ([1, 1, 1, 1], 2),             # one class present of two
                                      ([0, 0, 0], 1)])               # one class: every guess is right, F1 1
def test_random_equals_exhaustive_enumeration(labels, k):
    exp = expected_random(labels, k)
    f1, acc = enumerate_random(labels, k)
    assert exp["macro_f1"] == pytest.approx(f1, abs=1e-12)
    assert exp["accuracy"] == pytest.approx(acc, abs=1e-12)
    if k == 1:
        assert (exp["macro_f1"], exp["accuracy"]) == (1.0, 1.0)
        return
    # The plausible shortcut (a ratio of expectations, 2 E[TP] / (n_c + E[M])) is not the expectation.
    n = len(labels)
    ratio = np.mean([2 * (labels.count(c) / k) / (labels.count(c) + n / k) for c in sorted(set(labels))])
    assert abs(ratio - f1) > 1e-3


def test_random_matches_a_large_simulation():
    """A paper-sized imbalanced case (4 classes, like CrisisMMD) against 20,000 seeded random classifiers."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], [300, 120, 60, 20])
    preds = rng.integers(0, 4, size=(20_000, len(labels)))
    sims = []
    for p in preds:
        tp = np.bincount(labels[p == labels], minlength=4)
        sims.append(np.mean(2 * tp / (np.bincount(labels, minlength=4) + np.bincount(p, minlength=4))))
    exp = expected_random(labels.tolist(), 4)["macro_f1"]
    assert exp == pytest.approx(np.mean(sims), abs=4 * np.std(sims) / np.sqrt(len(sims)))


def test_clip_choice_defaults_overrides_and_mismatch_warnings():
    declared = ("ViT-L-14-336", "openai")
    assert choose_clip("llava15", declared, None, None).warning is None
    assert choose_clip("llava15", declared, "ViT-L-14-336", "openai").warning is None
    other = choose_clip("llava15", declared, "ViT-B-32", "openai")
    assert "ViT-B-32/openai is not the CLIP that matches llava15" in other.warning
    assert other.to_dict()["matches_adapter"] is False
    fallback = choose_clip("qwen2vl", None, None, None)
    assert (fallback.model, fallback.pretrained) == PAPER_CLIP and "declares no CLIP" in fallback.warning
    with pytest.raises(BenchmarkError, match="--clip-pretrained needs --clip-model"):
        choose_clip("llava15", declared, None, "openai")


def test_bad_clip_names_suggest_and_missing_weights_name_what_to_fetch(tmp_path):
    with pytest.raises(ModelLoadError, match="Did you mean 'ViT-L-14-336'"):
        load_clip(choose_clip("x", None, "ViT-L-14-33", "openai"), tmp_path)
    with pytest.raises(ModelLoadError, match="no pretrained tag 'openia'.*Did you mean 'openai'"):
        load_clip(choose_clip("x", None, "ViT-L-14-336", "openia"), tmp_path)
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest: the hub is out of reach, as on this machine
    with pytest.raises(ModelLoadError, match=r"`hf download timm/vit_large_patch14_clip_336\.openai open_clip_model\.safetensors --local-dir DIR`"):
        load_clip(choose_clip("llava15", PAPER_CLIP, None, None), tmp_path)
    with pytest.raises(ModelLoadError, match="no open_clip_config.json"):
        load_clip(choose_clip("x", None, f"local-dir:{tmp_path}", None), tmp_path)


@pytest.fixture(scope="module")
def eurosat_baselines(tmp_path_factory):
    root = shared_data("eurosat")  # skipped where absent, a failure under CI=true
    out = tmp_path_factory.mktemp("baselines")
    cfg = RunConfig(model="llava15-tiny", task="eurosat", data_dir=str(root), max_per_class=3,
                    regimes=("baselines",), results_dir=str(out), cache_dir=str(out / "cache"),
                    probe=ProbeConfig(max_epochs=2), progress=False)
    [m] = Runner(cfg, log=lambda *_: None).run()
    return cfg, m, out / "llava15-tiny" / "eurosat@max3" / "baselines" / "seed0"


def test_clip_zero_shot_and_probe_on_real_images(eurosat_baselines):
    """The recorded zero-shot result equals open_clip's own encode_image/encode_text path, recomputed here."""
    import open_clip
    from PIL import Image

    cfg, m, d = eurosat_baselines
    b = m["baselines"]
    assert m["regime"] == "baselines" and m["clip"]["model"] == "tiny-clip" and m["clip"]["matches_adapter"]
    assert m["clip"]["templates"] == ["This is a photo of {}."]
    classes = m["data"]["classes"]
    assert len(classes) == 10 and b["random"]["accuracy"] == pytest.approx(0.1)

    local = f"local-dir:{tiny_clip_dir('tiny-clip', cfg.cache_dir)}"
    model, _, pre = open_clip.create_model_and_transforms(local)
    tok = open_clip.get_tokenizer(local)
    preds = json.loads((d / "clip_predictions.json").read_text())
    labels = [p["label"] for p in preds]
    # The test images, read here from their files (uid = <class folder>/<file>), in the recorded order.
    images = [pre(Image.open(SHARED_DATA / "eurosat" / p["uid"]).convert("RGB")) for p in preds]
    assert len(images) == 30
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(torch.stack(images)), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tok([f"This is a photo of {c}." for c in classes])),
                                            dim=-1)
    mine = (img @ txt.T).argmax(-1).tolist()
    assert [p["prediction"] for p in preds] == mine
    present = sorted(set(labels))
    assert b["clip_zero_shot"]["macro_f1"] == pytest.approx(f1_score(labels, mine, labels=present, average="macro",
                                                                     zero_division=0), abs=1e-12)
    # Table 3 probes the pooled embedding before CLIP's projection: tiny-clip's width 32, not its 24-d output.
    assert b["clip_probe"]["input_dim"] == 32 and "before CLIP's projection" in b["clip_probe"]["embedding"]


def test_baselines_resume_and_refuse_another_clip(eurosat_baselines):
    cfg, m, d = eurosat_baselines
    random_mtime = (d / "random.json").stat().st_mtime_ns
    (d / "metrics.json").unlink()
    (d / "clip_probe.json").unlink()
    [again] = Runner(cfg, log=lambda *_: None).run()
    assert (d / "random.json").stat().st_mtime_ns == random_mtime  # finished parts are not redone
    assert again["baselines"]["clip_zero_shot"] == m["baselines"]["clip_zero_shot"]
    assert again["baselines"]["clip_probe"]["macro_f1"] == m["baselines"]["clip_probe"]["macro_f1"]
    from dataclasses import replace

    with pytest.raises(BenchmarkError, match="differs in: clip_model"):
        Runner(replace(cfg, clip_model="tiny-clip-b"), log=lambda *_: None).run()


def test_random_on_dtd_split_1_is_the_papers_value():
    """DTD's test split is balanced (47 classes x 40 images); the paper reports .0214 for one random classifier."""
    exp = expected_random([c for c in range(47) for _ in range(40)], 47)["macro_f1"]
    assert exp == pytest.approx(0.0214, abs=5e-4)  # 0.02115: the paper's single draw lies within its spread
