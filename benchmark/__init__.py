"""projbench: does a multimodal LLM's cross-modal projection learn a domain's visual attributes, or its LLM?

The plugin API, importable from here (docs/adding-an-adapter.md):

* ``hookimpl`` marks a plugin's hook implementations (``register_adapters``, ``register_tasks``,
  ``register_analyses``);
* models: ``model_family``, ``Checkpoint``, ``TinyTwin`` (one declaration per adapter class, tiny twins
  included), ``AdapterSpec``, ``hub_factory``, ``tiny_factory``; the base classes ``HFAdapter`` (the standard
  Hugging Face layout, from module paths) and ``ModelAdapter``; ``PromptParts``; for tiny twins
  ``build_tokenizer`` and ``rerandomise_zero_matrices``;
* the contract's protocols: ``contract`` (``Parts``, ``Projection``, ``Prompting``, ``LanguageModel``,
  ``LayerAccess``, ``NativeReference``);
* tasks: ``TaskSpec``; analyses: ``AnalysisSpec``, ``AnalysisUnsupported``.

Names are imported on first use, so ``import benchmark`` (and ``python -m benchmark list``) imports no torch.
"""

from .hookspecs import hookimpl
from .schema import RESULT_SCHEMA_VERSION

__version__ = "0.1.0"

# public name -> the module that defines it (relative to this package)
_API = {
    "AdapterSpec": ".adapters.spec", "Checkpoint": ".adapters.spec", "TinyTwin": ".adapters.spec",
    "model_family": ".adapters.spec", "hub_factory": ".adapters.spec", "tiny_factory": ".adapters.spec",
    "Ref": ".refs", "contract": ".adapters.contract", "HFAdapter": ".adapters.hf", "ModelAdapter": ".adapters.base",
    "PromptParts": ".adapters.base", "build_tokenizer": ".adapters.tiny",
    "rerandomise_zero_matrices": ".adapters.tiny", "TaskSpec": ".tasks", "AnalysisSpec": ".analyses",
    "AnalysisUnsupported": ".analyses",
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        module = importlib.import_module(_API[name], __name__)
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
        globals()[name] = value  # once resolved, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])


__all__ = ["RESULT_SCHEMA_VERSION", "__version__", "hookimpl", *_API]
