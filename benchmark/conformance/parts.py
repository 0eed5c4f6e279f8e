"""Checks of the ``parts`` protocol and of what each regime trains: the adapter loads from a saved directory and
provides the contract, vision / projector / LLM are disjoint and cover the model, FT-Proj trains the projector
alone and FT-E2E the projector and the LLM, never the vision encoder."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from benchmark.adapters import contract
from benchmark.config import TrainConfig
from benchmark.train.loop import finetune, training_batch

from .photos import CLASSES, DOMAIN
from .report import blames_adapter, fail


@blames_adapter
def check_loads_from_saved_directory(adapter) -> None:
    """Loads through from_pretrained from a saved directory; each of the three parts has parameters."""
    ckpt = Path(adapter.checkpoint)
    if not (ckpt.is_dir() and any(ckpt.rglob("config.json"))):
        fail("factory", "tiny twins must load through from_pretrained from a saved directory",
             "a directory with config.json", adapter.checkpoint)
    if adapter.num_image_tokens <= 0:
        fail("num_image_tokens", "must be positive", "> 0", adapter.num_image_tokens)
    for part, module in adapter.parts().items():
        if sum(p.numel() for p in module.parameters()) == 0:
            fail(f"{part}_module()", "the part has no parameters", "> 0 parameters", 0)


@blames_adapter
def check_provides_the_contract(adapter) -> None:
    """Provides every required protocol of the adapter contract (parts, projection, prompting, language model)."""
    gaps = contract.missing(adapter, contract.REQUIRED)
    if gaps:
        name, members = next(iter(gaps.items()))
        fail(f"{type(adapter).__name__}", f"does not provide the {name!r} protocol "
             "(benchmark.adapters.contract)", "every member implemented", f"missing {members}")


@blames_adapter
def check_parts_cover_model(adapter) -> None:
    """vision, projector and LLM share no parameter and, with ``other_modules()``, cover every parameter."""
    parts = {**adapter.parts(), **{f"other:{k}": m for k, m in adapter.other_modules().items()}}
    owner: dict[int, str] = {}
    for name, module in parts.items():
        for pname, param in module.named_parameters():
            if id(param) in owner and owner[id(param)] != name:
                fail("parts()", f"{owner[id(param)]} and {name} share parameters: the three parts must be disjoint",
                     "no parameter in two parts", f"{name}.{pname} is also in {owner[id(param)]}")
            owner[id(param)] = name
    missing = [n for n, p in adapter.model.named_parameters() if id(p) not in owner]
    if missing:
        fail("parts()", f"{len(missing)} parameters of the model belong to no part; add them to vision_module(), "
             "projector_module() or llm_module(), or declare them in other_modules()",
             "every parameter in a part", f"unassigned: {missing[:6]}")


@blames_adapter
def check_projector_gradients(adapter, samples, store) -> None:
    """Under FT-Proj every projector parameter (bar declared unused ones) gets a non-zero gradient, and only they do."""
    from benchmark.evaluate.batching import answer_loss
    from benchmark.train.loop import set_trainable

    flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
    params = set_trainable(adapter, "ft-proj", TrainConfig(lr=1e-3))
    batch = training_batch(adapter, samples, indices=[0, 5], classes=CLASSES, domain=DOMAIN, seed=0)
    adapter.model.zero_grad(set_to_none=True)
    out = adapter.lm_forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                             adapter.project(store.get([0, 5])))
    loss, _ = answer_loss(out.logits, batch["labels"])
    loss.backward()
    projector = dict(adapter.projector_module().named_parameters())
    unused = [re.compile(p) for p in adapter.unused_projector_parameters]
    dead = [n for n, p in projector.items()
            if (p.grad is None or not bool(p.grad.any())) and not any(u.search(n) for u in unused)]
    outside = [n for n, p in adapter.model.named_parameters() if p.grad is not None and id(p) not in
               {id(q) for q in projector.values()}]
    n_trainable = len(params)
    adapter.model.zero_grad(set_to_none=True)
    for n, p in adapter.model.named_parameters():
        p.requires_grad_(flags[n])
    if dead:
        fail("project()", f"{len(dead)} of {len(projector)} projector parameters get no gradient under FT-Proj: "
             "project() does not use them (moved into vision_features()?), or something after them is zero; declare "
             "parameters the model never uses in unused_projector_parameters", "a non-zero gradient for each",
             f"zero or no gradient: {dead[:6]}")
    if outside:
        fail("trainable_modules()", "FT-Proj gives gradients to parameters outside the projector",
             "gradients only in projector_module()", f"{outside[:6]} ({n_trainable} trainable)")


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return [k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())]


@blames_adapter
def check_freezing(adapter, encoded, regime: str) -> None:
    """One training step changes only the regime's trainable modules (FT-Proj: projector; FT-E2E: + LLM)."""
    _, store, samples = encoded
    parts = adapter.parts()
    before = {name: snapshot(m) for name, m in parts.items()}
    whole = snapshot(adapter.model)
    trainable = {id(p) for m in adapter.trainable_modules(regime).values() for p in m.parameters()}
    stats = finetune(adapter, regime, store=store, samples=samples[:4], classes=CLASSES, domain=DOMAIN, seed=0,
                     cfg=TrainConfig(lr=1e-2, batch_size=4, warmup_ratio=0.0), progress=False)  # one step: no warm-up
    if stats["optimizer_steps"] != 1 or stats["supervised_answer_tokens"] <= 0:
        fail("encode()", "one batch of 4 must give one optimizer step with supervised answer tokens",
             "1 step, > 0 tokens", f"{stats['optimizer_steps']} steps, {stats['supervised_answer_tokens']} tokens")
    moved = {name: changed(before[name], m) for name, m in parts.items()}
    outside = [k for k, v in adapter.model.named_parameters()
               if id(v) not in trainable and not torch.equal(whole[k], v.detach())]
    if outside:
        fail("trainable_modules()", f"{regime} changed parameters outside the regime's trainable modules",
             "no change outside them", outside[:6])
    if moved["vision"]:
        fail("vision_module()", "the vision encoder is frozen in every regime", [], moved["vision"][:6])
    if not moved["projector"]:
        fail("projector_module()", f"one {regime} step must change the projector", "changed parameters", [])
    if regime == "ft-proj" and moved["llm"]:
        fail("llm_module()", "FT-Proj must not change the LLM", [], moved["llm"][:6])
    if regime == "ft-e2e" and not moved["llm"]:
        fail("llm_module()", "FT-E2E must change the LLM", "changed parameters", [])


__all__ = ["changed", "check_freezing", "check_loads_from_saved_directory", "check_parts_cover_model",
           "check_projector_gradients", "check_provides_the_contract", "snapshot"]
