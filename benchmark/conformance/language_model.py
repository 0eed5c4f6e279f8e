"""Checks of the ``language-model`` protocol as training and scoring use it: the cached-feature path equals the
forward from pixels, only the answer is supervised, scores do not depend on batching, and a saved projector
reproduces the trained scores."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from benchmark.config import TrainConfig
from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.prompt import build_question
from benchmark.train.loop import finetune, projector_state, training_batch

from .models import load
from .photos import CLASSES, DOMAIN
from .report import blames_adapter, close, fail


@blames_adapter
def check_cached_features_equal_full_forward(adapter, encoded) -> None:
    """lm_forward(project(cached features)) equals the adapter's full_forward from pixels, on a padded batch."""
    px, store, samples = encoded
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


@blames_adapter
def check_only_answer_tokens_are_supervised(adapter, samples) -> None:
    """Only the answer tokens and the end-of-answer token are supervised."""
    batch = training_batch(adapter, samples, indices=[0, 5, 9], classes=CLASSES, domain=DOMAIN, seed=0)
    for row, i in zip(batch["labels"], [0, 5, 9], strict=True):
        answer = adapter.encode("", CLASSES[samples[i].label]).answer_ids
        supervised = row[row != IGNORE].tolist()
        if supervised != answer or not answer or answer[-1] != adapter.answer_end_id:
            fail("encode()", "labels must be exactly the answer tokens, ending in answer_end_id "
                 f"({adapter.answer_end_id})", answer, supervised)


@blames_adapter
def check_scores_do_not_depend_on_batch_size(adapter, store, samples) -> None:
    """Class scores are the same at batch size 1 and 8 (left padding) and with the classes scored in chunks."""
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


@blames_adapter
def check_saved_projector_reloads(adapter, encoded, folder) -> None:
    """A saved, reloaded fine-tuned projector gives identical scores (``folder``: where to save it)."""
    _, store, samples = encoded
    finetune(adapter, "ft-proj", store=store, samples=samples[:4], classes=CLASSES, domain=DOMAIN, seed=0,
             cfg=TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0), progress=False)  # one step: no warm-up
    save_file(projector_state(adapter), str(folder / "projector.safetensors"))
    answers = class_answer_ids(adapter, CLASSES)
    questions = [build_question(DOMAIN, CLASSES, 0, s.uid) for s in samples[:3]]
    tuned = score_batch(adapter, store.get(range(3)), questions, answers)
    fresh = load(adapter.name)
    original = score_batch(fresh, store.get(range(3)), questions, answers)
    fresh.projector_module().load_state_dict(load_file(str(folder / "projector.safetensors")))
    reloaded = score_batch(fresh, store.get(range(3)), questions, answers)
    close(reloaded, tuned, "projector_module()", "a saved and reloaded projector does not reproduce the trained "
          "scores: its state dict does not hold everything project() uses", atol=1e-5)
    if torch.allclose(original, tuned):
        fail("projector_module()", "one FT-Proj step at lr 1e-2 left the class scores unchanged",
             "scores that move", f"max change {float((original - tuned).abs().max()):.3g}")


__all__ = ["check_cached_features_equal_full_forward", "check_only_answer_tokens_are_supervised",
           "check_saved_projector_reloads", "check_scores_do_not_depend_on_batch_size"]
