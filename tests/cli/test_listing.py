"""`list`: answers without importing torch, fits the terminal's width, and `-v` shows every detail."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmark.listing import fit_widths, list_command
from benchmark.registry import Plugins

HEAVY = ("torch", "transformers", "sklearn", "accelerate")


def imported_after(argv: list[str]) -> dict:
    """Which heavy modules ``main(argv)`` imported, and its exit code, in a fresh interpreter."""
    code = (f"import json, sys\nfrom benchmark.cli import main\ntry:\n    rc = main({argv!r})\n"
            "except SystemExit as e:\n    rc = e.code\n"
            f"print(json.dumps({{'rc': rc, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "100"})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("what", ["models", "tasks", "analyses", "plugins"])
def test_list_imports_no_torch(what):
    assert imported_after(["list", what]) == {"rc": 0, "heavy": []}
    assert imported_after(["list", "-v", what]) == {"rc": 0, "heavy": []}


@pytest.mark.parametrize("argv", [["list", "model"], ["run", "--model", "llava15-tiny"], ["run", "--bogus", "1"],
                                  ["analyze", "--model", "x"], ["leaderboard", "--format", "pdf"],
                                  ["check-adapter", "-k"], ["run", "--model", "lava15", "--task", "textile"],
                                  ["run", "--model", "llava15-tiny", "--task", "textil"],
                                  ["run", "--model", "llava15-tiny", "--task", "textile", "--micro-batch", "0"],
                                  ["check-adapter", "nope"], ["analyze", "--model", "lava", "--task", "textile"]])
def test_argument_errors_come_before_heavy_imports(argv):
    assert imported_after(argv) == {"rc": 2, "heavy": []}


def test_fit_widths_shares_the_room_among_wrapped_columns():
    # 60 columns, two gaps of 2, a fixed column of 10: 46 left for two wrapped columns of 50 and 30 -> 23 each.
    assert fit_widths([10, 50, 30], [False, True, True], 60) == [10, 23, 23]
    # the narrow one keeps its width when the wide one can absorb the cut: 56 left -> 40 + 16
    assert fit_widths([10, 50, 16], [False, True, True], 70) == [10, 40, 16]
    assert fit_widths([10, 20], [False, True], 200) == [10, 20]  # fits: untouched
    assert fit_widths([10, 50], [False, True], 20) == [10, 12]  # never under 12 (the table then overflows)


@pytest.mark.parametrize("what", ["models", "tasks", "analyses"])
@pytest.mark.parametrize("width", [80, 120])
def test_tables_fit_the_width_and_keep_every_name_whole(what, width):
    reg = Plugins(autoload=False)
    names = {"models": reg.adapters, "tasks": reg.tasks, "analyses": reg.analyses}[what].names()
    lines = list_command(what, verbose=False, width=width).splitlines()
    assert max(len(line) for line in lines) <= width
    first_words = [line.split()[0] for line in lines[2:] if line and not line.startswith(" ")]
    assert first_words == names


def test_verbose_shows_every_detail_within_the_width():
    reg = Plugins(autoload=False)
    text = list_command("models", verbose=True, width=90)
    assert max(len(line) for line in text.splitlines()) <= 90
    flat = " ".join(text.split())
    for spec in reg.adapters:
        assert f"{spec.name} projector {spec.projector_family} projector modules {' '.join(spec.projector_modules.split())}" in flat
        assert " ".join(spec.checkpoint.split()) in flat
    tasks = " ".join(list_command("tasks", verbose=True, width=90).split())
    derm = reg.tasks.get("derm")
    assert '"hair loss, alopecia and other hair diseases"' in tasks and " ".join(derm.citation.split()) in tasks


def test_terminal_width_is_read_from_the_environment():
    out = subprocess.run([sys.executable, "-m", "benchmark", "list", "models"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "COLUMNS": "70"})
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 70
