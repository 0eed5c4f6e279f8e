"""LLaVA-1.5's training recipe where the code could silently differ from it: the warm-up, LoRA's dropout and
gradient checkpointing.

References: transformers' ``get_cosine_schedule_with_warmup`` (what LLaVA's HF Trainer runs for
``--lr_scheduler_type cosine --warmup_ratio 0.03``, with ``ceil(ratio * steps)`` warm-up steps); peft's LoRA
layer for the dropout; for checkpointing, the number of times a decoder layer's MLP runs per training forward
(twice when the layer is recomputed in the backward pass) and the gradients, which must not change.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from benchmark.config import TrainConfig
from benchmark.conformance import MemoryStore, samples_for
from benchmark.errors import BenchmarkError
from benchmark.registry import Plugins
from benchmark.train.loop import cosine_with_warmup, enable_checkpointing, finetune, set_trainable

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


@pytest.mark.parametrize(("total", "ratio"), [(100, 0.03), (7, 0.03), (10, 0.5), (12, 0.0), (1, 0.03)])
def test_schedule_equals_transformers_cosine_with_warmup(total, ratio):
    from transformers import get_cosine_schedule_with_warmup

    def lrs(make):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        sched = make(opt)
        out = []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    mine = lrs(lambda opt: cosine_with_warmup(opt, total, ratio))
    theirs = lrs(lambda opt: get_cosine_schedule_with_warmup(opt, math.ceil(total * ratio), total))
    assert mine == pytest.approx(theirs, abs=1e-12)
    if ratio:
        assert mine[0] == 0.0  # the warm-up starts at lr 0, not at lr / warmup


def _tiny(real_images, n=8):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    images = real_images[:n]
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
    return adapter, store, samples_for(images)


def test_lora_dropout_is_applied_on_every_lora_layer(real_images):
    adapter, _, _ = _tiny(real_images, 1)
    set_trainable(adapter, "ft-e2e", TrainConfig(lr=1e-3, lora=True, lora_rank=4))
    layers = [m for m in adapter.model.modules() if hasattr(m, "lora_dropout") and "default" in m.lora_dropout]
    assert layers and all(m.lora_dropout["default"].p == 0.05 for m in layers)
    # It acts: in training mode two passes through one LoRA layer (with a non-zero B) differ, in eval they agree.
    layer = layers[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(1.0)
        x = torch.randn(4, layer.in_features)
        layer.train()
        torch.manual_seed(0)
        a = layer(x)
        b = layer(x)
        layer.eval()
        assert not torch.allclose(a, b) and torch.equal(layer(x), layer(x))


def _grads_and_mlp_calls(adapter, store, samples, monkeypatch, *, checkpointing: bool):
    """Projector gradients at the first optimizer step and how often decoder layer 0's MLP ran before it."""
    calls, seen = [], []
    mlp = adapter.llm_layers()[0].mlp
    real_forward = mlp.forward

    def counting_forward(*args, **kwargs):  # not a forward hook: a checkpoint's recomputation runs without hooks
        calls.append(1)
        return real_forward(*args, **kwargs)

    mlp.forward = counting_forward
    real_step = torch.optim.AdamW.step

    def recording_step(self, *a, **k):
        if not seen:
            seen.append(([p.grad.detach().clone() for p in adapter.projector_module().parameters()], len(calls)))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    try:
        finetune(adapter, "ft-proj", store=store, samples=samples, classes=CLASSES, domain=DOMAIN, seed=0,
                 progress=False, cfg=TrainConfig(lr=0.0, batch_size=8, micro_batch=4, warmup_ratio=0.0,
                                                 gradient_checkpointing=checkpointing))
    finally:
        del mlp.forward
        monkeypatch.undo()
    return seen[0]


def test_gradient_checkpointing_recomputes_the_frozen_llm_in_ft_proj(real_images, monkeypatch):
    adapter, store, samples = _tiny(real_images)
    plain, plain_calls = _grads_and_mlp_calls(adapter, store, samples, monkeypatch, checkpointing=False)
    ckpt, ckpt_calls = _grads_and_mlp_calls(adapter, store, samples, monkeypatch, checkpointing=True)
    assert plain_calls == 2  # two micro-batches, one forward each
    assert ckpt_calls == 4   # and a recomputation of each in the backward pass
    for a, b in zip(plain, ckpt, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    # Training is over: the model is back in eval mode with checkpointing off.
    assert not adapter.model.training and not adapter.llm_layers()[0].gradient_checkpointing


@pytest.mark.parametrize("name", ["llava15-tiny", "limber-gemma2-tiny"])  # a transformers model; a PartsModel
def test_checkpointing_is_switched_on_and_off_without_deprecation_warnings(real_images, monkeypatch, name):
    """transformers' own names (its gradient_checkpointing_* aliases emit a FutureWarning): every LLM layer
    checkpoints during training, with non-reentrant checkpoints, and none after it."""
    adapter = Plugins(autoload=False).adapters.get(name).factory()
    images = real_images[:4]
    store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
    during = []
    real_step = torch.optim.AdamW.step

    def recording_step(self, *a, **k):
        during.extend((layer.gradient_checkpointing, layer._gradient_checkpointing_func.keywords)
                      for layer in adapter.llm_layers())
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune(adapter, "ft-proj", store=store, samples=samples_for(images), classes=CLASSES, domain=DOMAIN, seed=0,
                 progress=False, cfg=TrainConfig(lr=0.0, batch_size=4, warmup_ratio=0.0, gradient_checkpointing=True))
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning | FutureWarning)] == []
    assert during and all(on and keywords == {"use_reentrant": False} for on, keywords in during), during
    assert not any(layer.gradient_checkpointing for layer in adapter.llm_layers())


def test_gradient_checkpointing_with_dropout_in_the_frozen_llm_is_refused(real_images):
    adapter, _, _ = _tiny(real_images, 1)
    set_trainable(adapter, "ft-proj", TrainConfig(lr=1e-3))
    adapter.llm_layers()[1].self_attn.attention_dropout = 0.1
    with pytest.raises(BenchmarkError, match=r"--gradient-checkpointing in ft-proj.*attention_dropout=0\.1"):
        enable_checkpointing(adapter, "ft-proj")


def test_a_run_whose_steps_are_all_warm_up_says_so(tmp_path):
    from benchmark.config import ProbeConfig, RunConfig
    from benchmark.protocol import Runner

    lines = []
    cfg = RunConfig(model="llava15-tiny", task="textile", max_per_class=2, regimes=("ft-proj",),
                    results_dir=str(tmp_path), probe=ProbeConfig(hidden=(8,), max_epochs=1), progress=False)
    [m] = Runner(cfg, log=lines.append).run()
    assert m["training"]["optimizer_steps"] == 1  # 6 images, global batch 64
    assert any("[warning] ft-proj: all 1 optimizer step(s) were warm-up" in line for line in lines), lines
