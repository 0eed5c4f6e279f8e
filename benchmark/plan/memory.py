"""The memory model per GPU and engine, matching how ``benchmark.train.loop`` trains (docs/plan.md).

Bytes per parameter: frozen weights in the run's dtype (bf16: 2); trained weights kept as fp32 master copies (4),
their fp32 gradients (4) and AdamW's two fp32 moments (8). ``single`` is one GPU; DDP replicates everything on
every GPU; FSDP full-shard and DeepSpeed ZeRO-3 (two rows, ``fsdp`` and ``zero3``, with the same model: both
partition parameters, gradients and optimizer state over all GPUs) divide them by the number of GPUs and add
what they gather whole at their peak (:class:`Gathered`). Activations are per GPU at its micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .hardware import GB, Gpus

TRAINED_WEIGHT_BYTES, GRADIENT_BYTES, ADAM_BYTES = 4, 4, 8
# One row per way of holding the trained state: a single GPU, DDP (every GPU holds everything), FSDP full-shard
# and DeepSpeed ZeRO-3 (same partitioning of parameters, gradients and optimizer state over all GPUs).
ENGINES = ("single", "ddp", "fsdp", "zero3")
SHARDED = ("fsdp", "zero3")
MAX_SCORE_ROWS = 32  # benchmark.evaluate.loglik.SCORE_ROWS: KV-cache rows of class scoring at once, at most


def engines_on(hw: Gpus) -> tuple[str, ...]:
    """The engines worth a row on ``hw``: all of them on 2+ GPUs, else only ``single``."""
    return ENGINES if hw.count > 1 else ENGINES[:1]


def gpus_of(engine: str, hw: Gpus) -> int:
    """GPUs an engine trains on: one for ``single``, all of ``hw`` otherwise."""
    return 1 if engine == "single" else hw.count


# Bytes per (token, vocabulary entry) that the loss holds at its peak, the start of its backward, besides the logits
# in the model's dtype: the fp32 log-softmax saved by cross-entropy, the fp32 gradient that the NLL's backward writes
# into it (dense, though only answer rows are non-zero) and the fp32 gradient of its input. Measured at Qwen2-VL's
# and InternVL's 152k vocabulary (a real-width slice on the CPU), where one fp32 copy of the logits was 0.2 GB and
# the plan, counting one copy, predicted 1.0 GB less than the peak.
LOSS_BYTES = 12


@dataclass(frozen=True)
class Activations:
    """Activation bytes of one training sample, kept whole and under activation checkpointing (the loss's
    vocabulary-wide tensors included: :data:`LOSS_BYTES`)."""

    full: float
    checkpointed: float

    @classmethod
    def model(cls, saved: int, *, layers: int, hidden: int, tokens: int, vocab: int, dtype_bytes: int) -> Activations:
        """From ``saved``, the bytes autograd saves for one sample: checkpointing keeps each layer's input
        plus one layer's saved tensors at a time."""
        logits = tokens * vocab * (LOSS_BYTES + dtype_bytes)
        per_layer = saved / max(1, layers)
        return cls(full=saved + logits, checkpointed=layers * tokens * hidden * dtype_bytes + per_layer + logits)


@dataclass(frozen=True)
class Gathered:
    """Bytes a sharded engine holds whole at its peak besides its shards, as projbench's FSDP2 wraps a model
    (``benchmark.train.loop.shard_units``: one unit per block of the trained modules' layer lists, the rest with
    the root): the root unit's parameters (embeddings, LM head, vision tower, projector), gathered for the whole
    forward and backward, and the largest block's; and the gradients of their trained parameters before the
    reduce-scatter. Measured on two CPU processes on a one-layer real-width LLaVA-1.5 slice, where the root is most
    of the model: the plan without it predicted 4.8 GB per process for full FT-E2E, 7.8 GB were used."""

    weights: float = 0.0
    gradients: float = 0.0


@dataclass(frozen=True)
class Memory:
    """Bytes per GPU of one engine; activations are None for zero-shot (no training)."""

    weights: float
    gradients: float
    optimizer: float
    kv_cache_scoring: float
    activations: Activations | None = None
    gathered: Gathered = Gathered()

    @classmethod
    def model(cls, engine: str, hw: Gpus, *, total: int, trained: int, dtype_bytes: int, kv: float,
              activations: Activations | None, gathered: Gathered | None = None) -> Memory:
        shard = gpus_of(engine, hw) if engine in SHARDED else 1
        weights = ((total - trained) * dtype_bytes + trained * TRAINED_WEIGHT_BYTES) / shard
        if activations is None:  # zero-shot: nothing trained (evaluation runs on a whole copy, unsharded)
            return cls(weights, 0.0, 0.0, kv)
        held = (gathered or Gathered()) if engine in SHARDED and shard > 1 else Gathered()
        return cls(weights, trained * GRADIENT_BYTES / shard, trained * ADAM_BYTES / shard, kv, activations, held)

    @property
    def state(self) -> float:
        """Weights, gradients and optimizer state, and what a sharded engine gathers: what stays whatever the
        micro-batch."""
        return self.weights + self.gradients + self.optimizer + self.gathered.weights + self.gathered.gradients

    def to_gb(self) -> dict[str, float]:
        out = {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
               "gathered_weights": self.gathered.weights, "gathered_gradients": self.gathered.gradients}
        if self.activations is not None:
            out.update(activations_per_sample=self.activations.full,
                       activations_per_sample_checkpointed=self.activations.checkpointed)
        out["kv_cache_scoring"] = self.kv_cache_scoring
        return {k: v / GB for k, v in out.items()}


def kv_cache_bytes(*, score_rows: int, layers: int, kv_heads: int, head_dim: int, dtype_bytes: int,
                   tokens: int) -> float:
    """The KV cache class scoring holds: keys and values of every layer for ``score_rows`` rows of ``tokens``."""
    return min(score_rows, MAX_SCORE_ROWS) * (2 * layers * kv_heads * head_dim * dtype_bytes * tokens)
