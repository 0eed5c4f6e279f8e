"""Qwen2-VL adapter (patch merger, M-RoPE), on its tiny twin loaded back with ``from_pretrained``.

The generic checks live in ``test_conformance.py``; these pin what is specific to Qwen2-VL: the fixed image
grid, the merger's input as the cached features, and 3-D rope positions through left padding and the KV cache
(the class scorer continues a cached prompt, which only works if the continuation gets the prompt's rope delta).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.conformance import MemoryStore, samples_for
from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from benchmark.train.loop import TrainConfig, finetune

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


def load():
    return Plugins(autoload=False).adapters.get("qwen2vl-tiny").factory(device="cpu")


@pytest.fixture(scope="module")
def adapter():
    return load()



@pytest.fixture(scope="module")
def feats(adapter, images):
    return adapter.vision_features(adapter.preprocess(images))


def test_registered_specs():
    reg = Plugins(autoload=False).adapters
    for name in ("qwen2vl", "qwen2vl-tiny"):
        spec = reg.get(name)
        assert spec.projector_family == "patch-merger"
        assert spec.projector_modules.startswith("model.visual.merger")
    assert reg.get("qwen2vl").checkpoint == "Qwen/Qwen2-VL-2B-Instruct"


def test_loaded_from_saved_directory(adapter):
    from transformers import Qwen2VLForConditionalGeneration

    assert type(adapter.model) is Qwen2VLForConditionalGeneration
    assert (Path(adapter.checkpoint) / "config.json").exists()


def test_prompt_matches_the_processor(adapter, images):
    question = build_question(DOMAIN, CLASSES, 0, "img000")
    ours = adapter.encode(question).prompt_ids
    square = images[4].resize((adapter.image_size,) * 2)
    theirs = adapter.processor(text=adapter.format_prompt(question), images=[square])
    assert ours == list(theirs["input_ids"][0])
    assert ours.count(adapter.image_token_id) == adapter.num_image_tokens == 16
    answer = adapter.encode(question, "local defect").answer_ids
    assert adapter.tokenizer.convert_ids_to_tokens(answer[-1:]) == ["<|im_end|>"]
    assert adapter.tokenizer.decode(answer[:-1]) == "local defect"


def test_fixed_grid_for_any_aspect_ratio(adapter, images, feats):
    px = adapter.preprocess(images)
    ip = adapter.processor.image_processor
    patches = (adapter.image_size // ip.patch_size) ** 2
    assert px.shape == (len(images), patches, 3 * ip.temporal_patch_size * ip.patch_size**2)
    vision = adapter.model.config.vision_config
    assert feats.shape == (len(images), patches, vision.embed_dim)
    assert adapter.project(feats).shape == (len(images), patches // 4, vision.hidden_size)


def test_features_are_what_the_merger_sees(adapter, images, feats):
    px = adapter.preprocess(images[:3])
    with torch.no_grad():
        out = adapter.model.model.get_image_features(px.reshape(-1, px.shape[-1]), adapter._grids(3), return_dict=True)
    torch.testing.assert_close(feats[:3].reshape(-1, feats.shape[-1]), out.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adapter.project(feats[:3]), torch.stack(list(out.pooler_output)), atol=1e-5, rtol=1e-5)


def test_parts_partition_the_model(adapter):
    parts = {k: {id(p) for p in m.parameters()} for k, m in adapter.parts().items()}
    assert not (parts["vision"] & parts["projector"]) and not (parts["vision"] & parts["llm"])
    assert not (parts["projector"] & parts["llm"])
    assert set().union(*parts.values()) == {id(p) for p in adapter.model.parameters()}
    assert {id(p) for p in adapter.model.model.visual.merger.parameters()} == parts["projector"]


def test_rope_positions_are_three_dimensional(adapter):
    batch = collate([adapter.encode("q"), adapter.encode("a longer question")], adapter.pad_token_id, False)
    pos, deltas = adapter.rope_positions(batch["input_ids"], batch["attention_mask"])
    ip = adapter.processor.image_processor
    grid = adapter.image_size // (ip.patch_size * ip.merge_size)  # LLM tokens per side
    assert deltas.flatten().tolist() == [grid - grid**2] * 2  # nonzero: continuations must shift by it
    row = 1  # the longer prompt: no padding
    img = (batch["input_ids"][row] == adapter.image_token_id).nonzero().flatten()
    start = int(pos[0, row, img[0]])
    assert pos[1, row, img].view(grid, grid)[:, 0].tolist() == list(range(start, start + grid))  # height
    assert pos[2, row, img].view(grid, grid)[0].tolist() == list(range(start, start + grid))  # width
    # Text after the image: the 1-D position plus the delta, in all three components.
    after = img[-1] + 1
    assert pos[:, row, after].tolist() == [int(batch["position_ids"][row, after]) + grid - grid**2] * 3


def test_cached_path_equals_full_forward_with_left_padding(adapter, images, feats):
    px = adapter.preprocess(images[:3])
    questions = ["short", build_question(DOMAIN, CLASSES, 0, "a"), "a bit longer question"]
    batch = collate([adapter.encode(q, "nominal") for q in questions], adapter.pad_token_id, with_answer=True)
    args = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    with torch.no_grad():
        cached = adapter.lm_forward(*args, adapter.project(feats[:3])).logits
        full = adapter.full_forward(*args, px).logits  # the model's own M-RoPE from pixels, grid and token types
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


def full_sequence_scores(adapter, feats, questions):
    """Reference class scores: one uncached forward of prompt + answer per class, summed answer log-probs."""
    out = torch.empty(len(questions), len(CLASSES))
    with torch.no_grad():
        for j, c in enumerate(CLASSES):
            batch = collate([adapter.encode(q, c) for q in questions], adapter.pad_token_id, with_answer=True)
            logits = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                        adapter.project(feats)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            labels = batch["labels"][:, 1:]
            tok = logp.gather(2, labels.clamp(min=0)[..., None]).squeeze(-1)
            out[:, j] = (tok * (labels != IGNORE)).sum(-1)
    return out


def test_kv_cache_scoring_equals_full_sequences(adapter, feats):
    questions = [build_question(DOMAIN, CLASSES, 0, f"u{i}") + " x" * i for i in range(3)]
    expected = full_sequence_scores(adapter, feats[:3], questions)
    got = score_batch(adapter, feats[:3], questions, class_answer_ids(adapter, CLASSES))
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    # The check has teeth: continuing the cache without the rope delta gives other scores.
    wrong = score_batch(_NoDelta(adapter), feats[:3], questions, class_answer_ids(adapter, CLASSES))
    assert (wrong - expected).abs().max() > 1e-4


class _NoDelta:
    """The adapter, but continuations forget the prompt's rope delta (what a 1-D position scheme would do)."""

    def __init__(self, adapter):
        self._a = adapter

    def __getattr__(self, name):
        return getattr(self._a, name)

    def lm_forward(self, input_ids, attention_mask, position_ids, image_embeds, *, past_key_values=None,
                   use_cache=False):
        out = self._a.lm_forward(input_ids, attention_mask, position_ids, image_embeds,
                                 past_key_values=past_key_values, use_cache=use_cache)
        if past_key_values is None:
            deltas = out.cache.projbench_rope_deltas
            out.cache.projbench_rope_deltas = torch.zeros_like(deltas)
        return out


def test_scores_batch_invariant(adapter, feats):
    answers = class_answer_ids(adapter, CLASSES)
    questions = [build_question(DOMAIN, CLASSES, 0, f"u{i}") + " x" * i for i in range(4)]
    together = score_batch(adapter, feats[:4], questions, answers)
    alone = torch.cat([score_batch(adapter, feats[i: i + 1], [q], answers) for i, q in enumerate(questions)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    chunked = score_batch(adapter, feats[:4], questions, answers, max_rows=4)  # cache repeated once per class
    torch.testing.assert_close(chunked, together, atol=1e-5, rtol=1e-5)


def test_continuation_needs_the_adapters_cache(adapter, feats):
    from transformers import DynamicCache

    batch = collate([adapter.encode("q")], adapter.pad_token_id, with_answer=False)
    foreign = adapter.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            use_cache=True).cache
    assert isinstance(foreign, DynamicCache)
    ids = torch.tensor([[5]])
    with pytest.raises(ValueError, match="M-RoPE deltas"):
        adapter.lm_forward(ids, torch.ones(1, batch["input_ids"].shape[1] + 1, dtype=torch.long),
                           torch.tensor([[batch["input_ids"].shape[1]]]), None, past_key_values=foreign)


def test_one_ft_proj_step_changes_only_the_merger(real_images):
    adapter = load()  # a fresh copy: training changes weights
    px = adapter.preprocess([im for im, _ in real_images[:4]])
    store, samples = MemoryStore(adapter.vision_features(px)), samples_for(real_images[:4])
    before = {k: v.detach().clone() for k, v in adapter.model.named_parameters()}
    finetune(adapter, "ft-proj", store=store, samples=samples,
             classes=CLASSES, domain=DOMAIN, seed=0, cfg=TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0),
             progress=False)
    moved = {k for k, v in adapter.model.named_parameters() if not torch.equal(before[k], v.detach())}
    assert moved == {f"model.visual.merger.{k}" for k, _ in adapter.projector_module().named_parameters()}
