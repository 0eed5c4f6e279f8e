"""Adapter conformance suite: the same checks for every adapter's tiny twin (timm style).

A registered adapter gets these checks with no test code of its own: the project's test suite runs them over
every built-in tiny twin, and ``python -m benchmark check-adapter NAME`` runs them over any registered adapter,
including one from a third-party package's entry point. Every check runs the adapter's real transformers
classes on real photos (from the ``conformal-clip-data`` package, in the ``test`` extra).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmark.batching import IGNORE, collate
from benchmark.config import TrainConfig
from benchmark.evaluation import class_answer_ids, score_batch
from benchmark.prompt import build_question
from benchmark.registry import Plugins
from benchmark.tasks.base import Sample
from benchmark.training import finetune, projector_state, training_batch

MODELS_ENV = "PROJBENCH_CONFORMANCE_MODELS"
CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


def registry() -> Plugins:
    return Plugins()  # honours PROJBENCH_DISABLE_PLUGIN_AUTOLOAD


def adapters_under_test() -> list[str]:
    """``$PROJBENCH_CONFORMANCE_MODELS`` (comma-separated), else every registered tiny twin."""
    names = [n.strip() for n in os.environ.get(MODELS_ENV, "").split(",") if n.strip()]
    return names or [spec.name for spec in registry().adapters if spec.tiny]


class MemoryStore:
    """In-memory stand-in for the on-disk FeatureStore (same ``get``), filled by the real vision encoder."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def get(self, indices):
        idx = indices.tolist() if hasattr(indices, "tolist") else list(indices)
        return self.features[idx]


def real_photos(per_class: int = 4) -> list:
    """Real RGB photos with class indices: textile nominal / global / local defects."""
    try:
        import conformal_clip_data
    except ImportError:
        pytest.skip("the conformance suite needs `pip install 'projbench[test]'` (conformal-clip-data)")
    from PIL import Image

    root = Path(conformal_clip_data.textile_simulated_root())
    out = []
    for label, folder in enumerate(("nominal", "global", "local")):
        out += [(Image.open(p).convert("RGB"), label) for p in sorted((root / folder).glob("*.jpg"))[:per_class]]
    return out


def samples_for(images) -> list[Sample]:
    out = []
    for i, (img, label) in enumerate(images):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        out.append(Sample(uid=f"img{i:03d}", label=label, load_bytes=lambda d=data: d))
    return out


def load(name):
    return registry().adapters.get(name).factory(device="cpu")


@pytest.fixture(params=adapters_under_test())
def adapter(request):
    return load(request.param)


@pytest.fixture(scope="session")
def photos():
    return real_photos()


@pytest.fixture
def encoded(adapter, photos):
    """Real images through the adapter's own processor and frozen vision encoder, kept in memory."""
    px = adapter.preprocess([im for im, _ in photos])
    return px, MemoryStore(adapter.vision_features(px)), samples_for(photos)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return [k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())]


def test_loads_from_saved_directory(adapter):
    from pathlib import Path

    ckpt = Path(adapter.checkpoint)
    assert ckpt.is_dir() and any(ckpt.rglob("config.json")), "tiny twins must load through from_pretrained"
    assert adapter.num_image_tokens > 0
    for part in ("vision", "projector", "llm"):
        assert sum(p.numel() for p in adapter.parts()[part].parameters()) > 0, part


def test_shapes(adapter, encoded):
    px, store, _ = encoded
    feats = store.get(range(2))
    assert feats.dim() == 3 and feats.shape[0] == 2
    tokens = adapter.project(feats)
    width = adapter.model.get_input_embeddings().embedding_dim
    assert tokens.shape == (2, adapter.num_image_tokens, width)


def test_cached_features_equal_full_forward(adapter, encoded):
    px, store, samples = encoded
    parts = [adapter.encode(build_question(DOMAIN, CLASSES, 0, s.uid), CLASSES[s.label]) for s in samples[:3]]
    batch = collate(parts, adapter.pad_token_id, with_answer=True)
    with torch.no_grad():
        cached = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                    adapter.project(store.get(range(3)))).logits
        full = adapter.full_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], px[:3]).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-4, rtol=1e-4)


def test_only_answer_tokens_are_supervised(adapter, encoded):
    _, _, samples = encoded
    batch = training_batch(adapter, samples, [0, 5, 9], CLASSES, DOMAIN, seed=0)
    for row, i in zip(batch["labels"], [0, 5, 9], strict=True):
        answer = adapter.encode("", CLASSES[samples[i].label]).answer_ids
        supervised = row[row != IGNORE].tolist()
        assert len(supervised) > 0
        assert supervised == answer, "labels must be exactly the answer tokens (and EOS)"
        assert supervised[-1] == adapter.answer_end_id


@pytest.mark.parametrize("regime", ["ft-proj", "ft-e2e"])
def test_freezing(adapter, encoded, regime):
    _, store, samples = encoded
    parts = adapter.parts()
    before = {name: snapshot(m) for name, m in parts.items()}
    stats = finetune(adapter, regime, store, samples[:4], CLASSES, DOMAIN, seed=0,
                     cfg=TrainConfig(lr=1e-2, batch_size=4), progress=False)
    assert stats["optimizer_steps"] == 1 and stats["supervised_answer_tokens"] > 0
    moved = {name: changed(before[name], m) for name, m in parts.items()}
    assert moved["vision"] == [], "the vision encoder is frozen in every regime"
    assert moved["projector"], "the projector must be trained"
    if regime == "ft-proj":
        assert moved["llm"] == [], f"FT-Proj must not change the LLM: {moved['llm'][:5]}"
    else:
        assert moved["llm"], "FT-E2E must change the LLM"


def test_scores_do_not_depend_on_batch_size(adapter, encoded):
    _, store, samples = encoded
    answers = class_answer_ids(adapter, CLASSES)
    # Different prompt lengths, so that batching needs left padding.
    questions = [build_question(DOMAIN, CLASSES, 0, s.uid) + " x" * (i % 3) for i, s in enumerate(samples[:8])]
    together = score_batch(adapter, store.get(range(8)), questions, answers)  # batch size 8
    alone = torch.cat([score_batch(adapter, store.get([i]), [q], answers) for i, q in enumerate(questions)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    assert together.argmax(-1).tolist() == alone.argmax(-1).tolist()
    chunked = score_batch(adapter, store.get(range(8)), questions, answers, max_rows=8)  # one class per chunk
    torch.testing.assert_close(chunked, together, atol=1e-4, rtol=1e-4)


def test_saved_projector_reloads_to_identical_scores(adapter, encoded, tmp_path):
    _, store, samples = encoded
    finetune(adapter, "ft-proj", store, samples[:4], CLASSES, DOMAIN, seed=0, cfg=TrainConfig(lr=1e-2, batch_size=4),
             progress=False)
    save_file(projector_state(adapter), str(tmp_path / "projector.safetensors"))
    answers = class_answer_ids(adapter, CLASSES)
    questions = [build_question(DOMAIN, CLASSES, 0, s.uid) for s in samples[:3]]
    tuned = score_batch(adapter, store.get(range(3)), questions, answers)
    fresh = load(adapter.name)
    original = score_batch(fresh, store.get(range(3)), questions, answers)
    fresh.projector_module().load_state_dict(load_file(str(tmp_path / "projector.safetensors")))
    reloaded = score_batch(fresh, store.get(range(3)), questions, answers)
    torch.testing.assert_close(reloaded, tuned, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(original, tuned), "one training step should move the scores"


def test_full_protocol_completes(adapter, tmp_path):
    """`run` on the textile task, every regime, at a reduced size; the leaderboard shows the adapter's row."""
    from .config import ProbeConfig, RunConfig
    from .leaderboard.collect import collect
    from .leaderboard.table import build
    from .protocol import Runner

    cfg = RunConfig(model=adapter.name, task="textile", max_per_class=4, results_dir=str(tmp_path),
                    cache_dir=str(tmp_path / "cache"), probe=ProbeConfig(max_epochs=2), progress=False)
    results = Runner(cfg, log=lambda *_: None).run()
    assert [m["regime"] for m in results] == ["zero-shot", "ft-proj", "ft-e2e"]
    assert all(m["training"]["supervised_answer_tokens"] > 0 for m in results[1:])
    [row] = build(collect(tmp_path)).rows
    assert row.model == adapter.name and row.projector_families == (registry().adapters.get(adapter.name).projector_family,)
