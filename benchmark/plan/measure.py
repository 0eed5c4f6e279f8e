"""``plan --measure``: the plan held against the real architecture with random weights on the local device.

For each trained regime the plan says fits one local device (FT-Proj, full FT-E2E, FT-E2E with LoRA), a few
optimizer steps run through the real training loop (:func:`benchmark.train.loop.finetune`, unchanged) at the
plan's recommended micro-batch and checkpointing, after warm-up steps; the step clock is read where the loop asks
for each micro-batch's features. Then one evaluation batch is scored twice: prefix-shared class scoring
(:func:`benchmark.evaluate.loglik.score_batch`, what runs use) and one full forward per class, for the scoring
ratio. Every row carries measured peak memory, step time, samples/s, tokens/s, achieved TFLOP/s and MFU from the
plan's FLOP count, and measured/predicted ratios. The images are synthetic (seeded noise at the processor's size):
speed and memory do not depend on what the pixels show. Results are random-init: never results of the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..evaluate.batching import IGNORE, collate
from ..evaluate.loglik import SCORE_ROWS, class_answer_ids, score_batch
from ..evaluate.prompt import build_question
from ..schema import Regime
from ..train.loop import finetune
from .measure_device import DeviceMeter
from .measure_settings import TRAINED, Settings  # noqa: F401  (Settings: callers import it from here)

NOISE_SIDE = 512  # pixels of a synthetic image: the largest built-in input (SmolVLM); each model resizes it to its own
LR = {Regime.FT_PROJ: 1e-3, Regime.FT_E2E: 2e-5, Regime.FT_E2E_LORA: 2e-5}


@dataclass(frozen=True)
class Sample:
    """A synthetic training example: what the training loop reads of a task's sample."""

    uid: str
    label: int


def synthetic_features(adapter, n: int, seed: int = 0) -> torch.Tensor:
    """Vision features of ``n`` seeded noise images (``NOISE_SIDE`` pixels square; the adapter's preprocessing
    resizes them to its model's size), through the real vision path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (NOISE_SIDE, NOISE_SIDE, 3), dtype=np.uint8)) for _ in range(n)]
    with torch.no_grad():
        return adapter.vision_features(adapter.preprocess(images)).cpu()


class StepClock:
    """``finetune``'s feature source that also reads the clock: the loop asks once per micro-batch, so with one
    micro-batch per step the times between asks are step times. Memory peaks are reset after the warm-up."""

    def __init__(self, feats: torch.Tensor, meter: DeviceMeter, warmup: int):
        self.feats, self.meter, self.warmup, self.times = feats, meter, warmup, []

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        self.meter.sync()
        if len(self.times) == self.warmup:
            self.meter.reset()
        self.times.append(time.perf_counter())
        return self.feats[indices % len(self.feats)]

    def step_seconds(self, end: float) -> list[float]:
        marks = self.times[self.warmup:] + [end]
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def train_row(adapter, regime: str, *, row, feats, classes, domain, meter: DeviceMeter, s: Settings,
              ctx=None) -> dict:
    """Warm-up and measured optimizer steps of ``regime`` at the plan row's micro-batch and checkpointing; with
    several processes (``ctx``) each takes one micro-batch of every global batch, through the launched engine."""
    from ..distributed import ProcessContext

    ctx = ctx or ProcessContext()
    rec = row.recommended
    if regime in s.checkpointed and not rec.gradient_checkpointing:
        rec = checkpointed_recommendation(row, regime) or rec
    # On a CPU the plan's micro-batch (sized to the RAM) would take minutes per step: one sample unless asked.
    mb = s.micro_batch or (rec.micro_batch if meter.cuda else 1)
    ckpt = bool(rec.gradient_checkpointing)
    n = mb * ctx.world_size * (s.warmup + s.steps)
    samples = [Sample(f"synthetic-{i}", i % len(classes)) for i in range(n)]
    cfg = TrainConfig(lr=LR[regime], batch_size=mb * ctx.world_size, micro_batch=mb, engine=s.engine,
                      lora=regime == Regime.FT_E2E_LORA, gradient_checkpointing=ckpt, checkpoint_every=0)
    clock = StepClock(feats, meter, s.warmup)
    trained = finetune(adapter, Regime(regime).recorded, store=None, samples=samples, classes=classes,
                       domain=domain, seed=0, cfg=cfg, progress=False, features_fn=clock)
    meter.sync()
    seconds = clock.step_seconds(time.perf_counter())
    tokens = [len(adapter.encode(build_question(domain, classes, 0, x.uid), classes[x.label]).prompt_ids)
              + len(adapter.encode(build_question(domain, classes, 0, x.uid), classes[x.label]).answer_ids)
              for x in samples[:mb]]
    per_rank = ctx.gather([meter.peak()])  # every process's peak, in rank order
    out = {"micro_batch": mb, "micro_batch_from": "--micro-batch" if s.micro_batch else
           ("the plan" if meter.cuda else "CPU default (1)"), "gradient_checkpointing": ckpt, "steps": s.steps,
           "warmup_steps": s.warmup, "step_seconds": seconds, "tokens_per_sample": sum(tokens) / len(tokens),
           "peak_gb": highest(per_rank), "peak_gb_per_process": per_rank, "trained_by": trained["engine"],
           "trained_weights_held_by_rank0": trained["trained_weights_held_by_rank0"]}
    meter.release()
    return out


def highest(peaks: list[dict]) -> dict:
    """The largest reading of each kind over the processes (the device that runs out first decides)."""
    return {k: max((p[k] for p in peaks if p[k] is not None), default=None) for k in peaks[0]}


def checkpointed_recommendation(row, regime: str):
    """The plan's micro-batch for ``row`` under activation checkpointing (the largest that fits that way)."""
    from .hardware import GB, USABLE
    from .memory import Activations
    from .micro_batch import recommend

    act = row.memory.activations
    return recommend(row.gpu_gb * GB * USABLE - row.memory.state, Activations(float("inf"), act.checkpointed),
                     regime=Regime(regime).recorded, n_gpus=1)


@torch.no_grad()
def per_class_scores(adapter, feats: torch.Tensor, questions: list[str], classes: list[str]) -> torch.Tensor:
    """(B, C) summed answer log-probabilities from one full forward (prompt + image + answer) per class: the
    reference that prefix-shared scoring replaces."""
    dev, out = adapter.device, torch.empty((len(questions), len(classes)))
    for i, q in enumerate(questions):
        emb = adapter.project(feats[i: i + 1].to(dev))
        for j, c in enumerate(classes):
            batch = collate([adapter.encode(q, c)], adapter.pad_token_id, with_answer=True)
            logits = adapter.lm_forward(batch["input_ids"].to(dev), batch["attention_mask"].to(dev),
                                        batch["position_ids"].to(dev), emb).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            labels = batch["labels"][:, 1:].to(dev)
            tok = logp.gather(2, labels.clamp(min=0)[..., None]).squeeze(-1) * (labels != IGNORE)
            out[i, j] = tok.sum().cpu()
    return out


def scoring_rows(adapter, *, feats, classes, domain, meter: DeviceMeter, warm: bool) -> dict:
    """The same evaluation batch scored prefix-shared and with one forward per class: time, memory, agreement."""
    questions = [build_question(domain, classes, 0, f"eval-{i}") for i in range(len(feats))]
    answers = class_answer_ids(adapter, classes)
    rows = {}
    for name, fn in (("prefix_shared", lambda: score_batch(adapter, feats, questions, answers, SCORE_ROWS)),
                     ("one_forward_per_class", lambda: per_class_scores(adapter, feats, questions, classes))):
        if warm:  # kernels chosen and caches grown before the clock starts
            fn()
        meter.release()
        meter.reset()
        start = time.perf_counter()
        scores = fn()
        meter.sync()
        rows[name] = {"seconds": time.perf_counter() - start, "peak_gb": meter.peak(), "scores": scores}
    shared, per_class = rows["prefix_shared"].pop("scores"), rows["one_forward_per_class"].pop("scores")
    prompt = len(adapter.encode(questions[0]).prompt_ids)
    return {**rows, "images": len(feats), "classes": len(classes), "prompt_tokens": prompt,
            "answer_tokens": sum(len(a) for a in answers),
            "speedup": rows["one_forward_per_class"]["seconds"] / rows["prefix_shared"]["seconds"],
            "same_predictions": shared.argmax(-1).tolist() == per_class.argmax(-1).tolist(),
            "max_abs_logprob_difference": float((shared - per_class).abs().max())}


def run_measurements(measured, plan, task, *, meter: DeviceMeter, s: Settings, engine: str = "single",
                     ctx=None) -> dict:
    """Every row: scoring first (the model as loaded; each process scores the same batch), then the trained
    regimes the plan's ``engine`` row says fit. With several processes the model is loaded afresh before each
    regime after the first: a sharded engine changes the modules it trains in place."""
    from ..distributed import ProcessContext

    ctx = ctx or ProcessContext()
    classes = list(task.classes)
    feats = synthetic_features(measured.adapter, max(s.eval_images, 4))
    scoring = scoring_rows(measured.adapter, feats=feats[: s.eval_images], classes=classes, domain=task.domain,
                           meter=meter, warm=meter.cuda)
    rows, trained = {}, False
    for regime in (r for r in TRAINED if r.value in s.regimes):
        row = plan.regimes[regime].engines[engine]
        if not row.fits:
            rows[regime] = {"skipped": row.instead or "does not fit this device"}
            continue
        if trained and ctx.distributed:
            meter.release()
            measured.reload()
            meter.release()
        trained = True
        try:
            rows[regime] = train_row(measured.adapter, regime, row=row, feats=feats, classes=classes,
                                     domain=task.domain, meter=meter, s=s, ctx=ctx)
        except torch.OutOfMemoryError:  # the plan said it fits and it did not: that is the finding, not a crash
            peak = meter.peak()
            meter.release()
            rows[regime] = {"skipped": f"out of memory although the plan predicted {row.peak_gb:.1f} GB "
                                       f"(peak {peak['allocated'] or peak['rss_delta'] or 0:.1f} GB reached)"}
    return {"scoring": scoring, "training": rows}


def scratch_folder(out: Path) -> Path:
    """Where the skeleton checkpoint goes: beside the JSON, in a folder of its own."""
    return out.parent / (out.stem + "-skeleton")
