"""The page's stylesheet and script, kept as package data files (``static/page.css``, ``static/page.js``).

Both are inlined into the page, so it works from ``file://`` or any static host and fetches nothing. The script
is vanilla JS, no library: state lives in the URL hash (e.g. ``#sort=10&dir=desc&task=textile``), so a sorted and
filtered view can be linked to; lines stay in the DOM, paging only hides them.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def asset(name: str) -> str:
    """The text of ``static/<name>``, read once (as bytes, so line ends are exactly the file's)."""
    return (files(__package__) / "static" / name).read_bytes().decode("utf-8")


def css() -> str:
    return asset("page.css")


def js() -> str:
    return asset("page.js")
