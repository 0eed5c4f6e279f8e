"""BLIP-2 and InstructBLIP adapters on their tiny twins: what is specific to a Q-Former projector.

The generic checks (shapes, freezing, batch invariance, ...) also run for these adapters in
``test_conformance.py``; here: the three-part projector, the image placeholders before BOS, the ViT features
the Q-Former really reads, InstructBLIP's fixed Q-Former instruction, the KV-cache path with OPT's learned
positions, and half-precision loading (fp16 keeps the Q-Former in fp32).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.adapters.blip2 import ADAPTERS, DEFAULT_QFORMER_INSTRUCTION, InstructBlipAdapter
from benchmark.conformance import MemoryStore, samples_for
from benchmark.evaluate.batching import collate, positions
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from benchmark.train.loop import TrainConfig, finetune, projector_state

SPECS = {s.name: s for s in ADAPTERS}
TINY = ["blip2-tiny", "instructblip-tiny"]
CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"
PROJECTOR_PREFIXES = ("qformer.", "query_tokens", "language_projection.")


def load(name, **kwargs):
    return SPECS[name].factory(device="cpu", **kwargs)


@pytest.fixture(scope="module", params=TINY)
def frozen(request):
    """One adapter per twin for the read-only tests (the training tests load their own)."""
    return load(request.param)


@pytest.fixture(scope="module")
def pixels(frozen, real_images):
    return frozen.preprocess([im for im, _ in real_images[:5]])


def image_inputs(adapter, px):
    """What the model's own forward passes to get_image_features besides pixels (InstructBLIP's instruction)."""
    return adapter.qformer_text_inputs(px.shape[0])


def prompts(adapter, n, with_answer=False):
    # Different lengths, so that the batch is left-padded.
    qs = [build_question(DOMAIN, CLASSES, 0, f"u{i}") + " x" * i for i in range(n)]
    parts = [adapter.encode(q, CLASSES[i % 3] if with_answer else None) for i, q in enumerate(qs)]
    return collate(parts, adapter.pad_token_id, with_answer=with_answer)


def test_registered_with_q_former_family():
    specs = {s.name: s for s in Plugins(autoload=False).adapters}
    for name in ("blip2", "instructblip", *TINY):
        assert specs[name].projector_family == "q-former"
        for part in ("qformer", "query_tokens", "language_projection"):
            assert part in specs[name].projector_modules
    assert specs["blip2"].checkpoint == "Salesforce/blip2-opt-2.7b"
    assert specs["instructblip"].checkpoint == "Salesforce/instructblip-vicuna-7b"
    assert specs["blip2-tiny"].tiny and specs["instructblip-tiny"].tiny


def test_twins_load_from_saved_directory(frozen):
    import transformers

    ckpt = Path(frozen.checkpoint)
    assert (ckpt / "config.json").exists() and list(ckpt.glob("*.safetensors"))
    assert type(frozen.model) is getattr(transformers, frozen.model_class)
    assert frozen.model.config.use_decoder_only_language_model
    assert frozen.num_image_tokens == frozen.model.config.num_query_tokens == 32
    # The queries of a twin are random (the model's own init would make all 32 query outputs identical).
    assert frozen.model.query_tokens.std() > 0
    if isinstance(frozen, InstructBlipAdapter):
        assert frozen.processor.qformer_tokenizer is not None


def test_projector_is_exactly_qformer_queries_and_language_projection(frozen):
    model_params = {id(p): n for n, p in frozen.model.named_parameters()}
    proj = {model_params[id(p)] for p in frozen.projector_module().parameters()}
    expected = {n for n in model_params.values() if n.startswith(PROJECTOR_PREFIXES)}
    assert proj == expected and "query_tokens" in proj
    # Saved keys are the model's own names: the file loads straight into the model.
    keys = set(projector_state(frozen))
    assert keys == expected
    # The three parts do not overlap the vision encoder or the LLM.
    others = {id(p) for name in ("vision", "llm") for p in frozen.parts()[name].parameters()}
    assert not others & {id(p) for p in frozen.projector_module().parameters()}


def test_features_are_what_the_qformer_reads(frozen, pixels):
    feats = frozen.vision_features(pixels)
    n_patches = (frozen.model.config.vision_config.image_size // frozen.model.config.vision_config.patch_size) ** 2
    assert feats.shape == (5, 1 + n_patches, frozen.model.config.vision_config.hidden_size)
    with torch.no_grad():
        ref = frozen.model.get_image_features(pixels, **image_inputs(frozen, pixels), return_dict=True)
        tokens = frozen.project(feats)
    torch.testing.assert_close(feats, ref.last_hidden_state, atol=0, rtol=0)  # post-layernorm ViT output
    assert tokens.shape == (5, 32, frozen.model.config.text_config.hidden_size)
    torch.testing.assert_close(tokens, ref.pooler_output, atol=1e-6, rtol=1e-6)


def test_prompt_ids_match_the_models_own_processor(frozen, real_images):
    q = build_question(DOMAIN, CLASSES, 0, "a")
    ids = frozen.processor(images=[real_images[0][0]], text=frozen.format_prompt(q))["input_ids"][0]
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    assert frozen.encode(q).prompt_ids == ids
    assert ids[:32] == [frozen.image_token_id] * 32 and ids[32] == frozen.tokenizer.bos_token_id


def test_cached_path_equals_full_forward_with_left_padding(frozen, pixels):
    batch = prompts(frozen, 5, with_answer=True)
    assert (batch["attention_mask"] == 0).any(), "the batch should be left-padded"
    with torch.no_grad():
        cached = frozen.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                   frozen.project(frozen.vision_features(pixels))).logits
        full = frozen.full_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], pixels).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


def test_image_placeholders_are_required(frozen, pixels):
    embeds = frozen.project(frozen.vision_features(pixels[:2]))
    batch = prompts(frozen, 2)
    ids, mask, pos = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    text_only = ids.masked_fill(ids == frozen.image_token_id, frozen.tokenizer.bos_token_id)
    with pytest.raises(ValueError, match="image placeholder"):
        frozen.lm_forward(text_only, mask, pos, embeds)
    with pytest.raises(ValueError, match="image placeholder"):
        frozen.lm_forward(ids, mask, pos, embeds[:, :-1])           # 31 tokens for 32 placeholders
    with pytest.raises(ValueError, match="no image_embeds"):
        frozen.lm_forward(ids, mask, pos, None)


def test_kv_cache_continuation_equals_one_forward(frozen, pixels):
    """The loglik path: prompt with a cache, then the answer with explicit positions (OPT: learned positions)."""
    batch = prompts(frozen, 3)
    answer = torch.tensor([frozen.encode("", "global defect").answer_ids] * 3)
    embeds = frozen.project(frozen.vision_features(pixels[:3]))
    mask = batch["attention_mask"]
    with torch.no_grad():
        first = frozen.lm_forward(batch["input_ids"], mask, batch["position_ids"], embeds, use_cache=True)
        full_mask = torch.cat([mask, torch.ones_like(answer)], dim=1)
        cont = frozen.lm_forward(answer, full_mask, positions(torch.ones_like(answer), mask.sum(-1)), None,
                                 past_key_values=first.cache, use_cache=True)
        ids = torch.cat([batch["input_ids"], answer], dim=1)
        whole = frozen.lm_forward(ids, full_mask, positions(full_mask), embeds)
    torch.testing.assert_close(cont.logits, whole.logits[:, -answer.shape[1]:], atol=1e-5, rtol=1e-5)


def test_class_scores_do_not_depend_on_batch_size(frozen, pixels):
    store = MemoryStore(frozen.vision_features(pixels))
    answers = class_answer_ids(frozen, CLASSES)
    qs = [build_question(DOMAIN, CLASSES, 0, f"u{i}") + " x" * i for i in range(5)]
    together = score_batch(frozen, store.get(range(5)), qs, answers)
    alone = torch.cat([score_batch(frozen, store.get([i]), [q], answers) for i, q in enumerate(qs)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert together.argmax(-1).tolist() == alone.argmax(-1).tolist()


@pytest.mark.parametrize("name", TINY)
def test_ft_proj_step_changes_only_the_projector(name, real_images):
    adapter = load(name)
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in real_images[:4]])))
    before = {k: v.detach().clone() for k, v in adapter.model.named_parameters()}
    stats = finetune(adapter, "ft-proj", store=store, samples=samples_for(real_images[:4]),
                     classes=CLASSES, domain=DOMAIN, seed=0,
                     cfg=TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0), progress=False)
    assert stats["optimizer_steps"] == 1
    moved = {k for k, v in adapter.model.named_parameters() if not torch.equal(before[k], v.detach())}
    assert moved and all(k.startswith(PROJECTOR_PREFIXES) for k in moved), sorted(moved)[:5]
    assert "query_tokens" in moved
    assert any(k.startswith("qformer.") for k in moved) and any(k.startswith("language_projection.") for k in moved)
    assert stats["trainable_parameters"] == sum(p.numel() for p in adapter.projector_module().parameters())


def test_ft_e2e_lora_on_opt_targets_its_own_layer_names(real_images):
    adapter = load("blip2-tiny")
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in real_images[:4]])))
    # By parameter object: LoRA renames the wrapped layers (``.base_layer.``) but keeps their weights.
    before = {id(v): (k, v.detach().clone()) for k, v in adapter.model.named_parameters()}
    finetune(adapter, "ft-e2e", store=store, samples=samples_for(real_images[:4]),
             classes=CLASSES, domain=DOMAIN, seed=0,
             cfg=TrainConfig(lr=1e-2, batch_size=4, lora=True, warmup_ratio=0.0), progress=False)
    params = list(adapter.model.named_parameters())
    lora = [k for k, _ in params if "lora_" in k]
    assert any(".out_proj." in k for k in lora) and any(".fc1." in k for k in lora)
    assert all(k.startswith("language_model.") for k in lora), "LoRA goes into the LLM only"
    moved = {before[id(v)][0] for _, v in params if id(v) in before and not torch.equal(before[id(v)][1], v.detach())}
    assert moved and all(k.startswith(PROJECTOR_PREFIXES) for k in moved), "LLM base weights stay frozen"


def test_instructblip_qformer_instruction_is_fixed_and_configurable(real_images):
    default = load("instructblip-tiny")
    other = load("instructblip-tiny", qformer_instruction="Describe the fabric.")
    assert default.qformer_instruction == DEFAULT_QFORMER_INSTRUCTION
    px = default.preprocess([im for im, _ in real_images[:2]])
    feats = default.vision_features(px)
    with torch.no_grad():
        a, b = default.project(feats), other.project(feats)
        # The same image gives the same tokens whatever the prompt: Hv depends on the image alone.
        torch.testing.assert_close(default.project(feats[:1]), a[:1])
        assert not torch.allclose(a, b), "the instruction must reach the Q-Former"
        ref = other.model.get_image_features(px, **image_inputs(other, px), return_dict=True).pooler_output
    torch.testing.assert_close(b, ref, atol=1e-6, rtol=1e-6)
    assert default.preprocessing_signature() == other.preprocessing_signature(), "ViT features are shared"


def test_blip2_rejects_unknown_options():
    with pytest.raises(TypeError, match="qformer_instruction"):
        load("blip2-tiny", qformer_instruction="x")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", TINY)
def test_half_precision_keeps_cached_path_equal_to_model(name, dtype, real_images):
    """In fp16 the model keeps query tokens (and BLIP-2's whole Q-Former) in fp32: project must cast as it does."""
    adapter = load(name, dtype=dtype)
    assert adapter.dtype == getattr(torch, dtype)
    if dtype == "float16":
        assert adapter.model.query_tokens.dtype == torch.float32
        if not isinstance(adapter, InstructBlipAdapter):
            assert adapter.model.qformer.layernorm.weight.dtype == torch.float32
    px = adapter.preprocess([im for im, _ in real_images[:2]])
    batch = prompts(adapter, 2)
    with torch.no_grad():
        tokens = adapter.project(adapter.vision_features(px))
        ref = adapter.model.get_image_features(px, **image_inputs(adapter, px), return_dict=True).pooler_output
        cached = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], tokens)
        full = adapter.full_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], px)
    assert tokens.dtype == adapter.dtype
    torch.testing.assert_close(tokens, ref, atol=0, rtol=0)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached.logits[real], full.logits[real], atol=0, rtol=0)
