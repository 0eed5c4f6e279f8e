"""Fine-tuning from cached vision features: FT-Proj (projector only) and FT-E2E (projector + LLM, or LoRA).

One plain loop: for each batch, project the cached features, run the model's own forward with them at the
image positions, and take the cross-entropy of the answer tokens only. The vision encoder is never run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import train_state
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

    With ``resume_file``, the trained state, optimizer, schedule and position in the data are saved there every
    few optimizer steps, and a run that finds the file continues from it, giving the same result as one that
    was never interrupted.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    params = set_trainable(adapter, regime, cfg)
    if not params:
        raise RuntimeError(f"Regime {regime!r} left no trainable parameter in {adapter.name}.")
    for m in adapter.trainable_modules(regime).values():
        m.train()
    # Half-precision models (bf16 on GPU) train with fp32 master copies of the trained weights and a bf16 forward
    # under autocast: in bf16 itself, most updates at FT-E2E's lr (2e-5) would round to nothing.
    half = adapter.dtype in (torch.bfloat16, torch.float16)
    if half:
        for p in params:
            p.data = p.data.float()
    autocast = torch.autocast(adapter.device.type, dtype=adapter.dtype, enabled=half)
    # LoRA weights learn at their own rate (LLaVA-1.5: 2e-4); everything else trained at cfg.lr.
    lora = [p for n, p in adapter.model.named_parameters() if p.requires_grad and "lora_" in n]
    rest = [p for n, p in adapter.model.named_parameters() if p.requires_grad and "lora_" not in n]
    groups = [{"params": rest, "lr": cfg.lr}] + ([{"params": lora, "lr": cfg.lr_lora}] if lora else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    n = len(samples)
    batches_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = math.ceil(batches_per_epoch * cfg.epochs / cfg.grad_accum)
    scheduler = cosine_with_warmup(optimizer, total_steps, cfg.warmup_ratio)
    gen = torch.Generator().manual_seed(seed)
    features_fn = features_fn or store.get
    n_trainable = int(sum(p.numel() for p in params))
    every = checkpoint_interval(cfg, total_steps, n_trainable) if resume_file else 0
    losses, supervised, step, micro, resumed_from = [], 0, 0, 0, 0
    if resume_file is not None and Path(resume_file).exists():
        saved = train_state.load(resume_file, adapter, optimizer, scheduler)  # safetensors + JSON, no pickle
        losses, supervised, step, micro = saved["losses"], saved["supervised"], saved["step"], saved["micro"]
        resumed_from = step
    start = time.perf_counter()
    bar = tqdm(total=batches_per_epoch * cfg.epochs, desc=f"train {regime}", unit="batch", disable=not progress,
               initial=micro)
    done = micro  # micro-batches already trained before a resume
    micro = 0
    for _epoch in range(cfg.epochs):
        for idx in torch.randperm(n, generator=gen).split(cfg.batch_size):  # same order on every (re)run
            if micro < done:
                micro += 1
                continue
            batch = training_batch(adapter, samples, idx.tolist(), classes, domain, seed)
            feats = features_fn(idx).to(adapter.device)
            with autocast:
                embeds = adapter.project(feats)
                out = adapter.lm_forward(batch["input_ids"].to(adapter.device),
                                         batch["attention_mask"].to(adapter.device),
                                         batch["position_ids"].to(adapter.device), embeds)
            loss, n_tok = answer_loss(out.logits, batch["labels"])
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"training {regime} seed {seed} diverged: the loss is {loss.item()} at batch {micro + 1}. "
                    "Nothing was marked finished; lower the learning rate (--lr-proj / --lr-e2e / --lr-lora) "
                    "and run again.")
            (loss / cfg.grad_accum).backward()
            supervised += n_tok
            losses.append(loss.item())
            micro += 1
            if micro % cfg.grad_accum == 0 or micro == batches_per_epoch * cfg.epochs:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if every and step % every == 0 and step < total_steps:
                    _save_progress(resume_file, adapter, optimizer, scheduler, losses, supervised, step, micro)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    if half:  # evaluate, probe and save in the model's own precision, as a fine-tuned checkpoint would be
        for p in params:
            p.data = p.data.to(adapter.dtype)
    adapter.model.eval()
    if cfg.gradient_checkpointing:
        adapter.model.gradient_checkpointing_disable()
    return {
        "optimizer_steps": step, "batches": micro, "supervised_answer_tokens": supervised,
        "first_loss": losses[0], "final_loss": losses[-1],
        "mean_loss_last_10pct": float(sum(losses[-max(1, len(losses) // 10):]) / max(1, len(losses) // 10)),
        "trainable_parameters": n_trainable, "seconds": time.perf_counter() - start,
        "resumed_from_step": resumed_from, "checkpoint_every": every,
    }


def _save_progress(path, adapter, optimizer, scheduler, losses, supervised, step, micro) -> None:
    train_state.save(Path(path), adapter, optimizer, scheduler, losses, supervised, step, micro)


def trainable_state(adapter, regime: str) -> dict[str, torch.Tensor]:
    """The parameters a regime changed, keyed by their name in the full model (LoRA weights included)."""
    return {k: v.detach().cpu().contiguous() for k, v in adapter.model.named_parameters() if v.requires_grad}


def projector_state(adapter) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in adapter.projector_module().state_dict().items()}
