"""scripts/readme_demo.py: the README's demo block is what the demo printed, and nothing else in the README moves.

Fed a saved stdout of the demo (tests/fixtures/demo_output.txt, a real run of the Makefile's demo command), never
a live run. The expected block is built here from the saved lines by position, not by the script's rules.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAVED = ROOT / "tests" / "fixtures" / "demo_output.txt"
COMMAND = "python -m benchmark run --model llava15-tiny --task textile --max-per-class 100"

_spec = importlib.util.spec_from_file_location("readme_demo", ROOT / "scripts" / "readme_demo.py")
readme_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_demo)


def _readme(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "README.md"
    path.write_text((ROOT / "README.md").read_text() if text is None else text)
    return path


def _rewrite(readme: Path, saved: Path = SAVED) -> None:
    readme_demo.main(["--from", str(saved), "--readme", str(readme), "--machine", "a test machine"])


def _block(text: str) -> list[str]:
    lines = text.splitlines()
    return lines[lines.index("<!-- demo:start -->") + 1:lines.index("<!-- demo:end -->")]


def test_the_block_is_the_printed_summary_and_the_rest_is_untouched(tmp_path):
    readme = _readme(tmp_path)
    before = readme.read_text()
    _rewrite(readme)
    after = readme.read_text()
    start, end = "<!-- demo:start -->", "<!-- demo:end -->"
    assert after[:after.index(start)] == before[:before.index(start)]
    assert after[after.index(end):] == before[before.index(end):]

    saved = SAVED.read_text().splitlines()
    head = saved.index("llava15-tiny on textile (limited to 100 per class)")
    first_table = saved.index(next(line for line in saved[head:] if line.startswith("| Model")))
    last = saved.index("Task accuracy (mean over seeds): zero-shot 0.3333, FT-Proj 0.3333, FT-E2E 0.3333.")
    block = _block(after)
    assert block[:-2] == ["```text", saved[head], "...", *saved[first_table:last + 1], "```"]
    assert block[-2] == ""
    assert block[-1].startswith(f"*Printed by `make demo` (`{COMMAND}`) on a test machine; `make readme-demo`")
    assert readme_demo.VARYING_DIGITS in block[-1]


def test_whatever_the_run_prints_after_its_tables_is_copied(tmp_path):
    saved = SAVED.read_text().splitlines()
    at = saved.index(next(line for line in saved if line.startswith("results: ")))
    extra = ["", "FT-Proj: task gain +0.0000 [+0.0000, +0.0000] (n.s.), richness -0.0212 [-0.0710, +0.0167] (n.s.)",
             "  a second line, indented, in no particular format", "FT-E2E: —"]
    changed = tmp_path / "out.txt"
    changed.write_text("\n".join([*saved[:at], *extra, *saved[at:], "", ""]) + "\n")
    readme = _readme(tmp_path)
    _rewrite(readme, changed)
    block = _block(readme.read_text())
    fence = block.index("```", 1)
    assert block[fence - len(extra):fence] == extra
    assert not any(line.startswith("results: ") for line in block)


def test_rewriting_again_changes_nothing(tmp_path):
    readme = _readme(tmp_path)
    _rewrite(readme)
    once = readme.read_bytes()
    _rewrite(readme)
    assert readme.read_bytes() == once


@pytest.mark.parametrize("text", ["intro\n<!-- demo:start -->\nold\n", "<!-- demo:end -->\n<!-- demo:start -->\n",
                                  "<!-- demo:start -->\n<!-- demo:end -->\n<!-- demo:end -->\n"])
def test_markers_missing_twice_or_out_of_order_are_refused_and_the_readme_kept(tmp_path, text):
    readme = _readme(tmp_path, text)
    with pytest.raises(SystemExit, match="must hold <!-- demo:start --> once"):
        _rewrite(readme)
    assert readme.read_text() == text


def test_an_output_without_the_summary_is_refused(tmp_path):
    readme = _readme(tmp_path)
    before = readme.read_text()
    stderr_like = tmp_path / "err.txt"
    stderr_like.write_text("probe (pre-projection): epoch 3 (at most 100) [00:01, 2.00epoch/s]\n")
    with pytest.raises(SystemExit, match="no line starting 'llava15-tiny on textile'"):
        _rewrite(readme, stderr_like)
    assert readme.read_text() == before


def test_the_readme_states_the_makefiles_demo_and_only_its_targets():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert " ".join(["python", *readme_demo.demo_command(ROOT / "Makefile")]) == COMMAND
    assert f"`make demo` is `{COMMAND}`" in readme.replace("\n", " ")
    assert readme.count("<!-- demo:start -->") == readme.count("<!-- demo:end -->") == 1
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    named = set(re.findall(r"`make ([a-z-]+)", readme))
    assert named and named <= targets, f"the README names make targets the Makefile lacks: {named - targets}"
    assert len(readme.splitlines()) <= 250
