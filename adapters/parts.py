"""What models composed from parts share: a vision tower, a projector and a causal LM in one ``nn.Module``.

LiMBeR (``adapters/limber.py``) and the spec-composed models (``adapters/compose.py``) have no transformers class
of their own. :class:`PartsModel` wires their parts through the LM's own forward with ``inputs_embeds``, the
projected image tokens written over the image placeholders; :class:`PartsAdapter` is the adapter contract on top.
Each subclass says how its images become features (``image_features``, ``preprocess``) and how its prompt reads.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ModelAdapter, embed_with_image_tokens
from .contract import not_provided


class PartsModel(nn.Module):
    """``vision_tower`` + ``multi_modal_projector`` + ``language_model``; subclasses implement ``image_features``."""

    def __init__(self, vision_tower: nn.Module, multi_modal_projector: nn.Module, language_model: nn.Module,
                 image_token_id: int):
        super().__init__()
        self.vision_tower = vision_tower
        self.multi_modal_projector = multi_modal_projector
        self.language_model = language_model
        self.image_token_id = image_token_id

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids, attention_mask=None, *, position_ids=None, pixel_values=None, image_embeds=None,
                past_key_values=None, use_cache=None, **kwargs):
        if pixel_values is not None:
            image_embeds = self.multi_modal_projector(self.image_features(pixel_values))
        # The LM's embedding layer embeds the text (Gemma scales it by sqrt(hidden)); the projected image tokens are
        # used as they are, so the projector learns their scale (as in LiMBeR / Venhoff et al.).
        embeds = embed_with_image_tokens(self.language_model, input_ids, self.image_token_id, image_embeds)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                   cache=past_key_values, use_cache=use_cache, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # Only the LLM is ever trained through many layers; the vision tower is frozen in every regime. transformers'
    # names (its gradient_checkpointing_* are deprecated aliases).
    def activation_checkpointing_enable(self, **kwargs):
        self.language_model.activation_checkpointing_enable(**kwargs)

    def activation_checkpointing_disable(self):
        self.language_model.activation_checkpointing_disable()


class PartsAdapter(ModelAdapter):
    """The contract for a :class:`PartsModel`. A subclass sets ``model``, ``image_token``, ``image_token_id`` and
    ``_num_image_tokens``, and implements ``preprocess`` and ``format_prompt``."""

    # parts
    def vision_module(self):
        return self.model.vision_tower

    def projector_module(self):
        return self.model.multi_modal_projector

    def llm_module(self):
        return self.model.language_model

    # images
    @torch.no_grad()
    def vision_features(self, pixel_values):
        return self.model.image_features(pixel_values.to(self.dtype))

    def project(self, features):
        return self.projector_module()(features.to(self.dtype))

    # text
    @property
    def num_image_tokens(self):
        return self._num_image_tokens

    def _tokenize(self, text, first):
        # The template carries its own BOS. The placeholder is spliced in as ids rather than tokenised, so any
        # reserved token works even if the tokenizer would split its text.
        pieces = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in text.split(self.image_token)]
        ids = list(pieces[0])
        for p in pieces[1:]:
            ids += [self.image_token_id] * self.num_image_tokens + list(p)
        return ids

    @not_provided
    def native_inputs(self, question, image, answer=None):
        raise NotImplementedError(f"{type(self).__name__} composes its model from parts: there is no native processor "
                                  "or forward to compare with (the cached path is checked against full_forward)")

    # language model
    def lm_forward(self, input_ids, attention_mask, position_ids, image_embeds, *, past_key_values=None,
                   use_cache=False):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          image_embeds=image_embeds, past_key_values=past_key_values, use_cache=use_cache,
                          return_dict=True)

    def full_forward(self, input_ids, attention_mask, position_ids, pixel_values):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          pixel_values=pixel_values.to(self.dtype), use_cache=False, return_dict=True)
