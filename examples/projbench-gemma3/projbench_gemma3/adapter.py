"""Gemma 3 (``Gemma3ForConditionalGeneration``) adapter for projbench (registered by ``plugin.py``).

Gemma 3's image path: SigLIP (``model.vision_tower``) -> ``model.multi_modal_projector`` -> Gemma 3 LLM. The
projector is more than a linear map: it average-pools the patch grid to ``mm_tokens_per_image`` tokens,
applies an RMSNorm (``mm_soft_emb_norm``) and then the projection matrix (``mm_input_projection_weight``).
All three belong to the projector, so the cached vision features are SigLIP's ``last_hidden_state``, before
the pooling, and FT-Proj trains the norm and the matrix.

What the adapter must do itself, because the benchmark's generic calls cannot know it:

* the prompt is the processor's chat template (``<bos><start_of_turn>user\\n<start_of_image>...``), where the
  processor replaces ``<start_of_image>`` by ``\\n\\n<start_of_image>`` + ``mm_tokens_per_image`` soft image
  tokens + ``<end_of_image>\\n\\n``; ``_tokenize`` makes the same replacement before tokenising;
* answers end with ``<end_of_turn>``, which ends every turn in Gemma's template;
* image tokens attend to each other bidirectionally: the model reads this from ``token_type_ids`` (1 = image
  token), which ``lm_forward`` and ``full_forward`` derive from the ids;
* Gemma 3's forward takes ``pooler_output`` as one stacked ``(B, T, D)`` tensor, not the default list;
* the twin re-randomises the projection matrix that Gemma 3's ``_init_weights`` zeroes.

This module imports torch; the registration (``plugin.py``) names its class and the twin's builder as strings, so
projbench imports it only when a Gemma 3 model is built.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark import HFAdapter, build_tokenizer, rerandomise_zero_matrices

TURN_END = "<end_of_turn>"
SENTINEL = "\x00QUESTION\x00"


class Gemma3Adapter(HFAdapter):
    # HFAdapter's default module paths are Gemma 3's: model.vision_tower, model.multi_modal_projector,
    # model.language_model and lm_head; it loads the model and processor and sets image_token_id (the soft token).
    model_class = "Gemma3ForConditionalGeneration"
    projector_family = "pooled-linear"
    answer_prefix = ""  # the template ends in "<start_of_turn>model\n": the answer follows directly

    def __init__(self, name, source, device="cpu", dtype=None, local_files_only=False):
        super().__init__(name, source, device, dtype, local_files_only)
        self._num_image_tokens = self.model.config.mm_tokens_per_image
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SENTINEL}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        self._before, self._after = text.split(SENTINEL)
        self._turn_end_id = self.tokenizer.convert_tokens_to_ids(TURN_END)

    # images
    def preprocessing_signature(self):
        return {"image_processor": self.processor.image_processor.to_dict(), "features": "vision_tower.last_hidden_state"}

    @torch.no_grad()
    def vision_features(self, pixel_values):
        return self.vision_module()(pixel_values=pixel_values.to(self.device, self.dtype)).last_hidden_state

    def project(self, features):
        return self.projector_module()(features.to(self.device, self.dtype))

    # text
    def format_prompt(self, question):
        return self._before + question + self._after

    def _tokenize(self, text, first):
        # The processor's expansion of the image marker, then the tokenizer without extra specials (the
        # template writes <bos> itself).
        text = text.replace(self.processor.boi_token, self.processor.full_image_sequence)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def answer_end_id(self):
        return self._turn_end_id

    # language model
    def token_type_ids(self, input_ids):
        return (input_ids == self.image_token_id).long()

    def lm_forward(self, input_ids, attention_mask, position_ids, image_embeds, *, past_key_values=None,
                   use_cache=False):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        first_pass = past_key_values is None or past_key_values.get_seq_length() == 0
        mm = None if image_embeds is None else {"image": BaseModelOutputWithPooling(pooler_output=image_embeds)}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          token_type_ids=self.token_type_ids(input_ids) if first_pass else None,
                          mm_encoder_outputs=mm, cache=past_key_values, use_cache=use_cache, return_dict=True)

    def full_forward(self, input_ids, attention_mask, position_ids, pixel_values):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          pixel_values=pixel_values.to(self.device, self.dtype),
                          token_type_ids=self.token_type_ids(input_ids), return_dict=True)


# ---------------------------------------------------------------------------------------------------------
# Tiny twin: Gemma3ForConditionalGeneration + Gemma3Processor with a tiny config, an offline tokenizer and the
# shape of gemma-3-it's chat template.

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] | trim }}"
    "{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
IMAGE_SIZE, PATCH, TOKENS = 28, 7, 4  # 4x4 patches, pooled 2x2 -> 4 image tokens


def build_tiny(out: Path, rerandomise: bool = True) -> None:
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        PreTrainedTokenizerFast,
    )

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    base = build_tokenizer(extra_special=("<start_of_turn>", TURN_END, *named.values()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", extra_special_tokens=named)
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in named.items()}
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 512,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": [tokenizer.eos_token_id, turn_end_id(tokenizer)],
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": IMAGE_SIZE, "patch_size": PATCH, "vision_use_head": False},
        mm_tokens_per_image=TOKENS, boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
        image_token_index=ids["image_token"],
    )
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(config).save_pretrained(out)
    if rerandomise:
        # Gemma 3's _init_weights zeroes mm_input_projection_weight: a twin left so has a projector that outputs
        # zeros for every image, and the conformance suite fails it as vacuous.
        rerandomise_zero_matrices(out)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE, image_seq_length=TOKENS,
    )
    processor.save_pretrained(out)


def turn_end_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(TURN_END)  # gemma-3-it's generation config stops on it too
