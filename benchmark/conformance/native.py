"""Checks against the model itself (the ``native-reference`` protocol): prompt and answer ids, the end token,
and the cached-feature path, each compared with the model's own processor, chat template and forward.

An adapter without a native reference (a model composed by its adapter) skips these checks.
"""

from __future__ import annotations

import pytest
import torch

from .report import blames_adapter, fail, first_difference, ids_text, position_text

QUESTION = "Classify this image into one of the following categories relating to textile surface defects: " \
           "'nominal', 'global defect', 'local defect'. Only output a single final classification label and NOTHING ELSE."
ANSWER = "global defect"


def native_or_skip(adapter, question, image, answer=None) -> dict:
    """``adapter.native_inputs``; an adapter without a native processor (a model composed by its adapter) skips."""
    try:
        return adapter.native_inputs(question, image, answer)
    except NotImplementedError as exc:
        pytest.skip(f"no native reference to compare with: {exc}")


@blames_adapter
def check_prompt_ids(adapter, image) -> None:
    """``encode(q).prompt_ids`` equal the model's own processor + chat template on the same question and image,
    and start with a BOS exactly when the adapter declares that the real tokenizer prepends one (``expects_bos``)."""
    native = native_or_skip(adapter, QUESTION, image)["input_ids"][0].tolist()
    mine = adapter.encode(QUESTION).prompt_ids
    at = first_difference(native, mine)
    if at is not None:
        fail("format_prompt()/encode()", f"prompt ids differ from the model's processor and chat template "
             f"(native_inputs) at {position_text(adapter, native, mine, at)} of {len(native)} (lengths "
             f"{len(native)} vs {len(mine)}){_bos_hint(adapter, native, mine, at)}",
             ids_text(adapter, native, at), ids_text(adapter, mine, at))
    check_bos(adapter, mine)


def _bos_hint(adapter, native: list[int], mine: list[int], at: int) -> str:
    bos = adapter.tokenizer.bos_token_id
    if at != 0 or bos is None or (native[:1] == [bos]) == (mine[:1] == [bos]):
        return ""
    who, other = ("the model's processor", "encode()") if native[:1] == [bos] else ("encode()", "the model's processor")
    return (f"; {who} starts with the BOS {adapter.tokenizer.bos_token!r} and {other} does not. If the real "
            "checkpoint's tokenizer prepends no BOS (Qwen, InternVL, ChatML models), the twin's must not either "
            "(benchmark.adapters.tiny.build_tokenizer(bos=None)); if it does, encode() must keep it "
            "(_tokenize(first=True) adds special tokens)")


def check_bos(adapter, prompt_ids: list[int]) -> None:
    """The prompt holds the tokenizer's BOS iff the adapter declares that the real tokenizer prepends one."""
    expects = getattr(adapter, "expects_bos", None)
    bos = adapter.tokenizer.bos_token_id
    if expects is None:
        return
    has = bos is not None and bos in prompt_ids
    if has != expects:
        said = "prepends a BOS" if expects else "prepends no BOS"
        fix = ("build the twin's tokenizer with build_tokenizer(bos=None)" if has else
               "build the twin's tokenizer with its BOS (build_tokenizer(bos='<s>')) and keep special tokens in "
               "encode()")
        fail("expects_bos", f"{type(adapter).__name__} declares that the real checkpoint's tokenizer {said}, "
             f"but the twin's prompt ids {'hold' if has else 'lack'} the BOS: {fix}",
             f"BOS {'present' if expects else 'absent'}",
             f"{adapter.tokenizer.bos_token!r} (id {bos}) {'at position ' + str(prompt_ids.index(bos)) if has else 'absent'}")


def native_end_id(adapter, image) -> tuple[int | list[int], str]:
    """The end-of-answer token the model itself uses: the first special token its template writes after the
    answer in an assistant turn, else the EOS its generation stops at. Returns (id or ids, where from)."""
    prompt = native_or_skip(adapter, QUESTION, image)["input_ids"][0].tolist()
    whole = native_or_skip(adapter, QUESTION, image, ANSWER)["input_ids"][0].tolist()
    tok = adapter.tokenizer
    # Special tokens: the named ones, and every added token flagged special (chat markers such as
    # <end_of_turn> are often only that).
    special = set(tok.all_special_ids) | {i for i, t in getattr(tok, "added_tokens_decoder", {}).items() if t.special}
    for i in whole[len(prompt):]:
        if i in special:
            return i, "the special token the chat template writes after the assistant's answer"
    eos = adapter.model.generation_config.eos_token_id
    if eos is None:
        eos = adapter.tokenizer.eos_token_id
    return eos, "the template ends no turn with a special token: the EOS of the model's generation config"


@blames_adapter
def check_answer_end(adapter, image) -> None:
    """``answer_end_id`` is the token the model's template ends an assistant turn with (else its EOS)."""
    expected, source = native_end_id(adapter, image)
    ok = adapter.answer_end_id in expected if isinstance(expected, list) else adapter.answer_end_id == expected
    def show(i):
        return [show(j) for j in i] if isinstance(i, list) else f"{adapter.tokenizer.convert_ids_to_tokens(i)} (id {i})"
    if not ok:
        fail("answer_end_id", f"the end-of-answer token is not the model's ({source})", show(expected),
             show(adapter.answer_end_id))
    answer = adapter.encode(QUESTION, ANSWER).answer_ids
    if not answer or answer[-1] != adapter.answer_end_id:
        fail("encode()", "answer ids must end with answer_end_id", show(adapter.answer_end_id),
             show(answer[-1]) if answer else "no answer ids")


@blames_adapter
def check_answer_ids(adapter, image) -> None:
    """Prompt + answer ids (end token aside) equal the processor's rendering of the same assistant turn."""
    native = native_or_skip(adapter, QUESTION, image, ANSWER)["input_ids"][0].tolist()
    enc = adapter.encode(QUESTION, ANSWER)
    mine = enc.prompt_ids + enc.answer_ids[:-1]
    at = first_difference(native[: len(mine)], mine)
    if at is not None:
        where = "prompt" if at < len(enc.prompt_ids) else "answer (check answer_prefix)"
        fail("encode()", f"ids of prompt + answer {ANSWER!r} differ from the model's processor and chat template "
             f"in the {where} at {position_text(adapter, native, mine, at)}", ids_text(adapter, native, at),
             ids_text(adapter, mine, at))


@blames_adapter
def check_cached_path_equals_native(adapter, image, atol: float = 1e-4) -> None:
    """project(vision_features(preprocess(img))) -> lm_forward gives the model's native logits on the processor's
    outputs (token types, positions and masks included), and vision_features is what the model feeds its projector."""
    native = native_or_skip(adapter, QUESTION, image, ANSWER)
    enc = adapter.encode(QUESTION, ANSWER)
    ids = enc.prompt_ids + enc.answer_ids
    common = first_difference(native["input_ids"][0].tolist(), ids)
    common = len(ids) if common is None else common
    if common <= len(enc.prompt_ids):
        fail("encode()", "prompt ids differ from the model's processor (see check_prompt_ids); the forwards "
             "cannot be compared", f"{len(enc.prompt_ids) + 1}+ shared leading ids", f"{common}")
    seen = []
    hook = adapter.projector_module().register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            ref = adapter.native_forward(native).logits[0, :common].float()
    finally:
        hook.remove()
    with torch.no_grad():
        px = adapter.preprocess([image])
        feats = adapter.vision_features(px)
        t = torch.tensor([ids], device=adapter.device)
        mask = torch.ones_like(t)
        pos = torch.arange(len(ids), device=adapter.device)[None]
        got = adapter.lm_forward(t, mask, pos, adapter.project(feats)).logits[0, :common].float()
    _check_projector_input(seen, feats, atol)
    err = (got - ref).abs()
    if float(err.max()) > atol * max(1.0, float(ref.abs().max())):
        row = int(err.max(-1).values.argmax())
        part = "prompt" if row < len(enc.prompt_ids) else "answer"
        fail("lm_forward()", f"the cached path (preprocess -> vision_features -> project -> lm_forward) differs "
             f"from the model's native forward on its processor's outputs (native_inputs keys {sorted(native)}), "
             f"first at position {row} ({part}); are model inputs such as token_type_ids or positions dropped?",
             f"native logits, norm {float(ref.norm()):.6g}", f"norm {float(got.norm()):.6g}, "
             f"max |difference| {float(err.max()):.3g} (tolerance {atol:g})")


def _check_projector_input(seen: list, feats: torch.Tensor, atol: float) -> None:
    """The cached ``feats`` are what the native forward fed its projector (``seen``: the inputs a hook recorded)."""
    if len(seen) == 1 and seen[0].numel() == feats.numel():
        diff = float((seen[0].float().flatten() - feats.float().flatten().to(seen[0].device)).abs().max())
        if diff > atol:
            fail("vision_features()", "the cached features are not what the model's own forward feeds its "
                 "projector (was part of the projector, e.g. its norm or pooling, moved into the features?)",
                 f"the projector's input, norm {float(seen[0].float().norm()):.5g}",
                 f"norm {float(feats.float().norm()):.5g}, max difference {diff:.3g}")
    elif len(seen) == 1:
        fail("vision_features()", "the cached features do not have the size of what the model feeds its projector",
             f"{tuple(seen[0].shape)} ({seen[0].numel()} values)", f"{tuple(feats.shape)} ({feats.numel()} values)")


__all__ = ["ANSWER", "QUESTION", "check_answer_end", "check_bos", "check_answer_ids", "check_cached_path_equals_native",
           "check_prompt_ids", "native_end_id", "native_or_skip"]
