"""How a conformance check fails: the adapter method at fault, what is wrong, expected vs actual."""

from __future__ import annotations

import torch


class ConformanceFailure(AssertionError):
    """A failed check: the adapter method at fault, what is wrong, expected vs actual."""


def fail(method: str, problem: str, expected=None, actual=None):
    msg = f"{method}: {problem}"
    if expected is not None or actual is not None:
        msg += f"\n  expected: {expected}\n  actual:   {actual}"
    raise ConformanceFailure(msg)


def close(actual: torch.Tensor, expected: torch.Tensor, method: str, problem: str, atol: float = 1e-4) -> None:
    """Fail with ``problem`` unless the tensors agree to ``atol`` (relative to their scale) with the same argmax."""
    err = float((actual.float() - expected.float()).abs().max())
    if err > atol * max(1.0, float(expected.abs().max())) or not torch.equal(actual.argmax(-1), expected.argmax(-1)):
        fail(method, problem, f"{tuple(expected.shape)} values, norm {float(expected.norm()):.6g}",
             f"norm {float(actual.norm()):.6g}, max |difference| {err:.3g} (tolerance {atol:g})")


def ids_text(adapter, ids: list[int], at: int, width: int = 4) -> str:
    """``ids[at-width : at+width]`` with their text, to show where two id sequences part."""
    lo, hi = max(0, at - width), at + width
    return f"...{ids[lo:hi]} = {adapter.tokenizer.decode(ids[lo:hi])!r}"


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


__all__ = ["ConformanceFailure", "close", "fail", "first_difference", "ids_text"]
