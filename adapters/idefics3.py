"""Idefics3 / SmolVLM adapter: SigLIP -> pixel-shuffle connector -> Llama-style LLM (Idefics3ForConditionalGeneration).

The projector is ``model.model.connector``: a pixel shuffle that folds each ``s x s`` block of vision patches
into one token (``s = config.scale_factor``) followed by one bias-free linear layer (``modality_projection``).
It has no parameters besides that linear layer, so FT-Proj trains exactly one matrix.

The vision features are what the model feeds the connector: the last hidden state of the SigLIP encoder after
its post-layernorm, one row per 14/16-pixel patch, ``(B, (H/p)^2, D_vision)``.

Image splitting is switched off (``do_image_splitting=False``). With it on, the processor tiles each image into
a data-dependent number of sub-images plus a global view, so the number of image tokens varies with the image's
size; off, every image is resized to one ``max_image_size`` square (aspect ratio not kept) and becomes exactly
``image_seq_len`` tokens, framed as ``<fake_token_around_image><global-img><image>*n<fake_token_around_image>``
just as the processor writes it. This is the model's own single-view mode, not a re-implementation, but it
spends fewer tokens per image than the checkpoints' default and so can score lower than a tiled setup.

SmolVLM (v1) checkpoints are Idefics3 checkpoints (``model_type: idefics3``), so one adapter serves both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import catalog
from .hf import HFAdapter
from .tiny import build_tokenizer

QUESTION_SENTINEL = "\x00QUESTION\x00"


def chat_template_around(processor) -> tuple[str, str]:
    """The model's own chat template for one user turn (image, then text) + the assistant cue, as text
    before and after the question. Rendered once with a sentinel so that prompts are plain concatenations."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION_SENTINEL}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if text.count(QUESTION_SENTINEL) != 1:
        raise ValueError("The processor's chat template did not render the question exactly once.")
    before, after = text.split(QUESTION_SENTINEL)
    return before, after


class Idefics3Adapter(HFAdapter):
    projector_family = "pixel-shuffle"
    model_class = "Idefics3ForConditionalGeneration"
    vision_path, projector_path, decoder_path = "model.vision_model", "model.connector", "model.text_model"
    answer_prefix = " "  # the template ends in "Assistant:" and the model answers " <text><end_of_utterance>"

    def __init__(self, name: str, source: str, device="cpu", dtype=None, local_files_only: bool = False):
        from PIL import Image

        super().__init__(name, source, device, dtype, local_files_only)
        self.processor.image_processor.do_image_splitting = False
        self._side = self.processor.image_processor.max_image_size["longest_edge"]
        # The image block exactly as the processor writes it for one unsplit image, read off a blank image.
        blank = Image.new("RGB", (self._side, self._side))
        enc = self.processor(text=self.processor.image_token, images=[blank], add_special_tokens=False)
        self._image_block = list(enc["input_ids"][0])
        self._num_image_tokens = self._image_block.count(self.image_token_id)
        if self._num_image_tokens != self.model.model.image_seq_len:
            raise ValueError(
                f"{source}: the processor writes {self._num_image_tokens} image tokens per image but the model's "
                f"connector emits {self.model.model.image_seq_len}; processor and model configs disagree."
            )
        self._before, self._after = chat_template_around(self.processor)
        # Answers end with the chat turn's end marker, which is what the model emits after an answer.
        self._turn_end_id = self.tokenizer.convert_tokens_to_ids(self.processor.end_of_utterance_token)

    # images
    def preprocess(self, images):
        """(B, 1, 3, S, S): one unsplit view per image, the 5-D layout the model's forward takes."""
        # One list per example: a flat list would read as several images of a single example.
        px = self.processor.image_processor(images=[[im] for im in images], do_image_splitting=False,
                                            return_tensors="pt")
        return px["pixel_values"].to(self.device, self.dtype)

    def preprocessing_signature(self):
        return {
            "image_processor": self.processor.image_processor.to_dict(),
            "do_image_splitting": False,
            "features": "vision_model.last_hidden_state (after post_layernorm)",
        }

    @torch.no_grad()
    def vision_features(self, pixel_values):
        # One image per example, so the images axis folds into the batch; a full patch mask, as the model
        # builds itself when no image is padded.
        px = pixel_values.reshape(-1, *pixel_values.shape[-3:]).to(self.device, self.dtype)
        return self.vision_module()(pixel_values=px, return_dict=True).last_hidden_state

    def project(self, features):
        return self.projector_module()(features.to(self.device, self.dtype))

    # text
    def format_prompt(self, question):
        return self._before + question + self._after

    def _tokenize(self, text, first):
        # The chat template already writes the BOS marker, so never let the tokenizer add another one.
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._expand_image_tokens(list(ids))

    def _expand_image_tokens(self, ids):
        out: list[int] = []
        for i in ids:
            out.extend(self._image_block if i == self.image_token_id else [i])
        return out

    def native_processor_kwargs(self):
        return {"do_image_splitting": False}  # the adapter's single-view mode (module docstring)

    @property
    def answer_end_id(self):
        # Answers end with the chat turn's end marker, which is what the model emits after an answer.
        return self._turn_end_id


# ---------------------------------------------------------------------------------------------------------
# Tiny twins: same class, tiny config, fixed-seed random init, offline tokenizer + processor + chat template.

# The real templates' shape (``<bos>User:<image>question<end_of_utterance>\nAssistant:``), written out for the
# tiny twins; SmolVLM's begins with <|im_start|>, Idefics3's with the tokenizer's BOS.
_TINY_TEMPLATE = (
    "{bos}{{% for m in messages %}}{{{{ m['role'] | capitalize }}}}"
    "{{{{ ':' if m['content'][0]['type'] == 'image' else ': ' }}}}"
    "{{% for c in m['content'] %}}{{% if c['type'] == 'image' %}}<image>{{% else %}}{{{{ c['text'] }}}}{{% endif %}}"
    "{{% endfor %}}<end_of_utterance>\n{{% endfor %}}{{% if add_generation_prompt %}}Assistant:{{% endif %}}"
)


def _build_tiny(out: Path, *, image_size: int, patch: int, scale: int, bos: str) -> None:
    """An Idefics3 twin of ``image_size`` px in ``patch`` px patches, a ``scale`` x ``scale`` pixel shuffle, and a
    template that begins with ``bos``."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    specials = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", "<|im_start|>")
    tokenizer = build_tokenizer(extra_special=specials)
    # The turn end doubles as EOS here; the real checkpoints' generation configs also stop on it.
    tokenizer.eos_token = "<end_of_utterance>"
    if bos == "<|im_start|>":  # SmolVLM: SmolLM2's tokenizer, whose BOS is <|im_start|> and adds none itself
        from tokenizers import processors

        tokenizer.bos_token = bos
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A")
    vision = Idefics3VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    config = Idefics3Config(
        vision_config=vision, text_config=text, scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(out)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}, do_image_splitting=False,
    )
    seq_len = (image_size // patch) ** 2 // scale**2
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
        chat_template=_TINY_TEMPLATE.format(bos=bos),
    )
    processor.save_pretrained(out)


# Plain functions, so that their key is read from this file without importing it (adapters.tiny.build_hash).
def build_tiny_smolvlm(out: Path) -> None:
    """SmolVLM-256M-like: 8x8 patches, 4x4 shuffle (the real one: 32x32 patches, scale 4 -> 64 tokens)."""
    _build_tiny(out, image_size=64, patch=8, scale=4, bos="<|im_start|>")


def build_tiny_idefics3(out: Path) -> None:
    """Idefics3-8B-like: 4x4 patches, 2x2 shuffle (the real one: 26x26 patches, scale 2 -> 169 tokens)."""
    _build_tiny(out, image_size=32, patch=8, scale=2, bos="{{ bos_token }}")


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.IDEFICS3
