"""BakLLaVA's adapter: projbench's LLaVA adapter with BakLLaVA's conversation template.

BakLLaVA-1 is LLaVA-1.5's recipe on Mistral-7B: the same ``LlavaForConditionalGeneration`` class, so only what
differs is written here. This module imports torch; the registration (``plugin.py``) names it as a string, so
projbench imports it only when a BakLLaVA model is built.
"""

from __future__ import annotations

from benchmark.adapters.llava import LlavaAdapter


class BakLlavaAdapter(LlavaAdapter):
    # BakLLaVA's template: its processor's chat template renders the same string (no system message).
    prompt_templates = {"bakllava": "USER: <image>\n{question} ASSISTANT:"}
