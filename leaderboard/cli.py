"""``python -m benchmark leaderboard``: collect, aggregate, render; report skipped files on stderr.

The argument parser lives in ``benchmark.cli``; this module receives its Namespace (results, format, output,
plot, reference) and returns an exit code. ``--format html`` writes a site folder (see ``html``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import fmean

from benchmark.schema import Regime, results_root
from benchmark.storage.bundle import opened
from benchmark.storage.confined import confined
from benchmark.storage.integrity import BenchmarkError

from .collect import Collection, collect
from .markdown import markdown
from .render import FORMATS, render
from .table import Leaderboard, build
from .verdict import run_verdict


def collection_for(results: Path) -> Collection:
    """The runs of a results folder, read and validated (no model is loaded)."""
    results = Path(results)
    if not results.is_dir():
        raise BenchmarkError(
            f"Results folder {results} does not exist. Run `python -m benchmark run ...` first, or point "
            "--results (or $PROJBENCH_RESULTS) at the folder given as --results-dir to `run`."
        )
    return collect(results)


def leaderboard_for(results: Path) -> Leaderboard:
    """The leaderboard of a results folder (the library entry point; no model is loaded)."""
    return build(collection_for(results))


def run_table(results: Path, model: str, task_dir: str) -> str:
    """The leaderboard (Markdown) of the runs of one model in one task folder: what `run` prints for the folders
    it wrote, with the leaderboard's own estimators; then the task accuracy of each regime, which the leaderboard
    does not show, and the verdict of each fine-tuned regime (:mod:`.verdict`)."""
    coll = collect(results, under=f"{model}/{task_dir}")
    by_folder: dict[str, list] = {}
    for run in coll.runs:
        by_folder.setdefault(run.key.regime, []).append(run)
    parts = []
    for folder, runs in by_folder.items():
        accuracy = [r.accuracy for r in runs if r.accuracy is not None]
        unmatched = [r.unmatched_rate for r in runs if r.unmatched_rate is not None]
        if accuracy:
            parts.append(f"{Regime(folder).label} {fmean(accuracy):.4f}"
                         + (f" (unmatched {fmean(unmatched):.1%})" if unmatched else ""))
    note = f"Task accuracy (mean over seeds): {', '.join(parts)}.\n" if parts else ""
    board = build(coll)
    return markdown(board, verdict=False) + ("\n" + note if note else "") + "\n" + run_verdict(board)


def write_site(board: Leaderboard, coll: Collection, out: Path, with_reference: bool) -> Path:
    """Write the static HTML site into the folder ``out``; other files there (e.g. a CNAME) are left alone."""
    from .html import INDEX, site

    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"--format html writes a site folder, but {out} is a file; give a folder name.")
    files = site(board, coll, with_reference)
    for name in files:  # all checked before any is written: a link there is refused, never written through
        confined(out / name, out, "site file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            with (out / name).open("w", encoding="utf-8", newline="") as f:
                f.write(text)
    except OSError as exc:
        raise BenchmarkError(f"Cannot write the site to {out}: {exc.strerror}.") from None
    return out / INDEX


def _write_text(text: str, fmt: str, output: str | None) -> None:
    if not output:
        sys.stdout.write(text)
        return
    out = Path(output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # newline="": the exact bytes on every OS (CSV and Markdown use "\n").
        with out.open("w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        raise BenchmarkError(f"Cannot write the leaderboard to {out}: {exc.strerror}.") from None
    print(f"leaderboard ({fmt}): {out}", file=sys.stderr)


def main(args) -> int:
    fmt = getattr(args, "format", None) or "markdown"
    if fmt not in FORMATS and fmt != "html":
        raise BenchmarkError(f"Unknown format {fmt!r}; choose from {', '.join(FORMATS)}, html.")
    if fmt == "html" and not getattr(args, "output", None):
        raise BenchmarkError("--format html writes a site folder; give it with --output SITE/.")
    plot_path = Path(args.plot) if getattr(args, "plot", None) else None
    if plot_path is not None and plot_path.suffix.lower() != ".png":
        # Checked first, so that a typo fails before anything is written.
        raise BenchmarkError(f"--plot writes a PNG; give a file name ending in .png (got {plot_path}).")
    results = Path(args.results) if getattr(args, "results", None) else results_root()
    with opened(results) as root:   # a bundle (`export`) is read from its checked contents
        return _publish(args, fmt, results, root, plot_path)


def _publish(args, fmt: str, results: Path, root: Path, plot_path: Path | None) -> int:
    """Build and write the leaderboard of the runs under ``root`` (``results``: how messages name it)."""
    coll = collection_for(root)
    board = build(coll)

    # Problems go to stderr as well as into the output: CSV has no room for them, and a shell user should see
    # them even when the table goes to a file.
    for s in board.skipped:
        print(f"warning: skipped {results / s.path}: {s.reason}", file=sys.stderr)
    if board.incomplete:
        print(f"note: {len(board.incomplete)} run(s) missing or unfinished; they show as missing "
              f"(listed under 'Incomplete runs' / the 'missing' field).", file=sys.stderr)
    for w in board.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not board.rows:
        print(f"note: no runs found under {results}.", file=sys.stderr)

    with_reference = bool(getattr(args, "reference", False))
    from .analyses import draw_curves, with_analyses

    if fmt == "html":
        index = write_site(board, coll, Path(args.output), with_reference)
        print(f"leaderboard (html): {index}", file=sys.stderr)
    else:
        text = with_analyses(render(board, fmt, with_reference=with_reference), fmt, root)
        _write_text(text, fmt, getattr(args, "output", None))
    if plot_path is not None:
        from .plot import draw

        try:
            draw(board, plot_path)
        except OSError as exc:
            raise BenchmarkError(f"Cannot write the plot to {plot_path}: {exc.strerror}.") from None
        print(f"plot: {plot_path}", file=sys.stderr)
    if getattr(args, "analysis_plots", None):
        for png in draw_curves(root, out_dir=Path(args.analysis_plots)):
            print(f"analysis curves: {png}", file=sys.stderr)
    return 0
