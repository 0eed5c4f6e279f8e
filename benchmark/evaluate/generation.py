"""``--eval generate``: greedy decoding after the paper's prompt, then matching the text to a class name.

The paper sampled free text and did not say how answers were matched. Here decoding is greedy (deterministic),
runs from the cached vision features with a KV cache, and batches are left-padded with explicit position ids
so that a batch of N gives the same tokens as N batches of 1. The budget is the longest class name (in tokens,
with its end-of-sequence token) plus a few tokens of slack.

Matching, on text normalised to lower-case words (punctuation dropped):

1. *exact*: the output is a class name;
2. *prefix*: the output starts with a class name (the longest one if several) and names no other class after
   it -- "eczema. The lesion..." -- or, if it starts with none, the output is the first words of exactly one
   class name (cut off by the budget, or stopped early: "grape" when "grape leaf" is the only grape class);
3. *contains*: exactly one class name occurs in the output as whole words, after dropping candidates that are
   part of a longer candidate ("tomato leaf" inside "tomato leaf late blight");
4. otherwise *unmatched*. Ambiguous outputs (two rules pointing at different classes) are unmatched too.

Unmatched answers count as wrong: they lower the recall of the true class and no class's precision. The
confusion matrix gets one extra, last column "<unmatched>" so that every row still sums to the class support.
"""

from __future__ import annotations

import re
import time
import unicodedata

import torch
from sklearn.metrics import confusion_matrix

from benchmark import distributed
from benchmark.evaluate.batching import collate
from benchmark.evaluate.intervals import record_interval
from benchmark.evaluate.loglik import EvalSet
from benchmark.evaluate.metrics import classification_metrics
from benchmark.evaluate.prompt import build_question

UNMATCHED = "<unmatched>"
GENERATE_METRICS = ("unmatched_rate", "n_unmatched", "match_rules", "confusion_matrix_columns", "max_new_tokens")
SLACK_TOKENS = 3


def normalize_answer(text: str) -> str:
    """Lower-case words (letters and digits, any script) separated by single spaces; the rest separates."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def match_class(text: str, classes: list[str]) -> tuple[int | None, str]:
    """(class index or None, rule) for one generated answer; see the module docstring for the rules."""
    out = normalize_answer(text)
    names = [normalize_answer(c) for c in classes]
    if not out:
        return None, "unmatched"
    exact = [i for i, n in enumerate(names) if n == out]
    if len(exact) == 1:
        return exact[0], "exact"
    starts = [i for i, n in enumerate(names) if n and out.startswith(n + " ")]
    partial = [i for i, n in enumerate(names) if n.startswith(out + " ")]
    if starts and not partial:
        best = max(starts, key=lambda i: len(names[i]))
        rest = f" {out[len(names[best]):]} "
        if any(f" {n} " in rest and f" {n} " not in f" {names[best]} " for n in names):
            return None, "unmatched"  # hedging: "apple leaf or grape leaf"
        return best, "prefix"
    if len(partial) == 1 and not starts:
        return partial[0], "prefix"
    if starts or partial:
        return None, "unmatched"  # e.g. "tomato leaf late": the class "tomato leaf", or "tomato leaf late blight"?
    inside = [i for i, n in enumerate(names) if n and f" {n} " in f" {out} "]
    inside = [i for i in inside if not any(j != i and f" {names[i]} " in f" {names[j]} " for j in inside)]
    if len(inside) == 1:
        return inside[0], "contains"
    return None, "unmatched"


@torch.no_grad()
def generate_batch(adapter, features: torch.Tensor, questions: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuations (token ids, without the end-of-sequence token) of one left-padded batch."""
    dev = adapter.device
    eos = adapter.answer_end_id
    batch = collate([adapter.encode(q) for q in questions], adapter.pad_token_id, with_answer=False)
    mask = batch["attention_mask"].to(dev)
    out = adapter.lm_forward(batch["input_ids"].to(dev), mask, batch["position_ids"].to(dev),
                             adapter.project(features.to(dev)), use_cache=True)
    cache = out.cache
    next_pos = mask.sum(-1)                   # position of the first new token: real prompt tokens only
    tokens = out.logits[:, -1].float().argmax(-1)
    done = torch.zeros(len(questions), dtype=torch.bool, device=dev)
    generated: list[list[int]] = [[] for _ in questions]
    for step in range(max_new_tokens):
        for i in torch.nonzero(~done).flatten().tolist():
            if int(tokens[i]) != eos:
                generated[i].append(int(tokens[i]))
        done |= tokens == eos
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        # Finished rows keep decoding (their output is ignored) so that every row shares one cache shape.
        mask = torch.cat([mask, mask.new_ones((len(questions), 1))], dim=1)
        out = adapter.lm_forward(tokens[:, None], mask, (next_pos + step)[:, None], None,
                                 past_key_values=cache, use_cache=True)
        cache = out.cache
        tokens = out.logits[:, -1].float().argmax(-1)
    return generated


def token_budget(adapter, classes: list[str]) -> int:
    """Longest class answer (its tokens plus end-of-sequence) and a little slack for punctuation."""
    return max(len(adapter.encode("", c).answer_ids) for c in classes) + SLACK_TOKENS


def evaluate_generate(adapter, eval_set: EvalSet, *, batch_size: int = 8, progress: bool = True) -> dict:
    """Zero-shot / fine-tuned evaluation by generation; same return shape as ``evaluate_loglik``."""
    from tqdm.auto import tqdm

    samples, classes = eval_set.samples, eval_set.classes
    start = time.perf_counter()
    budget = token_budget(adapter, classes)
    texts = []
    ctx = distributed.current()
    mine = ctx.share(len(samples))  # each process decodes its block of the test split; results are gathered
    for b0 in tqdm(range(mine.start, mine.stop, batch_size), desc="evaluate (generate)", unit="batch",
                   disable=not progress or not ctx.is_main):
        idx = list(range(b0, min(b0 + batch_size, mine.stop)))
        questions = [build_question(eval_set.domain, classes, eval_set.seed, samples[i].uid) for i in idx]
        for ids in generate_batch(adapter, eval_set.store.get(idx), questions, budget):
            texts.append(adapter.tokenizer.decode(ids, skip_special_tokens=True).strip())
    texts = ctx.gather(texts)
    matches = [match_class(t, classes) for t in texts]
    truth = [s.label for s in samples]
    preds = [-1 if m is None else m for m, _ in matches]
    metrics = classification_metrics(truth, preds, len(classes), classes)
    n_unmatched = sum(p == -1 for p in preds)
    cm = confusion_matrix(truth, preds, labels=[*range(len(classes)), -1])[: len(classes)]
    metrics.update(
        confusion_matrix=cm.tolist(),
        confusion_matrix_columns=[*classes, UNMATCHED],
        unmatched_rate=n_unmatched / max(1, len(preds)),
        n_unmatched=n_unmatched,
        match_rules={r: sum(rule == r for _, rule in matches) for r in ("exact", "prefix", "contains", "unmatched")},
        max_new_tokens=budget,
        **record_interval(truth, preds, len(classes)),
        seconds=time.perf_counter() - start,
    )
    predictions = [
        {"uid": s.uid, "label": classes[s.label], "prediction": None if p == -1 else classes[p],
         "generated": t, "match": rule}
        for s, p, t, (_, rule) in zip(samples, preds, texts, matches, strict=True)
    ]
    return {"metrics": metrics, "predictions": predictions, "pred_indices": preds}
