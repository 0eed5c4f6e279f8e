"""The conformance suite catches real adapter mistakes: each deliberately broken adapter fails its check.

Every broken adapter is an out-of-tree style subclass of a correct one (built-in, or the Gemma 3 example
package), loaded through the same tiny twin, with exactly one mistake an adapter author could plausibly
make; the correct adapter passes the same check. The mistakes are those a contributor's Gemma 3 adapter got
past the earlier suite: a zero projector, a prompt that no longer matches the model's template, a wrong end
token, the projector's norm moved into the cached features, overlapping parts, dropped ``token_type_ids``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmark import conformance as C
from benchmark.adapters.factories import tiny_factory
from benchmark.adapters.llava import LlavaAdapter, build_tiny_llava
from benchmark.adapters.paligemma import PaliGemmaAdapter, build_tiny_paligemma
from benchmark.adapters.qwen2vl import TINY_IMAGE_SIZE, Qwen2VLAdapter, build_tiny_qwen2vl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "projbench-gemma3"


@pytest.fixture(scope="module")
def gemma3():
    """The example's adapter class, its twin's builder and the registered twin's loader."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from projbench_gemma3 import adapter, plugin
    finally:
        sys.path.remove(str(EXAMPLE))
    return SimpleNamespace(Gemma3Adapter=adapter.Gemma3Adapter, build_tiny=adapter.build_tiny,
                           load_gemma3_tiny=plugin.load_gemma3_tiny)


@pytest.fixture(scope="module")
def photos():
    return C.real_photos(per_class=2)


def encoded(adapter, photos):
    _, store, samples = C.encode_photos(adapter, photos)
    return store, samples


def fails(check, match: str):
    with pytest.raises(C.ConformanceFailure, match=match) as info:
        check()
    return str(info.value)


# --- a zero projector ---------------------------------------------------------------------------------------

class ZeroProjectorLlava(LlavaAdapter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():  # e.g. a twin saved before its projector was initialised
            for p in self.model.model.multi_modal_projector.linear_2.parameters():
                p.zero_()


def test_zero_projector_fails_as_vacuous(photos):
    good = tiny_factory(LlavaAdapter, "llava15-tiny", build_tiny_llava)()
    C.check_projector_is_informative(good, encoded(good, photos)[0].get([0, 2, 4]))
    bad = tiny_factory(ZeroProjectorLlava, "llava15-tiny", build_tiny_llava)()
    msg = fails(lambda: C.check_projector_is_informative(bad, encoded(bad, photos)[0].get([0, 2, 4])),
                r"project\(\): the projector output is all zeros: this twin is vacuous")
    assert "multi_modal_projector" not in msg or "linear_2.weight" in msg  # names the zeroed weight if any
    assert "expected: a non-zero norm per image" in msg and "norms [0.0, 0.0, 0.0]" in msg


def test_gemma3_twin_left_at_its_zero_init_fails_as_vacuous(gemma3, photos):
    """Gemma 3's _init_weights zeroes the projection matrix: a twin built without re-randomising it is vacuous."""
    import functools
    import json

    good = gemma3.load_gemma3_tiny()
    assert json.loads((Path(good.checkpoint) / "projbench-twin.json").read_text())["zero_matrices"] == []
    C.check_projector_is_informative(good, encoded(good, photos)[0].get([0, 2, 4]))
    zero_init = functools.partial(gemma3.build_tiny, rerandomise=False)  # another build: its own cached twin
    bad = tiny_factory(gemma3.Gemma3Adapter, "gemma3-tiny", zero_init)()
    assert Path(bad.checkpoint) != Path(good.checkpoint)
    manifest = json.loads((Path(bad.checkpoint) / "projbench-twin.json").read_text())
    assert manifest["zero_matrices"] == ["model.safetensors:multi_modal_projector.mm_input_projection_weight"]
    msg = fails(lambda: C.check_projector_is_informative(bad, encoded(bad, photos)[0].get([0, 2, 4])),
                "this twin is vacuous")
    assert "mm_input_projection_weight" in msg and "rerandomise_zero_matrices" in msg


# --- a template that no longer matches the model's ----------------------------------------------------------

def test_prompt_without_image_markers_fails(gemma3, photos):
    class NoImageMarkers(gemma3.Gemma3Adapter):
        def _tokenize(self, text, first):  # the soft tokens alone, without "\n\n<start_of_image>" ... "<end_of_image>"
            text = text.replace(self.processor.boi_token, self.tokenizer.image_token * self.num_image_tokens)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    good = gemma3.load_gemma3_tiny()
    C.check_prompt_ids(good, photos[0][0])
    C.check_answer_ids(good, photos[0][0])
    bad = tiny_factory(NoImageMarkers, "gemma3-tiny", gemma3.build_tiny)()
    msg = fails(lambda: C.check_prompt_ids(bad, photos[0][0]), r"format_prompt\(\)/encode\(\): prompt ids differ")
    assert "<start_of_image>" in msg.split("actual:")[0]  # the expected side shows the model's marker


def test_llava_template_drift_fails(photos):
    class Drifted(LlavaAdapter):
        def format_prompt(self, question):
            return f"USER: <image>\n{question}\nASSISTANT:"  # a newline where the model's template has a space

    bad = tiny_factory(Drifted, "llava15-tiny", build_tiny_llava)()
    fails(lambda: C.check_prompt_ids(bad, photos[0][0]), "differ from the model's processor and chat template")


def test_qwen2vl_prompt_without_vision_markers_fails(photos):
    class NoVisionMarkers(Qwen2VLAdapter):
        def format_prompt(self, question):
            return super().format_prompt(question).replace("<|vision_start|>", "").replace("<|vision_end|>", "")

    bad = tiny_factory(NoVisionMarkers, "qwen2vl-tiny", build_tiny_qwen2vl, image_size=TINY_IMAGE_SIZE)()
    fails(lambda: C.check_prompt_ids(bad, photos[0][0]), "prompt ids differ")


# --- a wrong end token --------------------------------------------------------------------------------------

def test_answers_ending_in_eos_instead_of_end_of_turn_fail(gemma3, photos):
    class EndsInEos(gemma3.Gemma3Adapter):
        @property
        def answer_end_id(self):
            return self.tokenizer.eos_token_id  # </s>, where Gemma's template ends a turn with <end_of_turn>

    C.check_answer_end(gemma3.load_gemma3_tiny(), photos[0][0])
    bad = tiny_factory(EndsInEos, "gemma3-tiny", gemma3.build_tiny)()
    msg = fails(lambda: C.check_answer_end(bad, photos[0][0]), "answer_end_id: the end-of-answer token is not the model's")
    assert "expected: <end_of_turn>" in msg and "actual:   </s>" in msg


def test_qwen2vl_wrong_end_token_fails(photos):
    class EndsInPad(Qwen2VLAdapter):
        answer_end_id = 3  # <pad>, say: any token but <|im_end|>

    bad = tiny_factory(EndsInPad, "qwen2vl-tiny", build_tiny_qwen2vl, image_size=TINY_IMAGE_SIZE)()
    fails(lambda: C.check_answer_end(bad, photos[0][0]), r"<\|im_end\|>")


# --- the projector's norm moved into the cached features ----------------------------------------------------

def test_gemma3_norm_and_pooling_in_the_cached_features_fail(gemma3, photos):
    class NormInFeatures(gemma3.Gemma3Adapter):
        @torch.no_grad()
        def vision_features(self, pixel_values):
            h = super().vision_features(pixel_values)
            proj = self.projector_module()
            b, n, d = h.shape
            grid = h.transpose(1, 2).reshape(b, d, proj.patches_per_image, proj.patches_per_image)
            return proj.mm_soft_emb_norm(proj.avg_pool(grid).flatten(2).transpose(1, 2))

        def project(self, features):
            return torch.matmul(features, self.projector_module().mm_input_projection_weight)

    good = gemma3.load_gemma3_tiny()
    store, samples = encoded(good, photos)
    C.check_projector_gradients(good, samples, store)
    C.check_cached_path_equals_native(good, photos[1][0])
    bad = tiny_factory(NormInFeatures, "gemma3-tiny", gemma3.build_tiny)()
    store, samples = encoded(bad, photos)
    msg = fails(lambda: C.check_projector_gradients(bad, samples, store), "get no gradient under FT-Proj")
    assert "mm_soft_emb_norm.weight" in msg
    fails(lambda: C.check_cached_path_equals_native(bad, photos[1][0]),
          r"vision_features\(\): the cached features do not have the size")


def test_qwen2vl_merger_norm_in_the_cached_features_fails(photos):
    class NormInFeatures(Qwen2VLAdapter):
        @torch.no_grad()
        def vision_features(self, pixel_values):
            return self.projector_module().ln_q(super().vision_features(pixel_values))

        def project(self, features):
            merger = self.projector_module()
            b = features.shape[0]
            return merger.mlp(features.reshape(-1, merger.hidden_size)).view(b, self.num_image_tokens, -1)

    bad = tiny_factory(NormInFeatures, "qwen2vl-tiny", build_tiny_qwen2vl, image_size=TINY_IMAGE_SIZE)()
    store, samples = encoded(bad, photos)
    msg = fails(lambda: C.check_projector_gradients(bad, samples, store), "ln_q.weight")
    assert "2 of" in msg
    fails(lambda: C.check_cached_path_equals_native(bad, photos[1][0]),
          r"vision_features\(\): the cached features are not what the model's own forward feeds its projector")


# --- overlapping parts --------------------------------------------------------------------------------------

def test_overlapping_parts_fail(gemma3):
    class WholeModelAsLlm(LlavaAdapter):
        def llm_module(self):
            return self.model.model  # holds the vision tower and the projector too

    bad = tiny_factory(WholeModelAsLlm, "llava15-tiny", build_tiny_llava)()
    msg = fails(lambda: C.check_parts_cover_model(bad), "share parameters: the three parts must be disjoint")
    assert "llm" in msg

    class NoHead(gemma3.Gemma3Adapter):
        def llm_module(self):
            return self.model.model.language_model  # fine: Gemma ties lm_head to the embeddings

    C.check_parts_cover_model(tiny_factory(NoHead, "gemma3-tiny", gemma3.build_tiny)())

    class ForgetsTheNorm(LlavaAdapter):
        def projector_module(self):
            return self.model.model.multi_modal_projector.linear_1

    msg = fails(lambda: C.check_parts_cover_model(tiny_factory(ForgetsTheNorm, "llava15-tiny", build_tiny_llava)()),
                "belong to no part")
    assert "linear_2" in msg


# --- dropped token_type_ids ---------------------------------------------------------------------------------

def test_paligemma_without_token_type_ids_fails(photos):
    class NoTokenTypes(PaliGemmaAdapter):
        def token_type_ids(self, input_ids):
            return None  # both forwards: the prefix loses its bidirectional attention

    C.check_cached_path_equals_native(tiny_factory(PaliGemmaAdapter, "paligemma-tiny", build_tiny_paligemma)(),
                                      photos[1][0])
    bad = tiny_factory(NoTokenTypes, "paligemma-tiny", build_tiny_paligemma)()
    msg = fails(lambda: C.check_cached_path_equals_native(bad, photos[1][0]),
                r"lm_forward\(\): the cached path .* differs from the model's native forward")
    assert "token_type_ids" in msg


def test_gemma3_without_token_type_ids_fails(gemma3, photos):
    class NoTokenTypes(gemma3.Gemma3Adapter):
        def token_type_ids(self, input_ids):
            return None  # image tokens attend causally instead of to each other

    bad = tiny_factory(NoTokenTypes, "gemma3-tiny", gemma3.build_tiny)()
    fails(lambda: C.check_cached_path_equals_native(bad, photos[1][0]), "differs from the model's native forward")
