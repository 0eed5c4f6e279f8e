"""``logit-lens``: decode the image-token hidden states of every layer through the LM head.

Each sampled image-token state (``tokens_per_image`` per test image, from the shared extractor) is read as if it
were the last layer's, with the final norm (the usual logit lens, nostalgebraist 2020) and without it. Reported
per layer: the rank of the correct class name's first token among the whole vocabulary (0 = top; median and
mean reciprocal rank over tokens, and the rate at which it is the top token), and the most frequent top-1
tokens. Where two class names share their first token the rank cannot tell them apart (listed in
``shared_first_tokens``).
"""

from __future__ import annotations

from collections import Counter

import torch

from benchmark.evaluate.loglik import class_answer_ids

CHUNK = 64  # images decoded at once: bounds the (tokens x vocabulary) logits in memory


@torch.no_grad()
def ranks_of(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rank (0 = highest) of ``target[i]`` in row ``i`` of ``logits``: how many entries are strictly higher."""
    picked = logits.gather(1, target[:, None])
    return (logits > picked).sum(1)


def run(ctx) -> dict:
    from tqdm.auto import tqdm

    adapter, test = ctx.adapter, ctx.hidden("test")
    first = [ids[0] for ids in class_answer_ids(adapter, ctx.classes)]
    shared = sorted({c for c, t in zip(ctx.classes, first, strict=True) if first.count(t) > 1})
    labels = torch.tensor(test.labels)
    curves = {f"{m}_{v}": [] for v in ("norm", "raw") for m in ("median_rank", "mrr", "top1_rate")}
    top_tokens = {"norm": [], "raw": []}
    for layer in tqdm(range(test.num_layers), desc=f"logit-lens ({ctx.regime})", disable=not ctx.progress):
        tokens = test.image_tokens(layer)                      # (N, k, D)
        k = tokens.shape[1]
        target = torch.tensor(first)[labels].repeat_interleave(k)
        for variant, norm in (("norm", True), ("raw", False)):
            ranks, tops = [], Counter()
            for c0 in range(0, len(tokens), CHUNK):
                h = tokens[c0: c0 + CHUNK].reshape(-1, tokens.shape[-1]).to(adapter.device)
                logits = adapter.unembed(h, final_norm=norm).float().cpu()
                ranks.append(ranks_of(logits, target[c0 * k: (c0 + CHUNK) * k]))
                tops.update(logits.argmax(-1).tolist())
            r = torch.cat(ranks).double()
            curves[f"median_rank_{variant}"].append(float(r.median()))
            curves[f"mrr_{variant}"].append(float((1.0 / (r + 1)).mean()))
            curves[f"top1_rate_{variant}"].append(float((r == 0).double().mean()))
            n = sum(tops.values())
            top_tokens[variant].append([{"token": adapter.tokenizer.decode([t]), "id": int(t), "share": c / n}
                                        for t, c in tops.most_common(ctx.options.top_tokens)])
    best = min(range(test.num_layers), key=lambda i: curves["median_rank_norm"][i])
    return {
        "x": list(range(test.num_layers)), "primary": "median_rank_norm", "secondary": "median_rank_raw", "x_label": "hidden state (0 = embeddings)", "curves": curves,
        "summary": {"best_layer": best, "best_median_rank": curves["median_rank_norm"][best],
                    "last_median_rank": curves["median_rank_norm"][-1], "last_mrr": curves["mrr_norm"][-1]},
        "top_tokens": top_tokens, "class_first_tokens": dict(zip(ctx.classes, first, strict=True)),
        "shared_first_tokens": shared, "vocabulary_size": int(adapter.llm_output_head().weight.shape[0]),
        "tokens_per_image": test.tokens_per_image, "n_images": len(test),
    }
