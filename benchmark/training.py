"""Fine-tuning from cached vision features: FT-Proj (projector only) and FT-E2E (projector + LLM, or LoRA).

One plain loop: for each batch, project the cached features, run the model's own forward with them at the
image positions, and take the cross-entropy of the answer tokens only. The vision encoder is never run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import distributed, train_state
from .batching import answer_loss, collate
from .config import TrainConfig
from .errors import BenchmarkError
from .prompt import build_question


class NonFiniteLossError(BenchmarkError):
    """The training loss became NaN or infinite."""


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def set_trainable(adapter, regime: str, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze what the regime trains. Returns the trainable parameters."""
    adapter.model.requires_grad_(False)
    modules = adapter.trainable_modules(regime)
    if regime == "ft-e2e" and cfg.lora:
        from peft import LoraConfig, inject_adapter_in_model

        llm = modules.pop("llm")
        targets = getattr(adapter, "lora_targets", LORA_TARGETS)
        inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules=targets),
                                llm)
        for name, p in llm.named_parameters():
            p.requires_grad_("lora_" in name)
    for m in modules.values():
        m.requires_grad_(True)
    if cfg.gradient_checkpointing:
        adapter.model.gradient_checkpointing_enable()
    return [p for p in adapter.model.parameters() if p.requires_grad]


def cosine_with_warmup(optimizer, total_steps: int, warmup_ratio: float):
    warmup = max(1, math.ceil(total_steps * warmup_ratio))

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_batch(adapter, samples, indices, classes, domain, seed):
    parts = [adapter.encode(build_question(domain, classes, seed, samples[i].uid), classes[samples[i].label])
             for i in indices]
    return collate(parts, adapter.pad_token_id, with_answer=True)


DEFAULT_MICRO_BATCH = 8


def batch_layout(global_batch: int, micro_batch: int | None, processes: int) -> tuple[int, int]:
    """(micro-batch, accumulation steps) with global = micro x processes x accumulation; errors name the fix.

    ``micro_batch`` None picks the largest divisor of a process's share of the global batch up to
    ``DEFAULT_MICRO_BATCH``; a micro-batch larger than the share shrinks to it.
    """
    if global_batch < 1 or (micro_batch is not None and micro_batch < 1):
        raise BenchmarkError(f"--global-batch ({global_batch}) and --micro-batch ({micro_batch}) must be positive.")
    if global_batch % processes:
        raise BenchmarkError(f"--global-batch {global_batch} is not divisible by the {processes} processes: use a "
                             f"multiple of {processes}.")
    share = global_batch // processes
    if micro_batch is None:
        micro = max(d for d in range(1, min(DEFAULT_MICRO_BATCH, share) + 1) if share % d == 0)
    else:
        micro = min(micro_batch, share)
    if share % micro:
        raise BenchmarkError(
            f"--global-batch {global_batch} is not divisible by {processes} process(es) x --micro-batch {micro}: "
            f"choose a micro-batch that divides {share}, or a global batch that is a multiple of {processes * micro}."
        )
    return micro, share // micro


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


def finetune(adapter, regime: str, store, samples, classes, domain, seed: int, cfg: TrainConfig,
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

    ctx = distributed.current()
    torch.manual_seed(seed)
    params = set_trainable(adapter, regime, cfg)
    if not params:
        raise RuntimeError(f"Regime {regime!r} left no trainable parameter in {adapter.name}.")
    for m in adapter.trainable_modules(regime).values():
        m.train()
    # Half-precision models (bf16 on GPU) train with fp32 master copies of the trained weights and a bf16 forward
    # under autocast: in bf16 itself, most updates at FT-E2E's lr (2e-5) would round to nothing.
    half = adapter.dtype in (torch.bfloat16, torch.float16)
    autocast = torch.autocast(adapter.device.type, dtype=adapter.dtype, enabled=half)
    deepspeed = ctx.distributed and ctx.deepspeed
    upcast = half and not deepspeed  # DeepSpeed's bf16 mode keeps the fp32 master copies itself
    if upcast:
        for p in params:
            p.data = p.data.float()
    global_batch = cfg.batch_size
    micro, accumulation = batch_layout(global_batch, cfg.micro_batch, ctx.world_size)
    n = len(samples)
    steps_per_epoch = math.ceil(n / global_batch)
    total_steps = steps_per_epoch * cfg.epochs
    n_trainable = int(sum(p.numel() for p in params))
    every = checkpoint_interval(cfg, total_steps, n_trainable) if resume_file else 0
    step_module = None if deepspeed else ctx.wrap(AnswerTokenLoss(adapter), cfg.engine,
                                                  shard_modules=shard_units(adapter, regime))
    # LoRA weights learn at their own rate (LLaVA-1.5: 2e-4); everything else trained at cfg.lr.
    lora = [p for n_, p in adapter.model.named_parameters() if p.requires_grad and "lora_" in n_]
    rest = [p for n_, p in adapter.model.named_parameters() if p.requires_grad and "lora_" not in n_]
    groups = [{"params": rest, "lr": cfg.lr}] + ([{"params": lora, "lr": cfg.lr_lora}] if lora else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    scheduler = cosine_with_warmup(optimizer, total_steps, cfg.warmup_ratio)
    deepspeed_replaced = None
    if deepspeed:  # the engine takes the optimizer: it steps it on DeepSpeed's partitions of the weights
        step_module, deepspeed_replaced = ctx.wrap_deepspeed(
            AnswerTokenLoss(adapter), optimizer,
            distributed.DeepSpeedBatch(global_batch, micro, accumulation, cfg.max_grad_norm, adapter.dtype))
    params = [p for p in adapter.model.parameters() if p.requires_grad]  # sharding replaces the parameters
    if every and (problem := ctx.resumable_problem(adapter.model)):
        raise BenchmarkError(f"{problem}.")  # before any training step, not at the first checkpoint
    # Share of the trained weights this process holds: 1 unless sharded (FSDP2, ZeRO-3: about 1 / processes).
    held = sum(distributed.local_numel(p) for p in params) / n_trainable
    gen = torch.Generator().manual_seed(seed)
    features_fn = features_fn or store.get
    losses, supervised, step, resumed_from = [], 0, 0, 0
    grad_norm = None  # of the last optimizer step, before clipping
    if resume_file is not None and Path(resume_file).exists():
        saved = train_state.load(resume_file, adapter, optimizer, scheduler)  # safetensors + JSON, no pickle
        losses, supervised, step = saved["losses"], saved["supervised"], saved["step"]
        resumed_from = step
    encoded = {}

    def encode(i):
        if i not in encoded:
            encoded[i] = adapter.encode(build_question(domain, classes, seed, samples[i].uid),
                                        classes[samples[i].label])
        return encoded[i]

    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(total=total_steps, desc=f"train {regime}", unit="step", disable=not progress or not ctx.is_main,
               initial=step)
    done = step  # optimizer steps already taken before a resume
    seen, trained = 0, 0  # global batches passed over (resume) / examples trained by this call
    dev = adapter.device
    for _epoch in range(cfg.epochs):
        for gidx in torch.randperm(n, generator=gen).split(global_batch):  # same order on every (re)run
            if seen < done:
                seen += 1
                continue
            seen += 1
            batch_ids = gidx.tolist()
            n_tok = sum(len(encode(i).answer_ids) for i in batch_ids)  # answer tokens of the global batch
            mine = [batch_ids[j] for j in ctx.share(len(batch_ids))]
            # Every rank runs the same number of micro-batches (collectives must pair up); a rank whose share of
            # a last, short global batch is smaller runs zero-weight copies of one example.
            rounds = math.ceil(math.ceil(len(batch_ids) / ctx.world_size) / micro)
            total = 0.0
            for r in range(rounds):
                chunk = mine[r * micro: (r + 1) * micro]
                weight = ctx.world_size / n_tok  # engines average gradients over ranks: undo it, then per token
                if not chunk:
                    chunk, weight = batch_ids[:1], 0.0
                batch = collate([encode(i) for i in chunk], adapter.pad_token_id, with_answer=True)
                feats = features_fn(torch.tensor(chunk)).to(dev)
                with ctx.no_sync(step_module, r == rounds - 1):
                    with autocast:
                        token_sum = step_module(feats, batch["input_ids"].to(dev), batch["attention_mask"].to(dev),
                                                batch["position_ids"].to(dev), batch["labels"].to(dev))
                    ctx.backward(token_sum * weight, last_micro_batch=r == rounds - 1)
                if weight:
                    total += float(token_sum.detach())
            loss = ctx.sum(total) / n_tok
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"training {regime} seed {seed} diverged: the loss is {loss} at optimizer step {step + 1}. "
                    "Nothing was marked finished; lower the learning rate (--lr-proj / --lr-e2e / --lr-lora) "
                    "and run again.")
            supervised += n_tok
            losses.append(loss)
            if deepspeed:  # it clipped, stepped and zeroed in the last micro-batch's backward
                norm = step_module.get_global_grad_norm()
            else:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            grad_norm = float(distributed.whole(torch.as_tensor(norm)))
            scheduler.step()
            step += 1
            trained += len(batch_ids)
            if every and step % every == 0 and step < total_steps:  # every rank: sharded state is gathered
                _save_progress(resume_file, adapter, optimizer, scheduler, losses, supervised, step, step)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    if upcast:  # evaluate, probe and save in the model's own precision, as a fine-tuned checkpoint would be
        for p in params:
            p.data = p.data.to(adapter.dtype)
    adapter.model.eval()
    if cfg.gradient_checkpointing:
        adapter.model.gradient_checkpointing_disable()
    last = losses[-max(1, len(losses) // 10):]
    seconds = time.perf_counter() - start
    cpu_seconds = ctx.sum(time.process_time() - cpu_start)  # CPU time of all threads of all processes
    return {
        "optimizer_steps": step, "global_batch": global_batch, "micro_batch": micro,
        "accumulation_steps": accumulation, "processes": ctx.world_size,
        "engine": ("deepspeed" if deepspeed else cfg.engine if cfg.engine != "auto"
                   else "fsdp" if ctx.sharded_by_accelerate else "ddp") if ctx.distributed else "single",
        "trained_weights_held_by_rank0": held,
        **({"deepspeed": {"zero_stage": 3, "config_values_replaced": deepspeed_replaced}} if deepspeed else {}),
        "supervised_answer_tokens": supervised,
        "first_loss": losses[0], "final_loss": losses[-1],
        "final_grad_norm": grad_norm, "mean_loss_last_10pct": float(sum(last) / len(last)),
        "trainable_parameters": n_trainable, "seconds": seconds,
        # The training loop only (no model loading, feature extraction or evaluation), all processes together;
        # after a resume, the examples of this call.
        "examples_per_second": trained / seconds if seconds > 0 else None, "cpu_seconds_all_processes": cpu_seconds,
        "resumed_from_step": resumed_from, "checkpoint_every": every,
    }


def _save_progress(path, adapter, optimizer, scheduler, losses, supervised, step, micro) -> None:
    train_state.save(Path(path), adapter, optimizer, scheduler, losses, supervised, step, micro)


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
