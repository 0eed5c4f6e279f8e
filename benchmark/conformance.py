"""Adapter conformance suite: the same checks for every adapter's tiny twin (timm style).

A registered adapter gets these checks with no test code of its own: the project's test suite runs them over
every built-in tiny twin, and ``python -m benchmark check-adapter NAME`` runs them over any registered adapter,
including one from a third-party package's entry point (``--list`` prints them). Every check runs the
adapter's real transformers classes on real photos (from the ``conformal-clip-data`` package, in the ``test``
extra).

The checks compare the adapter with the model itself, not only with itself: prompt ids with what the model's
own processor and chat template produce (``native_inputs``), the cached-feature path with the model's native
forward on the processor's outputs, the answer's end token with the one the template ends an assistant turn
with. A twin whose projector outputs zeros fails outright, since every comparison would then hold vacuously.
The ``check_*`` functions hold the logic (tests call them directly on deliberately broken adapters); the
``test_*`` functions are their pytest entry points. A failure names the adapter method at fault and gives
expected vs actual.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmark.adapters import contract
from benchmark.batching import IGNORE, collate
from benchmark.config import TrainConfig
from benchmark.evaluation import class_answer_ids, score_batch
from benchmark.prompt import build_question
from benchmark.registry import Plugins
from benchmark.tasks.base import Sample
from benchmark.training import finetune, projector_state, training_batch

MODELS_ENV = "PROJBENCH_CONFORMANCE_MODELS"
CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


def registry() -> Plugins:
    return Plugins()  # honours PROJBENCH_DISABLE_PLUGIN_AUTOLOAD


def list_checks() -> list[tuple[str, str]]:
    """(test name, one-line description) of every check, in the order they run."""
    import inspect
    import sys

    module = sys.modules[__name__]
    tests = [(name, fn) for name, fn in vars(module).items() if name.startswith("test_") and inspect.isfunction(fn)]
    tests.sort(key=lambda item: item[1].__code__.co_firstlineno)
    return [(name, " ".join((fn.__doc__ or "").split())) for name, fn in tests]


def adapters_under_test() -> list[str]:
    """``$PROJBENCH_CONFORMANCE_MODELS`` (comma-separated), else every registered tiny twin."""
    names = [n.strip() for n in os.environ.get(MODELS_ENV, "").split(",") if n.strip()]
    return names or [spec.name for spec in registry().adapters if spec.tiny]


class MemoryStore:
    """In-memory stand-in for the on-disk FeatureStore (same ``get``), filled by the real vision encoder."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def get(self, indices):
        idx = indices.tolist() if hasattr(indices, "tolist") else list(indices)
        return self.features[idx]


def real_photos(per_class: int = 4) -> list:
    """Real RGB photos with class indices: textile nominal / global / local defects."""
    try:
        import conformal_clip_data
    except ImportError:
        pytest.skip("the conformance suite needs `pip install 'projbench[test]'` (conformal-clip-data)")
    from PIL import Image

    root = Path(conformal_clip_data.textile_simulated_root())
    out = []
    for label, folder in enumerate(("nominal", "global", "local")):
        out += [(Image.open(p).convert("RGB"), label) for p in sorted((root / folder).glob("*.jpg"))[:per_class]]
    return out


def samples_for(images) -> list[Sample]:
    out = []
    for i, (img, label) in enumerate(images):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        out.append(Sample(uid=f"img{i:03d}", label=label, load_bytes=lambda d=data: d))
    return out


def load(name):
    return registry().adapters.get(name).factory(device="cpu")


@pytest.fixture(params=adapters_under_test())
def adapter(request):
    """A fresh adapter, for checks that train it."""
    return load(request.param)


@pytest.fixture(scope="module", params=adapters_under_test())
def shared_adapter(request):
    """One adapter per model for the checks that leave it as it was (they are most checks: loading is not free)."""
    return load(request.param)


@pytest.fixture(scope="session")
def photos():
    return real_photos()


@pytest.fixture
def encoded(adapter, photos):
    """Real images through the adapter's own processor and frozen vision encoder, kept in memory."""
    return encode_photos(adapter, photos)


@pytest.fixture(scope="module")
def shared_encoded(shared_adapter, photos):
    return encode_photos(shared_adapter, photos)


def encode_photos(adapter, photos):
    px = adapter.preprocess([im for im, _ in photos])
    return px, MemoryStore(adapter.vision_features(px)), samples_for(photos)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return [k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())]




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


def _ids_text(adapter, ids: list[int], at: int, width: int = 4) -> str:
    """``ids[at-width : at+width]`` with their text, to show where two id sequences part."""
    lo, hi = max(0, at - width), at + width
    return f"...{ids[lo:hi]} = {adapter.tokenizer.decode(ids[lo:hi])!r}"


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def native_or_skip(adapter, question, image, answer=None) -> dict:
    """``adapter.native_inputs``; an adapter without a native processor (a model composed by its adapter) skips."""
    try:
        return adapter.native_inputs(question, image, answer)
    except NotImplementedError as exc:
        pytest.skip(f"no native reference to compare with: {exc}")


QUESTION = "Classify this image into one of the following categories relating to textile surface defects: " \
           "'nominal', 'global defect', 'local defect'. Only output a single final classification label and NOTHING ELSE."
ANSWER = "global defect"


def check_projector_is_informative(adapter, features: torch.Tensor) -> None:
    """``project()`` output is not all zeros and differs between images (else every comparison is vacuous)."""
    spread = float((features.float() - features.float().mean(0, keepdim=True)).abs().max())
    if spread <= 1e-6 * max(1e-12, float(features.float().abs().max())) or spread < 1e-6:
        fail("vision_features()", "the features are the same for every image: the vision encoder of this twin is "
             "vacuous (weights initialised at ~0?), so no check can see what the adapter does with the image",
             "features that differ between images", f"max deviation from the mean {spread:.3g}, "
             f"max |feature| {float(features.float().abs().max()):.3g}")
    with torch.no_grad():
        out = adapter.project(features).float()
    norms = out.flatten(1).norm(dim=-1)
    zero_params = [n for n, p in adapter.projector_module().named_parameters() if p.dim() >= 2 and not bool(p.any())]
    hint = (f"; all-zero projector weights: {zero_params[:4]} (the model's _init_weights zeroes them: the twin's "
            "build() must re-randomise them, e.g. benchmark.adapters.tiny.rerandomise_zero_matrices(out) after "
            "save_pretrained)") if zero_params else ""
    if not bool((norms > 0).all()):
        fail("project()", "the projector output is all zeros: this twin is vacuous, every check comparing two "
             "paths would pass whatever the adapter does with the image" + hint,
             "a non-zero norm per image", f"norms {[round(float(x), 6) for x in norms]}")
    spread = float((out - out.mean(0, keepdim=True)).abs().max())
    if spread <= 1e-6 * float(norms.max()):
        fail("project()", "the projector gives the same output for every image: the image cannot matter" + hint,
             "outputs that differ between images", f"max deviation from the mean {spread:.3g} at norm "
             f"{float(norms.max()):.3g}")


def check_prompt_ids(adapter, image) -> None:
    """``encode(q).prompt_ids`` equal the model's own processor + chat template on the same question and image."""
    native = native_or_skip(adapter, QUESTION, image)["input_ids"][0].tolist()
    mine = adapter.encode(QUESTION).prompt_ids
    at = first_difference(native, mine)
    if at is not None:
        fail("format_prompt()/encode()", f"prompt ids differ from the model's processor and chat template "
             f"(native_inputs) at position {at} of {len(native)} (lengths {len(native)} vs {len(mine)})",
             _ids_text(adapter, native, at), _ids_text(adapter, mine, at))


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


def check_answer_ids(adapter, image) -> None:
    """Prompt + answer ids (end token aside) equal the processor's rendering of the same assistant turn."""
    native = native_or_skip(adapter, QUESTION, image, ANSWER)["input_ids"][0].tolist()
    enc = adapter.encode(QUESTION, ANSWER)
    mine = enc.prompt_ids + enc.answer_ids[:-1]
    at = first_difference(native[: len(mine)], mine)
    if at is not None:
        where = "prompt" if at < len(enc.prompt_ids) else "answer (check answer_prefix)"
        fail("encode()", f"ids of prompt + answer {ANSWER!r} differ from the model's processor and chat template "
             f"in the {where} at position {at}", _ids_text(adapter, native, at), _ids_text(adapter, mine, at))


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
    err = (got - ref).abs()
    if float(err.max()) > atol * max(1.0, float(ref.abs().max())):
        row = int(err.max(-1).values.argmax())
        part = "prompt" if row < len(enc.prompt_ids) else "answer"
        fail("lm_forward()", f"the cached path (preprocess -> vision_features -> project -> lm_forward) differs "
             f"from the model's native forward on its processor's outputs (native_inputs keys {sorted(native)}), "
             f"first at position {row} ({part}); are model inputs such as token_type_ids or positions dropped?",
             f"native logits, norm {float(ref.norm()):.6g}", f"norm {float(got.norm()):.6g}, "
             f"max |difference| {float(err.max()):.3g} (tolerance {atol:g})")


def check_parts_cover_model(adapter) -> None:
    """vision, projector and LLM share no parameter and, with ``other_modules()``, cover every parameter."""
    parts = {**adapter.parts(), **{f"other:{k}": m for k, m in adapter.other_modules().items()}}
    owner: dict[int, str] = {}
    for name, module in parts.items():
        for pname, param in module.named_parameters():
            if id(param) in owner and owner[id(param)] != name:
                fail("parts()", f"{owner[id(param)]} and {name} share parameters: the three parts must be disjoint",
                     "no parameter in two parts", f"{name}.{pname} is also in {owner[id(param)]}")
            owner[id(param)] = name
    missing = [n for n, p in adapter.model.named_parameters() if id(p) not in owner]
    if missing:
        fail("parts()", f"{len(missing)} parameters of the model belong to no part; add them to vision_module(), "
             "projector_module() or llm_module(), or declare them in other_modules()",
             "every parameter in a part", f"unassigned: {missing[:6]}")


def check_projector_gradients(adapter, samples, store) -> None:
    """Under FT-Proj every projector parameter (bar declared unused ones) gets a non-zero gradient, and only they do."""
    from .batching import answer_loss
    from .training import set_trainable

    flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
    params = set_trainable(adapter, "ft-proj", TrainConfig(lr=1e-3))
    batch = training_batch(adapter, samples, indices=[0, 5], classes=CLASSES, domain=DOMAIN, seed=0)
    adapter.model.zero_grad(set_to_none=True)
    out = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                             adapter.project(store.get([0, 5])))
    loss, _ = answer_loss(out.logits, batch["labels"])
    loss.backward()
    projector = dict(adapter.projector_module().named_parameters())
    unused = [re.compile(p) for p in adapter.unused_projector_parameters]
    dead = [n for n, p in projector.items()
            if (p.grad is None or not bool(p.grad.any())) and not any(u.search(n) for u in unused)]
    outside = [n for n, p in adapter.model.named_parameters() if p.grad is not None and id(p) not in
               {id(q) for q in projector.values()}]
    n_trainable = len(params)
    adapter.model.zero_grad(set_to_none=True)
    for n, p in adapter.model.named_parameters():
        p.requires_grad_(flags[n])
    if dead:
        fail("project()", f"{len(dead)} of {len(projector)} projector parameters get no gradient under FT-Proj: "
             "project() does not use them (moved into vision_features()?), or something after them is zero; declare "
             "parameters the model never uses in unused_projector_parameters", "a non-zero gradient for each",
             f"zero or no gradient: {dead[:6]}")
    if outside:
        fail("trainable_modules()", "FT-Proj gives gradients to parameters outside the projector",
             "gradients only in projector_module()", f"{outside[:6]} ({n_trainable} trainable)")


# --- pytest entry points: the order here is the order of `check-adapter --list` -----------------------------

def test_loads_from_saved_directory(shared_adapter):
    """Loads through from_pretrained from a saved directory; each of the three parts has parameters."""
    adapter = shared_adapter
    ckpt = Path(adapter.checkpoint)
    if not (ckpt.is_dir() and any(ckpt.rglob("config.json"))):
        fail("factory", "tiny twins must load through from_pretrained from a saved directory",
             "a directory with config.json", adapter.checkpoint)
    if adapter.num_image_tokens <= 0:
        fail("num_image_tokens", "must be positive", "> 0", adapter.num_image_tokens)
    for part, module in adapter.parts().items():
        if sum(p.numel() for p in module.parameters()) == 0:
            fail(f"{part}_module()", "the part has no parameters", "> 0 parameters", 0)


def test_provides_the_contract(shared_adapter):
    """Provides every required protocol of the adapter contract (parts, projection, prompting, language model)."""
    gaps = contract.missing(shared_adapter, contract.REQUIRED)
    if gaps:
        name, members = next(iter(gaps.items()))
        fail(f"{type(shared_adapter).__name__}", f"does not provide the {name!r} protocol "
             "(benchmark.adapters.contract)", "every member implemented", f"missing {members}")


def test_parts_are_disjoint_and_cover_the_model(shared_adapter):
    """vision, projector and LLM share no parameter and together (with other_modules()) cover the model."""
    check_parts_cover_model(shared_adapter)


def test_shapes(shared_adapter, shared_encoded):
    """vision_features is (B, N, D); project gives (B, num_image_tokens, LLM width)."""
    adapter = shared_adapter
    _, store, _ = shared_encoded
    feats = store.get(range(2))
    if feats.dim() != 3 or feats.shape[0] != 2:
        fail("vision_features()", "must return (B, N, D) for B images", "(2, N, D)", tuple(feats.shape))
    tokens = adapter.project(feats)
    width = adapter.model.get_input_embeddings().embedding_dim
    if tuple(tokens.shape) != (2, adapter.num_image_tokens, width):
        fail("project()", "must return (B, num_image_tokens, LLM embedding width)",
             (2, adapter.num_image_tokens, width), tuple(tokens.shape))


def test_projector_output_is_informative(shared_adapter, shared_encoded):
    """project() output is not all zeros and varies across images (a vacuous twin fails here)."""
    _, store, _ = shared_encoded
    check_projector_is_informative(shared_adapter, store.get([0, 4, 8]))  # one photo of each class


def test_prompt_ids_match_the_processor(shared_adapter, photos):
    """encode() prompt ids equal the model's own processor + chat template for the same question and image."""
    check_prompt_ids(shared_adapter, photos[0][0])


def test_answer_ids_match_the_processor(shared_adapter, photos):
    """encode() answer ids (with answer_prefix) equal the processor's rendering of the assistant turn."""
    check_answer_ids(shared_adapter, photos[0][0])


def test_answer_ends_with_the_models_end_token(shared_adapter, photos):
    """answer_end_id is the token the model's chat template ends an assistant turn with (else its EOS)."""
    check_answer_end(shared_adapter, photos[0][0])


def test_cached_path_equals_native_forward(shared_adapter, photos):
    """preprocess -> vision_features -> project -> lm_forward equals the model's native forward on its processor's
    outputs; vision_features equals what the native forward feeds the projector."""
    check_cached_path_equals_native(shared_adapter, photos[1][0])


def test_cached_features_equal_full_forward(shared_adapter, shared_encoded):
    """lm_forward(project(cached features)) equals the adapter's full_forward from pixels, on a padded batch."""
    adapter = shared_adapter
    px, store, samples = shared_encoded
    parts = [adapter.encode(build_question(DOMAIN, CLASSES, 0, s.uid), CLASSES[s.label]) for s in samples[:3]]
    batch = collate(parts, adapter.pad_token_id, with_answer=True)
    with torch.no_grad():
        cached = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                    adapter.project(store.get(range(3)))).logits
        full = adapter.full_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], px[:3]).logits
    real = batch["attention_mask"].bool()
    err = float((cached[real] - full[real]).abs().max())
    if err > 1e-4 * max(1.0, float(full[real].abs().max())):
        fail("lm_forward()", "the cached-feature path differs from full_forward on a left-padded batch of 3",
             f"full_forward logits, norm {float(full[real].norm()):.6g}",
             f"norm {float(cached[real].norm()):.6g}, max |difference| {err:.3g}")


def test_projector_gets_gradients_under_ft_proj(shared_adapter, shared_encoded):
    """Under FT-Proj every projector parameter gets a non-zero gradient and nothing else gets one."""
    _, store, samples = shared_encoded
    check_projector_gradients(shared_adapter, samples, store)


def test_only_answer_tokens_are_supervised(shared_adapter, shared_encoded):
    """Only the answer tokens and the end-of-answer token are supervised."""
    adapter = shared_adapter
    _, _, samples = shared_encoded
    batch = training_batch(adapter, samples, indices=[0, 5, 9], classes=CLASSES, domain=DOMAIN, seed=0)
    for row, i in zip(batch["labels"], [0, 5, 9], strict=True):
        answer = adapter.encode("", CLASSES[samples[i].label]).answer_ids
        supervised = row[row != IGNORE].tolist()
        if supervised != answer or not answer or answer[-1] != adapter.answer_end_id:
            fail("encode()", "labels must be exactly the answer tokens, ending in answer_end_id "
                 f"({adapter.answer_end_id})", answer, supervised)


@pytest.mark.parametrize("regime", ["ft-proj", "ft-e2e"])
def test_freezing(adapter, encoded, regime):
    """One training step changes only the regime's trainable modules (FT-Proj: projector; FT-E2E: + LLM)."""
    _, store, samples = encoded
    parts = adapter.parts()
    before = {name: snapshot(m) for name, m in parts.items()}
    whole = snapshot(adapter.model)
    trainable = {id(p) for m in adapter.trainable_modules(regime).values() for p in m.parameters()}
    stats = finetune(adapter, regime, store=store, samples=samples[:4],
                     classes=CLASSES, domain=DOMAIN, seed=0,
                     cfg=TrainConfig(lr=1e-2, batch_size=4), progress=False)
    if stats["optimizer_steps"] != 1 or stats["supervised_answer_tokens"] <= 0:
        fail("encode()", "one batch of 4 must give one optimizer step with supervised answer tokens",
             "1 step, > 0 tokens", f"{stats['optimizer_steps']} steps, {stats['supervised_answer_tokens']} tokens")
    moved = {name: changed(before[name], m) for name, m in parts.items()}
    outside = [k for k, v in adapter.model.named_parameters()
               if id(v) not in trainable and not torch.equal(whole[k], v.detach())]
    if outside:
        fail("trainable_modules()", f"{regime} changed parameters outside the regime's trainable modules",
             "no change outside them", outside[:6])
    if moved["vision"]:
        fail("vision_module()", "the vision encoder is frozen in every regime", [], moved["vision"][:6])
    if not moved["projector"]:
        fail("projector_module()", f"one {regime} step must change the projector", "changed parameters", [])
    if regime == "ft-proj" and moved["llm"]:
        fail("llm_module()", "FT-Proj must not change the LLM", [], moved["llm"][:6])
    if regime == "ft-e2e" and not moved["llm"]:
        fail("llm_module()", "FT-E2E must change the LLM", "changed parameters", [])


def test_scores_do_not_depend_on_batch_size(shared_adapter, shared_encoded):
    """Class scores are the same at batch size 1 and 8 (left padding) and with the classes scored in chunks."""
    adapter = shared_adapter
    _, store, samples = shared_encoded
    answers = class_answer_ids(adapter, CLASSES)
    # Different prompt lengths, so that batching needs left padding.
    questions = [build_question(DOMAIN, CLASSES, 0, s.uid) + " x" * (i % 3) for i, s in enumerate(samples[:8])]
    together = score_batch(adapter, store.get(range(8)), questions, answers)  # batch size 8
    alone = torch.cat([score_batch(adapter, store.get([i]), [q], answers) for i, q in enumerate(questions)])
    close(together, alone, "lm_forward()", "class scores of a left-padded batch of 8 differ from scoring each "
          "example alone (explicit position_ids or the attention mask not honoured?)")
    chunked = score_batch(adapter, store.get(range(8)), questions, answers, max_rows=8)  # one class per chunk
    close(chunked, together, "lm_forward()", "class scores change when the KV cache is repeated for fewer classes "
          "at a time (does a continuation over the cache depend on the cache's batch size?)")


def test_saved_projector_reloads_to_identical_scores(adapter, encoded, tmp_path):
    """A saved, reloaded fine-tuned projector gives identical scores."""
    _, store, samples = encoded
    finetune(adapter, "ft-proj", store=store, samples=samples[:4],
             classes=CLASSES, domain=DOMAIN, seed=0, cfg=TrainConfig(lr=1e-2, batch_size=4),
             progress=False)
    save_file(projector_state(adapter), str(tmp_path / "projector.safetensors"))
    answers = class_answer_ids(adapter, CLASSES)
    questions = [build_question(DOMAIN, CLASSES, 0, s.uid) for s in samples[:3]]
    tuned = score_batch(adapter, store.get(range(3)), questions, answers)
    fresh = load(adapter.name)
    original = score_batch(fresh, store.get(range(3)), questions, answers)
    fresh.projector_module().load_state_dict(load_file(str(tmp_path / "projector.safetensors")))
    reloaded = score_batch(fresh, store.get(range(3)), questions, answers)
    close(reloaded, tuned, "projector_module()", "a saved and reloaded projector does not reproduce the trained "
          "scores: its state dict does not hold everything project() uses", atol=1e-5)
    if torch.allclose(original, tuned):
        fail("projector_module()", "one FT-Proj step at lr 1e-2 left the class scores unchanged",
             "scores that move", f"max change {float((original - tuned).abs().max()):.3g}")


def test_full_protocol_completes(adapter, tmp_path):
    """`run` on the textile task, every regime, at a reduced size; its records name the adapter and its projector
    family, in the folders the schema gives them (what the leaderboard reads)."""
    from .config import ProbeConfig, RunConfig
    from .protocol import Runner
    from .schema import RunKey, RunRecord

    cfg = RunConfig(model=adapter.name, task="textile", max_per_class=4, results_dir=str(tmp_path),
                    cache_dir=str(tmp_path / "cache"), probe=ProbeConfig(max_epochs=2), progress=False)
    results = Runner(cfg, log=lambda *_: None).run()
    regimes = [m["regime"] for m in results]
    if regimes != ["zero-shot", "ft-proj", "ft-e2e"]:
        fail("run", "the protocol did not produce every regime", ["zero-shot", "ft-proj", "ft-e2e"], regimes)
    tokens = [m["training"]["supervised_answer_tokens"] for m in results[1:]]
    if not all(n > 0 for n in tokens):
        fail("encode()", "training supervised no answer token", "> 0 per regime", tokens)
    family = registry().adapters.get(adapter.name).projector_family
    records = [RunRecord.from_json(m) for m in results]
    want = [RunKey(adapter.name, "textile", 4, r, 0) for r in regimes]
    if [r.key for r in records] != want or {r.projector_family for r in records} != {family}:
        fail("AdapterSpec", "the records do not name the adapter, its folders and its projector family",
             [(k.path, family) for k in want], [(r.key.path, r.projector_family) for r in records])
