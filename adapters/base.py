"""The base class that implements the adapter contract (the protocols of ``contract.py``) over a transformers model.

An adapter wraps a native transformers model and exposes the three parts of the paper's decomposition
(vision encoder -> projector -> LLM) without re-implementing any forward pass:

* ``vision_features(pixel_values)``: what enters the projector (cacheable; the vision encoder is frozen in
  every regime);
* ``project(features)``: the post-projection image tokens ``Hv = phi(Xv)``;
* ``lm_forward(...)``: the model's own forward with those tokens placed at the image positions;
* per-layer access for the layer-wise analyses: ``language_decoder()`` (the decoder whose ``layers`` are the
  LLM's transformer blocks), ``llm_layers()``, ``llm_final_norm()``, ``llm_output_head()``, ``unembed()``,
  ``image_token_mask()`` and ``attention_implementation()``.

Everything else (prompting, losses, class scoring, probes) is written once, in ``benchmark``, on top of it.
The methods a subclass must fill in are marked ``@not_provided``: until overridden, the adapter does not provide
the protocol they belong to. ``hf.HFAdapter`` fills most of them in from module paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.schema import Regime

from .contract import PromptParts, not_provided  # noqa: F401  (PromptParts: re-exported, its former home)
from .spec import TINY_CLIP, AdapterSpec  # noqa: F401  (re-exported: their former home)


def embed_with_image_tokens(language_model: nn.Module, input_ids: torch.Tensor, image_token_id: int,
                            image_embeds: torch.Tensor | None) -> torch.Tensor:
    """Input embeddings of ``input_ids`` whose image placeholders hold ``image_embeds`` (B, tokens, hidden), in order.

    For models assembled from parts (a vision backbone, a projector and a causal LM) that have no
    ``mm_encoder_outputs`` forward of their own. The placeholder count must match the image tokens exactly.
    """
    embeds = language_model.get_input_embeddings()(input_ids)
    if image_embeds is None:
        return embeds
    slots = input_ids == image_token_id
    if int(slots.sum()) != image_embeds.shape[0] * image_embeds.shape[1]:
        raise ValueError(f"{int(slots.sum())} image placeholders for {tuple(image_embeds.shape[:2])} image tokens")
    return embeds.masked_scatter(slots[..., None], image_embeds.to(embeds.dtype))


@dataclass(frozen=True)
class Architecture:
    """How to build a model on the meta device and run its three parts separately (for FLOP counting).

    ``build()`` constructs the model from its published config (called under ``torch.device("meta")``);
    ``parts(model)`` returns its vision / projector / llm modules like the adapter's own ``parts()``;
    ``vision(model, pixels)``, ``project(model, features)`` and ``llm(model, embeds)`` run each part.
    """

    build: Callable[[], nn.Module]
    parts: Callable[[nn.Module], dict[str, nn.Module]]
    image_size: int                       # pixels per side of one image as the adapter feeds it
    feature_shape: tuple[int, int]        # (tokens, width) of the features entering the projector, per image
    image_tokens: int                     # image tokens per image in the LLM's input
    llm_config: Any                       # the text model's config (layers, heads, kv heads, hidden, vocab)
    source: str                           # where the config values come from (hub config.json)
    vision: Callable[[nn.Module, torch.Tensor], Any] | None = None   # None: not counted
    project: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None  # default: parts["projector"](x)
    llm: Callable[[nn.Module, torch.Tensor], Any] | None = None       # default: decoder + lm head on embeds
    pixel_channels: int = 3


class ModelAdapter:
    """Base class of every adapter. Subclasses fill in the model-specific methods below."""

    name: str = ""
    projector_family: str = ""
    checkpoint: str = ""            # resolved hub id or local path of the loaded weights
    model: nn.Module
    tokenizer: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype

    # --- parts, for freezing and for saving the fine-tuned projector ---------------------------------------
    @not_provided
    def vision_module(self) -> nn.Module:
        raise NotImplementedError

    @not_provided
    def projector_module(self) -> nn.Module:
        raise NotImplementedError

    @not_provided
    def llm_module(self) -> nn.Module:
        """The language model including its embeddings and LM head."""
        raise NotImplementedError

    def parts(self) -> dict[str, nn.Module]:
        return {"vision": self.vision_module(), "projector": self.projector_module(), "llm": self.llm_module()}

    def other_modules(self) -> dict[str, nn.Module]:
        """Modules of ``model`` that belong to none of the three parts, declared with a reason (default none).

        The conformance suite checks that vision, projector and LLM are disjoint and, with these, cover every
        parameter of ``model``: a parameter in no part would be trained or frozen by accident.
        """
        return {}

    # Regular expressions (``re.search``) over ``projector_module().named_parameters()`` names: parameters the
    # projector holds but its forward never uses, so they get no gradient in FT-Proj (BLIP-2's Q-Former text
    # feed-forward layers, which only text tokens pass through). Everything else must get a non-zero gradient.
    unused_projector_parameters: tuple[str, ...] = ()

    def load_hf(self, name: str, model_class, *, source, device="cpu", dtype=None,
                local_files_only: bool = False) -> None:
        """Load ``model_class`` and its ``AutoProcessor`` with ``from_pretrained``: the usual first line of ``__init__``.

        Sets ``name``, ``checkpoint``, ``device``, ``dtype`` (``None``: bf16 on CUDA, fp32 elsewhere), ``model``
        (in eval mode, on ``device``), ``processor`` and ``tokenizer``. ``source`` is a local directory or a hub
        id; a hub id missing from the local Hugging Face cache on a machine without hub access fails at once
        with the download command to run elsewhere.
        """
        from transformers import AutoProcessor

        from .loading import load_pretrained, resolve_dtype

        self.name = name
        self.checkpoint = str(source)
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = load_pretrained(model_class, source, local_files_only=local_files_only, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.processor = load_pretrained(AutoProcessor, source, local_files_only=local_files_only)
        self.tokenizer = self.processor.tokenizer

    _load_hf = load_hf  # the former private name, kept for adapters written against it

    # --- images ---------------------------------------------------------------------------------------------
    def preprocess(self, images: list) -> torch.Tensor:
        """PIL images -> pixel values, with the model's own image processor."""
        px = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return px.to(self.device, self.dtype)

    @not_provided
    def preprocessing_signature(self) -> dict:
        """Everything about preprocessing and feature selection that changes the cached features."""
        raise NotImplementedError

    @not_provided
    @torch.no_grad()
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, N, D_vision): the features the model feeds its projector."""
        raise NotImplementedError

    @not_provided
    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D_llm): post-projection image tokens."""
        raise NotImplementedError

    # --- text -----------------------------------------------------------------------------------------------
    # Named variants of the conversation template (name -> format string with ``{question}``), for adapters
    # that offer more than one; the first is the default. ``template_name`` is recorded in every run.
    prompt_templates: dict[str, str] = {}
    _template: str | None = None

    @property
    def template_name(self) -> str:
        return self._template or next(iter(self.prompt_templates), "native")

    def use_template(self, name: str | None) -> None:
        """Select a template variant by name (``None``: keep the default); unknown names fail clearly."""
        if name is None:
            return
        if name not in self.prompt_templates:
            from benchmark.errors import BenchmarkError

            offered = ", ".join(self.prompt_templates) or f"only its built-in one ({self.template_name})"
            raise BenchmarkError(f"--template {name!r}: the adapter {self.name!r} offers {offered}.")
        self._template = name

    @not_provided
    def format_prompt(self, question: str) -> str:
        """The model's conversation template around one image and one user question."""
        raise NotImplementedError

    @property
    @not_provided
    def num_image_tokens(self) -> int:
        raise NotImplementedError

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def encode(self, question: str, answer: str | None = None) -> PromptParts:
        """Tokenise prompt and answer so that prompt + answer equals the tokenisation of the whole text.

        The answer is split off the joint tokenisation (not encoded alone) so that tokenisers that merge across
        the boundary (SentencePiece's leading space) give the ids the model would really see; EOS ends it.
        """
        prompt_text = self.format_prompt(question)
        prompt_ids = self._tokenize(prompt_text, first=True)
        found = prompt_ids.count(self.image_token_id)
        if found != self.num_image_tokens:
            raise ValueError(
                f"{type(self).__name__}.format_prompt() must hold the image placeholder exactly once (expanded to "
                f"{self.num_image_tokens} image tokens, id {self.image_token_id}); the prompt has {found}: {prompt_text!r}"
            )
        if answer is None:
            return PromptParts(prompt_ids)
        whole = self._tokenize(prompt_text + self.answer_prefix + answer, first=True)
        if whole[: len(prompt_ids)] == prompt_ids:
            answer_ids = whole[len(prompt_ids):]
        else:  # the boundary merged; fall back to encoding the answer alone
            answer_ids = self._tokenize(self.answer_prefix + answer, first=False)
        return PromptParts(prompt_ids, answer_ids + [self.answer_end_id])

    answer_prefix: str = " "

    # Whether the real checkpoint's tokenizer starts every text with its BOS (Llama/Vicuna: True; Qwen, InternVL and
    # other ChatML models: False); None leaves it unchecked. The conformance suite fails a twin whose prompt ids
    # disagree (a twin built with build_tokenizer's default BOS for a model whose tokenizer adds none).
    expects_bos: bool | None = None

    @property
    def answer_end_id(self) -> int:
        """The token that ends an answer: supervised in training, the stop token of generation.

        The tokenizer's EOS by default; chat models whose turns end with their own marker (Idefics3's
        ``<end_of_utterance>``, Qwen's ``<|im_end|>``) override it.
        """
        return self.tokenizer.eos_token_id

    def _tokenize(self, text: str, first: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=first)["input_ids"]
        return self._expand_image_tokens(list(ids))

    def _expand_image_tokens(self, ids: list[int]) -> list[int]:
        """Replace the single image placeholder by as many placeholders as the projector emits tokens."""
        out: list[int] = []
        for i in ids:
            out.extend([self.image_token_id] * self.num_image_tokens if i == self.image_token_id else [i])
        return out

    image_token_id: int = -1

    # --- the language model ---------------------------------------------------------------------------------
    def lm_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        image_embeds: torch.Tensor | None,
        *,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> Any:
        """The model's own forward, with ``image_embeds`` (B, T, D) placed at the image-token positions.

        Returns the transformers output (``.logits``, ``.cache``). ``past_key_values`` is projbench's name for
        the KV cache in this contract; it is handed to transformers as ``cache=`` (the name since transformers
        5.24, where ``past_key_values=`` is deprecated, to be removed in 5.40).

        The default hands the projected tokens to the model's ``mm_encoder_outputs`` hook (transformers 5), which
        puts them where the model itself would put the output of its own projector. It passes them as a *list*
        of per-image ``(T, D)`` tensors as ``pooler_output`` (LLaVA's ``get_image_features`` returns a list), or as
        one stacked ``(B, T, D)`` tensor when ``stacked_image_embeds`` is set (InternVL's forward needs that).
        Override it when the model needs inputs that cannot be derived from the ids alone (``token_type_ids``,
        M-RoPE positions, a Q-Former's text); see docs/adding-an-adapter.md.
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling  # lazy: `list models` stays fast

        mm = None
        if image_embeds is not None:
            pooled = image_embeds if self.stacked_image_embeds else list(image_embeds)
            mm = {"image": BaseModelOutputWithPooling(pooler_output=pooled)}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          mm_encoder_outputs=mm, cache=past_key_values, use_cache=use_cache,
                          return_dict=True)

    # How the default lm_forward hands the image tokens to the model's ``mm_encoder_outputs["image"].pooler_output``:
    # a list of per-image (T, D) tensors (False: LLaVA, Qwen2-VL, whose get_image_features return lists) or one
    # stacked (B, T, D) tensor (True: InternVL, PaliGemma, Gemma 3, whose forwards read ``.shape``/``.to`` of it).
    stacked_image_embeds: bool = False

    def full_forward(self, input_ids, attention_mask, position_ids, pixel_values) -> Any:
        """The model's forward from pixels, untouched: the reference the cached path must equal."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          pixel_values=pixel_values, return_dict=True)

    # --- per-layer access (layer-wise analyses) -----------------------------------------------------------
    @not_provided
    def language_decoder(self) -> nn.Module:
        """The LLM's decoder stack: the module whose ``layers`` are its transformer blocks, in order.

        Adapters that do not implement it cannot run the layer-wise analyses (they are refused with this reason).
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose language_decoder()")

    def llm_layers(self) -> nn.ModuleList:
        """The transformer blocks of the LLM, input side first. Hidden state ``l`` is the output of block ``l-1``."""
        return self.language_decoder().layers

    def llm_final_norm(self) -> nn.Module | None:
        """The norm applied after the last block, before the LM head (``None`` if the model has none)."""
        dec = self.language_decoder()
        for attr in ("norm", "final_layer_norm"):  # Llama/Gemma/Qwen name it ``norm``; OPT ``final_layer_norm``
            if getattr(dec, attr, None) is not None:
                return getattr(dec, attr)
        return None

    def llm_output_head(self) -> nn.Module:
        """The LM head (hidden state -> vocabulary logits)."""
        return self.model.get_output_embeddings()

    def unembed(self, hidden: torch.Tensor, final_norm: bool = True) -> torch.Tensor:
        """Logits of hidden states read as if they were the last layer's (the logit lens).

        ``final_norm=False`` skips the final norm. Final-logit soft-capping (Gemma-2) is left out: it is monotone,
        so ranks of tokens do not change.
        """
        norm = self.llm_final_norm()
        h = hidden.to(self.dtype)
        if final_norm and norm is not None:
            h = norm(h)
        return self.llm_output_head()(h)

    def image_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """True at the positions of ``input_ids`` that carry the projected image tokens."""
        return input_ids == self.image_token_id

    def attention_implementation(self, impl: str):
        """A context manager running the LLM with attention ``impl`` (e.g. ``"eager"``), restored afterwards.

        Eager attention builds the explicit 4-D attention mask that attention knockout edits per layer.
        """
        import contextlib

        target = self.model if hasattr(self.model, "set_attn_implementation") else self.llm_module()

        @contextlib.contextmanager
        def switch():
            old = target.config._attn_implementation
            target.set_attn_implementation(impl)
            try:
                yield
            finally:
                target.set_attn_implementation(old)

        return switch()

    # --- the model's own reference, for the conformance suite ---------------------------------------------
    def native_processor_kwargs(self) -> dict:
        """Keyword arguments for the processor call of :meth:`native_inputs` (e.g. ``do_image_splitting=False``)."""
        return {}

    def native_system_prompt(self) -> str | None:
        """The system message :meth:`native_inputs` renders first, if the adapter's prompt template has one."""
        return None

    def native_inputs(self, question: str, image, answer: str | None = None) -> dict:
        """What the model's **own** processor and chat template make of one image, question (and answer).

        The reference the conformance suite compares ``encode`` (ids, answer end) and the cached path with:
        it must not go through ``format_prompt``/``encode``. The default renders a user turn (image, then the
        question) with the processor's chat template, plus the assistant's answer if given (else the generation
        cue), and runs the processor on that text and the image, as ``apply_chat_template(tokenize=True)``
        does. Models without a chat template override it to call their processor the way their model card does;
        an adapter that composes its model itself (no native processor or forward exists) raises
        ``NotImplementedError``, and the suite skips the comparisons that need it, saying why.
        Returns a batch of one (``input_ids``, ``attention_mask``, ``pixel_values``, ``token_type_ids``, ...).
        """
        # The processor's chat template, else the tokenizer's (some checkpoints keep it only there).
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            # Not NotImplementedError: that is how an adapter declares that no native reference exists (a model
            # it composes itself), and the suite then skips these comparisons.
            raise ValueError(
                f"{type(self).__name__}.native_inputs(): the processor has no chat template, so the prompt cannot be "
                "compared with the model's own. Save the model's chat template with the tiny twin's processor "
                "(`Processor(..., chat_template=...)`), or override native_inputs() to call the processor the way "
                "the model card does."
            )
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        system = self.native_system_prompt()
        if system is not None:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        text = self.processor.apply_chat_template(messages, chat_template=template, add_generation_prompt=answer is None,
                                                  tokenize=False)
        # transformers' own rule (ProcessorMixin.apply_chat_template): special tokens are added unless the
        # rendered text already starts with BOS.
        bos = self.tokenizer.bos_token
        specials = not (bos is not None and text.startswith(bos))
        return dict(self.processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=specials,
                                   **self.native_processor_kwargs()))

    def native_forward(self, inputs: dict) -> Any:
        """The model's forward on :meth:`native_inputs` as the processor returned them."""
        inputs = {k: v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device)
                  for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        return self.model(**inputs, return_dict=True)

    # --- fine-tuned weights -------------------------------------------------------------------------------
    def trainable_modules(self, regime: str) -> dict[str, nn.Module]:
        """Modules trained in a regime: ``ft-proj`` -> projector; ``ft-e2e`` -> projector + LLM."""
        if regime == Regime.FT_PROJ:
            return {"projector": self.projector_module()}
        if regime == Regime.FT_E2E:
            return {"projector": self.projector_module(), "llm": self.llm_module()}
        raise ValueError(f"no trainable modules for regime {regime!r}")
