"""Rewrite the README's demo block from what the demo itself prints (``make readme-demo``).

The block between ``<!-- demo:start -->`` and ``<!-- demo:end -->`` holds the summary that ``make demo`` prints
after its progress lines: the ``<model> on <task>`` line, then everything from the first table row to the end of
the output, copied line for line (the leaderboard's legend and section headings before the first table are
replaced by one ``...`` line; the ``results: <folder>`` line is left out, it names this machine's folder). What the
run prints after its tables (accuracies, verdicts) is copied whatever its form. A note under the block names the
machine and the software that printed it, and which digits change from one CPU to another.

    python scripts/readme_demo.py                 # run the Makefile's demo command in a fresh results folder
    python scripts/readme_demo.py --from OUT.txt  # use a saved stdout of `make demo` instead

A fresh run also rewrites docs/example-leaderboard.md (``python -m benchmark leaderboard`` of its results). Nothing
else in the README changes: text outside the markers is kept byte for byte (tests/cli/test_readme_demo.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo:start -->", "<!-- demo:end -->"
ELIDED = "..."
# Measured, not assumed: the same command gives the same digits run after run on one machine, but another CPU
# (another BLAS kernel, hence another order of float sums) moved the probe scores in the third decimal and flipped
# the sign of a richness change near 0, while the untrained twin's task F1 (one answer for every image) stayed.
VARYING_DIGITS = (
    "On another CPU the probe, control and selectivity scores, the richness changes and their intervals can "
    "differ from the third decimal on, and a richness change near 0 can change sign (the probes' float sums run "
    "in another order, and early stopping can then keep another epoch); the task F1 and accuracy of the untrained "
    "twin, which gives one answer for every image, do not. On one machine the command prints the same digits "
    "every time."
)


def demo_command(makefile: Path) -> list[str]:
    """The arguments after ``$(PY)`` of the ``benchmark run`` line in the Makefile's ``demo`` recipe."""
    lines = makefile.read_text().splitlines()
    try:
        start = lines.index(next(line for line in lines if line.startswith("demo:")))
    except StopIteration:
        raise SystemExit(f"error: {makefile} has no `demo:` target; the demo command is read from it.") from None
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        words = shlex.split(line)
        if "benchmark" in words and "run" in words and words[0] == "$(PY)":
            return words[1:]
    raise SystemExit(f"error: the `demo:` recipe of {makefile} has no `$(PY) -m benchmark run ...` line.")


def flag(args: list[str], name: str) -> str:
    if name not in args or args.index(name) + 1 >= len(args):
        raise SystemExit(f"error: the demo command {' '.join(args)!r} has no {name} VALUE.")
    return args[args.index(name) + 1]


def summary(stdout: str, model: str, task: str) -> list[str]:
    """The lines of the block, from the run's stdout (see the module docstring)."""
    lines = stdout.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith(f"{model} on {task}")]
    if not heads:
        raise SystemExit(f"error: the demo output has no line starting {model + ' on ' + task!r}: is it the "
                         "stdout of `make demo` (not its stderr, which holds the progress bars)?")
    head, rest = lines[heads[-1]], lines[heads[-1] + 1:]
    rest = [line for line in rest if not line.startswith("results: ")]
    first_table = next((i for i, line in enumerate(rest) if line.startswith("|")), None)
    body = rest if first_table is None else [ELIDED, *rest[first_table:]]
    while body and not body[-1].strip():
        body.pop()
    return [head, *body]


def cpu_name() -> str:
    """The CPU's model name, family and model (a virtual machine may show only a vendor's series name)."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                    if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in info.items()}
    name = info.get("model name", platform.machine())
    return f"{name} (family {info['cpu family']}, model {info['model']})" if "cpu family" in info else name


def machine() -> str:
    """This machine's CPU, the kernels torch picked for it (they decide the order of float sums), its cores and
    the software that computes the numbers."""
    import torch

    cpu = f"{cpu_name()}, torch CPU kernels {torch.backends.cpu.get_cpu_capability()}"
    soft = []
    for pkg in ("torch", "transformers"):
        try:
            soft.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {', '.join(soft)}"


def block(lines: list[str], *, command: list[str], where: str, timing: str | None) -> str:
    note = (f"*Printed by `make demo` (`python {' '.join(command)}`) on {where}"
            + (f", {timing}" if timing else "") + "; `make readme-demo` regenerates this block. `...` stands for "
            "the leaderboard's legend and section headings ([docs/example-leaderboard.md]"
            "(docs/example-leaderboard.md) shows the whole leaderboard). " + VARYING_DIGITS + "*")
    return "\n".join([START, "```text", *lines, "```", "", note, END])


def replace_block(readme: str, new_block: str) -> str:
    """``readme`` with the text from the start marker to the end marker (both included) replaced."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise SystemExit(f"error: the README must hold {START} once, then {END} once; put them around the demo's "
                         "output.")
    return readme[:readme.index(START)] + new_block + readme[readme.index(END) + len(END):]


def run_demo(command: list[str], results: Path) -> tuple[str, str]:
    """Run the demo into ``results``; (its stdout, wall time and load)."""
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run([sys.executable, *command, "--results-dir", str(results)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"error: the demo failed (exit {done.returncode}); the README is unchanged.")
    seconds = time.perf_counter() - began
    return done.stdout, f"{seconds:.0f} s wall (1-minute load average {load:.2f} when it started)"


def write_example(results: Path, path: Path) -> None:
    board = subprocess.run([sys.executable, "-m", "benchmark", "leaderboard", "--results", str(results)],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout
    path.write_text("<!-- Written by `make readme-demo` (scripts/readme_demo.py) from the results of `make demo`. -->\n"
                    "*`python -m benchmark leaderboard` after `make demo`: a random-initialised tiny model, so the "
                    "numbers only show the format.*\n\n" + board)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="saved", type=Path, help="a saved stdout of `make demo` (default: run it now)")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--makefile", type=Path, default=ROOT / "Makefile")
    p.add_argument("--machine", help="what printed the saved output (default: this machine)")
    a = p.parse_args(argv)
    command = demo_command(a.makefile)
    model, task = flag(command, "--model"), flag(command, "--task")
    readme = a.readme.read_text()
    replace_block(readme, "")  # the markers are checked before the demo runs
    timing = None
    if a.saved is not None:
        stdout = a.saved.read_text()
    else:
        with tempfile.TemporaryDirectory(prefix="projbench-demo-") as tmp:
            stdout, timing = run_demo(command, Path(tmp))
            write_example(Path(tmp), ROOT / "docs" / "example-leaderboard.md")
    new = replace_block(readme, block(summary(stdout, model, task), command=command,
                                      where=a.machine or machine(), timing=timing))
    a.readme.write_text(new)
    print(f"{a.readme}: demo block rewritten ({len(new.splitlines())} lines in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
