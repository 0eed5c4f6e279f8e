"""The paper's classification prompt (Verma et al. 2024, §2), with a seeded per-example class order."""

from __future__ import annotations

import hashlib
import random

PAPER_PROMPT = (
    "Classify this image into one of the following categories relating to {domain}: {classes}. "
    "Only output a single final classification label and NOTHING ELSE."
)


def example_rng(seed: int, uid: str) -> random.Random:
    """A generator that depends only on (seed, example id): stable across runs, processes and batch sizes."""
    digest = hashlib.sha256(f"{seed}\x00{uid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def build_question(domain: str, classes: list[str], seed: int, uid: str) -> str:
    order = list(classes)
    example_rng(seed, uid).shuffle(order)
    return PAPER_PROMPT.format(domain=domain, classes=", ".join(f'"{c}"' for c in order))
