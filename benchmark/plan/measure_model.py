"""The model ``plan --measure`` runs: the real architecture with random weights, loaded through the adapter's own
loading path, nothing downloaded.

For a shipped config (``AdapterSpec.architecture``) a skeleton checkpoint is written to a scratch folder
(:mod:`benchmark.plan.skeleton`), its processor and tokenizer taken from the family's tiny twin, and the adapter
is built from it by its registered factory. A tiny twin is loaded as it always is (it is random-init already).

Every family whose model is one transformers class with a tiny twin is measured: LLaVA-1.5, BLIP-2,
InstructBLIP, PaliGemma, Idefics3 / SmolVLM, Qwen2-VL and InternVL3. Models built from parts (LiMBeR, composed
models) are refused with that list. The :class:`~benchmark.adapters.base.Architecture` that ``plan`` counts is the
family's published one with the loaded model's config and shapes (:func:`measured_architecture`), so the plan and
the measurement describe one model.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchmarkError


@dataclass
class Measured:
    """The adapter to measure, the architecture ``plan`` counts for it, where its files are, and how to load the
    same model again (several processes: a sharded engine changes the modules it trains in place)."""

    adapter: object
    architecture: object
    folder: Path
    layers: int | None
    load: Callable[[], object]

    def reload(self) -> None:
        self.adapter = None  # the old copy goes first: two would double the memory this measures
        self.adapter = self.load()


def _adapter_class(spec):
    return getattr(spec.factory, "adapter", None)


def _same_family(reg, spec, *, tiny: bool) -> list:
    cls = _adapter_class(spec)
    return [s for s in (reg.adapters.get(n) for n in reg.adapters.names())
            if s.tiny == tiny and cls is not None and _adapter_class(s) == cls
            and (tiny or s.architecture is not None)]


def measurable(reg) -> list[str]:
    """The models ``--measure`` can build: one transformers class, a shipped config and a tiny twin in the family."""
    return [n for n in reg.adapters.names() if _partner(reg, reg.adapters.get(n)) is not None]


def _partner(reg, spec):
    """For a real checkpoint its family's tiny twin (``<name>-tiny`` first), for a twin its real checkpoint: the
    other half ``--measure`` needs (a processor to stand in, or the published architecture to count)."""
    if not spec.tiny and spec.architecture is None:
        return None
    others = _same_family(reg, spec, tiny=not spec.tiny)
    name = spec.name.removesuffix("-tiny") if spec.tiny else spec.name + "-tiny"
    found = next((s for s in others if s.name == name), others[0] if others else None)
    return found if found is not None and _is_one_class(found if spec.tiny else spec) else None


def _is_one_class(real_spec) -> bool:
    import torch

    with torch.device("meta"):
        net = real_spec.architecture().build()
    return hasattr(getattr(net, "config", None), "text_config")


def _refuse(reg, spec) -> None:
    raise BenchmarkError(
        f"--measure cannot build {spec.name!r}: it measures models that are one transformers class with a shipped "
        f"config and a tiny twin in their family ({', '.join(measurable(reg))}); {spec.name!r} is built from parts "
        "or ships no config.")


def measured_architecture(adapter, real_arch, *, feats, source: str):
    """``real_arch`` (the family's published architecture: how to run its parts) with the loaded model's config
    and the shapes measured on it: image size, features entering the projector, image tokens leaving it."""
    import torch

    model = adapter.model
    cls, config = type(model), copy.deepcopy(model.config)
    with torch.no_grad():
        tokens = adapter.project(feats[:1].to(adapter.device)).shape[1]
    side = getattr(adapter, "image_size", None) or _pixel_side(adapter)
    return dataclasses.replace(real_arch, build=lambda: cls(config), llm_config=config.text_config, source=source,
                               image_size=int(side), feature_shape=tuple(feats.shape[1:]), image_tokens=int(tokens))


def _pixel_side(adapter) -> int:
    from PIL import Image

    return int(adapter.preprocess([Image.new("RGB", (40, 30))]).shape[-1])


def _load_skeleton(spec, folder: Path, *, device: str):
    import torch
    from transformers.utils import logging as hf_logging

    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report would list every weight as missing: all are, on purpose
    try:
        return spec.factory(source=str(folder), device=device, dtype=dtype)
    finally:
        hf_logging.set_verbosity(level)


def load_measured(spec, *, layers: int | None, device: str, scratch: Path, cache_dir: str | None = None,
                  ctx=None) -> Measured:
    """The adapter of ``spec`` at real size with random weights (or its tiny twin), and its architecture. With
    several processes (``ctx``) rank 0 writes the skeleton and every rank loads it."""
    import torch

    from ..distributed import ProcessContext
    from ..registry import plugins
    from .measure import synthetic_features
    from .skeleton import sliced_config

    ctx = ctx or ProcessContext()
    reg = plugins()
    partner = _partner(reg, spec)
    if partner is None:
        _refuse(reg, spec)
    if spec.tiny:
        if layers is not None:
            raise BenchmarkError(f"--layers slices a real-size config; {spec.name!r} is a tiny twin already.")
        real_arch, source = partner.architecture(), f"tiny twin {spec.name}"
        load = lambda: spec.factory(device=device, cache_dir=cache_dir)  # noqa: E731
        folder = None
    else:
        real_arch = spec.architecture()
        folder = scratch / (spec.name + (f"-L{layers}" if layers else ""))
        with torch.device("meta"):  # on every rank: a bad --layers is refused everywhere
            config = sliced_config(real_arch.build().config, layers)
        # Rank 0 writes; a failure there is raised on every rank, so that none waits for it.
        ctx.from_rank0(lambda: _write(config, partner, folder=folder, real_arch=real_arch, cache_dir=cache_dir))
        source = real_arch.source + (f", first {layers} decoder layers" if layers else "")
        load = lambda: _load_skeleton(spec, folder, device=device)  # noqa: E731
    adapter = ctx.rank0_first(load)  # a twin missing from the cache is built once, by rank 0
    arch = measured_architecture(adapter, real_arch, feats=synthetic_features(adapter, 1), source=source)
    return Measured(adapter, arch, folder or Path(adapter.checkpoint), layers, load)


def _write(config, twin_spec, *, folder: Path, real_arch, cache_dir: str | None) -> None:
    from .skeleton import write_skeleton

    twin = twin_spec.factory.folder(cache_dir)  # the twin's files only: its processor stands in
    write_skeleton(config, folder, twin=twin, image_size=real_arch.image_size, image_tokens=real_arch.image_tokens)
