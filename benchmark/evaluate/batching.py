"""Left-padded batches with explicit position ids, so that a batch of N gives the same result as N batches of 1."""

from __future__ import annotations

import torch

from benchmark.adapters import PromptParts

IGNORE = -100


def collate(parts: list[PromptParts], pad_id: int, with_answer: bool) -> dict[str, torch.Tensor]:
    """Left-pad prompt (+ answer) ids; labels supervise the answer tokens only."""
    seqs = [p.prompt_ids + (p.answer_ids if with_answer else []) for p in parts]
    length = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
    labels = torch.full((len(seqs), length), IGNORE, dtype=torch.long)
    for i, (p, s) in enumerate(zip(parts, seqs, strict=True)):
        start = length - len(s)
        input_ids[i, start:] = torch.tensor(s)
        attention_mask[i, start:] = 1
        if with_answer:
            n = len(p.answer_ids)
            labels[i, length - n:] = torch.tensor(p.answer_ids)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": positions(attention_mask),
        "labels": labels,
    }


def positions(attention_mask: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Positions count real tokens only (padding does not shift them); ``offset`` continues a prefix."""
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return pos if offset is None else pos + offset[:, None]


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """Next-token cross-entropy over supervised (answer) tokens (mean, or ``"sum"``), and how many there were."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(logits.device)
    n = int((shift_labels != IGNORE).sum())
    if n == 0:
        raise RuntimeError("No answer token is supervised in this batch: the loss would silently be zero.")
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=IGNORE,
        reduction=reduction,
    )
    return loss, n
