"""Model adapters: the contract (``base``) and the built-in model families."""

from .base import AdapterSpec, ModelAdapter, PromptParts

__all__ = ["AdapterSpec", "ModelAdapter", "PromptParts"]
