"""Fine-tuning from cached vision features: FT-Proj (projector only) and FT-E2E (projector + LLM, or LoRA).

One plain loop: for each batch, project the cached features, run the model's own forward with them at the
image positions, and take the cross-entropy of the answer tokens only. The vision encoder is never run.

The loop is written once, against the engine protocol of ``benchmark.distributed.engines``: how the trained
weights are held (one process, DDP, FSDP2, DeepSpeed ZeRO-3), stepped and saved is the engine's business. The
stages of one call: ``_start`` (unfreeze, let the engine prepare module and optimizer), ``_resume``, then per
global batch ``_global_batch`` (micro-batches over this process's share) and ``_optimizer_step``, ``_finish``
and ``_record``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark import distributed
from benchmark.config import TrainConfig
from benchmark.distributed.engines import BatchLayout, Engine, Optimization
from benchmark.errors import BenchmarkError
from benchmark.evaluate.batching import answer_loss, collate
from benchmark.evaluate.prompt import build_question
from benchmark.schema import Regime
from benchmark.train import state as train_state
from benchmark.validation import batch_layout


class NonFiniteLossError(BenchmarkError):
    """The training loss became NaN or infinite."""


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def set_trainable(adapter, regime: str, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze what the regime trains. Returns the trainable parameters."""
    adapter.model.requires_grad_(False)
    modules = adapter.trainable_modules(regime)
    if regime == Regime.FT_E2E and cfg.lora:
        from peft import LoraConfig, inject_adapter_in_model

        llm = modules.pop("llm")
        targets = getattr(adapter, "lora_targets", LORA_TARGETS)
        inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules=targets,
                                           lora_dropout=cfg.lora_dropout), llm)
        for name, p in llm.named_parameters():
            p.requires_grad_("lora_" in name)
    for m in modules.values():
        m.requires_grad_(True)
    return [p for p in adapter.model.parameters() if p.requires_grad]


def enable_checkpointing(adapter, regime: str) -> int:
    """Turn on transformers' activation (gradient) checkpointing and make it act; returns the number of checkpointed
    layers. Non-reentrant checkpoints (``torch.utils.checkpoint``'s ``use_reentrant=False``): transformers' default,
    spelled out so that a change of that default changes nothing here.

    A layer checkpoints only in training mode (``GradientCheckpointingLayer``: ``gradient_checkpointing and
    training``). FT-Proj keeps the frozen LLM in eval mode, where the flag alone would do nothing, so its layers
    are put in training mode, which changes no number where they have no active dropout; with dropout it would,
    so that is refused.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    # activation_checkpointing_*: the names of transformers >= 5.24, whose gradient_checkpointing_* aliases warn
    adapter.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in adapter.model.modules()
              if isinstance(m, GradientCheckpointingLayer) and getattr(m, "gradient_checkpointing", False)]
    if not layers:
        raise BenchmarkError(f"--gradient-checkpointing: {adapter.name} has no layer that transformers can "
                             "checkpoint; run without the flag.")
    in_llm = {id(m) for m in adapter.llm_module().modules()}  # the vision tower never runs here (cached features)
    frozen = [m for m in layers if not m.training and id(m) in in_llm]
    dropout = sorted({f"{name}={p:g}" for m in frozen for name, p in _dropout_rates(m) if p > 0})
    if dropout:
        raise BenchmarkError(f"--gradient-checkpointing in {regime}: the frozen LLM of {adapter.name} would have to run "
                             f"in training mode, which switches on its dropout ({', '.join(dropout[:3])}) and changes "
                             "the results; run without --gradient-checkpointing.")
    for m in frozen:
        m.train()
    return len(layers)


def _dropout_rates(module: torch.nn.Module):
    """(name, rate) of every dropout a module and its children apply in training mode: ``nn.Dropout`` modules and
    the float ``*dropout*`` attributes that functional dropout reads (``attention_dropout``, OPT's ``dropout``)."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            yield type(sub).__name__, float(sub.p)
        for name, value in vars(sub).items():
            if "dropout" in name and isinstance(value, float):
                yield name, value


def cosine_with_warmup(optimizer, total_steps: int, warmup_ratio: float):
    """LLaVA-1.5's schedule (HF Trainer, ``lr_scheduler_type cosine``): ``ceil(ratio * total)`` warm-up steps rising
    linearly from lr 0 (the first step's factor is 0), then a half cosine to 0, as transformers'
    ``get_cosine_schedule_with_warmup``."""
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step):
        if step < warmup:
            return step / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_batch(adapter, samples, *, indices, classes, domain, seed):
    """Examples ``indices`` of ``samples`` encoded with their answers and collated as one training batch."""
    parts = [adapter.encode(build_question(domain, classes, seed, samples[i].uid), classes[samples[i].label])
             for i in indices]
    return collate(parts, adapter.pad_token_id, with_answer=True)


class AnswerTokenLoss(torch.nn.Module):
    """One training forward as a module, so that an engine (DDP, FSDP) can wrap the whole step.

    Projects the cached features, runs the model's own forward with them and returns the SUM of the answer
    tokens' cross-entropies: the caller divides by the answer-token count of the whole global batch.
    """

    def __init__(self, adapter):
        super().__init__()
        self.model = adapter.model
        object.__setattr__(self, "adapter", adapter)  # not a submodule: its model is already registered above

    def forward(self, feats, input_ids, attention_mask, position_ids, labels):
        embeds = self.adapter.project(feats)
        out = self.adapter.lm_forward(input_ids, attention_mask, position_ids, embeds)
        return answer_loss(out.logits, labels, reduction="sum")[0]


def checkpoint_interval(cfg: TrainConfig, total_steps: int, trainable: int) -> int:
    """Optimizer steps between mid-training checkpoints; 0 = none.

    By default ten per run when the trained state is small (projector, LoRA: cheap to save); none for full
    fine-tuning of a large LLM, whose state with optimizer moments is several times the model.
    """
    if cfg.checkpoint_every is not None:
        return cfg.checkpoint_every
    return max(1, total_steps // 10) if trainable <= AUTO_CHECKPOINT_MAX_PARAMS else 0


AUTO_CHECKPOINT_MAX_PARAMS = 200_000_000


@dataclass
class _Examples:
    """The training examples as the loop takes them: encoded once (prompt + answer), features by index."""

    adapter: Any
    samples: list
    classes: list
    domain: str
    seed: int
    features: Callable
    _encoded: dict = field(default_factory=dict)

    def encoded(self, i: int):
        if i not in self._encoded:
            s = self.samples[i]
            self._encoded[i] = self.adapter.encode(build_question(self.domain, self.classes, self.seed, s.uid),
                                                   self.classes[s.label])
        return self._encoded[i]


@dataclass
class _Run:
    """One call of ``finetune``: what it trains with, and how far it has come (``step``: optimizer steps)."""

    adapter: Any
    regime: str
    cfg: TrainConfig
    seed: int
    ctx: distributed.ProcessContext
    engine: Engine
    module: torch.nn.Module  # the training forward (AnswerTokenLoss) as the engine runs it
    optimization: Optimization
    params: list  # the trained parameters as the engine holds them (shards, partitions)
    layout: BatchLayout
    autocast: Any
    upcast: bool
    total_steps: int
    every: int  # optimizer steps between saved training states; 0 = none
    n_trainable: int
    resume_file: Path | None
    losses: list = field(default_factory=list)
    supervised: int = 0
    step: int = 0
    resumed_from: int = 0
    trained: int = 0  # examples trained by this call (not those before a resume)
    grad_norm: float | None = None  # of the last optimizer step, before clipping


def finetune(adapter, regime: str, *, store, samples, classes, domain, seed: int, cfg: TrainConfig,
             progress: bool = True, features_fn=None, resume_file: Path | None = None) -> dict:
    """Train in place. ``features_fn(indices)`` overrides where features come from (benchmarks use pixels).

    Each optimizer step takes the next ``cfg.batch_size`` examples (the global batch) of a seeded permutation.
    They are split over the processes and, within a process, into micro-batches; the loss is the mean over ALL
    answer tokens of the global batch (their count is known from the tokenised answers before any forward), so
    any split gives the gradient of one batch of the global size.

    With ``resume_file``, the trained state, optimizer, schedule and position in the data are saved there every
    few optimizer steps, and a run that finds the file continues from it, giving the same result as one that
    was never interrupted.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    run = _start(adapter, regime, cfg, seed=seed, n=len(samples), resume_file=resume_file)
    # Share of the trained weights this process holds: 1 unless sharded (FSDP2, ZeRO-3: about 1 / processes).
    held = sum(distributed.local_numel(p) for p in run.params) / run.n_trainable
    gen = torch.Generator().manual_seed(seed)
    if resume_file is not None and Path(resume_file).exists():
        _resume(run)
    examples = _Examples(adapter, samples, classes, domain, seed, features_fn or store.get)
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(total=run.total_steps, desc=f"train {regime}", unit="step",
               disable=not progress or not run.ctx.is_main, initial=run.step)
    for batch_ids in _pending_batches(len(samples), cfg, gen, done=run.step):
        loss, n_tok = _global_batch(run, examples, batch_ids)
        _optimizer_step(run, loss, n_tok, len(batch_ids))
        bar.update(1)
        bar.set_postfix(loss=f"{run.losses[-1]:.3f}")
    bar.close()
    _finish(run)
    seconds = time.perf_counter() - start
    return _record(run, held=held, seconds=seconds,
                   cpu_seconds=run.ctx.sum(time.process_time() - cpu_start))  # all threads of all processes


def _start(adapter, regime: str, cfg: TrainConfig, *, seed: int, n: int, resume_file) -> _Run:
    """Unfreeze what the regime trains and let the engine prepare the training forward and its optimizer."""
    ctx = distributed.current()
    params = set_trainable(adapter, regime, cfg)
    if not params:
        raise RuntimeError(f"Regime {regime!r} left no trainable parameter in {adapter.name}.")
    for m in adapter.trainable_modules(regime).values():
        m.train()
    if cfg.gradient_checkpointing:
        enable_checkpointing(adapter, regime)
    micro, accumulation = batch_layout(cfg.batch_size, cfg.micro_batch, ctx.world_size)
    layout = BatchLayout(cfg.batch_size, micro, accumulation, cfg.max_grad_norm, adapter.dtype)
    engine = distributed.engine_for(ctx, cfg.engine, layout=layout, shard_modules=shard_units(adapter, regime))
    # Half-precision models (bf16 on GPU) train with fp32 master copies of the trained weights and a bf16 forward
    # under autocast: in bf16 itself, most updates at FT-E2E's lr (2e-5) would round to nothing.
    half = adapter.dtype in (torch.bfloat16, torch.float16)
    upcast = half and not engine.keeps_master_weights
    if upcast:
        for p in params:
            p.data = p.data.float()
    total_steps = math.ceil(n / cfg.batch_size) * cfg.epochs
    n_trainable = int(sum(p.numel() for p in params))
    every = checkpoint_interval(cfg, total_steps, n_trainable) if resume_file else 0
    module, optimization = engine.prepare(AnswerTokenLoss(adapter), lambda: _optimization(adapter, cfg, total_steps))
    params = [p for p in adapter.model.parameters() if p.requires_grad]  # sharding replaces the parameters
    if every and (problem := engine.resumable_problem(adapter.model)):
        raise BenchmarkError(f"{problem}.")  # before any training step, not at the first checkpoint
    return _Run(adapter, regime, cfg, seed, ctx, engine, module, optimization, params, layout,
                autocast=torch.autocast(adapter.device.type, dtype=adapter.dtype, enabled=half), upcast=upcast,
                total_steps=total_steps, every=every, n_trainable=n_trainable, resume_file=resume_file)


def _optimization(adapter, cfg: TrainConfig, total_steps: int) -> Optimization:
    """AdamW over the trained parameters as they are now, and its schedule. LoRA weights learn at their own rate
    (LLaVA-1.5: 2e-4); everything else trained at cfg.lr."""
    lora = [p for n_, p in adapter.model.named_parameters() if p.requires_grad and "lora_" in n_]
    rest = [p for n_, p in adapter.model.named_parameters() if p.requires_grad and "lora_" not in n_]
    groups = [{"params": rest, "lr": cfg.lr}] + ([{"params": lora, "lr": cfg.lr_lora}] if lora else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    return Optimization(optimizer, cosine_with_warmup(optimizer, total_steps, cfg.warmup_ratio))


def _resume(run: _Run) -> None:
    """Continue from the saved training state (safetensors + JSON, no pickle)."""
    saved = train_state.load(run.resume_file, run.engine, model=run.adapter.model,
                             optimizer=run.optimization.optimizer, scheduler=run.optimization.scheduler,
                             max_step=run.total_steps)
    run.losses, run.supervised, run.step = saved["losses"], saved["supervised"], saved["step"]
    run.resumed_from = run.step


def _pending_batches(n: int, cfg: TrainConfig, gen: torch.Generator, *, done: int):
    """The global batches (example indices) of all epochs, the same order on every (re)run, after the first
    ``done`` (trained before a resume)."""
    seen = 0
    for _epoch in range(cfg.epochs):
        for gidx in torch.randperm(n, generator=gen).split(cfg.batch_size):
            seen += 1
            if seen > done:
                yield gidx.tolist()


def _global_batch(run: _Run, examples: _Examples, batch_ids: list[int]) -> tuple[float, int]:
    """Forward and backward of this process's share of a global batch; its mean loss per answer token (over all
    processes) and the number of answer tokens."""
    ctx, micro = run.ctx, run.layout.micro_batch
    n_tok = sum(len(examples.encoded(i).answer_ids) for i in batch_ids)  # answer tokens of the global batch
    mine = [batch_ids[j] for j in ctx.share(len(batch_ids))]
    # Every rank runs the same number of micro-batches (collectives must pair up); a rank whose share of a last,
    # short global batch is smaller runs zero-weight copies of one example.
    rounds = math.ceil(math.ceil(len(batch_ids) / ctx.world_size) / micro)
    total = 0.0
    for r in range(rounds):
        chunk = mine[r * micro: (r + 1) * micro]
        weight = ctx.world_size / n_tok  # engines average gradients over ranks: undo it, then per token
        if not chunk:
            chunk, weight = batch_ids[:1], 0.0
        token_sum = _micro_batch(run, examples, chunk, weight=weight, last=r == rounds - 1)
        if weight:
            total += float(token_sum.detach())
    return ctx.sum(total) / n_tok, n_tok


def _micro_batch(run: _Run, examples: _Examples, chunk: list[int], *, weight: float, last: bool) -> torch.Tensor:
    """One micro-batch's forward and weighted backward; the sum of its answer tokens' cross-entropies."""
    adapter, dev = run.adapter, run.adapter.device
    batch = collate([examples.encoded(i) for i in chunk], adapter.pad_token_id, with_answer=True)
    feats = examples.features(torch.tensor(chunk)).to(dev)
    with run.engine.accumulating(run.module, last):
        with run.autocast:
            token_sum = run.module(feats, batch["input_ids"].to(dev), batch["attention_mask"].to(dev),
                                   batch["position_ids"].to(dev), batch["labels"].to(dev))
        run.engine.backward(token_sum * weight, last)
    return token_sum


def _optimizer_step(run: _Run, loss: float, n_tok: int, n_examples: int) -> None:
    """After a global batch: refuse a non-finite loss, step, and save the training state when it is due."""
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"training {run.regime} seed {run.seed} diverged: the loss is {loss} at optimizer step {run.step + 1}. "
            "Nothing was marked finished; lower the learning rate (--lr-proj / --lr-e2e / --lr-lora) "
            "and run again.")
    run.supervised += n_tok
    run.losses.append(loss)
    run.grad_norm = run.engine.step(run.optimization.optimizer, run.params, run.cfg.max_grad_norm)
    run.optimization.scheduler.step()
    run.step += 1
    run.trained += n_examples
    if run.every and run.step % run.every == 0 and run.step < run.total_steps:
        # every rank: sharded state is gathered; rank 0 writes it
        state = run.engine.state_out(run.adapter.model, run.optimization.optimizer)
        train_state.save(Path(run.resume_file), state, scheduler=run.optimization.scheduler, losses=run.losses,
                         supervised=run.supervised, step=run.step)


def _finish(run: _Run) -> None:
    """Evaluate, probe and save in the model's own precision, as a fine-tuned checkpoint would be."""
    adapter = run.adapter
    if run.upcast:
        for p in run.params:
            p.data = p.data.to(adapter.dtype)
    adapter.model.eval()
    if run.cfg.gradient_checkpointing:
        adapter.model.activation_checkpointing_disable()


def _record(run: _Run, *, held: float, seconds: float, cpu_seconds: float) -> dict:
    """The training part of metrics.json."""
    losses, layout = run.losses, run.layout
    last = losses[-max(1, len(losses) // 10):]
    return {
        "optimizer_steps": run.step, "global_batch": layout.global_batch, "micro_batch": layout.micro_batch,
        "accumulation_steps": layout.accumulation_steps, "processes": run.ctx.world_size,
        "engine": run.engine.name, "trained_weights_held_by_rank0": held,
        **run.engine.record(),
        "supervised_answer_tokens": run.supervised,
        "first_loss": losses[0], "final_loss": losses[-1],
        "final_grad_norm": run.grad_norm, "mean_loss_last_10pct": float(sum(last) / len(last)),
        "trainable_parameters": run.n_trainable, "seconds": seconds,
        # The training loop only (no model loading, feature extraction or evaluation), all processes together;
        # after a resume, the examples of this call.
        "examples_per_second": run.trained / seconds if seconds > 0 else None,
        "cpu_seconds_all_processes": cpu_seconds,
        "resumed_from_step": run.resumed_from, "checkpoint_every": run.every,
    }


def trainable_state(adapter, regime: str) -> dict[str, torch.Tensor]:
    """The parameters a regime changed, keyed by their name in the full unwrapped model (LoRA weights included).

    Sharded parameters (FSDP2 DTensors) are gathered whole: every process must call this then.
    """
    return {k: distributed.whole(v).detach().cpu().contiguous()
            for k, v in distributed.trained_parameters(adapter.model).items()}


def shard_units(adapter, regime: str) -> list[torch.nn.Module]:
    """What FSDP shards as one unit: each block of the trained modules' layer lists (decoder layers), the rest
    with the root."""
    units = []
    for module in adapter.trainable_modules(regime).values():
        for sub in module.modules():
            if isinstance(sub, torch.nn.ModuleList):
                units += [m for m in sub if any(p.requires_grad for p in m.parameters())]
    return units


def projector_state(adapter) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in adapter.projector_module().state_dict().items()}
