"""`make mutate`: mutation testing (cosmic-ray) of the modules that compute numbers, one module at a time.

Each module is mutated with cosmic-ray's operators (one small change at a time: ``<`` for ``<=``, ``+`` for
``-``, a constant, a dropped ``not``...) and its *fast* tests run against every mutant; a mutant that no test
notices "survives". Survivors are either killed with a new test, or justified in mutation/survivors.md.

cosmic-ray mutates the source file in place (that is what makes it work with this package layout, where
adapters/, tasks/ and leaderboard/ are installed as benchmark.* through package-dir), so mutants run one after
the other; the file is restored afterwards even when the run is stopped by its time limit or Ctrl-C. Run it on a
clean tree and do not edit the module while it runs.

    python mutation/mutate.py                     # every module (hours on 2 cores)
    python mutation/mutate.py metrics probe       # some modules
    python mutation/mutate.py probe --minutes 20  # stop a module after 20 minutes (the rest stays pending)
    python mutation/mutate.py probe --changed main  # only lines changed since main: the habit for a change
    python mutation/mutate.py metrics --sample 40   # a seeded random sample of 40 mutants

Sessions are kept in .mutation/<module>.sqlite (a rerun continues the pending mutants; --fresh starts over);
the summary and every survivor's diff go to .mutation/<module>.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".mutation"

# module -> (source file, the fast tests that check its numbers)
MODULES = {
    "metrics": ("benchmark/evaluate/metrics.py", ["tests/evaluate/test_metrics.py"]),
    "probe": ("benchmark/evaluate/probe.py", ["tests/evaluate/test_probe.py"]),
    "config": ("benchmark/config.py", ["tests/run/test_identity.py", "tests/run/test_paper_defaults.py"]),
    "features": ("benchmark/storage/features.py", ["tests/run/test_identity.py", "tests/evaluate/test_probe.py"]),
    "batching": ("benchmark/evaluate/batching.py", ["tests/evaluate/test_generate_logits.py", "tests/evaluate/test_generation.py"]),
    "generation": ("benchmark/evaluate/generation.py", ["tests/evaluate/test_generate_logits.py", "tests/evaluate/test_generation.py"]),
    "evaluation": ("benchmark/evaluate/loglik.py", ["tests/run/test_run_numbers.py", "tests/evaluate/test_generation.py"]),
    "training": ("benchmark/train/loop.py", ["tests/run/test_run_numbers.py", "tests/train/test_lora.py"]),
    "protocol": ("benchmark/run/runner.py", ["tests/run/test_run_numbers.py"]),
    "protocol-train": ("benchmark/run/train.py", ["tests/run/test_run_numbers.py"]),
    "protocol-evaluate": ("benchmark/run/evaluate.py", ["tests/run/test_run_numbers.py"]),
    "leaderboard": ("leaderboard/table.py", ["tests/leaderboard/test_leaderboard.py", "tests/evaluate/test_metrics.py"]),
    "leaderboard-stats": ("leaderboard/stats.py", ["tests/leaderboard/test_leaderboard.py", "tests/evaluate/test_metrics.py"]),
}


# cosmic-ray replaces each binary operator by every other one (12 variants). Bit shifts, bitwise operators,
# powers, modulo and floor division in place of arithmetic are bugs nobody writes by accident; they are left out
# (--all-operators keeps them), which divides the run time by about three.
IMPLAUSIBLE = r"core/ReplaceBinaryOperator_.*_(Pow|LShift|RShift|BitOr|BitAnd|BitXor|FloorDiv|Mod|MatMult)$"


def test_command(tests: list[str]) -> str:
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider --no-header -o addopts='' {' '.join(tests)}"


def tool(module: str, *args: str) -> list[str]:
    """A cosmic-ray command run by this interpreter (its scripts need not be on PATH)."""
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", *args]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, **kw)


def config_file(name: str, path: str, tests: list[str], timeout: float, changed: str | None) -> Path:
    cfg = STATE / f"{name}.toml"
    cfg.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{path}"\n'
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f'test-command = "{test_command(tests)}"\n\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        + (f'\n[cosmic-ray.filters.git-filter]\nbranch = "{changed}"\n' if changed else "")
    )
    return cfg


def baseline(tests: list[str]) -> float:
    """Seconds the unmutated tests take; exits with their output if they fail (a mutant run would be void)."""
    start = time.perf_counter()
    out = subprocess.run(test_command(tests), shell=True, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"mutate: the tests fail without any mutant; fix them first:\n{out.stdout[-3000:]}")
    return time.perf_counter() - start


def narrow(db: Path, all_operators: bool, sample: int | None) -> None:
    """Mark as skipped the implausible operators and, with ``sample``, all but a seeded random sample."""
    import random
    import re

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(db), WorkDB.Mode.open) as work:
        pending = list(work.pending_work_items)
        skip = [] if all_operators else [w.job_id for w in pending
                                         if re.match(IMPLAUSIBLE, w.mutations[0].operator_name)]
        if skip:
            work.set_multiple_results(skip, WorkResult(output="implausible operator",
                                                       worker_outcome=WorkerOutcome.SKIPPED))
        rest = [w.job_id for w in pending if w.job_id not in set(skip)]
        if sample is not None and len(rest) > sample:
            keep = set(random.Random(0).sample(sorted(rest), sample))
            work.set_multiple_results([j for j in rest if j not in keep],
                                      WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED))


def exec_bounded(cfg: Path, db: Path, source: Path, minutes: float | None) -> bool:
    """cosmic-ray exec, stopped after ``minutes``; the source file is restored in every case. True if finished."""
    original = source.read_bytes()
    proc = subprocess.Popen(tool("cosmic_ray.cli", "exec", str(cfg), str(db)), cwd=ROOT, start_new_session=True)
    try:
        proc.wait(timeout=None if minutes is None else minutes * 60)
        return True
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        if isinstance(exc, KeyboardInterrupt):
            source.write_bytes(original)
            raise
        return False
    finally:
        if source.read_bytes() != original:
            source.write_bytes(original)
            print(f"mutate: restored {source.relative_to(ROOT)} (stopped in the middle of a mutant)")


def report(name: str, db: Path, source: Path) -> tuple[str, int]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    lines = source.read_text().splitlines()
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "skipped": 0, "pending": 0}
    survivors = []
    with use_db(str(db), WorkDB.Mode.open) as work:
        counts["pending"] = sum(1 for _ in work.pending_work_items)
        for item, result in work.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                counts["skipped"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                m = item.mutations[0]
                row = m.start_pos[0]
                survivors.append(f"{m.module_path}:{row} {m.operator_name} (occurrence {m.occurrence})\n"
                                 f"    {lines[row - 1].strip()}\n" + "".join(
                                     f"    {d}\n" for d in (result.diff or "").splitlines()
                                     if d.startswith(("+", "-")) and not d.startswith(("+++", "---"))))
            elif result.test_outcome == TestOutcome.KILLED:
                counts["killed"] += 1
            else:
                counts["incompetent"] += 1
    head = (f"{name}: {counts['killed']} killed, {counts['survived']} survived, {counts['incompetent']} incompetent, "
            f"{counts['pending']} pending" + (f", {counts['skipped']} skipped (implausible, not sampled or unchanged)"
                                              if counts["skipped"] else ""))
    (STATE / f"{name}.txt").write_text(head + "\n\n" + "\n".join(survivors))
    return head, counts["survived"]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    ap.add_argument("--minutes", type=float, default=None, help="stop each module after this long (default: none)")
    ap.add_argument("--changed", metavar="REF", help="only mutate lines changed since the git ref REF")
    ap.add_argument("--fresh", action="store_true", help="start the sessions over instead of continuing them")
    ap.add_argument("--sample", type=int, metavar="N", help="run a seeded random sample of N mutants per module")
    ap.add_argument("--all-operators", action="store_true", help="also the implausible operator replacements")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    if importlib.util.find_spec("cosmic_ray") is None:
        sys.exit("mutate: cosmic-ray is not installed: pip install -e '.[mutate]'")
    STATE.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops it as cleanly as Ctrl-C: the source is restored
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    summary, survived = [], 0
    for name in args.modules or list(MODULES):
        path, tests = MODULES[name]
        db = STATE / f"{name}.sqlite"
        took = baseline(tests)
        cfg = config_file(name, path, tests, timeout=max(60.0, 4 * took), changed=args.changed)
        if args.fresh or args.changed or args.sample or not db.exists():
            db.unlink(missing_ok=True)
            run(tool("cosmic_ray.cli", "init", str(cfg), str(db)), check=True)
            if args.changed:
                run(tool("cosmic_ray.tools.filters.git", "--config", str(cfg), str(db)), check=True)
            narrow(db, args.all_operators, args.sample)
        print(f"mutate: {name} ({path}) against {' '.join(tests)}; baseline {took:.0f} s per run", flush=True)
        finished = exec_bounded(cfg, db, ROOT / path, args.minutes)
        head, n = report(name, db, ROOT / path)
        survived += n
        summary.append(head + ("" if finished else " (time limit reached)"))
        print(head, flush=True)
    print("\n".join(["", *summary, f"survivors and their diffs: {STATE}/<module>.txt"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
