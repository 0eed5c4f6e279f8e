"""InternVL adapter: InternViT -> pixel shuffle -> LayerNorm-MLP projector -> Qwen2 LLM (InternVLForConditionalGeneration).

The model (transformers' ``modeling_internvl.py``, the ``-hf`` checkpoints such as ``OpenGVLab/InternVL3-1B-hf``)
feeds its projector ``model.model.multi_modal_projector`` (LayerNorm over 4 x D_vision, linear, GELU, linear) with
the vision tower's last hidden state, CLS dropped, folded by a parameter-free pixel shuffle
(``downsample_ratio = 0.5``: every 2x2 block of patches becomes one 4 x D_vision row). The vision features are
exactly that projector input, ``(B, (S/14)^2 / 4, 4 x D_vision)``: 256 rows of 4096 for a 448-pixel image. The
pixel shuffle has no parameters, so whether it counts as vision or projector changes nothing that is trained;
the model applies it before the projector module, and so does the adapter.

Fixed image-token count. InternVL's processor tiles each image by default (``crop_to_patches=True``: up to 12
448-pixel tiles chosen from the aspect ratio, plus a thumbnail), so the number of image tokens would vary with
each image's size. The adapter switches tiling off, in its own preprocessing and in the native reference
(``crop_to_patches=False``): every image is resized to one ``S x S`` square and becomes ``image_seq_length``
tokens (256), framed as ``<img>`` + ``<IMG_CONTEXT>`` x 256 + ``</img>`` just as the processor writes it. This is
the model's single-tile mode, which spends fewer tokens than the checkpoints' default.

Prompt. The chat template is the checkpoint's own (ChatML: ``<|im_start|>user\\n<IMG_CONTEXT>\\n{question}
<|im_end|>\\n<|im_start|>assistant\\n``), rendered once around a sentinel; Qwen2's tokenizer prepends no BOS
(``expects_bos = False``); answers end with ``<|im_end|>``. The model's forward takes the projected tokens as
one stacked ``(B, T, D)`` ``pooler_output`` (``get_image_features`` returns a tensor, and the forward reads
``.shape`` and ``.to`` of it), not the default list (``stacked_image_embeds = True``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import catalog
from .hf import HFAdapter
from .idefics3 import chat_template_around
from .tiny import BOS_BY_TOKENIZER, build_tokenizer

TURN_END = "<|im_end|>"
NO_TILING = {"crop_to_patches": False}  # one tile per image: a fixed image-token count


class InternVLAdapter(HFAdapter):
    projector_family = "pixel-shuffle-mlp"
    model_class = "InternVLForConditionalGeneration"  # parts at HFAdapter's default paths
    answer_prefix = ""  # the template ends in "<|im_start|>assistant\n"; the answer follows directly
    expects_bos = False  # Qwen2's tokenizer prepends nothing
    stacked_image_embeds = True

    def __init__(self, name: str, source: str, device="cpu", dtype=None, local_files_only: bool = False):
        super().__init__(name, source, device, dtype, local_files_only)
        cfg = self.model.config
        self._feature_layer = cfg.vision_feature_layer
        self._strategy = cfg.vision_feature_select_strategy
        self._ratio = cfg.downsample_ratio
        side = cfg.vision_config.image_size[0] // cfg.vision_config.patch_size[0]
        tokens = round(side * side * self._ratio**2)
        if self.processor.image_seq_length != tokens:
            raise ValueError(f"{source}: the processor writes {self.processor.image_seq_length} image tokens per "
                             f"tile, the vision config gives {tokens} ({side}x{side} patches, ratio {self._ratio}).")
        self._num_image_tokens = tokens
        self._frame = (self.tokenizer.start_image_token_id, self.tokenizer.end_image_token_id)
        self._before, self._after = chat_template_around(self.processor)
        self._turn_end_id = self.tokenizer.convert_tokens_to_ids(TURN_END)

    # images
    def preprocess(self, images):
        px = self.processor.image_processor(images=images, return_tensors="pt", **NO_TILING)["pixel_values"]
        if px.shape[0] != len(images):
            raise RuntimeError(f"{px.shape[0]} tiles for {len(images)} images: tiling must be off.")
        return px.to(self.device, self.dtype)

    def preprocessing_signature(self):
        return {
            "image_processor": self.processor.image_processor.to_dict(),
            "tiling": NO_TILING,
            "vision_feature_layer": self._feature_layer,
            "vision_feature_select_strategy": self._strategy,
            "features": f"pixel shuffle (downsample_ratio {self._ratio}) entering multi_modal_projector",
        }

    @torch.no_grad()
    def vision_features(self, pixel_values):
        out = self.vision_module()(pixel_values=pixel_values.to(self.device, self.dtype), return_dict=True,
                                   output_hidden_states=self._feature_layer != -1)
        h = out.last_hidden_state if self._feature_layer == -1 else out.hidden_states[self._feature_layer]
        if self._strategy == "default":
            h = h[:, 1:]
        b, n, d = h.shape
        side = int(n**0.5)
        grid = self.model.model.pixel_shuffle(h.reshape(b, side, side, d), scale_factor=self._ratio)
        return grid.reshape(b, -1, grid.shape[-1])

    # text
    def format_prompt(self, question):
        return self._before + question + self._after

    def _expand_image_tokens(self, ids):
        """``<IMG_CONTEXT>`` -> ``<img>`` + ``<IMG_CONTEXT>`` x num_image_tokens + ``</img>``, as the processor does."""
        start, end = self._frame
        out: list[int] = []
        for i in ids:
            out.extend([start, *[i] * self.num_image_tokens, end] if i == self.image_token_id else [i])
        return out

    @property
    def answer_end_id(self):
        return self._turn_end_id

    def native_processor_kwargs(self):
        return dict(NO_TILING)


# ---------------------------------------------------------------------------------------------------------
# Tiny twin: same class, tiny config, fixed-seed random init, offline tokenizer + processor + chat template.

# The chat template of the -hf checkpoints, verbatim (transformers' convert_internvl_weights_to_hf.py writes it).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
NAMED_TOKENS = {"context_image_token": "<IMG_CONTEXT>", "start_image_token": "<img>", "end_image_token": "</img>",
                "video_token": "<video>"}
TINY_IMAGE_SIZE, TINY_PATCH = 32, 4  # 8x8 patches, pixel-shuffled 2x2 -> 16 image tokens


def build_tiny_internvl(out: Path, bos: str | None = BOS_BY_TOKENIZER["qwen"]) -> None:
    """The twin; ``bos`` is the tokenizer's (none, as Qwen2's), a parameter only to build a wrong twin on purpose."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = build_tokenizer(extra_special=("<|im_start|>", TURN_END), named_special=NAMED_TOKENS,
                                bos=bos)
    tokenizer.eos_token = TURN_END  # as in InternVL3-hf's tokenizer
    tokens = (TINY_IMAGE_SIZE // TINY_PATCH) ** 2 // 4
    config = InternVLConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": TINY_IMAGE_SIZE, "patch_size": TINY_PATCH, "attention_bias": True},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 512, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                     "tie_word_embeddings": True},
        image_token_id=tokenizer.context_image_token_id, image_seq_length=tokens, downsample_ratio=0.5,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    InternVLForConditionalGeneration(config).save_pretrained(out)
    # Tiling on, as the checkpoints ship it; the adapter switches it off.
    image_processor = GotOcr2ImageProcessor(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
                                            crop_to_patches=True, max_patches=12,
                                            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                  video_processor=InternVLVideoProcessor(), image_seq_length=tokens,
                                  chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.INTERNVL
