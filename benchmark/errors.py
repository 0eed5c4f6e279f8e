"""User-facing errors: each says what was wrong and how to fix it, and the CLI prints it without a traceback."""

from __future__ import annotations

import difflib


class BenchmarkError(Exception):
    """An error caused by the user's input or environment, with a message that names the fix."""


class UnknownNameError(BenchmarkError):
    def __init__(self, kind: str, name: str, known: list[str]):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        kinds = kind[:-2] + "es" if kind.endswith("is") else kind + "s"  # analysis -> analyses
        super().__init__(
            f"Unknown {kind} {name!r}.{hint} Known {kinds}: {', '.join(sorted(known))}. "
            f"`python -m benchmark list {kinds}` shows them all."
        )


class DataError(BenchmarkError):
    """The task's data is missing, empty or inconsistent."""


class ModelLoadError(BenchmarkError):
    """A model, tokenizer or processor could not be loaded."""
