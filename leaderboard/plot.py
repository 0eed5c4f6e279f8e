"""Draw the "richness change vs. task gain" scatter plot (PNG) of a :class:`~.table.Leaderboard`.

One point per (model, task, fine-tuned regime): x = task gain, y = richness change of the post-projection
embeddings, mean ± std over seeds as error bars. Marker shape = projector family, colour = regime, hollow =
limited run. The paper's claim reads off the quadrants: points right of 0 and below 0 gained on the task while
the projector's output lost domain information.
"""

from __future__ import annotations

from pathlib import Path

from .render import REGIME_LABELS, task_label
from .table import FINETUNED, Leaderboard

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
COLORS = {"ft-proj": "#1f77b4", "ft-e2e": "#d62728", "ft-e2e-lora": "#ff7f0e"}
SIZE_IN = (10.0, 7.5)
DPI = 100  # -> 1000 x 750 pixels


def _points(board: Leaderboard) -> list[dict]:
    out = []
    for row in board.rows:
        for regime in FINETUNED:
            gain, rich = row.gain[regime], row.richness[regime]
            if gain is None or rich is None:
                continue  # missing runs are listed in the leaderboard, there is nothing to place here
            folder = row.folder(regime)
            out.append({
                "key": (row.model, row.task, row.limit, folder),
                "x": gain.mean, "y": rich.mean, "xerr": gain.std or 0.0, "yerr": rich.std or 0.0,
                "family": "+".join(row.projector_families) or "unknown", "regime": folder,
                "limited": row.limit is not None,
                "label": f"{row.model}/{task_label(row.task, row.limit)} {REGIME_LABELS[folder]}",
            })
    # FT-Proj is shared by a model/task's full and LoRA rows: draw it once.
    unique = {p["key"]: p for p in out}
    return [unique[k] for k in dict.fromkeys(p["key"] for p in out)]


def draw(board: Leaderboard, path: Path) -> Path:
    """Write the plot to ``path`` (PNG) and return it. Uses Agg directly: no display, no global pyplot state."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = _points(board)
    families = sorted({p["family"] for p in points})
    marker = {f: MARKERS[i % len(MARKERS)] for i, f in enumerate(families)}

    # The default style, whatever the user's matplotlibrc says, so the same results give the same picture.
    with matplotlib.style.context("default"):
        fig = Figure(figsize=SIZE_IN, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle="--", zorder=0)
        ax.axvline(0.0, color="0.5", linewidth=0.8, linestyle="--", zorder=0)
        stacked: dict[tuple, int] = {}
        for p in points:
            color = COLORS[p["regime"]]
            ax.errorbar(p["x"], p["y"], xerr=p["xerr"], yerr=p["yerr"], fmt=marker[p["family"]], color=color,
                        markerfacecolor="none" if p["limited"] else color, markersize=8, capsize=3,
                        linewidth=1, zorder=3)
            # Points often coincide (e.g. no change at all): stack their labels instead of overprinting them.
            spot = (round(p["x"], 3), round(p["y"], 3))
            k = stacked.get(spot, 0)
            stacked[spot] = k + 1
            # Labels below the markers (zorder), so a label box never hides a point.
            ax.annotate(p["label"], (p["x"], p["y"]), xytext=(9, 6 + 11 * k), textcoords="offset points",
                        fontsize=7.5, color=color, zorder=2,
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})
        if not points:
            ax.text(0.5, 0.5, "no finished fine-tuned runs with a zero-shot baseline", ha="center", va="center",
                    transform=ax.transAxes)
        _limits(ax, points)
        ax.set_xlabel("Task gain: macro-F1(regime) − macro-F1(zero-shot)")
        ax.set_ylabel("Richness change: probe F1(regime's projector) − probe F1(original)")
        ax.set_title("Richness of post-projection embeddings vs. task gain (mean ± std over seeds)")
        handles = [Line2D([], [], linestyle="none", marker=marker[f], color="0.3", label=f"projector: {f}")
                   for f in families]
        handles += [Line2D([], [], linestyle="none", marker="o", color=COLORS[r], label=REGIME_LABELS[r])
                    for r in COLORS if any(p["regime"] == r for p in points)]
        if any(p["limited"] for p in points):
            handles.append(Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="none",
                                  label="hollow: limited run (quick check)"))
        if handles:
            ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # No "Software" entry (it names the matplotlib version); PNG output has no timestamp otherwise.
        fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _limits(ax, points: list[dict]) -> None:
    """Keep both zero lines in view, with room for labels, even when every point sits at the origin."""
    xs = [0.0] + [p["x"] + s * p["xerr"] for p in points for s in (-1, 1)]
    ys = [0.0] + [p["y"] + s * p["yerr"] for p in points for s in (-1, 1)]
    for setter, lo, hi in ((ax.set_xlim, min(xs), max(xs)), (ax.set_ylim, min(ys), max(ys))):
        pad = max(0.05, 0.15 * (hi - lo))
        setter(lo - pad, hi + 2 * pad)  # extra room above/right for the labels
