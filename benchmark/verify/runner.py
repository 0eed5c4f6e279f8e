"""``python -m benchmark verify`` and ``python -m benchmark export``: check result folders, bundle them.

``verify [--results DIR] [RUN_DIR|BUNDLE ...]`` checks every run folder under the given folders (default: the
results folder), or in the given bundles, with :func:`.recompute.verify_folder`; it prints one line per mismatch
(``<run folder>: <field>: stored <x>, recomputed <y>``) and per thing it could not check, and exits 1 if any run
has a mismatch, 0 otherwise (2 for bad arguments, as every command). ``export`` writes the folders as one bundle
(:mod:`benchmark.storage.bundle`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.errors import BenchmarkError
from benchmark.schema import ANALYSES_DIR, METRICS, results_root
from benchmark.storage.bundle import bundle_files, is_bundle, opened, write_bundle

# .recompute (numpy, scikit-learn) is imported where it is used: building the CLI's parser stays light.
if TYPE_CHECKING:
    from .recompute import Report


def run_folders(top: Path) -> tuple[list[Path], list[Path]]:
    """The folders under ``top`` (itself included) holding a metrics.json, sorted, outside analyses; and the
    symbolic links met there, which are never followed."""
    found, links = [], []
    for here, dirs, files in os.walk(top):
        here = Path(here)
        links += [here / n for n in sorted(dirs + files) if (here / n).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d != ANALYSES_DIR and not (here / d).is_symlink())
        if METRICS in files and (here / METRICS).is_file() and not (here / METRICS).is_symlink():
            found.append(here)
    return sorted(found), links


def _label(folder: Path, root: Path, shown: str) -> str:
    rel = folder.relative_to(root).as_posix()
    return shown if rel == "." else f"{shown}/{rel}" if shown else rel


def verify_tree(top: Path, shown: str) -> list[Report]:
    """Reports of every run folder under ``top``; ``shown``: how lines name ``top``."""
    from .recompute import Report, verify_folder

    folders, links = run_folders(top)
    reports = [verify_folder(f, _label(f, top, shown)) for f in folders]
    for link in links:
        r = Report(_label(link, top, shown))
        r.unchecked.append("a symbolic link; not followed")
        reports.append(r)
    return reports


def print_reports(reports: list, out=None) -> tuple[int, int, int]:
    """Print the lines of ``reports``; (runs consistent, runs with mismatches, runs with unchecked parts)."""
    out, ok, bad, partial = out or sys.stdout, 0, 0, 0
    for r in reports:
        for m in r.mismatches:
            print(f"{r.folder}: {m.text()}", file=out)
        for what in r.unchecked:
            print(f"{r.folder}: not checked: {what}", file=out)
        bad += bool(r.mismatches)
        ok += not r.mismatches
        partial += bool(r.unchecked) and not r.mismatches
    return ok, bad, partial


def cmd_verify(a) -> int:
    targets = [Path(p) for p in (a.paths or [])] or [Path(a.results) if a.results else results_root()]
    reports = []
    for target in targets:
        if not (target.is_dir() or is_bundle(target)):
            raise BenchmarkError(f"{target} is neither a results folder, a run folder nor a bundle "
                                 f"(.tar.gz made by `python -m benchmark export`); give one of those.")
        with opened(target) as top:
            reports += verify_tree(top, str(target) if is_bundle(target) else str(target).rstrip("/"))
    ok, bad, partial = print_reports(reports)
    if not reports:
        print(f"note: no run folders (with a {METRICS}) found under {', '.join(map(str, targets))}.",
              file=sys.stderr)
    print(f"verify: {len(reports)} run folder(s): {ok} consistent with their predictions and artifacts"
          f"{f' ({partial} with parts not checkable, listed above)' if partial else ''}, {bad} with mismatches.",
          file=sys.stderr)
    return 1 if bad else 0


def cmd_export(a) -> int:
    results = Path(a.results) if a.results else results_root()
    if not results.is_dir():
        raise BenchmarkError(f"Results folder {results} does not exist; give it with --results.")
    out = Path(a.output)
    if not str(out).lower().endswith((".tar.gz", ".tgz")):
        raise BenchmarkError(f"-o/--output writes a gzip tar; give a file name ending in .tar.gz (got {out}).")
    folders = [Path(p) for p in a.paths] or [results]
    absolute = results.resolve()
    names = bundle_files(absolute, [(Path.cwd() / f).resolve() if not f.is_absolute() else f.resolve()
                                    for f in folders])
    if not any(n.endswith("/" + METRICS) for n in names):
        raise BenchmarkError(f"No finished run (a folder with {METRICS}) under {', '.join(map(str, folders))}; "
                             "nothing exported.")
    manifest = write_bundle(absolute, names, out)
    print(f"export: {len(manifest['files'])} file(s) of "
          f"{sum(n.endswith('/' + METRICS) for n in names)} run folder(s) -> {out}", file=sys.stderr)
    return 0


def add_parsers(sub) -> None:
    """The ``verify`` and ``export`` subcommands."""
    v = sub.add_parser("verify", help="recompute every reported number from the stored predictions and check "
                                      "every checksum; exit 1 on any mismatch")
    v.add_argument("--results", help="results folder or bundle (default ./results)")
    v.add_argument("paths", nargs="*", metavar="RUN_DIR", help="run folders, folders of runs, or bundles")
    e = sub.add_parser("export", help="write result folders as one .tar.gz bundle with a manifest of checksums")
    e.add_argument("--results", help="results folder (default ./results)")
    e.add_argument("paths", nargs="*", metavar="RUN_DIR", help="folders of the results folder to export "
                                                                "(default: all of it)")
    e.add_argument("-o", "--output", required=True, help="the bundle to write (.tar.gz)")
