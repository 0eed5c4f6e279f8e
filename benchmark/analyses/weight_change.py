"""``weight-change``: where fine-tuning wrote the domain: relative Frobenius change per LLM layer and module.

Runs on the original weights and streams the state's trained tensors from its files one at a time (never two
models in memory): ``projector.safetensors`` (keys relative to the projector) and, for FT-E2E, the trained
state ``checkpoint.safetensors`` (keys of the full model). Per LLM block ``l``:
``||W_ft - W_0||_F / ||W_0||_F`` over all its parameters, and the same per module inside it (``self_attn.q_proj``,
``mlp.down_proj``, ...); the parameters outside the blocks (embeddings, final norm, LM head) and the projector
are reported on their own. The original state changes nothing: 0 everywhere.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from .hidden import require_layers


class ChangeTally:
    """Sums of squared differences and squared originals, per group, in float64."""

    def __init__(self):
        self.diff = defaultdict(float)
        self.base = defaultdict(float)

    def add(self, group: str, original: torch.Tensor, trained: torch.Tensor) -> None:
        o = original.detach().double().cpu()
        self.diff[group] += float((trained.double().cpu() - o).pow(2).sum())
        self.base[group] += float(o.pow(2).sum())

    def relative(self, group: str) -> float:
        return math.sqrt(self.diff[group]) / math.sqrt(self.base[group]) if self.base[group] else 0.0


def llm_groups(adapter) -> dict[str, tuple[str, str]]:
    """Full-model parameter name -> (group, module inside it): "layer <l>" for blocks, "llm other" else."""
    by_id = {}
    for i, block in enumerate(adapter.llm_layers()):
        for name, p in block.named_parameters():
            by_id[id(p)] = (f"layer {i}", name.rsplit(".", 1)[0])
    for name, p in adapter.llm_module().named_parameters():
        by_id.setdefault(id(p), ("llm other", name.rsplit(".", 1)[0]))
    for name, p in adapter.projector_module().named_parameters():
        by_id[id(p)] = ("projector", name.rsplit(".", 1)[0] if "." in name else name)
    return {name: by_id[id(p)] for name, p in adapter.model.named_parameters() if id(p) in by_id}


def tally_changes(adapter, trained: dict) -> tuple[ChangeTally, ChangeTally, list[str]]:
    """Compare ``trained`` ({full-model parameter name: tensor}, lazily loaded) against the adapter's weights."""
    groups = llm_groups(adapter)
    params = dict(adapter.model.named_parameters())
    per_group, per_module, unknown = ChangeTally(), ChangeTally(), []
    for name in trained:
        if name not in params:
            unknown.append(name)
            continue
        tensor = trained[name]
        group, module = groups.get(name, ("other", name))
        per_group.add(group, params[name], tensor)
        per_module.add(f"{group}/{module}", params[name], tensor)
    return per_group, per_module, unknown


class _LazyFile(dict):
    """{name: tensor} read from a safetensors file one tensor at a time, with a key prefix."""

    def __init__(self, path, prefix_for):
        from safetensors import safe_open

        super().__init__()
        self._f = safe_open(str(path), framework="pt")
        self._names = {prefix_for(k): k for k in self._f.keys()}

    def __iter__(self):
        return iter(self._names)

    def __getitem__(self, name):
        return self._f.get_tensor(self._names[name])


def projector_prefix(adapter) -> str:
    proj = adapter.projector_module()
    first = next(iter(proj.named_parameters()))
    full = {id(p): n for n, p in adapter.model.named_parameters()}
    return full[id(first[1])][: -len(first[0])]


def run(ctx) -> dict:
    adapter = ctx.adapter
    require_layers(adapter)
    trained = {}
    if "checkpoint" in ctx.state_files:  # FT-E2E: the full trained state (projector + LLM), full-model names
        trained = _LazyFile(ctx.state_files["checkpoint"], lambda k: k)
    elif "projector" in ctx.state_files:
        prefix = projector_prefix(adapter)
        trained = _LazyFile(ctx.state_files["projector"], lambda k: prefix + k)
    per_group, per_module, unknown = tally_changes(adapter, trained)
    if any("lora_" in k for k in unknown):
        from . import AnalysisUnsupported

        raise AnalysisUnsupported("the trained state holds LoRA weights; weight-change compares full weights "
                                  "(merge the LoRA weights first)")
    n_blocks = len(adapter.llm_layers())
    layer_change = [per_group.relative(f"layer {i}") for i in range(n_blocks)]
    modules = sorted({m.split("/", 1)[1] for m in per_module.base if m.startswith("layer ")})
    curves = {"relative_change": layer_change}
    for m in modules:
        curves[f"relative_change {m}"] = [per_module.relative(f"layer {i}/{m}") for i in range(n_blocks)]
    return {
        "x": list(range(n_blocks)), "primary": "relative_change", "x_label": "LLM block", "curves": curves,
        "summary": {"max_layer": max(range(n_blocks), key=lambda i: layer_change[i]),
                    "max_relative_change": max(layer_change),
                    "projector_relative_change": per_group.relative("projector"),
                    "llm_other_relative_change": per_group.relative("llm other")},
        "other": {m: per_module.relative(m) for m in per_module.base if not m.startswith("layer ")},
        "compared_tensors": len(list(trained)), "unmatched_tensors": unknown[:20],
        "state_files": {k: str(v) for k, v in ctx.state_files.items()},
    }
