"""``--eval generate`` against an uncached reference: the logits of every decoding step, not only the argmax.

Cached, left-padded, batched greedy decoding must give, at each step and for each row, the logits of one plain
forward (no cache, no padding, positions 0..L-1) over that row's prompt plus the tokens generated so far. A
position or mask error after the first token changes these logits even where the argmax happens to survive.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.evaluate.generation import generate_batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny(hermetic_cache):
    from benchmark.adapters.llava import load_llava_tiny

    return load_llava_tiny(cache_dir=hermetic_cache)


def test_every_step_equals_an_uncached_forward(tiny, real_images, monkeypatch):
    images = [real_images[i][0] for i in (0, 5, 10)]
    with torch.no_grad():
        features = tiny.vision_features(tiny.preprocess(images))
    # Prompts of three lengths, so that the batch is left-padded.
    questions = [f"Classify this image into one of {'these ' * k}categories: nominal, global, local." for k in (0, 3, 1)]
    budget = 6

    steps = []  # last-position logits of every forward generate_batch makes, in order
    real_forward = tiny.lm_forward

    def lm_forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        steps.append(out.logits[:, -1].detach().float().clone())
        return out

    monkeypatch.setattr(tiny, "lm_forward", lm_forward)
    generated = generate_batch(tiny, features, questions, budget)
    monkeypatch.undo()
    assert len({len(tiny.encode(q).prompt_ids) for q in questions}) == 3
    assert max(len(g) for g in generated) >= 3, "too few tokens generated to test the steps after the first"

    checked = 0
    for i, (question, tokens) in enumerate(zip(questions, generated, strict=True)):
        prompt = tiny.encode(question).prompt_ids
        # Step s predicts token s; a row that stopped at the end-of-sequence token is checked up to that step.
        for s in range(min(len(tokens) + 1, len(steps))):
            ids = torch.tensor([prompt + tokens[:s]])
            with torch.no_grad():
                ref = real_forward(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None],
                                   tiny.project(features[i: i + 1])).logits[0, -1].float()
            torch.testing.assert_close(steps[s][i], ref, rtol=1e-4, atol=1e-4,
                                       msg=lambda m, i=i, s=s: f"row {i}, step {s}: {m}")
            expected = tokens[s] if s < len(tokens) else tiny.answer_end_id
            assert int(ref.argmax()) == expected, (i, s)
            checked += 1
    assert checked >= 3 * 2


def test_generate_metrics_follow_from_the_answers(tiny, real_images):
    """Unmatched answers are wrong for their true class and no class's precision; the counts add up."""
    from test_metrics import reference_macro_f1, reference_scores

    from benchmark.conformance import samples_for
    from benchmark.evaluate.generation import evaluate_generate
    from benchmark.evaluate.loglik import EvalSet
    from benchmark.storage.features import extract

    classes = ["nominal", "global defect", "local defect"]
    images = real_images[::2]
    samples = samples_for(images)
    store, _ = extract(tiny, samples, cache_dir=tiny_cache(), task_fingerprint="generate-metrics", split="test",
                       progress=False)
    out = evaluate_generate(tiny, EvalSet(store, samples, classes, "textile surface defects", 0), batch_size=4,
                            progress=False)
    m, preds = out["metrics"], out["predictions"]
    index = {c: i for i, c in enumerate(classes)}
    y_true = [label for _, label in images]
    # An answer matching no class is no prediction at all (-1), never a class.
    assert [p["prediction"] is None for p in preds] == [p["match"] == "unmatched" for p in preds]
    y_pred = [-1 if p["prediction"] is None else index[p["prediction"]] for p in preds]
    assert [index[p["label"]] for p in preds] == y_true
    n_unmatched = sum(p == -1 for p in y_pred)
    assert m["n_unmatched"] == n_unmatched and m["unmatched_rate"] == pytest.approx(n_unmatched / len(preds))
    assert m["match_rules"] == {r: sum(p["match"] == r for p in preds) for r in ("exact", "prefix", "contains",
                                                                              "unmatched")}
    assert sum(m["match_rules"].values()) == len(preds)
    assert m["macro_f1"] == pytest.approx(reference_macro_f1(y_true, y_pred), abs=1e-12)
    assert m["accuracy"] == pytest.approx(sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(preds))
    ref = reference_scores(y_true, y_pred, range(3))
    for i, c in enumerate(classes):
        pc = m["per_class"][c]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(ref[i], abs=1e-12)
    assert m["confusion_matrix_columns"] == [*classes, "<unmatched>"]
    assert m["confusion_matrix"] == [[sum(t == i and p == j for t, p in zip(y_true, y_pred, strict=True))
                                      for j in (0, 1, 2, -1)] for i in range(3)]
    assert m["max_new_tokens"] == max(len(tiny.encode("", c).answer_ids) for c in classes) + 3


def tiny_cache():
    import os
    from pathlib import Path

    return Path(os.environ["PROJBENCH_CACHE"])
