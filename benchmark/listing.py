"""``python -m benchmark list models|tasks|analyses|plugins``: the registries as tables that fit the terminal.

The registries hold specs as data (their code is named as ``module:function`` and imported only when it runs),
so listing imports neither torch nor scikit-learn. Tables are wrapped to the terminal's width
(``shutil.get_terminal_size``; 100 columns when the output is not a terminal and ``COLUMNS`` is unset): the name
and "from" columns are never wrapped, so ``list models | grep tiny`` keeps working; ``-v`` prints every detail of
each entry as a block of ``field  value`` lines.
"""

from __future__ import annotations

import shutil
import textwrap

GAP = 2            # tabulate's "simple" format puts two spaces between columns
MIN_WRAPPED = 12   # a wrapped column is never narrower than this


def fit_widths(natural: list[int], wrap: list[bool], width: int) -> list[int]:
    """Column widths that fit ``width``: unwrapped columns keep their natural width, the wrapped ones share the
    rest, the widest cut first (the largest cap ``c`` with sum(min(natural, c)) within the budget)."""
    budget = width - GAP * (len(natural) - 1) - sum(n for n, w in zip(natural, wrap, strict=True) if not w)
    wrapped = [n for n, w in zip(natural, wrap, strict=True) if w]
    if sum(wrapped) <= budget:
        return list(natural)
    low, high = MIN_WRAPPED, max(wrapped)
    while low < high:  # the largest cap that fits (MIN_WRAPPED when nothing fits: the table overflows)
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in wrapped) <= budget:
            low = mid
        else:
            high = mid - 1
    return [min(n, low) if w else n for n, w in zip(natural, wrap, strict=True)]


def _wrap(cell: str, width: int) -> str:
    if all(len(line) <= width for line in cell.splitlines()):
        return cell
    return "\n".join(textwrap.wrap(cell, width, break_on_hyphens=False)) or cell


def render(rows: list[list], headers: list[str], wrap: list[bool], width: int | None = None) -> str:
    """``rows`` as a tabulate table no wider than ``width`` (the terminal's by default), where the columns marked
    in ``wrap`` may be wrapped over several lines."""
    from tabulate import tabulate

    width = width or shutil.get_terminal_size((100, 24)).columns
    cells = [[str(c) for c in row] for row in rows]
    natural = [max([len(h)] + [len(line) for r in cells for line in r[i].splitlines() or [""]])
               for i, h in enumerate(headers)]
    widths = fit_widths(natural, wrap, width)
    wrapped = [[_wrap(c, w) for c, w in zip(row, widths, strict=True)] for row in cells]
    return tabulate(wrapped, headers=headers, disable_numparse=True)


def details(items: list[tuple[str, list[tuple[str, object]]]], width: int | None = None) -> str:
    """``-v``: one block per entry, its name then one ``field  value`` line per detail, values wrapped to fit."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    blocks = []
    for title, fields in items:
        key_width = max(len(k) for k, _ in fields)
        indent = " " * (2 + key_width + GAP)
        lines = [title]
        for key, value in fields:
            text = textwrap.fill(str(value), max(width, len(indent) + MIN_WRAPPED), initial_indent=indent,
                                 subsequent_indent=indent, break_on_hyphens=False) or indent
            lines.append(f"  {key:<{key_width}}{' ' * GAP}" + text[len(indent):])
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _models(reg, verbose: bool):
    if verbose:
        return [(s.name, [("projector", s.projector_family), ("projector modules", s.projector_modules),
                          ("checkpoint", s.checkpoint), ("tiny twin", "yes" if s.tiny else "no"),
                          ("description", s.description or "-"), ("from", s.origin)]) for s in reg.adapters]
    rows = [[s.name, s.projector_family, s.checkpoint, s.origin] for s in reg.adapters]
    return rows, ["model", "projector", "checkpoint", "from"], [False, False, True, False]


def _source(task) -> str:
    return task.source if isinstance(task.source, str) else task.source.describe()  # a trial's record: a string


def _tasks(reg, verbose: bool):
    if verbose:
        return [(t.name, [("version", t.version), ("domain", t.domain),
                          ("classes", ", ".join(f"\"{c}\"" for c in t.classes) or "from the data folders"), ("source", _source(t)),
                          ("citation", t.citation or "-"), ("licence", t.license or "-"), ("from", t.origin)])
                for t in reg.tasks]
    rows = [[t.name, t.version, t.domain, len(t.classes) or "from folders", t.origin] for t in reg.tasks]
    return rows, ["task", "version", "domain", "classes", "from"], [False, False, True, False, False]


def _analyses(reg, verbose: bool):
    if verbose:
        return [(s.name, [("what", s.description), ("requires", ", ".join(s.requires) or "-"),
                          ("citation", s.citation or "-"), ("from", s.origin)]) for s in reg.analyses]
    rows = [[s.name, s.description, ", ".join(s.requires) or "-", s.citation, s.origin] for s in reg.analyses]
    return rows, ["analysis", "what", "requires", "citation", "from"], [False, True, True, True, False]


def _plugins(reg, verbose: bool):
    rows = [list(row) for row in reg.list_plugins()]
    if verbose:
        return [(plugin, [("module", module), ("status", status)]) for plugin, module, status in rows]
    return rows, ["plugin", "module", "status"], [False, True, True]


def list_command(what: str, verbose: bool, width: int | None = None) -> str:
    """The table ``python -m benchmark list <what> [-v]`` prints."""
    from .registry import plugins

    reg = plugins(listing=what != "plugins")  # tried plugins are listed from their trial's record, not imported
    listed = {"models": _models, "tasks": _tasks, "analyses": _analyses, "plugins": _plugins}[what](reg, verbose)
    return details(listed, width) if verbose else render(*listed, width=width)
