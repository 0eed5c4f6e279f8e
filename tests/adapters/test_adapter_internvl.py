"""InternVL adapter (InternViT -> pixel shuffle -> LayerNorm-MLP -> Qwen2), on its tiny twin loaded back with
``from_pretrained``.

The generic checks live in the conformance suite; these pin what is specific to this family: the ``<img>`` frame
the processor writes, no BOS, the fixed token count with tiling off, what the projector sees (the pixel-shuffled
features), the stacked ``pooler_output``, and the published configuration `plan` builds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.evaluate.batching import collate
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


def load(name="internvl3-tiny"):
    return Plugins(autoload=False).adapters.get(name).factory(device="cpu")


@pytest.fixture(scope="module")
def adapter():
    return load()



def test_registered_specs():
    reg = Plugins(autoload=False).adapters
    for name in ("internvl3", "internvl3-tiny"):
        assert reg.get(name).projector_family == "pixel-shuffle-mlp"
        assert reg.get(name).projector_modules.startswith("model.multi_modal_projector")
    assert reg.get("internvl3").checkpoint == "OpenGVLab/InternVL3-1B-hf"
    assert reg.get("internvl3-tiny").tiny


def test_published_architecture_builds_on_meta():
    """`plan`'s configuration: InternViT-300M (24 x 1024), the projector's size by hand, Qwen2.5-0.5B's shapes."""
    arch = Plugins(autoload=False).adapters.get("internvl3").architecture()
    with torch.device("meta"):
        model = arch.build()
    parts = arch.parts(model)
    d_in, d_llm = 1024 * 4, 896  # 2x2 pixel shuffle of width 1024; Qwen2.5-0.5B width
    by_hand = 2 * d_in + (d_in * d_llm + d_llm) + (d_llm * d_llm + d_llm)  # LayerNorm, linear_1, linear_2
    assert sum(p.numel() for p in parts["projector"].parameters()) == by_hand
    assert len(parts["vision"].encoder.layer) == 24 and arch.llm_config.num_hidden_layers == 24
    assert (arch.image_tokens, arch.feature_shape) == ((448 // 14) ** 2 // 4, (256, d_in))
    with torch.device("meta"):
        feats = arch.vision(model, torch.empty(2, 3, 448, 448))
    assert tuple(feats.shape) == (2, *arch.feature_shape)


def test_loaded_from_saved_directory(adapter):
    from transformers import InternVLForConditionalGeneration

    assert type(adapter.model) is InternVLForConditionalGeneration
    assert (Path(adapter.checkpoint) / "config.json").exists()
    assert adapter.processor.chat_template  # prompts come from the saved chat template


def test_prompt_matches_the_processor_with_its_image_frame_and_no_bos(adapter, images):
    question = build_question(DOMAIN, CLASSES, 0, "img000")
    ours = adapter.encode(question).prompt_ids
    theirs = adapter.processor(text=adapter.format_prompt(question), images=[images[4]], crop_to_patches=False)
    assert ours == list(theirs["input_ids"][0])
    toks = adapter.tokenizer.convert_ids_to_tokens(ours)
    start = toks.index("<img>")
    assert toks[start + 1: start + 1 + adapter.num_image_tokens] == ["<IMG_CONTEXT>"] * adapter.num_image_tokens
    assert toks[start + 1 + adapter.num_image_tokens] == "</img>"
    assert toks[0] == "<|im_start|>" and "<s>" not in toks  # Qwen2's tokenizer prepends no BOS


def test_answer_follows_the_cue_and_ends_with_im_end(adapter):
    ids = adapter.encode("q", "local defect").answer_ids
    assert adapter.tokenizer.convert_ids_to_tokens(ids[-1:]) == ["<|im_end|>"]
    assert adapter.tokenizer.decode(ids[:-1]) == "local defect"


def test_fixed_token_count_with_tiling_off(adapter, images):
    px = adapter.preprocess(images)
    side = adapter.processor.image_processor.size["height"]
    assert px.shape == (len(images), 3, side, side)  # one tile per image, whatever its size
    tiled = adapter.processor.image_processor(images=images[4:5], crop_to_patches=True)["pixel_values"]
    assert len(tiled) > 1  # the processor's default would tile this 97x31 image: the switch matters
    cfg = adapter.model.config
    patches = (side // cfg.vision_config.patch_size[0]) ** 2
    feats = adapter.vision_features(px)
    assert feats.shape == (len(images), patches // 4, 4 * cfg.vision_config.hidden_size)
    assert adapter.project(feats).shape == (len(images), adapter.num_image_tokens, cfg.text_config.hidden_size)
    assert adapter.num_image_tokens == patches // 4


def test_features_are_what_the_projector_sees(adapter, images):
    px = adapter.preprocess(images[:3])
    seen = []
    hook = adapter.projector_module().register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            theirs = adapter.model.model.get_image_features(px, return_dict=True).pooler_output
    finally:
        hook.remove()
    torch.testing.assert_close(adapter.vision_features(px), seen[0], atol=0, rtol=0)
    torch.testing.assert_close(adapter.project(adapter.vision_features(px)), theirs, atol=1e-6, rtol=1e-6)


def test_parts_partition_the_model(adapter):
    parts = {k: {id(p) for p in m.parameters()} for k, m in adapter.parts().items()}
    assert not (parts["vision"] & parts["projector"]) and not (parts["vision"] & parts["llm"])
    assert not (parts["projector"] & parts["llm"])
    assert set().union(*parts.values()) == {id(p) for p in adapter.model.parameters()}
    assert sorted(n for n, _ in adapter.projector_module().named_parameters()) == [
        "layer_norm.bias", "layer_norm.weight", "linear_1.bias", "linear_1.weight", "linear_2.bias", "linear_2.weight"]


def test_cached_path_needs_a_stacked_pooler_output_and_equals_full_forward(adapter, images):
    px = adapter.preprocess(images[:3])
    questions = ["short", build_question(DOMAIN, CLASSES, 0, "a"), "a bit longer question"]
    batch = collate([adapter.encode(q, "nominal") for q in questions], adapter.pad_token_id, with_answer=True)
    args = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    tokens = adapter.project(adapter.vision_features(px))
    with torch.no_grad():
        cached = adapter.lm_forward(*args, tokens).logits
        full = adapter.full_forward(*args, px).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)
    adapter.stacked_image_embeds = False  # the default list of per-image tensors
    try:
        with pytest.raises(AttributeError, match="'list' object has no attribute"):
            adapter.lm_forward(*args, tokens)
    finally:
        del adapter.stacked_image_embeds
