"""LLaVA-1.5 adapter: CLIP ViT-L/14-336 -> 2-layer MLP projector -> Vicuna (LlavaForConditionalGeneration).

The projector is ``model.model.multi_modal_projector``. The vision features are what LLaVA itself feeds it:
the hidden states of ``config.vision_feature_layer`` (the penultimate CLIP layer) with CLS dropped under the
"default" selection strategy.

Images are padded to a square with the CLIP mean colour before the CLIP processor (``image_aspect="pad"``, the
default), as LLaVA-1.5 trained and evaluated (``--image_aspect_ratio pad`` in its fine-tuning scripts; its
``process_images`` at inference): see ``images.py``. ``image_aspect="processor"`` keeps the llava-hf processor's
centre crop. The choice is part of ``preprocessing_signature`` and so of the feature-cache key.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import catalog
from .hf import HFAdapter
from .images import check_image_aspect, mean_colour, pad_to_square
from .tiny import build_tokenizer

# LLaVA-1.5's own conversation template ``vicuna_v1`` (``conv_vicuna_v1`` in the LLaVA repository): its
# fine-tuning scripts select it (``--version v1``) and its evaluation scripts too (``--conv-mode vicuna_v1``).
# The Vicuna system prompt, then "USER: <image>\n<question> ASSISTANT:" with " " as the separator; the answer is
# " <answer></s>". The paper ran LLaVA's code, so this is the default.
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the user's questions.")
VICUNA_V1_TEMPLATE = VICUNA_SYSTEM + " USER: <image>\n{question} ASSISTANT:"
# ``conv_llava_v1`` of the same repository: the same layout with "human" for "user" in the system prompt. No
# LLaVA-1.5 script uses it; projbench's results before schema 3 did, so it stays selectable: --template llava_v1.
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                   "helpful, detailed, and polite answers to the human's questions.")
LLAVA_V1_TEMPLATE = LLAVA_V1_SYSTEM + " USER: <image>\n{question} ASSISTANT:"
# The short form of the llava-hf model cards (no system prompt), kept as an option: --template short.
LLAVA_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"

# The shape of llava-hf/llava-1.5-7b-hf's chat template (a system message as its bare text; images first, then
# text; "ASSISTANT:" as the cue; an assistant turn renders as " {answer} " with no end marker: the model's EOS
# ends it), given to the tiny twin's processor so that the conformance suite can compare prompts with the
# model's own rendering. With a system message it renders vicuna_v1 (or llava_v1) exactly.
_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] != 'system' %}{{ m['role'].upper() }}: {% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


class LlavaAdapter(HFAdapter):
    projector_family = "mlp"
    expects_bos = True  # Llama's tokenizer prepends <s>
    model_class = "LlavaForConditionalGeneration"  # parts at HFAdapter's default paths (model.multi_modal_projector)
    prompt_templates = {"vicuna_v1": VICUNA_V1_TEMPLATE, "llava_v1": LLAVA_V1_TEMPLATE, "short": LLAVA_TEMPLATE}

    def __init__(self, name: str, source: str, device="cpu", dtype=None, local_files_only: bool = False, *,
                 image_aspect: str = "pad"):
        self.image_aspect = check_image_aspect(image_aspect, adapter=name)
        super().__init__(name, source, device, dtype, local_files_only)
        cfg = self.model.config
        self._feature_layer = cfg.vision_feature_layer
        self._strategy = cfg.vision_feature_select_strategy
        # Count placeholders the way the model's own processor expands them, on one blank image.
        from PIL import Image

        size = self.processor.image_processor.crop_size
        blank = Image.new("RGB", (size["width"], size["height"]))
        ids = self.processor(text="<image>", images=[blank], return_tensors="pt")["input_ids"][0]
        self._num_image_tokens = int((ids == self.image_token_id).sum())

    # images
    def square(self, image):
        """``image`` as LLaVA-1.5 hands it to CLIP's processor: padded to a square with the mean colour ("pad")."""
        if self.image_aspect != "pad":
            return image
        return pad_to_square(image, mean_colour(self.processor.image_processor.image_mean))

    def preprocess(self, images):
        return super().preprocess([self.square(im) for im in images])

    def preprocessing_signature(self):
        pad = self.image_aspect == "pad"
        return {
            "image_processor": self.processor.image_processor.to_dict(),
            "image_aspect": self.image_aspect,
            "pad_colour": list(mean_colour(self.processor.image_processor.image_mean)) if pad else None,
            "vision_feature_layer": self._feature_layer,
            "vision_feature_select_strategy": self._strategy,
        }

    def native_inputs(self, question, image, answer=None):
        # The reference is LLaVA-1.5's own pipeline: the same padding, then the model's processor and template.
        return super().native_inputs(question, self.square(image), answer)

    @torch.no_grad()
    def vision_features(self, pixel_values):
        out = self.vision_module()(pixel_values, output_hidden_states=True, return_dict=True)
        layers = [self._feature_layer] if isinstance(self._feature_layer, int) else list(self._feature_layer)
        hs = [out.hidden_states[i] for i in layers]
        if self._strategy == "default":
            hs = [h[:, 1:] for h in hs]
        return torch.cat(hs, dim=-1)

    # text
    def native_system_prompt(self):
        # vicuna_v1 and llava_v1 are the model's chat template with a system message in front.
        return {"vicuna_v1": VICUNA_SYSTEM, "llava_v1": LLAVA_V1_SYSTEM}.get(self.template_name)


# ---------------------------------------------------------------------------------------------------------
# Tiny twin: same class, tiny config, fixed-seed random init, offline tokenizer + processor.


def build_tiny_llava(out: Path) -> None:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = build_tokenizer()
    image_size, patch = 56, 14
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=image_size, patch_size=patch, projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.save_pretrained(out)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=True, do_resize=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=_TINY_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.LLAVA
load_llava_tiny = {s.name: s for s in ADAPTERS}["llava15-tiny"].factory
