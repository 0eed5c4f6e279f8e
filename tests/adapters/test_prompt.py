"""The paper prompt: every class quoted once, order shuffled per example, reproducibly."""

from benchmark.adapters import PromptParts
from benchmark.evaluate.batching import IGNORE, collate, positions
from benchmark.evaluate.prompt import build_question

CLASSES = ["acne", "eczema", "psoriasis", "rosacea", "vitiligo"]


def test_prompt_text_and_quoting():
    q = build_question("skin diseases", CLASSES, seed=0, uid="a.jpg")
    assert q.startswith("Classify this image into one of the following categories relating to skin diseases: ")
    assert q.endswith(". Only output a single final classification label and NOTHING ELSE.")
    assert sorted(c for c in CLASSES if f'"{c}"' in q) == CLASSES


def test_class_order_depends_on_example_and_seed_only():
    orders = {build_question("d", CLASSES, 0, f"img{i}") for i in range(20)}
    assert len(orders) > 5, "the order must be shuffled per example"
    assert build_question("d", CLASSES, 0, "img3") == build_question("d", CLASSES, 0, "img3")
    assert any(build_question("d", CLASSES, 0, f"i{i}") != build_question("d", CLASSES, 1, f"i{i}") for i in range(5))


def test_left_padding_keeps_positions_and_supervises_answers_only():
    batch = collate([PromptParts([5, 6, 7], [8, 2]), PromptParts([5], [9, 9, 2])], pad_id=0, with_answer=True)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 2], [0, 5, 9, 9, 2]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[IGNORE] * 3 + [8, 2], [IGNORE] * 2 + [9, 9, 2]]
    assert positions(batch["attention_mask"][:, -2:], offset=batch["attention_mask"].sum(-1)).tolist() == [[5, 6],
                                                                                                           [4, 5]]
