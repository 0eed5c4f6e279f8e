"""FT-E2E with LoRA: only the projector and the LoRA weights train, at their own learning rates, and the
results are labelled as LoRA."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from benchmark.config import ProbeConfig, RunConfig, TrainConfig
from benchmark.conformance import MemoryStore, samples_for
from benchmark.protocol import Runner
from benchmark.registry import Plugins
from benchmark.train.loop import finetune

CLASSES = ["nominal", "global defect", "local defect"]


def test_lora_trains_projector_and_adapters_only(real_images):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in real_images[:8]])))
    before = {k: v.detach().clone() for k, v in adapter.model.named_parameters()}
    stats = finetune(adapter, "ft-e2e", store=store, samples=samples_for(real_images[:8]),
                     classes=CLASSES, domain="textile surface defects", seed=0,
                     # two steps: the first is the warm-up, at lr 0
                     cfg=TrainConfig(lr=1e-3, lr_lora=1e-2, batch_size=4, lora=True, lora_rank=4), progress=False)
    # peft keeps each wrapped base weight under `<name>.base_layer`.
    after = {k.replace(".base_layer", ""): v for k, v in adapter.model.named_parameters()}
    lora = [k for k in after if "lora_" in k]
    assert lora and all(".language_model." in k for k in lora), "LoRA goes into the LLM only"
    assert any(not torch.equal(torch.zeros_like(after[k]), after[k]) for k in lora if "lora_B" in k)
    moved = [k for k in before if not torch.equal(before[k], after[k].detach())]
    assert moved and all("multi_modal_projector" in k for k in moved), "base LLM and vision weights stay frozen"
    assert stats["trainable_parameters"] == sum(after[k].numel() for k in after if after[k].requires_grad)


def test_lora_run_is_labelled_and_keeps_only_trained_weights(tmp_path):
    cfg = RunConfig(model="llava15-tiny", task="textile", max_per_class=6, regimes=("ft-e2e",), lora=True,
                    lora_rank=4, keep_checkpoints=True, results_dir=str(tmp_path), probe=ProbeConfig(max_epochs=2),
                    progress=False)
    [metrics] = Runner(cfg).run()
    d = tmp_path / "llava15-tiny" / "textile@max6" / "ft-e2e-lora" / "seed0"
    assert metrics["lora"] is True and metrics["regime"] == "ft-e2e"
    state = load_file(str(d / "checkpoint.safetensors"))
    assert state and all("lora_" in k or "multi_modal_projector" in k for k in state)
    assert set(load_file(str(d / "projector.safetensors"))) == {"linear_1.weight", "linear_1.bias", "linear_2.weight",
                                                                "linear_2.bias"}
