"""LiMBeR/Venhoff-style adapter: parts loaded back from disk, the splice into Gemma-2, projector files, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from benchmark.adapters.limber import ADAPTERS, LimberAdapter, load_limber_tiny
from benchmark.conformance import MemoryStore, samples_for
from benchmark.errors import ModelLoadError
from benchmark.evaluate.batching import collate
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.prompt import build_question
from benchmark.train.loop import TrainConfig, finetune

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


@pytest.fixture(scope="module")
def adapter(hermetic_cache):
    return load_limber_tiny(cache_dir=hermetic_cache)


@pytest.fixture(scope="module")
def encoded(adapter, real_images):
    px = adapter.preprocess([im for im, _ in real_images])
    return px, MemoryStore(adapter.vision_features(px)), samples_for(real_images)


def question(uid: str) -> str:
    return build_question(DOMAIN, CLASSES, 0, uid)


def parts_dir(adapter, tmp_path, manifest=None, projector=True):
    """A copy of the tiny twin's parts directory, optionally with another config.json / without projector."""
    src = adapter.checkpoint
    out = tmp_path / "limber"
    shutil.copytree(src, out)
    if manifest is not None:
        (out / "config.json").write_text(json.dumps(manifest))
    if not projector:
        (out / "projector.safetensors").unlink()
    return out


def test_parts_are_real_classes_loaded_back_from_disk(adapter):
    from pathlib import Path

    from transformers import CLIPVisionModel, Gemma2ForCausalLM

    ckpt = Path(adapter.checkpoint)
    assert {p.name for p in ckpt.iterdir()} >= {"vision", "llm", "projector.safetensors", "config.json"}
    assert isinstance(adapter.vision_module(), CLIPVisionModel)
    assert isinstance(adapter.llm_module(), Gemma2ForCausalLM)
    assert type(adapter.projector_module()) is torch.nn.Linear
    saved = load_file(str(ckpt / "projector.safetensors"))
    torch.testing.assert_close(adapter.projector_module().weight.detach(), saved["weight"], atol=0, rtol=0)
    assert {s.projector_family for s in ADAPTERS} == {"linear"}


def test_prompt_is_gemma_chat_with_image_after_bos(adapter):
    parts = adapter.encode("What is it?", "local defect")
    n = adapter.num_image_tokens
    assert parts.prompt_ids[0] == adapter.tokenizer.bos_token_id
    assert parts.prompt_ids[1: 1 + n] == [adapter.image_token_id] * n
    assert adapter.image_token_id not in parts.prompt_ids[1 + n:]
    text = adapter.tokenizer.decode(parts.prompt_ids[1 + n:] + parts.answer_ids)
    assert text == "<start_of_turn>user\nWhat is it?<end_of_turn>\n<start_of_turn>model\nlocal defect<end_of_turn>"
    assert parts.answer_ids[-1] == adapter.tokenizer.convert_tokens_to_ids("<end_of_turn>")


def test_shapes(adapter, encoded):
    _, store, _ = encoded
    feats = store.get(range(3))
    assert adapter.num_image_tokens == 16  # 28 px / 7 px patches, CLS dropped
    assert feats.shape == (3, 16, adapter.vision_module().config.hidden_size)
    assert adapter.project(feats).shape == (3, 16, adapter.llm_module().config.hidden_size)


def test_image_tokens_replace_the_placeholders_and_text_keeps_gemmas_embedding(adapter, encoded):
    _, store, samples = encoded
    batch = collate([adapter.encode(question(s.uid) + " x" * i) for i, s in enumerate(samples[:2])],
                    adapter.pad_token_id, with_answer=False)
    tokens = adapter.project(store.get(range(2)))
    seen = {}
    hook = adapter.llm_module().register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True)
    try:
        with torch.no_grad():
            adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], tokens)
    finally:
        hook.remove()
    slots = batch["input_ids"] == adapter.image_token_id
    torch.testing.assert_close(seen["embeds"][slots], tokens.detach().reshape(-1, tokens.shape[-1]))
    text = adapter.llm_module().get_input_embeddings()(batch["input_ids"])  # scaled by sqrt(hidden)
    torch.testing.assert_close(seen["embeds"][~slots], text[~slots])


@pytest.mark.parametrize("with_answer", [True, False])
def test_cached_features_equal_full_forward(adapter, encoded, with_answer):
    px, store, samples = encoded
    parts = [adapter.encode(question(s.uid) + " x" * i, CLASSES[s.label]) for i, s in enumerate(samples[:3])]
    batch = collate(parts, adapter.pad_token_id, with_answer=with_answer)
    args = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    with torch.no_grad():
        cached = adapter.lm_forward(*args, adapter.project(store.get(range(3)))).logits
        full = adapter.full_forward(*args, px[:3]).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


def test_cached_class_scores_equal_one_forward_per_class(adapter, encoded):
    # Exercises Gemma-2's hybrid (sliding + full) cache through repeat and crop.
    _, store, samples = encoded
    answers = class_answer_ids(adapter, CLASSES)
    q = question(samples[2].uid)
    scores = score_batch(adapter, store.get([2]), [q], answers, max_rows=2)[0]
    embeds = adapter.project(store.get([2]))
    for c, ans in enumerate(answers):
        parts = adapter.encode(q, CLASSES[c])
        batch = collate([parts], adapter.pad_token_id, with_answer=True)
        with torch.no_grad():
            logits = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                        embeds).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        start = len(parts.prompt_ids)
        brute = sum(logp[start + i - 1, t] for i, t in enumerate(ans))
        torch.testing.assert_close(scores[c], brute, atol=1e-5, rtol=1e-5)


def test_scores_do_not_depend_on_batch_size(adapter, encoded):
    _, store, samples = encoded
    answers = class_answer_ids(adapter, CLASSES)
    questions = [question(s.uid) + " x" * (i % 3) for i, s in enumerate(samples[:6])]
    together = score_batch(adapter, store.get(range(6)), questions, answers)
    alone = torch.cat([score_batch(adapter, store.get([i]), [q], answers) for i, q in enumerate(questions)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_ft_proj_step_changes_only_the_projector(hermetic_cache, encoded):
    fresh = load_limber_tiny(cache_dir=hermetic_cache)
    _, store, samples = encoded
    before = {k: v.detach().clone() for k, v in fresh.model.named_parameters()}
    finetune(fresh, "ft-proj", store=store, samples=samples[:8],
             classes=CLASSES, domain=DOMAIN, seed=0, cfg=TrainConfig(lr=1e-2, warmup_ratio=0.0), progress=False)
    moved = {k for k, v in fresh.model.named_parameters() if not torch.equal(before[k], v.detach())}
    assert moved == {"multi_modal_projector.weight", "multi_modal_projector.bias"}


def test_loads_a_torch_projector_file_with_a_wrapper_prefix(adapter, tmp_path):
    # Venhoff et al. release projector_<llm>_<stage>.pth; DDP-saved ones carry "module.".
    d = parts_dir(adapter, tmp_path, projector=False)
    lin = torch.nn.Linear(*adapter.projector_module().weight.shape[::-1])
    torch.save({"module.weight": lin.weight.detach(), "module.bias": lin.bias.detach()}, d / "projector.pth")
    loaded = LimberAdapter("limber-gemma2-tiny", d)
    torch.testing.assert_close(loaded.projector_module().weight.detach(), lin.weight.detach(), atol=0, rtol=0)


def test_missing_projector_gives_a_seeded_random_one_and_says_so(adapter, tmp_path):
    d = parts_dir(adapter, tmp_path, projector=False)
    with pytest.warns(UserWarning, match="no trained projector"):
        a = LimberAdapter("limber-gemma2-tiny", d)
    with pytest.warns(UserWarning):
        b = LimberAdapter("limber-gemma2-tiny", d)
    assert torch.equal(a.projector_module().weight, b.projector_module().weight)


def test_projector_of_the_wrong_width_is_refused(adapter, tmp_path):
    d = parts_dir(adapter, tmp_path, projector=False)
    torch.save({"weight": torch.zeros(5, 7), "bias": torch.zeros(5)}, d / "projector.pt")
    with pytest.raises(ModelLoadError, match="does not fit"):
        LimberAdapter("limber-gemma2-tiny", d)


def test_a_part_that_cannot_be_fetched_is_named_with_the_fix(adapter, tmp_path):
    d = parts_dir(adapter, tmp_path)
    shutil.rmtree(d / "llm")  # so the default hub id is tried, and the hub is offline in tests
    with pytest.raises(ModelLoadError) as err:
        LimberAdapter("limber-gemma2", d)
    msg = str(err.value)
    assert "llm part" in msg and "google/gemma-2-2b-it" in msg and "DIR/llm/" in msg


def test_manifest_can_name_parts_elsewhere(adapter, tmp_path):
    d = parts_dir(adapter, tmp_path)
    (d / "llm").rename(tmp_path / "gemma")
    manifest = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**manifest, "llm": str(tmp_path / "gemma")}))
    assert isinstance(LimberAdapter("limber-gemma2-tiny", d).llm_module(), type(adapter.llm_module()))
    (d / "config.json").write_text(json.dumps({**manifest, "vison": "typo"}))
    with pytest.raises(ModelLoadError, match="unknown key"):
        LimberAdapter("limber-gemma2-tiny", d)


def test_greedy_decoding_equals_gemmas_own_generate(adapter, encoded):
    from benchmark.evaluate.generation import generate_batch

    _, store, samples = encoded
    q = question(samples[0].uid)
    ours = generate_batch(adapter, store.get([0]), [q], 8)[0]
    ids = torch.tensor([adapter.encode(q).prompt_ids])
    with torch.no_grad():
        embeds = adapter.llm_module().get_input_embeddings()(ids)
        embeds[ids == adapter.image_token_id] = adapter.project(store.get([0]))[0]
        out = adapter.llm_module().generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), do_sample=False,
                                            max_new_tokens=8, eos_token_id=adapter.tokenizer.eos_token_id)
    ref = [t for t in out[0].tolist() if t != adapter.tokenizer.eos_token_id]
    assert ours == ref
    questions = [question(s.uid) + " x" * (i % 3) for i, s in enumerate(samples[:4])]
    assert generate_batch(adapter, store.get(range(4)), questions, 6) == [
        generate_batch(adapter, store.get([i]), [q], 6)[0] for i, q in enumerate(questions)]
