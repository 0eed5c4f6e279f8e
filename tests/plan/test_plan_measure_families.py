"""`plan --measure` for every family that is one transformers class: the skeleton checkpoint (sliced config, the
twin's processor fitted to the real image size and token count, the tokenizer padded to the real vocabulary), the
measured architecture against the loaded model, and the refusal of models built from parts.

The twins and the real-width slices load and run real models: marked slow. The slicing and the refusal are quick.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.plan.measure import Settings
from benchmark.plan.measuring import measure
from benchmark.plan.skeleton import sliced_config
from benchmark.registry import plugins

FAMILIES = ("llava15", "blip2", "instructblip", "paligemma", "smolvlm", "idefics3", "qwen2vl", "internvl3")


def _shipped_config(name):
    with torch.device("meta"):
        return plugins().adapters.get(name).architecture().build().config


@pytest.mark.parametrize("name", ["llava15", "qwen2vl", "internvl3", "blip2"])
def test_a_slice_keeps_the_first_layers_of_the_llm_and_as_many_of_the_vision_encoder(name):
    config = _shipped_config(name)
    vision = config.vision_config
    depth = "depth" if name == "qwen2vl" else "num_hidden_layers"  # Qwen2-VL's ViT counts its blocks as depth
    full_vision = getattr(vision, depth)
    sliced = sliced_config(config, 3)
    assert sliced.text_config.num_hidden_layers == 3
    assert getattr(sliced.vision_config, depth) == min(3, full_vision)
    if isinstance(getattr(sliced.text_config, "layer_types", None), list):  # Qwen2: one attention kind per layer
        assert len(sliced.text_config.layer_types) == 3
    # Width and vocabulary stay: only depth is cut.
    full = _shipped_config(name)
    assert (sliced.text_config.hidden_size, sliced.text_config.vocab_size) == (
        full.text_config.hidden_size, full.text_config.vocab_size)
    # One layer still keeps two vision layers: LLaVA reads the penultimate one.
    assert getattr(sliced_config(_shipped_config(name), 1).vision_config, depth) == 2


def test_a_slice_beyond_the_model_is_refused_with_its_depth():
    with pytest.raises(BenchmarkError, match="between 1 and the model's 32 decoder layers"):
        sliced_config(_shipped_config("llava15"), 33)


@pytest.mark.parametrize("name", ["limber-gemma2", "limber-gemma2-tiny", "compose-dinosiglip-mlp-tiny"])
def test_a_model_built_from_parts_is_refused_with_the_list_of_measurable_ones(name, tmp_path):
    with pytest.raises(BenchmarkError, match="built from parts") as err:
        measure(name, "textile", out=tmp_path / "m.json", device="cpu", layers=1 if "tiny" not in name else None)
    for family in FAMILIES:
        assert family in str(err.value)


def _count_loaded(monkeypatch) -> dict:
    """The measured model's parameters and image tokens, counted on the loaded adapter (before LoRA adds its own)."""
    from benchmark.plan import measure_model

    loaded, real_load = {}, measure_model.load_measured

    def spy(*args, **kwargs):
        m = real_load(*args, **kwargs)
        loaded["parameters"] = sum(p.numel() for p in m.adapter.model.parameters())
        loaded["image_tokens"] = m.adapter.num_image_tokens
        return m

    monkeypatch.setattr(measure_model, "load_measured", spy)
    return loaded


@pytest.mark.slow
@pytest.mark.parametrize("name", [f + "-tiny" for f in FAMILIES if f != "llava15"])
def test_every_family_s_twin_measures_and_the_plan_counts_the_loaded_model(name, tmp_path, monkeypatch):
    loaded = _count_loaded(monkeypatch)
    record, plan = measure(name, "textile", out=tmp_path / "m.json", device="cpu",
                           settings=Settings(steps=1, warmup=1, micro_batch=1, eval_images=1))
    assert plan.parameters["total"] == loaded["parameters"]
    assert plan.tokens.image == loaded["image_tokens"]
    for regime, r in record["training"].items():
        assert "skipped" not in r and len(r["step_seconds"]) == 1, regime
    sc = record["scoring"]
    assert sc["classes"] == 3 and sc["same_predictions"] and sc["max_abs_logprob_difference"] < 1e-3


# Published image tokens per image of each checkpoint (its model card / config): the skeleton's processor must write
# exactly as many as the model's projector emits, or the model's forward refuses the batch.
IMAGE_TOKENS = {"blip2": 32, "instructblip": 32, "smolvlm": 64, "qwen2vl": 256, "internvl3": 256}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMAGE_TOKENS))
def test_a_real_width_slice_of_every_family_loads_scores_and_trains(name, tmp_path, monkeypatch):
    """One decoder layer (two vision layers) at full width and vocabulary, fp32: FT-Proj and 3 classes scored."""
    loaded = _count_loaded(monkeypatch)
    record, plan = measure(name, "textile", out=tmp_path / "m.json", layers=1, device="cpu",
                           settings=Settings(steps=1, warmup=1, micro_batch=1, eval_images=1, regimes=("ft-proj",)))
    assert plan.tokens.image == IMAGE_TOKENS[name] == loaded["image_tokens"]
    assert plan.parameters["total"] == loaded["parameters"]
    if name == "qwen2vl":  # independently: one Qwen2 layer at full width, tied embeddings, and the merger
        hidden, kv, mlp, vocab = 1536, 256, 8960, 151936  # 12 heads of 128, 2 KV heads
        layer = (hidden * hidden + hidden) + 2 * (hidden * kv + kv) + hidden * hidden + 3 * hidden * mlp + 2 * hidden
        assert plan.parameters["llm"] == vocab * hidden + layer + hidden
        # LayerNorm over 1280, then 4 x 1280 -> 5120 -> 1536 with biases.
        assert plan.parameters["projector"] == 2 * 1280 + 5120 * 5120 + 5120 + 5120 * 1536 + 1536
    assert record["layers"] == 1 and "first 1 decoder layers" in record["config_source"]
    sc = record["scoring"]
    assert sc["same_predictions"] and sc["max_abs_logprob_difference"] < 1e-3
    r = record["training"]["ft-proj"]
    assert "skipped" not in r and r["tokens_per_sample"] > plan.tokens.image
