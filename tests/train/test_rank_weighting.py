"""The loss weighting of several processes, checked in one process without a process group.

Each of N ranks runs the training step's ``_global_batch`` on its share of one global batch (the context says
rank r of N; its one collective, the loss sum, is done here by hand) and leaves its gradient; DDP then averages
the N gradients. That average must be the gradient of the mean cross-entropy over all answer tokens of the global
batch, whatever N: 1, 2, 3 or 4 processes, with shares of unequal size and answers of 2 to 10 tokens. Reference:
one forward of all 7 examples, the token mean computed with log_softmax and explicit indexing.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from benchmark.config import TrainConfig
from benchmark.conformance import MemoryStore, samples_for
from benchmark.distributed.context import ProcessContext
from benchmark.distributed.engines import BatchLayout
from benchmark.distributed.engines.single import Single
from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from benchmark.train.loop import AnswerTokenLoss, _Examples, _global_batch, _Run, set_trainable

CLASSES = ["ok", "a long class name with several words", "medium name"]
DOMAIN = "textile surface defects"
BATCH = [6, 0, 3, 1, 5, 2, 4]  # 7 examples: no process count above 1 divides it


class RankOf(ProcessContext):
    """Rank ``rank`` of ``world_size`` with no process group: ``sum`` returns this rank's value (summed by the test)."""

    def sum(self, value: float) -> float:
        return float(value)


@pytest.fixture(scope="module")
def setup(real_images):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    images = [real_images[i] for i in (0, 1, 4, 5, 8, 9, 10)]
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
    set_trainable(adapter, "ft-proj", TrainConfig(lr=0.0))
    return adapter, store, samples_for(images)


def rank_step(adapter, store, samples, *, rank: int, world: int, micro: int):
    """This rank's (projector gradient, loss share) after ``_global_batch`` on its share of BATCH."""
    ctx = RankOf(rank=rank, world_size=world)
    layout = BatchLayout(len(BATCH), micro, 1, 1e9, torch.float32)
    run = _Run(adapter=adapter, regime="ft-proj", cfg=TrainConfig(lr=0.0), seed=0, ctx=ctx, engine=Single(ctx),
               module=AnswerTokenLoss(adapter), optimization=None, params=[], layout=layout,
               autocast=contextlib.nullcontext(), upcast=False, total_steps=1, every=0, n_trainable=0,
               resume_file=None)
    proj = adapter.projector_module()
    proj.zero_grad(set_to_none=True)
    loss, _ = _global_batch(run, _Examples(adapter, samples, CLASSES, DOMAIN, 0, store.get), BATCH)
    grads = [p.grad.detach().clone() for p in proj.parameters()]
    proj.zero_grad(set_to_none=True)
    return grads, loss


def reference(adapter, store, samples):
    """(gradient, value) of the mean cross-entropy over every answer token of BATCH, from one forward."""
    proj = adapter.projector_module()
    proj.zero_grad(set_to_none=True)
    parts = [adapter.encode(build_question(DOMAIN, CLASSES, 0, samples[i].uid), CLASSES[samples[i].label])
             for i in BATCH]
    batch = collate(parts, adapter.pad_token_id, with_answer=True)
    out = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                             adapter.project(store.get(BATCH)))
    logp = torch.log_softmax(out.logits.float(), dim=-1)
    labels = batch["labels"]
    terms = [-logp[r, t - 1, labels[r, t]] for r in range(len(BATCH)) for t in range(1, labels.shape[1])
             if labels[r, t] != IGNORE]
    loss = torch.stack(terms).mean()
    loss.backward()
    grads = [p.grad.detach().clone() for p in proj.parameters()]
    proj.zero_grad(set_to_none=True)
    return grads, float(loss.detach())


def norm(grads) -> float:
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


@pytest.mark.parametrize(("world", "micro"), [(1, 7), (1, 2), (2, 2), (3, 1), (4, 1)])
def test_ranks_averaged_as_ddp_does_equal_the_one_process_token_mean(setup, world, micro):
    adapter, store, samples = setup
    want, want_loss = reference(adapter, store, samples)
    steps = [rank_step(adapter, store, samples, rank=r, world=world, micro=micro) for r in range(world)]
    averaged = [torch.stack(gs).mean(0) for gs in zip(*(g for g, _ in steps), strict=True)]  # DDP's all-reduce mean
    for a, b in zip(averaged, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert norm(averaged) == pytest.approx(norm(want), rel=1e-5)  # the clipped quantity, whatever the count
    assert sum(loss for _, loss in steps) == pytest.approx(want_loss, rel=1e-5)


def test_answer_lengths_differ_so_per_rank_means_would_be_seen(setup):
    adapter, _, samples = setup
    lengths = [len(adapter.encode("", CLASSES[samples[i].label]).answer_ids) for i in BATCH]
    assert len(set(lengths)) == 3 and max(lengths) >= 4 * min(lengths), lengths
