"""Qwen2-VL adapter: native-resolution ViT -> patch merger -> Qwen2 LLM with M-RoPE (Qwen2VLForConditionalGeneration).

The projector is ``model.model.visual.merger`` (``PatchMerger``): a LayerNorm over each patch, then every
2x2 block of neighbouring patches is concatenated and mapped by a 2-layer GELU MLP to one LLM token. The vision
features are what the vision tower's last block hands to the merger (``visual(...).last_hidden_state``), one
row per 14-pixel patch in the processor's merge-block order, returned as ``(B, N_patches, D_vision)``.

Fixed resolution. Qwen2-VL picks each image's grid from its size and aspect ratio, so token counts vary per
image even with ``min_pixels == max_pixels`` (the pixel budget is fixed, the grid shape is not). The adapter
resizes every image to one ``S x S`` square first (bicubic, aspect ratio not kept; ``S`` a multiple of
patch x merge) and calls the image processor with ``min_pixels = max_pixels = S^2``, so every image is the same
``(S/14)^2`` patches and ``(S/28)^2`` LLM tokens. Default ``S = 448``: 1024 patches, 256 tokens.

Positions (M-RoPE). The LLM rotates queries and keys by 3-D (temporal, height, width) positions: text tokens
advance all three together, image tokens take their grid coordinates. ``lm_forward`` therefore does not use
the 1-D positions the benchmark passes in as is:

* a call without a KV cache (prompt scoring, training) gets the model's own ``get_rope_index`` positions,
  computed from ``input_ids`` (image tokens marked as ``mm_token_type_ids``), the fixed image grid and the
  attention mask, so left padding does not shift them; their text component equals the 1-D positions;
* that call also stores the per-row rope delta (``3-D position - 1-D position`` after the image, here
  ``S/28 - (S/28)^2``) on the returned cache;
* a continuation call (with that cache) uses the passed 1-D positions plus the stored delta, repeated to the
  cache's batch if the cache was repeated per class, exactly the rule the model's own generation uses.

``full_forward`` lets the model compute its positions itself from pixels, grid and token types: it is the
reference the cached-feature path is tested against.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import catalog
from .hf import HFAdapter
from .idefics3 import chat_template_around
from .tiny import BOS_BY_TOKENIZER, build_tokenizer

ROPE_DELTAS = "projbench_rope_deltas"  # attribute of a returned cache: the prompt's M-RoPE deltas, (B, 1)
TURN_END = "<|im_end|>"


class Qwen2VLAdapter(HFAdapter):
    projector_family = "patch-merger"
    model_class = "Qwen2VLForConditionalGeneration"
    projector_path = "model.visual.merger"  # the decoder and LM head at HFAdapter's default paths
    answer_prefix = ""  # the template ends in "<|im_start|>assistant\n"; the answer follows directly
    expects_bos = False  # Qwen2's tokenizer prepends nothing

    def __init__(self, name: str, source: str, device="cpu", dtype=None, local_files_only: bool = False, *,
                 image_size: int = 448):
        super().__init__(name, source, device, dtype, local_files_only)
        cfg = self.model.config
        ip = self.processor.image_processor
        vision = cfg.vision_config
        if (ip.patch_size, ip.merge_size, ip.temporal_patch_size) != (
                vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size):
            raise ValueError(f"{source}: image processor and vision config disagree on patch/merge sizes.")
        factor = ip.patch_size * ip.merge_size
        if image_size % factor:
            raise ValueError(f"image_size must be a multiple of {factor} (patch x merge), got {image_size}.")
        self.image_size = image_size
        side = image_size // ip.patch_size
        self._grid = torch.tensor([[1, side, side]], dtype=torch.long)  # (t, h, w) in patches, per image
        self._num_patches = side * side
        self._num_image_tokens = self._num_patches // ip.merge_size**2
        self._before, self._after = chat_template_around(self.processor)
        self._turn_end_id = self.tokenizer.convert_tokens_to_ids(TURN_END)

    # parts
    def vision_module(self):
        # The merger lives inside ``visual``; the vision part is everything of it except the merger.
        visual = self.model.model.visual
        return torch.nn.ModuleDict({"patch_embed": visual.patch_embed, "rotary_pos_emb": visual.rotary_pos_emb,
                                    "blocks": visual.blocks})

    # images
    def _pixel_budget(self) -> dict:
        n = self.image_size**2
        return {"shortest_edge": n, "longest_edge": n}  # min_pixels == max_pixels

    def preprocess(self, images):
        """(B, N_patches, C*T*P*P): the processor's flattened patches, one block of rows per image."""
        from PIL import Image

        square = [im.convert("RGB").resize((self.image_size,) * 2, Image.BICUBIC) for im in images]
        px = self.processor.image_processor(images=square, size=self._pixel_budget(), return_tensors="pt")
        if not torch.equal(px["image_grid_thw"], self._grid.repeat(len(images), 1)):
            raise RuntimeError(f"Unexpected image grid {px['image_grid_thw'].tolist()} for {self.image_size}px.")
        return px["pixel_values"].view(len(images), self._num_patches, -1).to(self.device, self.dtype)

    def preprocessing_signature(self):
        return {
            "image_processor": self.processor.image_processor.to_dict(),
            "square_resize": {"side": self.image_size, "resample": "PIL bicubic, aspect ratio not kept"},
            "pixels": self._pixel_budget(),
            "features": "visual.blocks output entering visual.merger",
        }

    def _grids(self, n_images: int) -> torch.Tensor:
        return self._grid.repeat(n_images, 1).to(self.device)

    @torch.no_grad()
    def vision_features(self, pixel_values):
        b = pixel_values.shape[0]
        flat = pixel_values.reshape(b * self._num_patches, -1).to(self.device, self.dtype)
        out = self.model.model.visual(flat, grid_thw=self._grids(b), return_dict=True)
        return out.last_hidden_state.view(b, self._num_patches, -1)

    def project(self, features):
        b, n, d = features.shape
        merged = self.projector_module()(features.reshape(b * n, d).to(self.device, self.dtype))
        return merged.view(b, self._num_image_tokens, -1)

    # text
    def format_prompt(self, question):
        return self._before + question + self._after

    def _tokenize(self, text, first):
        # The chat template is the whole prompt; the tokenizer must not add anything to it.
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._expand_image_tokens(list(ids))

    @property
    def answer_end_id(self):
        # Answers end with the chat turn's end marker, which is what the model emits after an answer.
        return self._turn_end_id

    def native_inputs(self, question, image, answer=None):
        # The documented normalisation of this adapter: the image is resized to the fixed square first and the
        # processor given the matching pixel budget; the rest is the processor and its chat template as they are.
        from PIL import Image

        square = image.convert("RGB").resize((self.image_size,) * 2, Image.BICUBIC)
        return super().native_inputs(question, square, answer)

    def native_processor_kwargs(self):
        return {"size": self._pixel_budget()}

    # language model
    def rope_positions(self, input_ids, attention_mask):
        """The model's own 3-D M-RoPE positions (3, B, L) and per-row deltas (B, 1) for a sequence from its start."""
        image_tokens = input_ids == self.image_token_id
        n_images, rest = divmod(int(image_tokens.sum()), self._num_image_tokens)
        if rest:
            raise ValueError(f"{int(image_tokens.sum())} image tokens is not a whole number of "
                             f"{self._num_image_tokens}-token images.")
        return self.model.model.get_rope_index(
            input_ids, mm_token_type_ids=image_tokens.int(),
            image_grid_thw=self._grids(n_images) if n_images else None, attention_mask=attention_mask,
        )

    def lm_forward(self, input_ids, attention_mask, position_ids, image_embeds, *, past_key_values=None,
                   use_cache=False):
        cached = past_key_values is not None and past_key_values.get_seq_length() > 0
        if cached:
            deltas = getattr(past_key_values, ROPE_DELTAS, None)
            if deltas is None:
                raise ValueError("Qwen2-VL continuation needs a cache returned by this adapter's lm_forward "
                                 "(it carries the prompt's M-RoPE deltas).")
            deltas = deltas.repeat_interleave(input_ids.shape[0] // deltas.shape[0], dim=0)
            pos3 = position_ids[None].expand(3, -1, -1) + deltas[None]
        else:
            pos3, deltas = self.rope_positions(input_ids, attention_mask)
        from transformers.modeling_outputs import BaseModelOutputWithPooling  # lazy: `list models` stays fast

        mm = None
        if image_embeds is not None:
            mm = {"image": BaseModelOutputWithPooling(pooler_output=list(image_embeds))}
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=pos3,
            mm_encoder_outputs=mm,
            cache=past_key_values,
            use_cache=use_cache,
            return_dict=True,
        )
        if use_cache and not cached:
            setattr(out.cache, ROPE_DELTAS, deltas)
        return out

    def full_forward(self, input_ids, attention_mask, position_ids, pixel_values):
        # ``position_ids`` (1-D) is deliberately not passed: the model derives its M-RoPE positions itself.
        b = pixel_values.shape[0]
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask,
            pixel_values=pixel_values.reshape(b * self._num_patches, -1), image_grid_thw=self._grids(b),
            mm_token_type_ids=(input_ids == self.image_token_id).int(), return_dict=True,
        )


# ---------------------------------------------------------------------------------------------------------
# Tiny twin: same class, tiny config, fixed-seed random init, offline tokenizer + processor + chat template.

# The shape of Qwen2-VL-Instruct's template for one user turn with an image (default system prompt included).
_TINY_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_IMAGE_SIZE = 32  # 8x8 patches of 4 px -> 16 LLM tokens (4x4 grid: M-RoPE delta 4 - 16 = -12)


def build_tiny_qwen2vl(out: Path) -> None:
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    specials = ("<|im_start|>", TURN_END, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    tokenizer = build_tokenizer(extra_special=specials, bos=BOS_BY_TOKENIZER["qwen"])  # Qwen's adds no BOS
    tokenizer.eos_token = TURN_END  # as in Qwen2-VL-Instruct's tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    patch, merge, temporal = 4, 2, 2
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2, "embed_dim": 32, "num_heads": 4, "mlp_ratio": 2, "hidden_size": 64,
            "patch_size": patch, "spatial_merge_size": merge, "temporal_patch_size": temporal,
        },
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
            # head_dim 16 -> 8 rotary frequencies, split over (t, h, w) like Qwen2-VL's [16, 24, 24] of 64
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": ids[TURN_END],
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,  # as Qwen2-VL-2B
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(out)
    pixels = TINY_IMAGE_SIZE**2
    kw = {"patch_size": patch, "merge_size": merge, "temporal_patch_size": temporal}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": pixels, "longest_edge": pixels}, **kw),
        video_processor=Qwen2VLVideoProcessor(**kw), tokenizer=tokenizer, chat_template=_TINY_TEMPLATE,
    )
    processor.save_pretrained(out)


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.QWEN2VL
