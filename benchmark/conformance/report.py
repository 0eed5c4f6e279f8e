"""How a conformance check fails: the adapter method at fault, what is wrong, expected vs actual.

An exception raised from inside a check (an ``AttributeError`` from deep in transformers, say) is turned into a
failure that names the innermost adapter method on its way (:func:`blaming`), so that the report says which
method to fix rather than which line of transformers gave up. Positions in id sequences are described by what
sits there (:func:`position_text`): the BOS, the first image token, the answer.
"""

from __future__ import annotations

import contextlib
import functools
import traceback

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


def position_text(adapter, native: list[int], mine: list[int], at: int) -> str:
    """What position ``at`` is in the model's ids (``native``) and the adapter's (``mine``): "position 51 (the
    first image token)", with the image-token counts when they differ, or the BOS at position 0."""
    image = adapter.image_token_id
    where = f"position {at}"
    counts = native.count(image), mine.count(image)
    firsts = [ids.index(image) if image in ids else None for ids in (native, mine)]
    if at in firsts:
        where += " (the first image token"
        if counts[0] != counts[1]:
            where += (f"; the model's processor expands the image to {counts[0]} image tokens, encode() to "
                      f"{counts[1]} (num_image_tokens = {adapter.num_image_tokens})")
        return where + ")"
    inside = [f is not None and f < at < f + n for f, n in zip(firsts, counts, strict=True)]
    if any(inside):
        first = firsts[0] if inside[0] else firsts[1]
        where += f" (image token {at - first + 1} of the model's {counts[0]}, encode()'s {counts[1]})"
    elif counts[0] != counts[1] and all(f is not None and at >= f for f in firsts):
        where += (f" (after the image: the model's processor expands it to {counts[0]} image tokens, encode() to "
                  f"{counts[1]}; num_image_tokens = {adapter.num_image_tokens})")
    return where


# --- exceptions raised inside a check ------------------------------------------------------------------------

# Hints for errors that say more than their text: the rule of docs/adding-an-adapter.md they usually break.
_HINTS = (
    ("'list' object has no attribute", "this model's forward takes pooler_output as ONE stacked (B, T, D) tensor, "
     "not the default list of per-image (T, D) tensors: set stacked_image_embeds = True on the adapter class "
     "(or, in an lm_forward of your own, pass BaseModelOutputWithPooling(pooler_output=image_embeds)); "
     "docs/adding-an-adapter.md, 'A stacked or a list pooler_output'"),
    ("image tokens do not match", "the number of image placeholders in the ids is not the number of image tokens "
     "project() gives: num_image_tokens, format_prompt() or the processor's image-token count (tiling, "
     "crop_to_patches) is off"),
)


def _adapter_frame(tb, cls):
    """The innermost traceback entry running a method of an adapter of class ``cls`` (its ``self``), or None."""
    found = None
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, cls):
            found = tb
        tb = tb.tb_next
    return found


def blame(adapter, exc: BaseException) -> ConformanceFailure | None:
    """A failure naming the adapter method ``exc`` was raised from (inside it or below it), or None if no adapter
    method was on its way (the error is the check's own, or the benchmark's)."""
    entry = _adapter_frame(exc.__traceback__, type(adapter))
    if entry is None:
        return None
    name = entry.tb_frame.f_code.co_name
    owner = next((k for k in type(adapter).__mro__ if name in vars(k)), type(adapter))
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])[:400]
    hints = [h for key, h in _HINTS if key in str(exc)]
    stack = traceback.extract_tb(exc.__traceback__)
    mine = traceback.extract_tb(entry, limit=1)[0]  # the adapter method's own line, then where it was raised
    where = [f"{f.filename}:{f.lineno} in {f.name}" for f in [mine, *[f for f in stack[-2:] if f != mine]]]
    method = f"{type(adapter).__name__}.{name}()"
    if owner is not type(adapter):
        method += f" (inherited from {owner.__name__})"
    return ConformanceFailure(
        f"{method}: raised {type(exc).__name__}: {text}" + "".join(f"\n  hint: {h}" for h in hints)
        + "\n  raised at: " + "\n             ".join(where))


@contextlib.contextmanager
def blaming(adapter):
    """Turn an exception raised from inside ``adapter``'s methods into a :class:`ConformanceFailure` naming the
    method; failures, skips and errors outside the adapter pass unchanged."""
    try:
        yield
    except ConformanceFailure:
        raise
    except Exception as exc:  # noqa: BLE001  (any error of the adapter's is reported as its failure)
        failure = blame(adapter, exc)
        if failure is None:
            raise
        raise failure from None


def blames_adapter(check):
    """Decorate a ``check_*(adapter, ...)`` so that errors raised from the adapter's methods name the method."""
    @functools.wraps(check)
    def run(adapter, *args, **kwargs):
        with blaming(adapter):
            return check(adapter, *args, **kwargs)
    return run


__all__ = ["ConformanceFailure", "blame", "blames_adapter", "blaming", "close", "fail", "first_difference",
           "ids_text", "position_text"]
