"""Counting the real architecture on the meta device: parameters per part, LoRA parameters, FLOPs per part and
per training sample, and the bytes autograd saves for backward (activation memory).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` per part (the vision encoder, the projector
and the LLM run separately: the full forward of some models calls ``.item()``, which meta tensors cannot answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import Regime
from .architecture import adapters_default_llm_forward
from .memory import GRADIENT_BYTES, TRAINED_WEIGHT_BYTES, Gathered

LORA_RANK, LORA_TARGETS = 128, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRAINED_REGIMES = (Regime.FT_PROJ, Regime.FT_E2E)  # the two ways of training; LoRA trains like ft-e2e


@dataclass(frozen=True)
class LlmShape:
    """The text model's sizes that memory depends on, from its config."""

    hidden: int
    layers: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, text_config) -> LlmShape:
        heads = text_config.num_attention_heads
        return cls(hidden=text_config.hidden_size, layers=text_config.num_hidden_layers,
                   kv_heads=getattr(text_config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(text_config, "head_dim", None) or text_config.hidden_size // heads,
                   vocab=text_config.vocab_size)


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(fn) -> int:
    """FLOPs of running ``fn`` (forward and, if it calls it, backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def saved_bytes(fn, weights: frozenset[int] = frozenset()) -> int:
    """Bytes autograd keeps for backward while ``fn`` runs (meta tensors know their sizes), without the tensors
    in ``weights`` (ids of parameters) or views of them: a linear layer saves its weight to pass gradients to its
    input, which holds no new memory (the weights are counted as weights). Counting them, as plan once did,
    doubled a frozen 7B LLM's weights into FT-Proj's activations (13 of 21 GB per sample at 726 tokens)."""
    total, seen = 0, set()

    def pack(t):
        nonlocal total
        if id(t) in weights or (t._base is not None and id(t._base) in weights):
            return t
        key = (t.data_ptr() if t.device.type != "meta" else id(t), t.shape, t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


class MetaModel:
    """The real architecture built without weights on the meta device, in the run's dtype, with its parts."""

    def __init__(self, arch, dtype_bytes: int):
        self.arch, self.device = arch, torch.device("meta")
        self.dtype = torch.bfloat16 if dtype_bytes == 2 else torch.float32
        self.dtype_bytes = dtype_bytes
        with torch.device("meta"):
            prev = torch.get_default_dtype()
            torch.set_default_dtype(self.dtype)
            try:
                self.net = arch.build()
            finally:
                torch.set_default_dtype(prev)
        self.parts = arch.parts(self.net)
        self.net.requires_grad_(False)
        self.shape = LlmShape.of(arch.llm_config)

    def parameters(self) -> dict[str, int]:
        """Parameters per part (the adapter's part names), then ``total``."""
        counts = {k: count_parameters(v) for k, v in self.parts.items()}
        counts["total"] = count_parameters(self.net)
        return counts

    def lora_parameters(self) -> int:
        """Parameters of LoRA rank ``LORA_RANK`` on the LLM's attention and MLP projections."""
        n = 0
        for name, mod in self.parts["llm"].named_modules():
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS:
                n += LORA_RANK * (mod.in_features + mod.out_features)
        return n

    def _empty(self, *shape: int):
        return torch.empty(shape, device=self.device, dtype=self.dtype)

    def llm(self, embeds):
        arch = self.arch
        return arch.llm(self.net, embeds) if arch.llm else adapters_default_llm_forward(self.parts, embeds)

    def project(self, feats):
        arch = self.arch
        return arch.project(self.net, feats) if arch.project else self.parts["projector"](feats)

    def vision_flops(self) -> int | None:
        """FLOPs of the vision encoder on one image (None where the architecture does not say how to run it)."""
        arch = self.arch
        if not arch.vision:
            return None
        pixels = self._empty(1, arch.pixel_channels, arch.image_size, arch.image_size)
        return count_flops(lambda: arch.vision(self.net, pixels))

    def projector_flops(self) -> int:
        return count_flops(lambda: self.project(self._empty(1, *self.arch.feature_shape)))

    def llm_flops(self, tokens: int) -> int:
        """FLOPs of one LLM forward over ``tokens`` embeddings."""
        return count_flops(lambda: self.llm(self._empty(1, tokens, self.shape.hidden)))

    def train_flops(self, regime: str, tokens: int) -> int:
        """FLOPs of forward and backward of one training sample of ``tokens`` tokens."""
        return self._train_step(regime, tokens, measure=count_flops)

    def activation_bytes(self, regime: str, tokens: int) -> int:
        """Bytes autograd saves for backward in one training sample's forward."""
        weights = frozenset(id(p) for p in self.net.parameters())
        return self._train_step(regime, tokens, measure=lambda fn: saved_bytes(fn, weights))

    def gathered(self, regime: str) -> Gathered:
        """What a sharded engine gathers whole while training ``regime`` (:class:`~.memory.Gathered`): the
        parameters outside the trained modules' blocks (the root unit) and the largest block, in the bytes each
        is held in, and the gradients of their trained parameters."""
        trained_parts = ["projector"] + (["llm"] if regime in (Regime.FT_E2E, Regime.FT_E2E_LORA) else [])
        full = ["projector"] + (["llm"] if regime == Regime.FT_E2E else [])  # LoRA's own weights are negligible
        trained = {id(p) for k in full for p in self.parts[k].parameters()}
        blocks = [b for k in trained_parts for sub in self.parts[k].modules()
                  if isinstance(sub, torch.nn.ModuleList) for b in sub]
        in_blocks = {id(p) for b in blocks for p in b.parameters()}

        def held(params) -> tuple[int, int]:
            params = list(params)
            return (sum(p.numel() * (TRAINED_WEIGHT_BYTES if id(p) in trained else self.dtype_bytes) for p in params),
                    sum(p.numel() * GRADIENT_BYTES for p in params if id(p) in trained))

        root = held(p for p in self.net.parameters() if id(p) not in in_blocks)
        block = max((held(b.parameters()) for b in blocks), default=(0, 0))
        return Gathered(weights=root[0] + block[0], gradients=root[1] + block[1])

    def _train_step(self, regime: str, tokens: int, *, measure):
        self.net.requires_grad_(False)
        self.parts["projector"].requires_grad_(True)
        if regime == Regime.FT_E2E:
            self.parts["llm"].requires_grad_(True)
        feats = self._empty(1, *self.arch.feature_shape)

        def run():
            emb = self.project(feats)
            seq = torch.empty((1, tokens - emb.shape[1], self.shape.hidden), device=self.device, dtype=emb.dtype)
            out = self.llm(torch.cat([emb, seq], dim=1))
            if measure is count_flops:  # FLOPs include the backward; saved bytes are known after the forward
                out.float().sum().backward()
            return out

        try:
            return measure(run)
        finally:
            self.net.requires_grad_(False)
