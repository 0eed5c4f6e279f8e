"""A *skeleton checkpoint*: a published architecture as a folder ``from_pretrained`` loads, with no weights.

``plan --measure`` needs the real model class at its real size, loaded through the adapter's own loading path,
with nothing downloaded. A skeleton folder holds:

- the published ``config.json`` (with ``--layers K`` the first K decoder layers of the LLM and as many layers of
  the vision encoder, at least 2: LLaVA reads the penultimate one; full width and vocabulary);
- the processor of the family's tiny twin (same processor class, built offline), fitted to the real config: its
  image size, patch geometry and image-token count (:func:`fit_processor`); its tokenizer padded with unused
  tokens to the real vocabulary size, so that ids and the embedding have the real size and prompts a realistic
  length (the twin's byte-level BPE merges whole prompt words);
- the twin's special-token ids copied into the config (they index the padded tokenizer);
- a weight file holding no tensor: ``from_pretrained`` initialises every weight with the model's own
  ``_init_weights``, in the dtype asked for;
- the random-init mark (:mod:`benchmark.storage.random_init`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import BenchmarkError
from ..storage.random_init import mark_random_init

_TOKEN_ID = re.compile(r"^[a-z][a-z_]*token_(id|index)$")
# Where processors keep the number of image tokens they write per image (PaliGemma, InternVL; Idefics3; BLIP-2).
_TOKEN_COUNTS = ("image_seq_length", "image_seq_len", "num_query_tokens")
# Patch geometry an image (or video) processor must share with the vision config: processor name -> config name.
_GEOMETRY = {"patch_size": "patch_size", "merge_size": "spatial_merge_size",
             "temporal_patch_size": "temporal_patch_size"}


def _vision_depth_key(vision) -> str:
    return "depth" if hasattr(vision, "depth") else "num_hidden_layers"


def _cut(config, layers: int, key: str = "num_hidden_layers") -> None:
    setattr(config, key, layers)
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds (Qwen2, Gemma 2)
        config.layer_types = config.layer_types[:layers]


def sliced_config(config, layers: int | None):
    """``config`` with the first ``layers`` LLM layers and as many vision layers (at least 2); unchanged when
    ``layers`` is None."""
    if layers is None:
        return config
    total = config.text_config.num_hidden_layers
    if layers < 1 or layers > total:
        raise BenchmarkError(f"--layers {layers}: between 1 and the model's {total} decoder layers.")
    _cut(config.text_config, layers)
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        key = _vision_depth_key(vision)
        _cut(vision, max(2, min(layers, getattr(vision, key))), key)
    return config


def copy_token_ids(twin_config, config) -> None:
    """The twin's special-token ids (image, video, BOS, EOS, pad, ...) into ``config`` and its text config: the
    skeleton's tokenizer is the twin's, padded, so the twin's ids are the ones it writes."""
    for src, dst in ((twin_config, config), (twin_config.text_config, config.text_config)):
        for key, value in src.to_dict().items():
            if _TOKEN_ID.match(key) and not isinstance(value, dict) and hasattr(dst, key):
                setattr(dst, key, value)


def pad_tokenizer(tokenizer, vocab_size: int) -> None:
    """Unused tokens up to ``vocab_size`` (the real vocabulary), appended after the twin's own."""
    if len(tokenizer) > vocab_size:
        raise BenchmarkError(f"the stand-in tokenizer has {len(tokenizer)} tokens, more than the model's "
                             f"vocabulary of {vocab_size}")
    tokenizer.add_tokens([f"<unused{i}>" for i in range(vocab_size - len(tokenizer))])


def _set_size(processor, image_size: int) -> None:
    """Every size field the image processor holds, at ``image_size`` (pixels per side)."""
    ip = processor.image_processor
    pixels = hasattr(ip, "merge_size")  # Qwen2-VL's processors size images by their pixel count
    size = getattr(ip, "size", None)
    if size is not None:
        given = [k for k, v in (size if isinstance(size, dict) else vars(size)).items() if v is not None]
        ip.size = {k: image_size**2 if pixels else image_size for k in given}  # SizeDict: a dataclass
    if getattr(ip, "crop_size", None) is not None:
        ip.crop_size = {"height": image_size, "width": image_size}
    if getattr(ip, "max_image_size", None) is not None:
        ip.max_image_size = {"longest_edge": image_size}


def fit_processor(processor, config, *, image_size: int, image_tokens: int) -> None:
    """The twin's ``processor`` at the real model's image size, patch geometry and image-token count."""
    _set_size(processor, image_size)
    vision = config.vision_config
    for part in (processor.image_processor, getattr(processor, "video_processor", None)):
        for name, key in _GEOMETRY.items():
            if part is not None and hasattr(part, name) and hasattr(vision, key):
                setattr(part, name, getattr(vision, key))
    if isinstance(getattr(processor, "patch_size", None), int):  # LLaVA's processor counts patches itself
        processor.patch_size = vision.patch_size
    for owner in (processor, processor.image_processor):
        for name in _TOKEN_COUNTS:
            if getattr(owner, name, None) is not None:
                setattr(owner, name, image_tokens)


def write_skeleton(config, folder: Path, *, twin: Path, image_size: int, image_tokens: int) -> None:
    """The skeleton of ``config`` into ``folder``, its processor and tokenizer from the twin checkpoint ``twin``."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoProcessor

    twin_config = AutoConfig.from_pretrained(twin)
    processor = AutoProcessor.from_pretrained(twin)
    pad_tokenizer(processor.tokenizer, config.text_config.vocab_size)
    copy_token_ids(twin_config, config)
    fit_processor(processor, config, image_size=image_size, image_tokens=image_tokens)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_file({}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    mark_random_init(folder, "projbench plan --measure: the published architecture with random weights, for speed "
                             "and memory only; never a model to evaluate")
