"""The adapter contract as small protocols: what the benchmark asks of a model, one concern at a time.

An adapter is any object with these methods; :class:`~benchmark.adapters.base.ModelAdapter` implements them all
over a native transformers model, and :class:`~benchmark.adapters.hf.HFAdapter` fills in the usual Hugging Face
layout from module paths. The protocols name what each part of the benchmark relies on:

* :class:`Parts` – the vision / projector / LLM modules, to freeze, train and save them;
* :class:`Projection` – ``vision_features`` (cacheable, the encoder is frozen) and ``project``: ``Hv = phi(Xv)``;
* :class:`Prompting` – the conversation template and a tokenisation whose answer ends in ``answer_end_id``;
* :class:`LanguageModel` – the model's own forward with projected image tokens at the image positions;
* :class:`LayerAccess` – per-layer access for the layer-wise analyses;
* :class:`NativeReference` – optional: the model's own processor and forward, for the conformance suite.

Analyses declare the protocols they need (``AnalysisSpec.requires``, by name); :func:`missing` says which ones
an adapter lacks before anything runs. A method inherited from the base class that only raises
``NotImplementedError`` (marked with :func:`not_provided`) does not count as provided.

This module imports no torch: the annotations are strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class PromptParts:
    """Token ids of one example: the prompt (image tokens expanded) and the answer (ending in ``answer_end_id``)."""

    prompt_ids: list[int]
    answer_ids: list[int] = field(default_factory=list)


@runtime_checkable
class Parts(Protocol):
    """The three parts of the paper's decomposition, as modules of ``model``."""

    def vision_module(self) -> nn.Module: ...
    def projector_module(self) -> nn.Module: ...
    def llm_module(self) -> nn.Module: ...
    def parts(self) -> dict[str, nn.Module]: ...
    def trainable_modules(self, regime: str) -> dict[str, nn.Module]: ...


@runtime_checkable
class Projection(Protocol):
    """Images -> features entering the projector -> post-projection image tokens."""

    def preprocess(self, images: list) -> torch.Tensor: ...
    def preprocessing_signature(self) -> dict: ...
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor: ...
    def project(self, features: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Prompting(Protocol):
    """The conversation template around one image and a question, and its tokenisation."""

    prompt_templates: dict[str, str]
    image_token_id: int

    @property
    def template_name(self) -> str: ...
    @property
    def num_image_tokens(self) -> int: ...
    @property
    def pad_token_id(self) -> int: ...
    @property
    def answer_end_id(self) -> int: ...
    def use_template(self, name: str | None) -> None: ...
    def format_prompt(self, question: str) -> str: ...
    def encode(self, question: str, answer: str | None = None) -> PromptParts: ...


@runtime_checkable
class LanguageModel(Protocol):
    """The model's own forward, with the projected image tokens where its projector's output would go."""

    # The cache arguments are passed by keyword (implementations may also accept them by position).
    def lm_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                   image_embeds: torch.Tensor | None, *, past_key_values: Any = None, use_cache: bool = False) -> Any: ...
    def full_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                     pixel_values: torch.Tensor) -> Any: ...


@runtime_checkable
class LayerAccess(Protocol):
    """The LLM's blocks, final norm and unembedding, and where the image tokens are."""

    def language_decoder(self) -> nn.Module: ...
    def llm_layers(self) -> nn.ModuleList: ...
    def llm_final_norm(self) -> nn.Module | None: ...
    def llm_output_head(self) -> nn.Module: ...
    def unembed(self, hidden: torch.Tensor, final_norm: bool = True) -> torch.Tensor: ...
    def image_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor: ...
    def attention_implementation(self, impl: str) -> Any: ...


@runtime_checkable
class NativeReference(Protocol):
    """Optional: the model's own processor and forward, the reference of the conformance suite."""

    def native_inputs(self, question: str, image, answer: str | None = None) -> dict: ...
    def native_forward(self, inputs: dict) -> Any: ...


PROTOCOLS: dict[str, type] = {
    "parts": Parts, "projection": Projection, "prompting": Prompting, "language-model": LanguageModel,
    "layer-access": LayerAccess, "native-reference": NativeReference,
}
# What every adapter must provide; NativeReference is optional (composed models have no native forward).
REQUIRED = ("parts", "projection", "prompting", "language-model")

_NOT_PROVIDED = "__projbench_not_provided__"


def not_provided(method):
    """Mark a method that only says the adapter lacks the capability (it raises ``NotImplementedError``)."""
    setattr(method, _NOT_PROVIDED, True)
    return method


def _members(protocol: type) -> list[str]:
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return sorted(names)


def lacks(adapter, protocol: str | type) -> list[str]:
    """The members of ``protocol`` (a name of :data:`PROTOCOLS` or the class) that ``adapter`` does not provide."""
    proto = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    out = []
    for name in _members(proto):
        # Looked up on the class, so that checking never runs a property (some need a loaded model).
        attr = getattr(type(adapter), name, None)
        if attr is None and name not in getattr(adapter, "__dict__", {}):
            out.append(name)
        elif getattr(getattr(attr, "fget", attr), _NOT_PROVIDED, False):
            out.append(name)
    return out


def missing(adapter, requires) -> dict[str, list[str]]:
    """``{protocol name: members lacking}`` for each protocol in ``requires`` that ``adapter`` does not fully provide."""
    out = {}
    for name in requires:
        gaps = lacks(adapter, name)
        if gaps:
            out[name] = gaps
    return out


def unknown_protocols(requires) -> list[str]:
    """Names in ``requires`` that are not protocols of the contract (a spec's typo, caught at registration)."""
    return [r for r in requires if r not in PROTOCOLS]


__all__ = ["PROTOCOLS", "REQUIRED", "LanguageModel", "LayerAccess", "NativeReference", "Parts", "Projection",
           "PromptParts", "Prompting", "lacks", "missing", "not_provided", "unknown_protocols"]
