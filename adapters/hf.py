"""The standard Hugging Face layout as data: an adapter declares module paths instead of re-typing accessors.

Most transformers MLLMs (``*ForConditionalGeneration``) keep their vision tower, projector and text decoder
under ``model.`` and their LM head at ``lm_head``. :class:`HFAdapter` resolves the paths a subclass declares with
``nn.Module.get_submodule`` and provides the parts, the decoder for the layer-wise analyses, and ``project``::

    class MyAdapter(HFAdapter):
        model_class = "LlavaForConditionalGeneration"
        projector_path = "model.multi_modal_projector"

A subclass still says what is model-specific: which features enter the projector (``vision_features``), the
prompt (``prompt_templates`` or ``format_prompt``) and the number of image tokens (``_num_image_tokens``).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ModelAdapter


class HFAdapter(ModelAdapter):
    """An adapter over a transformers model whose parts sit at the module paths below."""

    model_class: str = ""                        # a transformers class, e.g. "LlavaForConditionalGeneration"
    vision_path: str = "model.vision_tower"      # the vision encoder (frozen in every regime)
    projector_path: str = "model.multi_modal_projector"
    decoder_path: str = "model.language_model"   # the text decoder: the module whose ``layers`` are the blocks
    lm_head_path: str = "lm_head"
    _num_image_tokens: int

    def __init__(self, name: str, source: str, device="cpu", dtype=None, local_files_only: bool = False):
        import transformers

        self.load_hf(name, getattr(transformers, self.model_class), source=source, device=device, dtype=dtype,
                     local_files_only=local_files_only)
        self.image_token_id = self.model.config.image_token_id

    # parts
    def vision_module(self) -> nn.Module:
        return self.model.get_submodule(self.vision_path)

    def projector_module(self) -> nn.Module:
        return self.model.get_submodule(self.projector_path)

    def llm_module(self) -> nn.Module:
        """The decoder and the LM head, under their own attribute names (the names of saved fine-tuned weights)."""
        return nn.ModuleDict({path.rsplit(".", 1)[-1]: self.model.get_submodule(path)
                              for path in (self.decoder_path, self.lm_head_path)})

    def language_decoder(self) -> nn.Module:
        return self.model.get_submodule(self.decoder_path)

    # images
    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector_module()(features.to(self.dtype))

    # text
    def format_prompt(self, question: str) -> str:
        """The selected template of ``prompt_templates`` around the question."""
        if not self.prompt_templates:
            raise NotImplementedError(f"{type(self).__name__} declares no prompt_templates: override format_prompt()")
        return self.prompt_templates[self.template_name].format(question=question)

    @property
    def num_image_tokens(self) -> int:
        return self._num_image_tokens


__all__ = ["HFAdapter"]
