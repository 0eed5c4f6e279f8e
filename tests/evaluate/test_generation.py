"""``--eval generate``: matching rules, greedy decoding from cached features, batch-size invariance, protocol."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.evaluate import generation
from benchmark.evaluate.generation import evaluate_generate, generate_batch, match_class, normalize_answer
from benchmark.evaluate.loglik import EvalSet
from benchmark.evaluate.prompt import build_question
from benchmark.tasks.base import Sample
from conftest import make_image_folder

PLANTS = ["tomato leaf", "tomato leaf late blight", "tomato leaf bacterial spot", "apple leaf", "grape leaf"]
HUMANITARIAN = ["affected, injured, or dead people", "infrastructure and utility damage", "not humanitarian",
                "rescue, volunteering, or donation effort"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("text, classes, expected", [
    ("Tomato leaf late blight", PLANTS, (1, "exact")),
    ('"tomato leaf."', PLANTS, (0, "exact")),
    ("Tomato_Leaf  Bacterial-Spot", PLANTS, (2, "exact")),
    ("tomato leaf late blight. The leaf shows lesions", PLANTS, (1, "prefix")),   # the longest class it starts with
    ("tomato leaf, healthy", PLANTS, (0, "prefix")),
    ("tomato leaf bacterial", PLANTS, (None, "unmatched")),   # "tomato leaf" or "... bacterial spot"? ambiguous
    ("grape", PLANTS, (4, "prefix")),                          # the first word of exactly one class name
    ("tomato", PLANTS, (None, "unmatched")),                   # ... of several: ambiguous
    ("The answer is: apple leaf", PLANTS, (3, "contains")),
    ("It could be tomato leaf late blight", PLANTS, (1, "contains")),  # "tomato leaf" is inside the longer match
    ("apple leaf or grape leaf", PLANTS, (None, "unmatched")),  # hedging between two classes
    ("tomato leaf late blight on a tomato leaf", PLANTS, (1, "prefix")),
    ("", PLANTS, (None, "unmatched")),
    ("potato", PLANTS, (None, "unmatched")),
    ("Infrastructure and utility damage", HUMANITARIAN, (1, "exact")),
    ("affected injured or dead people", HUMANITARIAN, (0, "exact")),       # punctuation does not matter
    ("rescue, volunteering", HUMANITARIAN, (3, "prefix")),                 # cut off by the token budget
    ("not humanitarian at all", HUMANITARIAN, (2, "prefix")),
])
def test_matching_rules(text, classes, expected):
    assert match_class(text, classes) == expected


def test_normalize_answer():
    assert normalize_answer("  “Sea-Lake”\n") == "sea lake"
    assert normalize_answer("ÉCZEMA!") == "éczema"
    assert normalize_answer("Urticaria (Hives)") == "urticaria hives"


@pytest.fixture(scope="module")
def tiny(hermetic_cache):
    from benchmark.adapters.llava import load_llava_tiny

    return load_llava_tiny(cache_dir=hermetic_cache)


class MemoryStore:
    """The ``get`` interface of the on-disk feature store, over a tensor."""

    def __init__(self, features):
        self.features = features

    def get(self, indices):
        return self.features[list(indices)]


@pytest.fixture(scope="module")
def tiny_features(tiny):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(6)]
    with torch.no_grad():
        return tiny.vision_features(tiny.preprocess(images))


def test_batch_size_does_not_change_the_tokens(tiny, tiny_features):
    # Prompts of different lengths, so that the batch is really left-padded.
    questions = [f"Classify this image into one of {'these ' * (i % 4)}categories: a, b, c." for i in range(6)]
    one_by_one = [generate_batch(tiny, tiny_features[i: i + 1], [q], 12)[0] for i, q in enumerate(questions)]
    batched = generate_batch(tiny, tiny_features, questions, 12)
    assert batched == one_by_one
    assert all(len(ids) > 0 for ids in batched)


def test_evaluate_generate_is_batch_size_invariant(tiny, tiny_features, monkeypatch):
    """End to end, with prompts of different lengths (as real tokenisers give for shuffled class lists)."""
    from benchmark.tasks.paper import DERM

    def longer_for_some(domain, classes, seed, uid):  # the tiny tokeniser gives every class order one length
        return build_question(domain, classes, seed, uid) + " Think." * (int(uid[-5]) % 3)

    monkeypatch.setattr(generation, "build_question", longer_for_some)
    classes = list(DERM.classes)[:6]
    samples = [Sample(f"test/x/{i}.jpg", i % 6, lambda: b"") for i in range(6)]
    lengths = {len(tiny.encode(longer_for_some(DERM.domain, classes, 0, s.uid)).prompt_ids) for s in samples}
    assert len(lengths) == 3
    store = MemoryStore(tiny_features)
    runs = [evaluate_generate(tiny, EvalSet(store, samples, classes, DERM.domain, 0), batch_size=bs, progress=False)
            for bs in (1, 4, 6)]
    generated = [[p["generated"] for p in r["predictions"]] for r in runs]
    assert generated[0] == generated[1] == generated[2]
    assert runs[0]["metrics"]["confusion_matrix"] == runs[2]["metrics"]["confusion_matrix"]


def test_cached_decoding_equals_the_models_own_generate(tiny, tiny_features):
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    question = "Classify this image into one of the following categories relating to textures: \"banded\"."
    ours = generate_batch(tiny, tiny_features[:1], [question], 10)[0]
    ids = torch.tensor([tiny.encode(question).prompt_ids])
    embeds = tiny.project(tiny_features[:1])
    ref = tiny.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                              mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=list(embeds))})
    ref = [t for t in ref[0, ids.shape[1]:].tolist() if t != tiny.tokenizer.eos_token_id]
    assert ours == ref[: len(ours)] and len(ours) == len(ref)


def test_evaluate_generate_metrics_and_confusion_matrix(tiny, monkeypatch):
    classes = ["nominal", "global defect", "local defect"]
    samples = [Sample(f"img{i}", label, lambda: b"") for i, label in enumerate([0, 0, 0, 0, 1, 1])]
    answers = iter(["nominal", "Global defect.", "the local defect", "nonsense", "defect", "global defect"])

    def scripted(adapter, features, questions, max_new_tokens):
        return [adapter.tokenizer(next(answers), add_special_tokens=False)["input_ids"] for _ in questions]

    monkeypatch.setattr(generation, "generate_batch", scripted)
    store = MemoryStore(torch.zeros(len(samples), 1, 1))
    ev = evaluate_generate(tiny, EvalSet(store, samples, classes, "textile surface defects", 0), batch_size=4,
                           progress=False)
    m = ev["metrics"]
    truth = [s.label for s in samples]
    assert [p["prediction"] for p in ev["predictions"]] == ["nominal", "global defect", "local defect", None, None,
                                                            "global defect"]
    assert m["n_unmatched"] == 2 and m["unmatched_rate"] == pytest.approx(2 / 6)
    assert m["match_rules"] == {"exact": 3, "prefix": 0, "contains": 1, "unmatched": 2}
    assert m["confusion_matrix_columns"] == [*classes, "<unmatched>"]
    cm = m["confusion_matrix"]
    assert len(cm) == 3 and all(len(row) == 4 for row in cm)
    assert [sum(row) for row in cm] == [truth.count(c) for c in range(3)]   # unmatched still counted in its row
    assert cm[0] == [1, 1, 1, 1] and cm[1] == [0, 1, 0, 1]
    assert m["accuracy"] == pytest.approx(2 / 6)                             # unmatched answers are wrong
    assert m["per_class"]["global defect"]["recall"] == pytest.approx(0.5)
    assert m["max_new_tokens"] >= len(tiny.encode("", "global defect").answer_ids)


def test_generate_mode_through_the_protocol(tmp_path, capsys):
    from benchmark.cli import main

    data = make_image_folder(tmp_path / "data", {"nominal": (3, 2), "global": (3, 2), "local": (3, 2)})
    args = ["run", "--model", "llava15-tiny", "--task", "textile", "--data-dir", str(data), "--regimes", "zero-shot",
            "--results-dir", str(tmp_path / "res"), "--probe-max-epochs", "1", "--eval-batch-size", "4", "--no-progress"]
    assert main([*args, "--eval", "generate"]) == 0
    out = capsys.readouterr().out
    assert "unmatched" in out
    run = tmp_path / "res" / "llava15-tiny" / "textile" / "zero-shot" / "seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_mode"] == "generate"
    assert 0.0 <= metrics["metrics"]["unmatched_rate"] <= 1.0
    assert metrics["metrics"]["confusion_matrix_columns"][-1] == "<unmatched>"
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6 and all({"generated", "match", "prediction"} <= set(p) for p in preds)
    # A loglik run into the same results folder is another configuration: refused, nothing overwritten.
    assert main(args) == 2
    assert "eval_mode" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["eval_mode"] == "generate"


def test_unknown_eval_mode_is_refused():
    from benchmark.errors import BenchmarkError
    from benchmark.protocol import RunConfig, Runner

    with pytest.raises(BenchmarkError, match="'sample' is not available"):
        Runner(RunConfig(model="llava15-tiny", task="textile", eval_mode="sample"))
