"""PaliGemma adapter: SigLIP -> one linear layer -> Gemma (PaliGemmaForConditionalGeneration).

The projector is ``model.model.multi_modal_projector`` (a single ``nn.Linear``); the vision features are what
PaliGemma itself feeds it, the SigLIP ``last_hidden_state`` (post-layernorm patch tokens, no CLS, no pooling
head).

PaliGemma is a prefix-LM, and the adapter keeps it one:

* The processor's layout is ``<image>*N <bos> prompt \\n`` (the *prefix*) followed by ``answer <eos>`` (the
  *suffix*), each tokenised on its own; ``encode`` reproduces it token for token.
* The prefix attends bidirectionally and the suffix causally. The model reads this from ``token_type_ids``
  (0 = prefix, 1 = suffix), which the benchmark's generic ``lm_forward`` call does not carry, so the adapter
  derives them from the ids: the suffix is whatever follows the last newline-bearing token of a row (the
  prefix always ends with the processor's ``\\n``; ``encode`` refuses answers containing a newline, so the rule
  is exact). Training on prompt + answer therefore gets the prefix-LM mask, and class scoring gets a
  bidirectional prefix in its first pass; continuation passes over a KV cache are causal, which is what
  PaliGemma's own forward does after its first iteration.
* PaliGemma counts positions from 1; the benchmark's explicit positions count from 0, so one is added.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import catalog
from .base import PromptParts
from .hf import HFAdapter
from .tiny import build_tokenizer


class PaliGemmaAdapter(HFAdapter):
    projector_family = "linear"
    model_class = "PaliGemmaForConditionalGeneration"  # parts at HFAdapter's default paths
    answer_prefix = ""  # the suffix is tokenised on its own, right after the prefix's newline

    def __init__(self, name: str, source: str, device="cpu", dtype=None, local_files_only: bool = False):
        super().__init__(name, source, device, dtype, local_files_only)
        self._num_image_tokens = int(self.processor.image_seq_length)
        self._newline: dict[int, bool] = {}  # token id -> does its text contain "\n" (filled lazily)

    # images
    def preprocessing_signature(self):
        return {"image_processor": self.processor.image_processor.to_dict(), "features": "vision_tower.last_hidden_state"}

    @torch.no_grad()
    def vision_features(self, pixel_values):
        # Exactly what PaliGemmaModel.get_image_features hands to its projector.
        return self.vision_module()(pixel_values.to(self.dtype)).last_hidden_state

    # text
    def format_prompt(self, question):
        return f"{self.processor.image_token}{self.tokenizer.bos_token}{question}\n"

    def encode(self, question: str, answer: str | None = None) -> PromptParts:
        # The processor tokenises prefix and suffix as a text pair, i.e. separately, with BOS written into
        # the prefix text and EOS appended to the suffix text; no other special tokens are added.
        prompt_ids = self._expand_image_tokens(
            self.tokenizer(self.format_prompt(question), add_special_tokens=False)["input_ids"]
        )
        if answer is None:
            return PromptParts(prompt_ids)
        answer_ids = self.tokenizer(answer + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        if any(self._is_newline(i) for i in answer_ids):
            raise ValueError(f"PaliGemma answers cannot contain a newline (it ends the prefix): {answer!r}")
        return PromptParts(prompt_ids, answer_ids)

    def _is_newline(self, token_id: int) -> bool:
        if token_id not in self._newline:
            self._newline[token_id] = "\n" in self.tokenizer.decode([token_id])
        return self._newline[token_id]

    def token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """0 for the prefix (padding, image, prompt, up to its final newline), 1 for the suffix after it."""
        ids = input_ids.tolist()
        newline = torch.tensor([[self._is_newline(i) for i in row] for row in ids], dtype=torch.bool)
        idx = torch.arange(input_ids.shape[1])
        last = torch.where(newline, idx, -1).max(dim=1).values[:, None]  # -1: no newline, all prefix
        return ((idx[None] > last) & (last >= 0)).long().to(input_ids.device)

    def native_inputs(self, question, image, answer=None):
        # The model card's call: the prompt as the text, the answer as the processor's ``suffix``.
        out = self.processor(text=[self.processor.image_token + question], images=[image],
                             suffix=None if answer is None else [answer], return_tensors="pt")
        out.pop("labels", None)
        return dict(out)

    # language model
    def _forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=False, **kwargs):
        first_pass = past_key_values is None or not getattr(past_key_values, "is_initialized", False)
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids + 1,  # PaliGemma positions are 1-indexed
            # After the first pass PaliGemma ignores token types: tokens added over a cache are causal suffix.
            token_type_ids=self.token_type_ids(input_ids) if first_pass else None,
            cache=past_key_values,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )

    def lm_forward(self, input_ids, attention_mask, position_ids, image_embeds, *, past_key_values=None,
                   use_cache=False):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        mm = None
        if image_embeds is not None:
            mm = {"image": BaseModelOutputWithPooling(pooler_output=image_embeds)}
        return self._forward(input_ids, attention_mask, position_ids, past_key_values, use_cache,
                             mm_encoder_outputs=mm)

    def full_forward(self, input_ids, attention_mask, position_ids, pixel_values):
        return self._forward(input_ids, attention_mask, position_ids, pixel_values=pixel_values.to(self.dtype))


# ---------------------------------------------------------------------------------------------------------
# Tiny twin: same classes (PaliGemmaForConditionalGeneration + PaliGemmaProcessor), tiny config, fixed seed.


def build_tiny_paligemma(out: Path) -> None:
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    image_size, patch = 28, 7
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = (image_size // patch) ** 2  # PaliGemmaProcessor reads it from here
    # The processor adds PaliGemma's <loc>/<seg> tokens to the tokenizer, so the vocabulary is sized after it.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=build_tokenizer())
    tokenizer = processor.tokenizer
    hidden = 64
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch, vision_use_head=False,
    )
    text = GemmaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=vision, text_config=text, image_token_index=processor.image_token_id,
        vocab_size=len(tokenizer), projection_dim=hidden, hidden_size=hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration(config)
    model.save_pretrained(out)
    processor.save_pretrained(out)


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.PALIGEMMA
load_paligemma_tiny = {s.name: s for s in ADAPTERS}["paligemma-tiny"].factory
