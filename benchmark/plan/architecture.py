"""Which architecture to plan: the config the adapter's spec ships (``AdapterSpec.architecture``, reached through
the registry) or a ``config.json`` under ``--model-path`` put into the same description."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import BenchmarkError


def resolve_architecture(spec, model_path: str | None):
    """The spec's :class:`~benchmark.adapters.base.Architecture`, built from ``model_path``'s config if given."""
    if model_path is None:
        if spec.architecture is None:
            raise BenchmarkError(f"no configuration ships for model {spec.name!r}: pass --model-path DIR (a folder "
                                 "holding its config.json) to plan it.")
        return spec.architecture()
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.exists():
        raise BenchmarkError(f"--model-path {model_path!r} has no config.json to build the model from.")
    if spec.architecture is None:
        raise BenchmarkError(f"{spec.name!r} has no architecture description (parts, image tokens) for plan.")
    config = AutoConfig.from_pretrained(model_path)
    base = spec.architecture()
    return replace(base, build=lambda: AutoModelForImageTextToText.from_config(config),
                   llm_config=getattr(config, "text_config", base.llm_config), source=str(cfg_file))


def adapters_default_llm_forward(parts: dict, embeds):
    """The LLM part's forward (decoder + LM head on embeddings) for architectures whose ``llm`` is None.

    The one place plan reaches past the adapters' public surface (``adapters/configs.py``): the default forward
    is not exported yet. Replace this import once the adapters package offers it publicly.
    """
    from ..adapters.configs import llm_forward

    return llm_forward(parts, embeds)
