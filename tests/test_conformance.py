"""Conformance suite: the same checks for every registered adapter's tiny twin (a new adapter gets them free).

Every check runs the real transformers class of the adapter, loaded back with ``from_pretrained``.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmark.batching import IGNORE, collate
from benchmark.evaluation import class_answer_ids, score_batch
from benchmark.prompt import build_question
from benchmark.registry import Plugins
from benchmark.training import TrainConfig, finetune, projector_state, training_batch
from conftest import MemoryStore, samples_for

TINY = [spec.name for spec in Plugins(autoload=False).adapters if spec.tiny]
CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


def load(name):
    spec = Plugins(autoload=False).adapters.get(name)
    return spec.factory(device="cpu")


@pytest.fixture(params=TINY)
def adapter(request):
    return load(request.param)


@pytest.fixture
def encoded(adapter, real_images):
    """Real images through the adapter's own processor and frozen vision encoder, kept in memory."""
    px = adapter.preprocess([im for im, _ in real_images])
    return px, MemoryStore(adapter.vision_features(px)), samples_for(real_images)


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
        assert supervised[-1] == adapter.tokenizer.eos_token_id


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
    questions = [build_question(DOMAIN, CLASSES, 0, s.uid) + " x" * (i % 3) for i, s in enumerate(samples[:5])]
    together = score_batch(adapter, store.get(range(5)), questions, answers)
    alone = torch.cat([score_batch(adapter, store.get([i]), [q], answers) for i, q in enumerate(questions)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    assert together.argmax(-1).tolist() == alone.argmax(-1).tolist()
    chunked = score_batch(adapter, store.get(range(5)), questions, answers, max_rows=5)  # one class per chunk
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
