"""Token lengths of the task: image tokens + the question/template text + the longest answer, counted by the
model's tokenizer when one is in the local cache, else estimated from the characters."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import BenchmarkError

CHARS_PER_TOKEN = 3.6  # Llama/Gemma-style tokenisers on English with quotes and capitals


@dataclass(frozen=True)
class TokenLengths:
    """Tokens of one training sample (``train``), of the scoring prompt and of the class continuations."""

    train: int
    prompt: int
    image: int
    longest_answer: int
    answers_total: int
    text_counted_by: str

    def with_train_tokens(self, train_tokens: int) -> TokenLengths:
        """These lengths with ``train_tokens`` per sample (e.g. to compare with a published count)."""
        if train_tokens <= self.image + self.longest_answer:
            raise BenchmarkError(f"--tokens {train_tokens} leaves no room for the {self.image} image tokens "
                                 "and the answer.")
        return replace(self, train=train_tokens, prompt=train_tokens - self.longest_answer,
                       text_counted_by="--tokens")


def _local_tokenizer(source: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception:  # noqa: BLE001 - no local tokenizer: the caller estimates, and says so
        return None


def prompt_tokens(spec, task, *, image_tokens: int, tokenizer_source: str | None = None) -> TokenLengths:
    """Tokens of the task's real training prompt: image tokens + question/template text + the longest answer."""
    from benchmark.evaluate.prompt import build_question

    question = build_question(task.domain, list(task.classes), 0, "plan")
    longest = max(task.classes, key=len) if task.classes else "label"
    text = f"USER: \n{question} ASSISTANT: {longest}"
    tok = _local_tokenizer(tokenizer_source or spec.checkpoint)
    if tok is not None:
        n_text, how = len(tok(text)["input_ids"]) + 1, "tokenizer"
        n_answer = len(tok(" " + longest, add_special_tokens=False)["input_ids"]) + 1
        n_classes = [len(tok(" " + c, add_special_tokens=False)["input_ids"]) + 1 for c in task.classes]
    else:
        n_text = math.ceil(len(text) / CHARS_PER_TOKEN) + 2
        how = f"estimate: {CHARS_PER_TOKEN} characters per token (no local tokenizer)"
        n_answer = math.ceil(len(longest) / CHARS_PER_TOKEN) + 1
        n_classes = [math.ceil(len(c) / CHARS_PER_TOKEN) + 1 for c in task.classes]
    return TokenLengths(train=image_tokens + n_text, prompt=image_tokens + n_text - n_answer, image=image_tokens,
                        longest_answer=n_answer, answers_total=sum(n_classes), text_counted_by=how)
