"""Evaluation by class-name log-likelihood (``loglik``): deterministic, no answer parsing.

Each example's prompt (image included) runs once with a KV cache; the cache is repeated for the candidate
classes and every class continuation (name + EOS) is scored in one batch, with explicit positions and masks
so that results do not depend on batch composition or padding.

Summed log-probability (the default, ``score_norm="sum"``) favours short class names: every extra answer token
adds a negative term. Next to it the per-token mean is always recorded with its own prediction, and
``metrics.length_bias`` reports how often the two disagree and how strongly the share of predictions of a class
follows its answer length (Pearson r over classes). ``--score-norm mean`` ranks by the per-token mean instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark import distributed
from benchmark.evaluate.batching import collate, positions
from benchmark.evaluate.intervals import record_interval
from benchmark.evaluate.metrics import classification_metrics
from benchmark.evaluate.prompt import build_question

# Rows of KV cache scored at once (examples x classes). Memory grows with rows x prompt length x layers: for
# LLaVA-1.5-7B in bf16, 0.5 MB per cached token, so 0.35-0.5 GB per row (650-900 prompt tokens) and 11-16 GB
# for 32 rows next to the weights.
SCORE_ROWS = 32


@dataclass(frozen=True)
class EvalSet:
    """What one evaluation pass scores: the test images (their samples and cached vision features), the label
    space, the prompt's domain phrase, and the seed that orders the classes in each image's prompt."""

    store: Any                  # cached vision features of ``samples``, in order (features.FeatureStore)
    samples: Sequence           # tasks.base.Sample: uid and label of each image
    classes: Sequence[str]
    domain: str
    seed: int                   # orders the classes in each image's prompt (with the image's uid)


def class_answer_ids(adapter, classes: list[str]) -> list[list[int]]:
    return [adapter.encode("", c).answer_ids for c in classes]


@torch.no_grad()
def score_batch(adapter, features: torch.Tensor, questions: list[str], answers: list[list[int]],
                max_rows: int = SCORE_ROWS) -> torch.Tensor:
    """(B, C) summed log-probabilities of each class continuation after each prompt."""
    dev = adapter.device
    batch = collate([adapter.encode(q) for q in questions], adapter.pad_token_id, with_answer=False)
    mask = batch["attention_mask"].to(dev)
    out = adapter.lm_forward(batch["input_ids"].to(dev), mask, batch["position_ids"].to(dev),
                             adapter.project(features.to(dev)), use_cache=True)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
    cache = out.cache
    b, c = len(questions), len(answers)
    length = max(len(a) for a in answers)
    ans = torch.full((c, length), adapter.pad_token_id, dtype=torch.long)
    ans_mask = torch.zeros((c, length), dtype=torch.long)
    for i, a in enumerate(answers):
        ans[i, : len(a)] = torch.tensor(a)
        ans_mask[i, : len(a)] = 1
    ans, ans_mask = ans.to(dev), ans_mask.to(dev)
    scores = torch.empty((b, c), device=dev)
    k = max(1, min(c, max_rows // b))       # classes per chunk; the cache is repeated once for k
    cache.batch_repeat_interleave(k)
    prompt_len = mask.sum(-1)
    for c0 in range(0, c, k):
        chunk = list(range(c0, min(c0 + k, c)))
        padded = chunk + [chunk[-1]] * (k - len(chunk))  # keep k rows per example; extra rows are ignored
        cont = ans[padded].repeat(b, 1)                   # (b*k, L), example-major like the repeated cache
        cont_mask = ans_mask[padded].repeat(b, 1)
        full_mask = torch.cat([mask.repeat_interleave(k, 0), cont_mask], dim=1)
        pos = positions(cont_mask, prompt_len.repeat_interleave(k)) + 0
        o = adapter.lm_forward(cont, full_mask, pos, None, past_key_values=cache, use_cache=True)
        logp = torch.log_softmax(o.logits.float(), dim=-1)  # (b*k, L, V)
        tok = torch.cat([first.repeat_interleave(k, 0).gather(1, cont[:, :1]),
                         logp[:, :-1].gather(2, cont[:, 1:, None]).squeeze(-1)], dim=1)
        total = (tok * cont_mask).sum(-1).view(b, k)
        scores[:, c0: c0 + len(chunk)] = total[:, : len(chunk)]
        cache.crop(-length)
    return scores.cpu()


def _pearson(x, y) -> float | None:
    """Pearson r, or None when either side is constant (no correlation to speak of)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def length_bias(preds_sum: list[int], preds_mean: list[int], answer_tokens: list[int]) -> dict:
    """How much summed scoring leans on answer length: disagreement with the per-token mean, and the correlation
    over classes between how often a class is predicted and how many tokens its answer has."""
    c = len(answer_tokens)
    counts = {k: np.bincount(np.asarray(p, dtype=int), minlength=c).tolist()
              for k, p in (("sum", preds_sum), ("mean", preds_mean))}
    return {
        "disagreement_rate": float(np.mean(np.asarray(preds_sum) != np.asarray(preds_mean))) if preds_sum else 0.0,
        "corr_predictions_vs_answer_tokens": {k: _pearson(v, answer_tokens) for k, v in counts.items()},
        "predictions_per_class": counts,
    }


def evaluate_loglik(adapter, eval_set: EvalSet, *, batch_size: int = 8, progress: bool = True,
                    max_rows: int = SCORE_ROWS, score_norm: str = "sum") -> dict:
    from tqdm.auto import tqdm

    samples, classes = eval_set.samples, eval_set.classes
    start = time.perf_counter()
    answers = class_answer_ids(adapter, classes)
    all_scores = []
    ctx = distributed.current()
    mine = ctx.share(len(samples))  # each process scores its block of the test split (batch-size invariant)
    for b0 in tqdm(range(mine.start, mine.stop, batch_size), desc="evaluate (loglik)", unit="batch",
                   disable=not progress or not ctx.is_main):
        idx = list(range(b0, min(b0 + batch_size, mine.stop)))
        questions = [build_question(eval_set.domain, classes, eval_set.seed, samples[i].uid) for i in idx]
        all_scores.append(score_batch(adapter, eval_set.store.get(idx), questions, answers, max_rows=max_rows))
    scores = torch.cat(ctx.gather(all_scores))
    lengths = [len(a) for a in answers]  # answer tokens, EOS included: what the summed score adds up
    per_token = scores / torch.tensor(lengths, dtype=scores.dtype)
    by_sum, by_mean = scores.argmax(-1).tolist(), per_token.argmax(-1).tolist()
    preds = by_mean if score_norm == "mean" else by_sum
    truth = [s.label for s in samples]
    metrics = classification_metrics(truth, preds, len(classes), classes)
    metrics.update(record_interval(truth, preds, len(classes)))
    metrics["score_norm"] = score_norm
    other = by_sum if score_norm == "mean" else by_mean
    metrics["length_bias"] = {
        **length_bias(by_sum, by_mean, lengths),
        "answer_tokens": dict(zip(classes, lengths, strict=True)),
        "other_norm": "sum" if score_norm == "mean" else "mean",
        "other_norm_macro_f1": classification_metrics(truth, other, len(classes))["macro_f1"],
    }
    predictions = [
        {"uid": s.uid, "label": classes[s.label], "prediction": classes[p], "prediction_sum": classes[ps],
         "prediction_mean": classes[pm], "scores": [round(float(x), 5) for x in row],
         "scores_mean": [round(float(x), 5) for x in row_mean]}
        for s, p, ps, pm, row, row_mean in zip(samples, preds, by_sum, by_mean, scores, per_token, strict=True)
    ]
    metrics["seconds"] = time.perf_counter() - start
    return {"metrics": metrics, "predictions": predictions, "pred_indices": preds}
