"""Names that become folders or labels: one spelling per name (Unicode NFC), no surrounding space, never empty.

The same word can be stored in two Unicode forms ("café" as ``e`` + U+0301 or as U+00E9, NFD and NFC): they look
identical but compare unequal, so a class, model or task would silently count twice. Unicode Standard Annex #15
(Normalization Forms) defines NFC as the canonical composed form; macOS file systems hand out NFD names, most
others keep what they are given, hence the normalisation wherever a name comes from a folder or a plugin.
"""

from __future__ import annotations

import unicodedata


def nfc(name: str) -> str:
    """``name`` in Unicode NFC with surrounding white space removed."""
    return unicodedata.normalize("NFC", name).strip()


def folder_name_problem(name, portable: bool = True) -> str | None:
    """Why ``name`` cannot be a model's or task's folder name in a results tree, or None.

    It must be text already in NFC without surrounding space (else two spellings make two folders), and one
    plain path component (no separator, not ``.``/``..``, no control characters). ``portable``: a backslash
    (a separator on Windows) is refused too; a folder already on disk (not portable) may have one.
    """
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if nfc(name) != name:
        return f"it is not in Unicode NFC form or has surrounding spaces (use {nfc(name)!r})"
    if name in (".", "..") or "/" in name or (portable and "\\" in name) or any(unicodedata.category(c) == "Cc" for c in name):
        return "it is not a plain folder name (a separator, '.', '..' or a control character)"
    return None
