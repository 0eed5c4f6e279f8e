"""Registers BakLLaVA and its tiny twin with projbench through the ``projbench`` entry-point group.

The registration is data: the adapter class and the twin's builder are ``"module:attribute"`` strings, imported
only when a model is built, so `python -m benchmark list models` stays fast with this plugin installed.
"""

from __future__ import annotations

from benchmark import Checkpoint, TinyTwin, hookimpl, model_family

ADAPTERS = model_family(
    "projbench_bakllava.adapter:BakLlavaAdapter",
    projector_family="mlp", projector_modules="model.multi_modal_projector (linear-GELU-linear)",
    checkpoints=[Checkpoint("bakllava", "llava-hf/bakLlava-v1-hf", "BakLLaVA-1: CLIP ViT-L/14-336 + MLP + Mistral-7B")],
    # Same class, tiny config, random init from a fixed seed: LLaVA's tiny twin, saved once to the cache.
    twins=[TinyTwin("bakllava-tiny", "benchmark.adapters.llava:build_tiny_llava",
                    "Tiny twin of bakllava, for tests",
                    checkpoint="tiny random-init LlavaForConditionalGeneration (seed 0)")],
)


@hookimpl
def register_adapters(register):
    for spec in ADAPTERS:
        register(spec)
