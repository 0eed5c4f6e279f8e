"""Tiny twins are cached under a hash of their build code; zeroed matrices are recorded, and re-randomised on request."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest
import torch

from benchmark.adapters.tiny import (
    TWIN_MANIFEST,
    build_hash,
    materialise,
    rerandomise_zero_matrices,
    zero_matrices,
)

BUILDER = '''
"""A tiny twin builder, as an adapter module would hold it."""
from transformers import LlamaConfig, LlamaForCausalLM

def build(out):
    import torch
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers={layers},
                         num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # a layer left at zero, like Gemma 3's projection
    model.save_pretrained(out)
'''


def load_builder(tmp_path, layers: int):
    (tmp_path / "twin_builder.py").write_text(textwrap.dedent(BUILDER.format(layers=layers)))
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop("twin_builder", None)
        return importlib.import_module("twin_builder").build
    finally:
        sys.path.remove(str(tmp_path))


def test_editing_build_rebuilds_the_twin(tmp_path):
    cache = tmp_path / "cache"
    first = materialise(cache, "toy-tiny", load_builder(tmp_path, layers=1))
    again = materialise(cache, "toy-tiny", load_builder(tmp_path, layers=1))
    assert again == first  # same code: the cached twin is reused
    edited = materialise(cache, "toy-tiny", load_builder(tmp_path, layers=2))
    assert edited != first, "an edited build() must not reuse the old twin"
    assert json.loads((first / "config.json").read_text())["num_hidden_layers"] == 1
    assert json.loads((edited / "config.json").read_text())["num_hidden_layers"] == 2


def _sized_builder(image_size: int):
    def build(out):
        (out / "size.txt").write_text(str(image_size))

    return build


def test_closure_values_are_part_of_the_hash():
    # One builder function, two closures (64 px and 32 px): two different twins.
    small, large = _sized_builder(32), _sized_builder(64)
    assert small.__code__ is large.__code__
    assert build_hash(small) != build_hash(large)


# A builder module with a plain function, and names that only importing the module tells apart from one; written
# with Windows line ends and no final newline, which inspect.getsource normalises.
REFERENCED = (
    "import functools\r\n\r\ndef plain(out):\r\n    return out\r\n\r\n"
    "def _sized(size):\r\n    def build(out):\r\n        return size\r\n    return build\r\n\r\n"
    "closure = _sized(32)\r\npartial = functools.partial(plain)\r\n"
    "def rebound(out):\r\n    return out\r\nrebound = _sized(64)\r\n"
    "def _bound(f):\r\n    return functools.partial(f, size=8)\r\n\r\n"
    "@_bound\r\ndef decorated(out, size):\r\n    return out"
)


def test_a_reference_to_a_plain_function_is_keyed_from_its_file_without_importing_it(tmp_path, monkeypatch):
    from benchmark.refs import resolve

    (tmp_path / "twin_refs.py").write_bytes(REFERENCED.encode())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "twin_refs", raising=False)
    key = build_hash("twin_refs:plain")
    assert "twin_refs" not in sys.modules  # read, not imported
    assert key == build_hash(resolve("twin_refs:plain"))  # the digest of the imported function
    for name in ("closure", "partial", "rebound", "decorated"):  # these are imported: the same digest as the value's
        assert build_hash(f"twin_refs:{name}") == build_hash(resolve(f"twin_refs:{name}")), name
    assert len({build_hash(f"twin_refs:{n}") for n in ("plain", "closure", "partial", "rebound", "decorated")}) == 5


def test_every_registered_twin_is_keyed_from_its_file_as_from_its_function():
    from benchmark.adapters.spec import TinyFactory
    from benchmark.adapters.tiny import _plain_function
    from benchmark.refs import resolve
    from benchmark.registry import Plugins

    factories = [s.factory for s in Plugins(autoload=False).adapters if isinstance(s.factory, TinyFactory)]
    assert len(factories) >= len(TWINS)
    for f in factories:
        assert _plain_function(str(f.build)) is not None, f.name  # read from the file: `cache list` imports no torch
        assert build_hash(f.build) == build_hash(resolve(f.build)), f.name


def test_zeroed_matrices_are_recorded_and_rerandomised_on_request(tmp_path):
    from safetensors.torch import load_file

    twin = materialise(tmp_path / "cache", "toy-tiny", load_builder(tmp_path, layers=1))
    manifest = json.loads((twin / TWIN_MANIFEST).read_text())
    assert manifest["zero_matrices"] == ["model.safetensors:lm_head.weight"]
    assert not load_file(str(twin / "model.safetensors"))["lm_head.weight"].any()  # recorded, left as built
    assert manifest["varied_norms"] == ["model.safetensors:model.norm.weight"]  # the final norm, off unit scale
    norm = load_file(str(twin / "model.safetensors"))["model.norm.weight"]
    assert float(norm.std()) > 0.1 and float((norm - 1).abs().max()) <= 0.5
    assert rerandomise_zero_matrices(twin) == ["model.safetensors:lm_head.weight"]
    state = load_file(str(twin / "model.safetensors"))
    head = state["lm_head.weight"]
    assert head.shape == (32, 16) and 0.01 < float(head.std()) < 0.03  # N(0, 0.02), not zeros any more
    # Vectors keep their zeros/ones: for biases and norm scales those are meaningful values.
    assert torch.equal(state["model.norm.weight"], norm)
    assert zero_matrices(twin) == []
    # The rewritten file still loads through from_pretrained (its "format" metadata is kept).
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(twin)
    assert torch.equal(model.lm_head.weight.detach(), head)


def test_near_zero_matrices_count_as_zero(tmp_path):
    from safetensors.torch import load_file, save_file

    save_file({"tiny": torch.full((4, 4), 1e-10), "fine": torch.full((4, 4), 0.5), "bias": torch.zeros(4)},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    assert rerandomise_zero_matrices(tmp_path) == ["model.safetensors:tiny"]
    state = load_file(str(tmp_path / "model.safetensors"))
    assert float(state["tiny"].abs().max()) > 1e-3
    assert torch.equal(state["fine"], torch.full((4, 4), 0.5)) and torch.equal(state["bias"], torch.zeros(4))


TWINS = ["llava15-tiny", "blip2-tiny", "instructblip-tiny", "paligemma-tiny", "limber-gemma2-tiny", "smolvlm-tiny",
         "idefics3-tiny", "qwen2vl-tiny", "compose-dinosiglip-mlp-tiny", "compose-clip-qformer-tiny"]


def test_every_twins_final_norm_has_non_unit_weights():
    """With unit scales a norm applied twice equals one applied once; the twins' final norms are not at unit scale."""
    from benchmark.registry import Plugins

    plugins = Plugins(autoload=False)
    for name in TWINS:
        norm = plugins.adapters.get(name).factory().llm_final_norm()
        assert float(norm.weight.float().std()) > 0.1, name


def test_a_skipped_or_repeated_final_norm_changes_the_logits(real_images):
    """The logit lens read of the last block's output equals the model's logits only with the norm applied once."""
    from benchmark.registry import Plugins

    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    native = adapter.native_inputs("What is it?", real_images[0][0])
    seen = {}
    hook = adapter.llm_final_norm().register_forward_hook(lambda _m, args, out: seen.update(pre=args[0], post=out))
    try:
        with torch.no_grad():
            logits = adapter.native_forward(native).logits.float()
    finally:
        hook.remove()
    with torch.no_grad():
        once = adapter.unembed(seen["pre"], final_norm=True).float()
        skipped = adapter.unembed(seen["pre"], final_norm=False).float()
        twice = adapter.unembed(seen["post"], final_norm=True).float()
    assert torch.allclose(once, logits, atol=1e-5)
    assert (skipped - logits).abs().max() > 1e-2
    assert (twice - logits).abs().max() > 1e-2  # would be ~0 with unit norm weights (RMSNorm is idempotent then)


def test_build_tokenizer_prepends_the_bos_it_is_given_and_nothing_else():
    from benchmark.adapters.tiny import build_tokenizer

    llama, qwen = build_tokenizer(), build_tokenizer(bos=None)
    text = "Classify this image"
    assert llama(text)["input_ids"] == [llama.bos_token_id, *qwen(text)["input_ids"]]
    assert qwen(text)["input_ids"] == qwen(text, add_special_tokens=False)["input_ids"]
    assert llama.get_vocab() == qwen.get_vocab()  # the option changes no id
    named = build_tokenizer(named_special={"start_image_token": "<img>"}, bos=None)
    assert named.convert_ids_to_tokens(named.start_image_token_id) == named.start_image_token == "<img>"
    assert named("<img><image>")["input_ids"] == [named.start_image_token_id, named.convert_tokens_to_ids("<image>")]
    with pytest.raises(ValueError, match="the BOS must be one of its special tokens"):
        build_tokenizer(bos="<|begin_of_text|>")
