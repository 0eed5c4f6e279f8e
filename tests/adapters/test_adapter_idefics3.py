"""Idefics3 / SmolVLM adapter (pixel-shuffle connector), on its tiny twins loaded back with ``from_pretrained``.

The generic checks live in ``test_conformance.py``; these pin what is specific to this family: the image block
the processor writes, the fixed token count with image splitting off, and what exactly the connector sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.conformance import MemoryStore, samples_for
from benchmark.evaluate.batching import collate
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from benchmark.train.loop import TrainConfig, finetune

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


def load(name):
    return Plugins(autoload=False).adapters.get(name).factory(device="cpu")


@pytest.fixture(scope="module", params=["smolvlm-tiny", "idefics3-tiny"])
def adapter(request):
    return load(request.param)



def test_registered_specs():
    reg = Plugins(autoload=False).adapters
    for name in ("smolvlm", "idefics3", "smolvlm-tiny", "idefics3-tiny"):
        spec = reg.get(name)
        assert spec.projector_family == "pixel-shuffle"
        assert spec.projector_modules.startswith("model.connector")
    assert reg.get("smolvlm").checkpoint == "HuggingFaceTB/SmolVLM-256M-Instruct"
    assert reg.get("idefics3").checkpoint == "HuggingFaceM4/Idefics3-8B-Llama3"


def test_loaded_from_saved_directory(adapter):
    from transformers import Idefics3ForConditionalGeneration

    assert type(adapter.model) is Idefics3ForConditionalGeneration
    assert (Path(adapter.checkpoint) / "config.json").exists()
    assert adapter.processor.chat_template  # prompts come from the saved chat template


def test_prompt_matches_the_processor(adapter, images):
    """The adapter's ids are the model's own processor's ids for the same text and one unsplit image."""
    question = build_question(DOMAIN, CLASSES, 0, "img000")
    ours = adapter.encode(question).prompt_ids
    theirs = adapter.processor(text=adapter.format_prompt(question), images=[images[0]], add_special_tokens=False)
    assert ours == list(theirs["input_ids"][0])
    block = adapter._image_block
    tok = adapter.tokenizer.convert_ids_to_tokens(block)
    assert tok[:2] == ["<fake_token_around_image>", "<global-img>"] and tok[-1] == "<fake_token_around_image>"
    assert tok[2:-1] == ["<image>"] * adapter.num_image_tokens
    assert adapter.tokenizer.convert_ids_to_tokens(ours[:1]) in (["<|im_start|>"], ["<s>"])  # BOS exactly once
    assert ours.count(ours[0]) == 1


def test_answer_ends_with_end_of_utterance(adapter):
    ids = adapter.encode("q", "local defect").answer_ids
    assert adapter.tokenizer.convert_ids_to_tokens(ids[-1:]) == ["<end_of_utterance>"]
    assert adapter.tokenizer.decode(ids[:-1]) == " local defect"


def test_fixed_token_count_without_splitting(adapter, images):
    px = adapter.preprocess(images)
    side = adapter.processor.image_processor.max_image_size["longest_edge"]
    assert px.shape == (len(images), 1, 3, side, side)  # one view per image, whatever its size
    feats = adapter.vision_features(px)
    cfg = adapter.model.config
    patches = (side // cfg.vision_config.patch_size) ** 2
    assert feats.shape == (len(images), patches, cfg.vision_config.hidden_size)
    tokens = adapter.project(feats)
    assert tokens.shape == (len(images), patches // cfg.scale_factor**2, cfg.text_config.hidden_size)
    assert adapter.num_image_tokens == tokens.shape[1]


def test_features_are_what_the_connector_sees(adapter, images):
    px = adapter.preprocess(images[:3])
    with torch.no_grad():
        theirs = adapter.model.model.get_image_features(px, return_dict=True).pooler_output
        ours = adapter.project(adapter.vision_features(px))
    torch.testing.assert_close(ours, torch.stack(list(theirs)), atol=1e-6, rtol=1e-6)


def test_parts_partition_the_model(adapter):
    parts = {k: {id(p) for p in m.parameters()} for k, m in adapter.parts().items()}
    assert not (parts["vision"] & parts["projector"]) and not (parts["vision"] & parts["llm"])
    assert not (parts["projector"] & parts["llm"])
    assert set().union(*parts.values()) == {id(p) for p in adapter.model.parameters()}
    assert [n for n, _ in adapter.projector_module().named_parameters()] == ["modality_projection.proj.weight"]


def test_cached_path_equals_full_forward_with_left_padding(adapter, images):
    px = adapter.preprocess(images[:3])
    questions = ["short", build_question(DOMAIN, CLASSES, 0, "a"), "a bit longer question"]
    batch = collate([adapter.encode(q, "nominal") for q in questions], adapter.pad_token_id, with_answer=True)
    args = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    with torch.no_grad():
        cached = adapter.lm_forward(*args, adapter.project(adapter.vision_features(px))).logits
        full = adapter.full_forward(*args, px).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


def test_scores_batch_invariant(adapter, images):
    feats = adapter.vision_features(adapter.preprocess(images[:4]))
    answers = class_answer_ids(adapter, CLASSES)
    questions = [build_question(DOMAIN, CLASSES, 0, f"u{i}") + " x" * i for i in range(4)]
    together = score_batch(adapter, feats, questions, answers)
    alone = torch.cat([score_batch(adapter, feats[i: i + 1], [q], answers) for i, q in enumerate(questions)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_one_ft_proj_step_changes_only_the_connector(real_images):
    adapter = load("smolvlm-tiny")  # a fresh copy: training changes weights
    px = adapter.preprocess([im for im, _ in real_images[:4]])
    store, samples = MemoryStore(adapter.vision_features(px)), samples_for(real_images[:4])
    before = {k: v.detach().clone() for k, v in adapter.model.named_parameters()}
    finetune(adapter, "ft-proj", store=store, samples=samples,
             classes=CLASSES, domain=DOMAIN, seed=0, cfg=TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0),
             progress=False)
    moved = [k for k, v in adapter.model.named_parameters() if not torch.equal(before[k], v.detach())]
    assert moved == ["model.connector.modality_projection.proj.weight"]
