"""The model ``plan --measure`` runs: the real architecture with random weights, loaded through the adapter's own
loading path, nothing downloaded.

For a shipped config (``AdapterSpec.architecture``) a *skeleton checkpoint* is written to a scratch folder: the
published ``config.json`` (with ``--layers K``: the first K decoder layers of the LLM and of the vision tower, at
full width and vocabulary), a stand-in tokenizer padded to the real vocabulary size (the offline byte-level BPE of
the tiny twins, so prompts have realistic lengths), the family's processor at the real image size, and a weight
file holding no tensor: ``from_pretrained`` then initialises every weight at random (the model's own
``_init_weights``), in the run's dtype, and the adapter is built by its registered factory. A tiny twin is loaded
as it always is (it is random-init already).

The skeleton is written for the LLaVA family (LLaVA-1.5 7B and 13B); other families are refused with the list.
The :class:`~benchmark.adapters.base.Architecture` that ``plan`` counts is derived from the same config, so the
plan and the measurement describe one model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchmarkError

SKELETON_MARKER = "projbench-random-init.json"  # in every skeleton folder: these weights are not a model
MEASURABLE = ("LlavaForConditionalGeneration",)


@dataclass
class Measured:
    """The adapter to measure, the architecture ``plan`` counts for it, and where its files are."""

    adapter: object
    architecture: object
    folder: Path
    layers: int | None


def _meta_config(spec):
    """The shipped config of ``spec`` (built on the meta device: no memory, no weights)."""
    import torch

    arch = spec.architecture()
    with torch.device("meta"):
        net = arch.build()
    if type(net).__name__ not in MEASURABLE:
        raise BenchmarkError(f"--measure builds {spec.name!r} ({type(net).__name__}) not yet: it measures the "
                             f"{', '.join(MEASURABLE)} family (llava15, llava15-13b, llava15-tiny).")
    return net.config


def sliced_config(config, layers: int | None):
    """``config`` with the first ``layers`` LLM layers and as many vision layers (at least 2: LLaVA takes the
    penultimate layer's features); unchanged when ``layers`` is None."""
    if layers is None:
        return config
    if layers < 1 or layers > config.text_config.num_hidden_layers:
        raise BenchmarkError(f"--layers {layers}: between 1 and the model's "
                             f"{config.text_config.num_hidden_layers} decoder layers.")
    config.text_config.num_hidden_layers = layers
    config.vision_config.num_hidden_layers = max(2, min(layers, config.vision_config.num_hidden_layers))
    return config


def llava_architecture(config, source: str):
    """The :class:`Architecture` ``plan`` counts, from a LLaVA config (shipped, sliced or a tiny twin's)."""
    from transformers import LlavaForConditionalGeneration

    from ..adapters.base import Architecture
    from ..adapters.configs import _hf_parts

    vc = config.vision_config
    tokens = (vc.image_size // vc.patch_size) ** 2
    return Architecture(build=lambda: LlavaForConditionalGeneration(config), parts=_hf_parts,
                        image_size=vc.image_size, feature_shape=(tokens, vc.hidden_size), image_tokens=tokens,
                        llm_config=config.text_config, source=source,
                        vision=lambda m, px: m.model.vision_tower(px).last_hidden_state)


def write_skeleton(config, folder: Path) -> None:
    """config.json, the stand-in tokenizer and processor, and a weight file without tensors, into ``folder``."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, LlavaProcessor

    from ..adapters.llava import _TINY_CHAT_TEMPLATE
    from ..adapters.tiny import build_tokenizer

    # Merges up to the corpus's saturation (about 1,000 tokens: whole prompt words), then unused tokens up to the
    # real vocabulary, so that ids and the embedding have the real size and prompts a realistic length.
    tok = build_tokenizer(vocab_size=config.text_config.vocab_size)
    tok.add_tokens([f"<unused{i}>" for i in range(config.text_config.vocab_size - len(tok))])
    config.image_token_id = tok.convert_tokens_to_ids("<image>")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config.text_config, key, getattr(tok, key))
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    size = config.vision_config.image_size
    images = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=config.vision_config.patch_size,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   chat_template=_TINY_CHAT_TEMPLATE).save_pretrained(folder)
    save_file({}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / SKELETON_MARKER).write_text(json.dumps({
        "random_init": True, "why": "projbench plan --measure: the published architecture with random weights, for "
                                    "speed and memory only; never a model to evaluate"}, indent=2) + "\n")


def load_measured(spec, *, layers: int | None, device: str, scratch: Path, cache_dir: str | None = None) -> Measured:
    """The adapter of ``spec`` at real size with random weights (or its tiny twin), and its architecture."""
    import torch

    if spec.tiny:
        if layers is not None:
            raise BenchmarkError(f"--layers slices a real-size config; {spec.name!r} is a tiny twin already.")
        adapter = spec.factory(device=device, cache_dir=cache_dir)
        if type(adapter.model).__name__ not in MEASURABLE:
            raise BenchmarkError(f"--measure supports the {', '.join(MEASURABLE)} family; {spec.name!r} is not.")
        return Measured(adapter, llava_architecture(adapter.model.config, f"tiny twin {spec.name}"),
                        Path(adapter.checkpoint), None)
    config = sliced_config(_meta_config(spec), layers)
    folder = scratch / (spec.name + (f"-L{layers}" if layers else ""))
    write_skeleton(config, folder)
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report would list every weight as missing: all are, on purpose
    try:
        adapter = spec.factory(source=str(folder), device=device, dtype=dtype)
    finally:
        hf_logging.set_verbosity(level)
    what = spec.architecture().source + (f", first {layers} decoder layers" if layers else "")
    return Measured(adapter, llava_architecture(adapter.model.config, what), folder, layers)
