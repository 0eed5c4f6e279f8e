"""How the conformance suite reports a mistake: once, at the method at fault, with the count or position that is off.

Each test plants one mistake an adapter author makes (a twin whose build raises, a model that needs a stacked
``pooler_output``, a wrong image-token count, tiling left on, a missing image frame, a BOS the real tokenizer does
not add) in an out-of-tree style subclass of the InternVL adapter (or a plugin), and checks the report names the
method, the rule and the numbers; the correct adapter passes the same check.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest

from benchmark import conformance as C
from benchmark.adapters import base
from benchmark.adapters.factories import tiny_factory
from benchmark.adapters.internvl import InternVLAdapter, build_tiny_internvl
from conftest import add_dist


@pytest.fixture(scope="module")
def photos():
    return C.real_photos(per_class=2)


def twin(cls=InternVLAdapter, build=build_tiny_internvl):
    return tiny_factory(cls, "internvl3-tiny", build)()


def fails(check, match: str) -> str:
    with pytest.raises(C.ConformanceFailure, match=match) as info:
        check()
    return str(info.value)


BROKEN_PLUGIN = '''
from benchmark import TinyTwin, hookimpl, model_family


def build(out):  # a vision width that is not a multiple of the heads: transformers refuses the config
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(hidden_size=30, num_attention_heads=4, intermediate_size=64,
                                     num_hidden_layers=1, image_size=28, patch_size=14))


ADAPTERS = model_family("benchmark.adapters.llava:LlavaAdapter", projector_family="mlp",
                        projector_modules="model.multi_modal_projector",
                        twins=[TinyTwin("broken-tiny", "broken_twin:build", "a twin that fails to build")])


@hookimpl
def register_adapters(register):
    for spec in ADAPTERS:
        register(spec)
'''


def test_a_twin_that_fails_to_build_is_reported_once(tmp_path):
    add_dist(tmp_path, "broken_twin", BROKEN_PLUGIN, "broken-twin")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "PROJBENCH_CACHE": str(tmp_path / "cache")}
    env.pop("PROJBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    out = subprocess.run([sys.executable, "-m", "benchmark", "check-adapter", "broken-tiny"], capture_output=True,
                         text=True, env=env, timeout=600)
    text = out.stdout + out.stderr
    checks = len(C.list_checks()) + 1  # test_freezing runs for two regimes
    assert out.returncode != 0
    assert f"{checks - 1} skipped, 1 error" in text, text[-2000:]
    # pytest's closing summary repeats the error's first line in full when CI is set (truncated otherwise): count
    # the report above it, and the summary's ERROR lines apart.
    report, _, summary = text.partition("short test summary info")
    assert report.count("The hidden size (30) is not a multiple of the number of attention heads (4)") == 1
    assert summary.count("\nERROR ") == 1
    assert "factory: building or loading 'broken-tiny'" in text and "broken_twin.py" in text
    assert len(text.splitlines()) < 80  # it was 1,704 lines when every check repeated the traceback


def test_a_list_pooler_output_is_blamed_on_lm_forward_naming_the_stacked_rule(photos):
    class ListPooler(InternVLAdapter):
        stacked_image_embeds = False  # the default list of per-image tensors, which InternVL's forward cannot read

    C.check_cached_path_equals_native(twin(), photos[1][0])
    msg = fails(lambda: C.check_cached_path_equals_native(twin(ListPooler), photos[1][0]),
                r"ListPooler\.lm_forward\(\) \(inherited from ModelAdapter\): raised AttributeError")
    assert "stacked (B, T, D) tensor" in msg and "stacked_image_embeds = True" in msg
    assert f"raised at: {base.__file__}:" in msg  # the adapter method's own line first


def test_a_wrong_image_token_count_is_blamed_on_num_image_tokens_not_project(photos):
    class FourTimesTheTokens(InternVLAdapter):  # forgot the pixel shuffle's 4x reduction
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._num_image_tokens *= 4

    good = twin()
    C.check_shapes(good, C.encode_photos(good, photos)[1], photos[0][0])
    bad = twin(FourTimesTheTokens)
    store = C.encode_photos(bad, photos)[1]
    msg = fails(lambda: C.check_shapes(bad, store, photos[0][0]), r"^num_image_tokens: says 64 image tokens")
    assert "project() gives 16 and the model's own processor writes 16" in msg
    # Further down, the model's own error (a RuntimeError from transformers) is blamed on the adapter's method.
    msg = fails(lambda: C.check_cached_features_equal_full_forward(bad, C.encode_photos(bad, photos)),
                r"FourTimesTheTokens\.\w+\(\).*: raised")
    assert "image tokens do not match" in msg and "num_image_tokens" in msg.split("hint:")[1]


def test_tiling_left_on_in_the_reference_is_caught_with_the_counts(photos):
    class TilingOn(InternVLAdapter):
        def native_processor_kwargs(self):
            return {}  # the processor's default: crop_to_patches=True

    bad = twin(TilingOn)
    msg = fails(lambda: C.check_shapes(bad, C.encode_photos(bad, photos)[1], photos[0][0]),
                r"num_image_tokens: is not the number of image tokens the model's own processor writes")
    assert "crop_to_patches" in msg and "actual:   16" in msg
    msg = fails(lambda: C.check_prompt_ids(bad, photos[0][0]), "prompt ids differ")
    assert "(image token 17 of the model's" in msg and "encode()'s 16)" in msg


def test_a_missing_image_frame_is_located_at_the_first_image_token(photos):
    class NoFrame(InternVLAdapter):
        _expand_image_tokens = InternVLAdapter.__mro__[2]._expand_image_tokens  # ModelAdapter's: no <img>, </img>

    good = twin()
    native = good.native_inputs(C.QUESTION, photos[0][0])["input_ids"][0].tolist()
    first = native.index(good.tokenizer.start_image_token_id)  # where <img> opens the image
    msg = fails(lambda: C.check_prompt_ids(twin(NoFrame), photos[0][0]),
                rf"at position {first} \(the first image token\)")
    assert "<img>" in msg.split("actual:")[0]


def test_a_bos_the_real_tokenizer_does_not_add_is_caught(photos):
    with_bos = functools.partial(build_tiny_internvl, bos="<s>")  # build_tokenizer's Llama default, wrong for Qwen
    bad = twin(build=with_bos)
    assert bad.encode(C.QUESTION).prompt_ids[0] == bad.tokenizer.bos_token_id
    msg = fails(lambda: C.check_prompt_ids(bad, photos[0][0]), r"^expects_bos: InternVLAdapter declares")
    assert "build_tokenizer(bos=None)" in msg and "'<s>' (id 1) at position 0" in msg

    class LeavesOutTheBos(InternVLAdapter):
        def _tokenize(self, text, first):
            return super()._tokenize(text, first=False)

    msg = fails(lambda: C.check_prompt_ids(twin(LeavesOutTheBos, with_bos), photos[0][0]),
                r"at position 0 of \d+ .*the model's processor starts with the BOS '<s>' and encode\(\) does not")
    assert "build_tokenizer(bos=None)" in msg
