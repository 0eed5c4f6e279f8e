"""Registers BakLLaVA and its tiny twin with projbench through the ``projbench`` entry-point group.

BakLLaVA-1 is LLaVA-1.5's recipe on Mistral-7B: the same ``LlavaForConditionalGeneration`` class, so the
adapter reuses projbench's LLaVA adapter and changes only what differs: the conversation template.
"""

from __future__ import annotations

from benchmark import hookimpl
from benchmark.adapters import AdapterSpec
from benchmark.adapters.factories import hub_factory, tiny_factory
from benchmark.adapters.llava import LlavaAdapter, _build_tiny_llava


class BakLlavaAdapter(LlavaAdapter):
    # BakLLaVA's template: its processor's chat template renders the same string (no system message).
    prompt_templates = {"bakllava": "USER: <image>\n{question} ASSISTANT:"}


load_bakllava = hub_factory(BakLlavaAdapter, "bakllava", "llava-hf/bakLlava-v1-hf")
# Same class, tiny config, random init from a fixed seed, saved once to the cache and loaded with from_pretrained.
load_bakllava_tiny = tiny_factory(BakLlavaAdapter, "bakllava-tiny", _build_tiny_llava)


SPEC = dict(projector_family="mlp", projector_modules="model.multi_modal_projector (linear-GELU-linear)")


@hookimpl
def register_adapters(register):
    register(AdapterSpec(name="bakllava", factory=load_bakllava, checkpoint="llava-hf/bakLlava-v1-hf",
                         description="BakLLaVA-1: CLIP ViT-L/14-336 + MLP + Mistral-7B", **SPEC))
    register(AdapterSpec(name="bakllava-tiny", factory=load_bakllava_tiny, tiny=True,
                         checkpoint="tiny random-init LlavaForConditionalGeneration (seed 0)", **SPEC))
