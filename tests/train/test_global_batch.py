"""Global-batch semantics: the loss is the mean over every answer token of the global batch, however it is split.

Reference: one forward of all 8 examples with the mean cross-entropy over all their answer tokens, computed here
with log_softmax and explicit indexing (not the training code's loss). Answers have different token counts, so
averaging each micro-batch separately (the old accumulation) gives a visibly different gradient.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.config import PAPER_GLOBAL_BATCH, RunConfig, TrainConfig
from benchmark.conformance import MemoryStore, samples_for
from benchmark.errors import BenchmarkError
from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from benchmark.train.loop import finetune
from benchmark.validation import batch_layout

# Answer lengths differ a lot: 2 tokens ("ok" + EOS) up to ~10.
CLASSES = ["ok", "a long class name with several words", "medium name"]
DOMAIN = "textile surface defects"


@pytest.fixture(scope="module")
def setup(real_images):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    images = [real_images[i] for i in (0, 1, 2, 4, 5, 8, 9, 10)]  # labels 0 0 0 1 1 2 2 2
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
    return adapter, samples_for(images), store


def projector_grads_of_first_step(adapter, store, samples, monkeypatch, **train) -> list[torch.Tensor]:
    """Gradients the optimizer sees at its first step (lr 0 so that the model does not move between calls)."""
    seen = []
    real_step = torch.optim.AdamW.step

    def recording_step(self, *a, **k):
        if not seen:
            seen.append([p.grad.detach().clone() for p in adapter.projector_module().parameters()])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    finetune(adapter, "ft-proj", store=store, samples=samples,
             classes=CLASSES, domain=DOMAIN, seed=0, progress=False,
             cfg=TrainConfig(lr=0.0, max_grad_norm=1e9, warmup_ratio=0.0, **train))
    monkeypatch.undo()
    return seen[0]


def reference_grads(adapter, store, samples, groups) -> list[torch.Tensor]:
    """Mean over micro-batch means if ``groups`` has several groups (the old way), else the token mean."""
    proj = adapter.projector_module()
    proj.zero_grad(set_to_none=True)
    adapter.model.requires_grad_(False)
    proj.requires_grad_(True)
    for group in groups:
        parts = [adapter.encode(build_question(DOMAIN, CLASSES, 0, samples[i].uid), CLASSES[samples[i].label])
                 for i in group]
        batch = collate(parts, adapter.pad_token_id, with_answer=True)
        out = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                 adapter.project(store.get(group)))
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        terms = []
        for row in range(len(group)):
            for t in range(1, batch["labels"].shape[1]):
                if batch["labels"][row, t] != IGNORE:  # token t is predicted at position t - 1
                    terms.append(-logp[row, t - 1, batch["labels"][row, t]])
        (torch.stack(terms).mean() / len(groups)).backward()
    grads = [p.grad.detach().clone() for p in proj.parameters()]
    proj.zero_grad(set_to_none=True)
    return grads


def rel(a, b):
    num = torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b, strict=True)))
    return float(num / torch.sqrt(sum((y ** 2).sum() for y in b)))


def test_accumulation_equals_one_batch_on_answers_of_different_lengths(setup, monkeypatch):
    adapter, samples, store = setup
    lengths = {len(adapter.encode("", c).answer_ids) for c in CLASSES}
    assert max(lengths) >= 2 * min(lengths), lengths
    one = reference_grads(adapter, store, samples, [list(range(8))])
    accumulated = projector_grads_of_first_step(adapter, store, samples, monkeypatch, batch_size=8, micro_batch=2)
    whole = projector_grads_of_first_step(adapter, store, samples, monkeypatch, batch_size=8, micro_batch=8)
    assert rel(accumulated, one) < 1e-5
    assert rel(whole, one) < 1e-5
    # The old accumulation (mean of micro-batch means) is far from it: the test can tell the two apart.
    per_micro = reference_grads(adapter, store, samples, [[0, 1], [2, 3], [4, 5], [6, 7]])
    assert rel(per_micro, one) > 1e-2


def test_batch_layout():
    assert batch_layout(64, 8, 2) == (8, 4)
    assert batch_layout(32, 16, 2) == (16, 1)
    assert batch_layout(8, None, 1) == (8, 1)
    assert batch_layout(4, 8, 1) == (4, 1), "a micro-batch above the process's share shrinks to it"
    assert batch_layout(12, None, 1) == (6, 2), "by default the largest divisor of the share up to 8"
    assert batch_layout(14, None, 2) == (7, 1)
    with pytest.raises(BenchmarkError, match="not divisible by 2 process.*--micro-batch 3"):
        batch_layout(16, 3, 2)
    with pytest.raises(BenchmarkError, match="not divisible by the 3 processes"):
        batch_layout(64, 8, 3)


def test_paper_global_batch_is_the_default_and_part_of_the_identity():
    cfg = RunConfig(model="m", task="t")
    assert (cfg.global_batch_for("ft-proj"), cfg.global_batch_for("ft-e2e")) == (64, 32) == (
        PAPER_GLOBAL_BATCH["ft-proj"], PAPER_GLOBAL_BATCH["ft-e2e"])
    assert cfg.identity("ft-proj", 0)["global_batch"] == 64
    assert cfg.identity("ft-e2e", 0)["global_batch"] == 32
    assert "global_batch" not in cfg.identity("zero-shot", 0)
    # The micro-batch only splits the work: same identity.
    assert RunConfig(model="m", task="t", micro_batch=2).identity("ft-proj", 0) == cfg.identity("ft-proj", 0)


def test_old_accumulation_flag_is_refused_with_the_replacement(capsys):
    from benchmark.cli import main

    assert main(["run", "--model", "llava15-tiny", "--task", "textile", "--batch-size", "4", "--grad-accum", "2"]) == 2
    assert "--global-batch 8" in capsys.readouterr().err


def test_indivisible_global_batch_fails_before_any_work(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["run", "--model", "llava15-tiny", "--task", "textile", "--global-batch", "12", "--micro-batch", "5",
                 "--results-dir", str(tmp_path)]) == 2
    assert "--global-batch 12 is not divisible by 1 process(es) x --micro-batch 5" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
