"""Class scoring when class names have different answer lengths in tokens (1 to 8 words here).

With names of equal length the summed and the per-token scores rank classes alike, and a per-token score divided
by the wrong length goes unseen. Reference: for each image and class, one forward of prompt + answer through the
model (no KV cache, no batching, no chunking), the log-softmax of its logits gathered at the answer tokens, summed
and divided by the answer's token count (EOS included).
"""

from __future__ import annotations

import pytest
import torch

from benchmark.conformance import MemoryStore, samples_for
from benchmark.evaluate.loglik import EvalSet, evaluate_loglik
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins

CLASSES = ["ok", "a very long class name with eight words in it", "medium name"]
DOMAIN = "textile surface defects"


@pytest.fixture(scope="module")
def scored(real_images):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    images = real_images[:6]
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
    samples = samples_for(images)
    eval_set = EvalSet(store=store, samples=samples, classes=CLASSES, domain=DOMAIN, seed=3)
    out = {norm: evaluate_loglik(adapter, eval_set, batch_size=4, max_rows=4, progress=False, score_norm=norm)
           for norm in ("sum", "mean")}
    return adapter, store, samples, out


@torch.no_grad()
def reference_scores(adapter, store, samples) -> tuple[torch.Tensor, list[int]]:
    """(images, classes) summed answer log-probabilities from single full forwards, and the answer lengths."""
    rows, lengths = [], []
    for i, s in enumerate(samples):
        q = build_question(DOMAIN, CLASSES, 3, s.uid)
        row = []
        for c in CLASSES:
            enc = adapter.encode(q, c)
            ids = torch.tensor([enc.prompt_ids + enc.answer_ids])
            out = adapter.lm_forward(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None],
                                     adapter.project(store.get([i])))
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)
            start = len(enc.prompt_ids)
            row.append(sum(float(logp[start - 1 + j, t]) for j, t in enumerate(enc.answer_ids)))
            if i == 0:
                lengths.append(len(enc.answer_ids))
        rows.append(row)
    return torch.tensor(rows), lengths


def test_per_token_scores_and_predictions_follow_from_the_models_logits(scored):
    adapter, store, samples, out = scored
    ref, lengths = reference_scores(adapter, store, samples)
    assert len(set(lengths)) == 3 and max(lengths) >= 4 * min(lengths), lengths  # the input that exercises it
    per_token = ref / torch.tensor(lengths, dtype=ref.dtype)
    for norm, result in out.items():
        preds = result["predictions"]
        got_sum = torch.tensor([p["scores"] for p in preds])
        got_mean = torch.tensor([p["scores_mean"] for p in preds])
        assert torch.allclose(got_sum, ref, atol=2e-4), (norm, (got_sum - ref).abs().max())
        assert torch.allclose(got_mean, per_token, atol=2e-4), (norm, (got_mean - per_token).abs().max())
        assert [p["prediction_sum"] for p in preds] == [CLASSES[k] for k in ref.argmax(-1).tolist()]
        assert [p["prediction_mean"] for p in preds] == [CLASSES[k] for k in per_token.argmax(-1).tolist()]
        chosen = ref if norm == "sum" else per_token
        assert result["pred_indices"] == chosen.argmax(-1).tolist()
        assert result["metrics"]["length_bias"]["answer_tokens"] == dict(zip(CLASSES, lengths, strict=True))


def test_the_two_norms_disagree_here_so_the_switch_is_seen(scored):
    *_, out = scored
    preds = out["sum"]["predictions"]
    assert any(p["prediction_sum"] != p["prediction_mean"] for p in preds)
    assert out["mean"]["pred_indices"] != out["sum"]["pred_indices"]
