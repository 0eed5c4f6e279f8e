"""Q-Former adapters: BLIP-2 (ViT-g -> Q-Former -> OPT) and InstructBLIP (ViT-g -> instruction-aware Q-Former -> Vicuna).

Both are ``*ForConditionalGeneration`` models whose projector is not a single module but three parts of the
top-level model, which together turn the ViT's patch tokens into ``num_query_tokens`` (32) LLM tokens:

* ``qformer``: the Querying Transformer (self-attention over the queries, cross-attention to the image);
* ``query_tokens``: the learned queries (an ``nn.Parameter`` of the top-level model, not a module);
* ``language_projection``: the linear map from Q-Former width to LLM width.

``projector_module()`` bundles the three under their own attribute names, so that freezing, the optimiser and
the saved ``projector.safetensors`` see exactly them (keys ``qformer.*``, ``query_tokens``,
``language_projection.*``, loadable into the model as they are).

Pre-projection features (``vision_features``) are what the model feeds its Q-Former: the vision model's
``last_hidden_state`` (all patch tokens plus CLS, after ``post_layernorm``), ``(B, 1 + patches, D_vit)``.
``project`` runs the three projector parts exactly as ``get_image_features`` chains them, giving
``(B, num_query_tokens, D_llm)``.

Prompt layout follows the models' own processors: the ``num_query_tokens`` image placeholders come *first*,
before BOS, then the tokenised prompt (BLIP-2 OPT: the BLIP-2 paper's ``Question: ... Answer:`` VQA
template; InstructBLIP: the instruction as it is, as LAVIS and the HF examples do). ``lm_forward`` injects
precomputed tokens through the model's own ``forward(mm_encoder_outputs=...)``, which ``masked_scatter``s them
into the placeholder embeddings (text-only continuations of a KV cache go to ``model.language_model``); it
refuses input ids without the right number of placeholders, because transformers 5 would otherwise silently
drop the image.

InstructBLIP's Q-Former also reads the instruction text (``qformer_input_ids``), so its output depends on the
prompt as well as on the image. Design choice: the Q-Former gets one **fixed instruction per adapter**
(``qformer_instruction``, default ``DEFAULT_QFORMER_INSTRUCTION``, the paper prompt's task sentence without
the domain phrase and class list), the same for every image, in ``project``, ``full_forward`` and training.
Why not the per-example prompt, as the HF processor would do:

* the paper prompt lists the classes in a per-example shuffled order, so ``Hv`` would change with the class
  order and the richness probe would measure prompt noise on top of the image;
* ``project(features)`` is also called with no prompt at all (the post-projection probes), and making it read
  state left behind by the last ``encode`` call would be fragile (``class_answer_ids`` encodes too);
* with a fixed instruction, ``Hv = phi(Xv)`` is a function of the image alone, as the protocol assumes, and
  the cached-feature path equals the full forward by construction.

Pass ``qformer_instruction=`` to the factory to use another instruction (e.g. one naming the task's domain).
It is deliberately not part of ``preprocessing_signature``: the cached ViT features do not depend on it; the
default is named in the registry's ``projector_modules`` text, which every result records.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from benchmark.errors import ModelLoadError

from . import catalog
from .base import ModelAdapter
from .tiny import build_tokenizer

BLIP2_TEMPLATE = "Question: {question} Answer:"
DEFAULT_QFORMER_INSTRUCTION = "Classify this image into one of the following categories."


class QFormerProjector(nn.Module):
    """The three projector parts of a BLIP-2-style model, registered under the model's own attribute names.

    It holds references, not copies: training or loading it changes the model (``query_tokens`` is the very
    same ``nn.Parameter`` object).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.qformer = model.qformer
        self.query_tokens = model.query_tokens
        self.language_projection = model.language_projection


class Blip2Adapter(ModelAdapter):
    projector_family = "q-former"
    model_class = "Blip2ForConditionalGeneration"
    # The Q-Former's text feed-forward layers: only text tokens pass through them, and BLIP-2 feeds its
    # Q-Former the queries alone (InstructBLIP feeds it the instruction too, so it uses them).
    unused_projector_parameters = (r"^qformer\.encoder\.layer\.\d+\.(intermediate|output)\.",)

    def __init__(self, name: str, source, device="cpu", dtype=None, local_files_only: bool = False, **kwargs):
        import transformers

        self.load_hf(name, getattr(transformers, self.model_class), source=source, device=device, dtype=dtype,
                     local_files_only=local_files_only)
        cfg = self.model.config
        if not cfg.use_decoder_only_language_model:
            # Flan-T5 variants put the prompt in an encoder: the causal scoring path does not apply to them.
            raise ModelLoadError(f"{source!r} has an encoder-decoder language model; only decoder-only LLMs "
                                 "(OPT, Vicuna) are supported by this adapter.")
        if cfg.image_token_id is None:
            raise ModelLoadError(
                f"{source!r} has no image token in its config (a checkpoint saved before transformers 4.47). "
                "transformers 5 needs image placeholders in the input ids; use an updated checkpoint."
            )
        self.image_token_id = cfg.image_token_id
        self._num_image_tokens = cfg.num_query_tokens
        self._projector = QFormerProjector(self.model)
        self._init_qformer_text(**kwargs)

    def _init_qformer_text(self, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected options {sorted(kwargs)}")

    @property
    def lora_targets(self) -> list[str]:
        # OPT names its attention output and MLP differently from Llama/Vicuna.
        if self.model.config.text_config.model_type == "opt":
            return ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
        return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    # parts
    def vision_module(self):
        return self.model.vision_model

    def projector_module(self):
        return self._projector

    def llm_module(self):
        # The causal-LM wrapper: token embeddings, decoder and LM head.
        return self.model.language_model

    def language_decoder(self):
        # OPT: ``model.decoder``; Llama/Vicuna (InstructBLIP): ``model``. Both answer ``get_decoder()``.
        return self.model.language_model.get_decoder()

    def unembed(self, hidden, final_norm=True):
        # OPT's decoder may project back from the hidden width to the embedding width after its final norm.
        dec = self.language_decoder()
        h = hidden.to(self.dtype)
        if final_norm and self.llm_final_norm() is not None:
            h = self.llm_final_norm()(h)
        if getattr(dec, "project_out", None) is not None:
            h = dec.project_out(h)
        return self.llm_output_head()(h)

    # images
    def preprocessing_signature(self):
        return {"image_processor": self.processor.image_processor.to_dict(), "features": "vision last_hidden_state"}

    @torch.no_grad()
    def vision_features(self, pixel_values):
        out = self.vision_module()(pixel_values=pixel_values.to(self.device, self.dtype), return_dict=True)
        return out.last_hidden_state

    def _qformer(self, query_tokens, image_embeds, image_mask):
        return self.model.qformer(
            query_embeds=query_tokens, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
            return_dict=True,
        ).last_hidden_state

    def project(self, features):
        # The chain of get_image_features from the vision output on: queries cross-attend to every image
        # token, the Q-Former's output goes back to the feature dtype (in fp16 the model keeps the Q-Former
        # in fp32), then the language projection.
        image_embeds = features.to(self.device, self.dtype)
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = self.model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self._qformer(queries, image_embeds, image_mask)[:, : queries.shape[1]]
        return self.model.language_projection(out.to(image_embeds.dtype))

    # text
    def format_prompt(self, question):
        return BLIP2_TEMPLATE.format(question=question)

    @property
    def num_image_tokens(self):
        return self._num_image_tokens

    def _tokenize(self, text, first):
        # The processors put the query placeholders before BOS (the LAVIS layout: query embeddings, then
        # the tokenised prompt), so they are prepended here instead of being expanded from the text.
        ids = list(self.tokenizer(text, add_special_tokens=first)["input_ids"])
        return [self.image_token_id] * self.num_image_tokens + ids if first else ids

    # language model
    def _check_image_tokens(self, input_ids, image_embeds):
        n = (input_ids == self.image_token_id).sum(-1)
        if image_embeds is None:
            if bool(n.any()):
                raise ValueError(f"{self.name}: input ids hold image placeholders but no image_embeds were given.")
            return
        if image_embeds.shape[0] != input_ids.shape[0] or bool((n != image_embeds.shape[1]).any()):
            raise ValueError(
                f"{self.name}: every row of input_ids must hold exactly {image_embeds.shape[1]} image placeholder "
                f"tokens (id {self.image_token_id}) for the image_embeds of shape {tuple(image_embeds.shape)}; "
                f"found {n.tolist()}. Without them transformers silently drops the image: build prompts with "
                "adapter.encode()."
            )

    def lm_forward(self, input_ids, attention_mask, position_ids, image_embeds, *, past_key_values=None,
                   use_cache=False):
        from transformers.models.blip_2.modeling_blip_2 import BaseModelOutputWithVisionQformerOutputs

        self._check_image_tokens(input_ids, image_embeds)
        common = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      cache=past_key_values, use_cache=use_cache, return_dict=True)
        if image_embeds is None:
            # A continuation of a cached prompt: text only, so the LLM's own forward (the outer forward would
            # insist on pixels or image outputs).
            return self.model.language_model(**common)
        image = BaseModelOutputWithVisionQformerOutputs(pooler_output=image_embeds)
        # (InstructBLIP's forward requires the Q-Former text even though precomputed tokens make it unused.)
        out = self.model(pixel_values=None, mm_encoder_outputs={"image": image},
                         **self.qformer_text_inputs(input_ids.shape[0]), **common)
        # The outer output keeps the LLM's cache only inside language_model_outputs; its logits are the same.
        return out.language_model_outputs

    def native_inputs(self, question, image, answer=None):
        # BLIP-2 has no chat template; its model card prompts with the VQA template, answer after a space.
        text = BLIP2_TEMPLATE.format(question=question) + ("" if answer is None else " " + answer)
        return dict(self.processor(images=[image], text=[text], return_tensors="pt"))

    def qformer_text_inputs(self, batch_size: int) -> dict[str, torch.Tensor]:
        """What the model's forward and ``get_image_features`` take besides pixels (InstructBLIP: instruction)."""
        return {}

    def full_forward(self, input_ids, attention_mask, position_ids, pixel_values):
        return self.model(
            pixel_values=pixel_values.to(self.device, self.dtype), input_ids=input_ids,
            attention_mask=attention_mask, position_ids=position_ids,
            **self.qformer_text_inputs(input_ids.shape[0]), return_dict=True,
        )


class InstructBlipAdapter(Blip2Adapter):
    """InstructBLIP: the Q-Former also reads a (fixed, see the module docstring) instruction."""

    model_class = "InstructBlipForConditionalGeneration"

    def _init_qformer_text(self, qformer_instruction: str | None = None):
        # Only the queries' outputs leave the Q-Former, so the text feed-forward of its last layer is unused.
        last = self.model.config.qformer_config.num_hidden_layers - 1
        self.unused_projector_parameters = (rf"^qformer\.encoder\.layer\.{last}\.(intermediate|output)\.",)
        self.qformer_instruction = qformer_instruction or DEFAULT_QFORMER_INSTRUCTION
        enc = self.processor.qformer_tokenizer(self.qformer_instruction, return_tensors="pt")
        self._qformer_ids = enc["input_ids"].to(self.device)
        self._qformer_mask = enc["attention_mask"].to(self.device)

    def qformer_text_inputs(self, batch_size):
        return {"qformer_input_ids": self._qformer_ids.expand(batch_size, -1),
                "qformer_attention_mask": self._qformer_mask.expand(batch_size, -1)}

    def _qformer(self, query_tokens, image_embeds, image_mask):
        # Queries and instruction tokens attend to each other; only the queries cross-attend to the image.
        text = self.qformer_text_inputs(query_tokens.shape[0])
        query_mask = torch.ones(query_tokens.shape[:-1], dtype=torch.long, device=query_tokens.device)
        return self.model.qformer(
            input_ids=text["qformer_input_ids"],
            attention_mask=torch.cat([query_mask, text["qformer_attention_mask"]], dim=1),
            query_embeds=query_tokens, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
            return_dict=True,
        ).last_hidden_state

    def format_prompt(self, question):
        return question

    def native_inputs(self, question, image, answer=None):
        # The model card passes the instruction as it is. The processor also hands it to the Q-Former; the
        # adapter's documented normalisation replaces that by the fixed Q-Former instruction (module docstring).
        text = question + ("" if answer is None else " " + answer)
        out = dict(self.processor(images=[image], text=[text], return_tensors="pt"))
        out.update(self.qformer_text_inputs(1))
        return out


# ---------------------------------------------------------------------------------------------------------
# Tiny twins: same classes, tiny configs, fixed-seed random init, offline tokenizers and processors.

TINY_IMAGE, TINY_PATCH, TINY_QUERIES = 56, 14, 32


def _tiny_vision_kwargs():
    # initializer_range: the vision config's default (1e-10) leaves a random twin's patch and position
    # embeddings at ~0, so every image gives the same features; trained checkpoints are nothing like that.
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=TINY_IMAGE, patch_size=TINY_PATCH, initializer_range=0.02)


def _tiny_qformer_kwargs():
    # Two layers with cross-attention every second layer, like the real 12-layer Q-Former.
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                cross_attention_frequency=2, max_position_embeddings=128)


def _tiny_image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE})


def _init_and_save(model_cls, config, out: Path):
    torch.manual_seed(0)
    model = model_cls(config)
    # The model initialises the queries to zeros, which makes all 32 query outputs identical; trained
    # checkpoints have distinct queries (LAVIS initialises them N(0, 0.02)), so the twin does too.
    with torch.no_grad():
        model.query_tokens.normal_(0.0, config.initializer_range)
    model.save_pretrained(out)


def build_tiny_blip2(out: Path) -> None:
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        OPTConfig,
    )

    tokenizer = build_tokenizer()
    text = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=64, word_embed_proj_dim=64, ffn_dim=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = Blip2Config(
        vision_config=Blip2VisionConfig(**_tiny_vision_kwargs()),
        qformer_config=Blip2QFormerConfig(**_tiny_qformer_kwargs()),
        text_config=text, num_query_tokens=TINY_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    _init_and_save(Blip2ForConditionalGeneration, config, out)
    Blip2Processor(_tiny_image_processor(), tokenizer, num_query_tokens=TINY_QUERIES).save_pretrained(out)


def build_tiny_instructblip(out: Path) -> None:
    from transformers import (
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        InstructBlipQFormerConfig,
        InstructBlipVisionConfig,
        LlamaConfig,
    )

    tokenizer = build_tokenizer()
    # The real Q-Former reads BERT word pieces; the twin uses its own small offline tokenizer.
    qformer_tokenizer = build_tokenizer(vocab_size=512, extra_special=())
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    qformer = InstructBlipQFormerConfig(
        vocab_size=len(qformer_tokenizer), pad_token_id=qformer_tokenizer.pad_token_id, **_tiny_qformer_kwargs(),
    )
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(**_tiny_vision_kwargs()), qformer_config=qformer,
        text_config=text, num_query_tokens=TINY_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    _init_and_save(InstructBlipForConditionalGeneration, config, out)
    InstructBlipProcessor(
        _tiny_image_processor(), tokenizer, qformer_tokenizer, num_query_tokens=TINY_QUERIES,
    ).save_pretrained(out)


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.BLIP2 + catalog.INSTRUCTBLIP
