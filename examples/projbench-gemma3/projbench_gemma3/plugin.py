"""Registers Gemma 3 and its tiny twin with projbench through the ``projbench`` entry-point group.

The registration is data: the adapter class and the twin's builder (``adapter.py``, which imports torch) are
``"module:attribute"`` strings, imported only when a model is built, so `python -m benchmark list models` stays
fast with this plugin installed, and `cache list` reads the twin's key from ``adapter.py`` without importing it.
"""

from __future__ import annotations

from benchmark import Checkpoint, TinyTwin, hookimpl, model_family

# One declaration registers the checkpoint and its tiny twin. The twin is built once into projbench's cache (keyed
# by a hash of adapter.py) and loaded with from_pretrained.
ADAPTERS = model_family(
    "projbench_gemma3.adapter:Gemma3Adapter", projector_family="pooled-linear",
    projector_modules="model.multi_modal_projector (avg pool -> mm_soft_emb_norm -> mm_input_projection_weight)",
    checkpoints=[Checkpoint("gemma3", "google/gemma-3-4b-it",
                            "Gemma 3 4B-it: SigLIP-So400m + pooled linear projector (256 tokens) + Gemma 3")],
    twins=[TinyTwin("gemma3-tiny", "projbench_gemma3.adapter:build_tiny",
                    "Tiny twin of gemma3: same classes and template shape, for tests",
                    checkpoint="tiny random-init Gemma3ForConditionalGeneration (seed 0), built offline")],
)
load_gemma3, load_gemma3_tiny = (spec.factory for spec in ADAPTERS)


@hookimpl
def register_adapters(register):
    for spec in ADAPTERS:
        register(spec)
