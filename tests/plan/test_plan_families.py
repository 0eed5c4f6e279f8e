"""`plan` on the families whose forwards ask questions a meta tensor cannot answer: OPT (BLIP-2) derives its
positions from the attention mask, SigLIP in Idefics3/SmolVLM inspects its patch mask with ``.all()``. Each is
checked against an independent count of its FLOPs."""

from __future__ import annotations

import pytest

from benchmark.plan import plan
from benchmark.registry import Plugins


def test_blip2_plans_and_its_opt_costs_six_flops_per_parameter_and_token():
    p = plan("blip2", "derm", gpus="1xH100", train_tokens=200).to_json()
    llm = p["parameters"]["llm"]
    e2e = p["flops"]["train_per_sample"]["ft-e2e"]
    # 2 (forward) + 4 (backward) FLOPs per LLM weight and token; the tied embedding counts once as the LM head,
    # the learned positions (2,048 x 2,560) are a lookup; attention adds a few percent at 200 tokens.
    assert 6 * llm * 200 * 0.97 < e2e < 6 * llm * 200 * 1.08
    assert p["regimes"]["ft-proj"]["engines"]["single"]["fits"]


@pytest.mark.parametrize("name", ["smolvlm", "idefics3"])
def test_idefics3_vision_flops_are_two_per_weight_and_patch_plus_attention(name):
    arch = Plugins(autoload=False).adapters.get(name).architecture()
    p = plan(name, "derm", gpus="1xH100-80GB").to_json()
    import torch

    with torch.device("meta"):
        model = arch.build()
    vc = model.config.vision_config
    n = (arch.image_size // vc.patch_size) ** 2
    weights = sum(q.numel() for q in model.model.vision_model.parameters())
    positions = model.model.vision_model.embeddings.position_embedding.weight.numel()  # a lookup, no FLOPs
    want = 2 * (weights - positions) * n + 4 * vc.num_hidden_layers * n * n * vc.hidden_size
    assert p["flops"]["vision_per_image"] == pytest.approx(want, rel=0.01)
