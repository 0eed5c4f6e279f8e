"""Draw "richness change vs. task gain" as a PNG of small multiples: one panel per task (full or limited).

One point per (model, task, fine-tuned regime): x = task gain, y = richness change of the post-projection
embeddings, the mean over seeds; error bars are the mean's 95% interval where the results carry one, else ± std. Marker shape = projector family, colour = regime, hollow =
limited run. Points carry the model's number from the key below the panels; each number is placed next to its
point where it overlaps no other number, no marker and stays inside the panel (a greedy search over positions
around the point, measured with the renderer), so labels never overprint however many models there are. A
point with no free spot nearby stays unnumbered, and its panel says how many. The paper's claim reads off the
quadrants: right of 0 and below 0 = the task gained while the projector's output lost domain information.

Only aggregated points are drawn (one per row and regime, never per run), with one matplotlib call per marker
group, so thousands of result folders plot in seconds. Same results -> same PNG bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .columns import REGIME_LABELS, task_label
from .table import FINETUNED, Leaderboard

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
COLORS = {"ft-proj": "#1f77b4", "ft-e2e": "#d62728", "ft-e2e-lora": "#ff7f0e"}
DPI = 100
# Layout in inches, fixed before any label is placed (a later tight_layout would move the panels).
PANEL_W, PANEL_H = 4.0, 3.2
LEFT, RIGHT, TITLE, WSPACE, HSPACE = 0.8, 0.3, 0.55, 0.8, 0.75
LEGEND_ROW = 0.24
KEY_ROW, KEY_PAD = 0.2, 0.55
MAX_COLS = 3
MARKER_SIZE = 7.0          # points
LABEL_SIZE = 8.0           # points
MAX_LABELS_PER_PANEL = 80  # beyond this a panel is a cloud (numbers unreadable); numbering it only costs time
LABEL_GID = "point-label"  # tests find the labels by this id
GAP = 3.0                  # pixels kept free between two labels


@dataclass(frozen=True)
class Point:
    model: str
    task: str
    limit: int | None
    regime: str   # folder: ft-proj, ft-e2e or ft-e2e-lora
    x: float
    y: float
    xbar: tuple[float, float]   # the error bar's ends (see error_bar)
    ybar: tuple[float, float]
    family: str

    @property
    def label(self) -> str:
        return f"{self.model}/{task_label(self.task, self.limit)} {REGIME_LABELS[self.regime]}"


def error_bar(s) -> tuple[float, float]:
    """The ends of a mean's error bar: its 95% interval where the results carry one, else mean ± std over seeds
    (a single point when there is neither)."""
    ci = getattr(s, "ci", None)
    if ci is not None:
        return (float(ci[0]), float(ci[1]))
    sd = s.std or 0.0
    return (s.mean - sd, s.mean + sd)


def bar_text(s, kind: str = "delta") -> str:
    """How the error bar reads in a tooltip: "[low, high]" (95% interval) or "± std"."""
    from .columns import number, spread

    ci = getattr(s, "ci", None)
    if ci is not None:
        return f"95% interval [{number(ci[0], kind)}, {number(ci[1], kind)}]"
    return f"± {spread(s.std, kind)}" if s.std is not None else "(one seed, no interval)"


def points_of(board: Leaderboard) -> list[Point]:
    out: dict[tuple, Point] = {}
    for row in board.rows:
        for regime in FINETUNED:
            gain, rich = row.gain[regime], row.richness[regime]
            if gain is None or rich is None:
                continue  # missing runs are listed in the leaderboard, there is nothing to place here
            folder = row.folder(regime)
            # FT-Proj is shared by a model/task's full and LoRA rows: draw it once.
            out.setdefault((row.model, row.task, row.limit, folder), Point(
                row.model, row.task, row.limit, folder, gain.mean, rich.mean, error_bar(gain), error_bar(rich),
                "+".join(row.projector_families) or "unknown"))
    return list(out.values())


@dataclass(frozen=True)
class Layout:
    cols: int
    rows: int
    key_rows: int
    key_cols: int
    key_col_w: float   # inches
    legend_rows: int

    @property
    def top(self) -> float:
        return TITLE + self.legend_rows * LEGEND_ROW + 0.35

    @property
    def size(self) -> tuple[float, float]:
        w = LEFT + self.cols * PANEL_W + (self.cols - 1) * WSPACE + RIGHT
        h = self.top + self.rows * PANEL_H + (self.rows - 1) * HSPACE + HSPACE + KEY_PAD + self.key_rows * KEY_ROW
        return w, h


def _layout(n_panels: int, key_widths: list[float], n_handles: int) -> Layout:
    cols = max(1, min(MAX_COLS, n_panels))
    rows = max(1, math.ceil(n_panels / cols))
    width = LEFT + cols * PANEL_W + (cols - 1) * WSPACE + RIGHT
    col_w = (max(key_widths) + 0.35) if key_widths else 1.0
    key_cols = max(1, min(len(key_widths) or 1, int((width - LEFT - RIGHT) // col_w)))
    key_rows = math.ceil(len(key_widths) / key_cols) if key_widths else 0
    return Layout(cols, rows, key_rows, key_cols, col_w, math.ceil(n_handles / _legend_cols(cols, n_handles)))


def _legend_cols(cols: int, n_handles: int) -> int:
    return max(1, min(n_handles, 3 * cols - 2))


def figure(board: Leaderboard):
    """The figure (Agg canvas attached, labels placed). ``draw`` saves it; tests measure it."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = points_of(board)
    families = sorted({p.family for p in points})
    marker = {f: MARKERS[i % len(MARKERS)] for i, f in enumerate(families)}
    models = sorted({p.model for p in points})
    number = {m: i + 1 for i, m in enumerate(models)}
    family_of = {m: ", ".join(sorted({p.family for p in points if p.model == m})) for m in models}
    panels: dict[tuple, list[Point]] = {}
    for p in points:
        panels.setdefault((p.task, p.limit is not None, p.limit or 0), []).append(p)
    keys = sorted(panels)

    # The default style, whatever the user's matplotlibrc says, so the same results give the same picture.
    with matplotlib.style.context("default"):
        probe = Figure(dpi=DPI)
        FigureCanvasAgg(probe)
        renderer = probe.canvas.get_renderer()
        key_text = [f"{number[m]}  {m} ({family_of[m]})" for m in models]
        key_widths = [_text_size(probe, renderer, t, 8.5)[0] / DPI for t in key_text]
        n_handles = len(families) + len({p.regime for p in points}) + any(p.limit is not None for p in points)
        lay = _layout(len(keys), key_widths, n_handles)
        w, h = lay.size
        top = lay.top

        fig = Figure(figsize=(w, h), dpi=DPI)
        FigureCanvasAgg(fig)
        renderer = fig.canvas.get_renderer()
        fig.suptitle("Richness of post-projection embeddings vs. task gain, per task (error bars: 95% interval where the "
                     "results carry one, else ± std over seeds)",
                     y=1 - 0.22 / h, fontsize=12)
        handles = [Line2D([], [], linestyle="none", marker=marker[f], color="0.3", label=f"projector: {f}")
                   for f in families]
        handles += [Line2D([], [], linestyle="none", marker="o", color=COLORS[r], label=REGIME_LABELS[r])
                    for r in COLORS if any(p.regime == r for p in points)]
        if any(p.limit is not None for p in points):
            handles.append(Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="none",
                                  label="hollow: limited run"))
        if handles:
            fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / h),
                       ncol=_legend_cols(lay.cols, len(handles)), fontsize=8.5, frameon=False)
        if not keys:
            ax = fig.add_axes((LEFT / w, (h - top - PANEL_H) / h, PANEL_W / w, PANEL_H / h))
            ax.text(0.5, 0.5, "no finished fine-tuned runs\nwith a zero-shot baseline", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        for i, key in enumerate(keys):
            r, c = divmod(i, lay.cols)
            x0 = LEFT + c * (PANEL_W + WSPACE)
            y0 = h - top - PANEL_H - r * (PANEL_H + HSPACE)
            ax = fig.add_axes((x0 / w, y0 / h, PANEL_W / w, PANEL_H / h))
            task, limited, limit = key
            _panel(ax, fig, renderer, task_label(task, limit if limited else None), panels[key], marker, number)
        # The key: model numbers, in columns below the panels.
        key_top = h - top - lay.rows * PANEL_H - (lay.rows - 1) * HSPACE - HSPACE
        if models:
            fig.text(LEFT / w, key_top / h, "Key: point numbers", fontsize=9, fontweight="bold", va="top")
        for j, text in enumerate(key_text):
            r, c = j % lay.key_rows, j // lay.key_rows
            fig.text((LEFT + c * lay.key_col_w) / w, (key_top - 0.3 - r * KEY_ROW) / h, text, fontsize=8.5,
                     va="top")
    return fig


def _text_size(fig, renderer, text: str, size: float, weight: str = "normal") -> tuple[float, float]:
    t = fig.text(0, 0, text, fontsize=size, fontweight=weight)
    bb = t.get_window_extent(renderer)
    t.remove()
    return bb.width, bb.height


def _panel(ax, fig, renderer, title: str, points: list[Point], marker: dict, number: dict) -> None:
    ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle="--", zorder=0)
    ax.axvline(0.0, color="0.5", linewidth=0.8, linestyle="--", zorder=0)
    from matplotlib.collections import LineCollection

    # Error bars of the whole panel as one collection, markers as one plot call per (family, regime, limited):
    # errorbar() per point or group builds many artists and dominates the time with thousands of points.
    segments, seg_colors = [], []
    for p in points:
        if p.xbar[0] != p.xbar[1]:
            segments.append(((p.xbar[0], p.y), (p.xbar[1], p.y)))
            seg_colors.append(COLORS[p.regime])
        if p.ybar[0] != p.ybar[1]:
            segments.append(((p.x, p.ybar[0]), (p.x, p.ybar[1])))
            seg_colors.append(COLORS[p.regime])
    if segments:
        ax.add_collection(LineCollection(segments, colors=seg_colors, linewidths=0.8, alpha=0.6, zorder=2),
                          autolim=False)
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault((p.family, p.regime, p.limit is not None), []).append(p)
    for (family, regime, limited), ps in sorted(groups.items()):
        color = COLORS[regime]
        ax.plot([p.x for p in ps], [p.y for p in ps], linestyle="none", marker=marker[family], color=color,
                markerfacecolor="white" if limited else color, markersize=MARKER_SIZE, zorder=3)
    _limits(ax, points)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("task gain (F1 − zero-shot F1)", fontsize=8.5)
    ax.set_ylabel("richness change (probe − original)", fontsize=8.5)
    ax.tick_params(labelsize=8)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    _place_labels(ax, fig, renderer, points, number)


def axis_range(values: list[float], bars: list[tuple[float, float]], pad_frac: float) -> tuple[float, float]:
    """An axis range that shows 0 and every point, and error bars only up to half the points' span beyond them:
    with 2 seeds a t interval can be 10x wider than the spread of the means, and fitting it would squash every
    point into the middle. A bar that goes further runs into the panel's edge (it is clipped there)."""
    lo, hi = min([0.0, *values]), max([0.0, *values])
    reach = 0.5 * max(hi - lo, 0.05)
    lo = min(lo, max(min((b[0] for b in bars), default=lo), lo - reach))
    hi = max(hi, min(max((b[1] for b in bars), default=hi), hi + reach))
    pad = max(0.02, pad_frac * (hi - lo))
    return lo - pad, hi + pad


def _limits(ax, points: list[Point]) -> None:
    """Keep both zero lines and every point in view, with room around the points for their numbers."""
    ax.set_xlim(*axis_range([p.x for p in points], [p.xbar for p in points], 0.12))
    ax.set_ylim(*axis_range([p.y for p in points], [p.ybar for p in points], 0.12))


# Label positions tried around a point, nearest first: 8 directions x growing distances (pixels).
_DIRS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
_RINGS = (0.0, 5.0, 11.0, 18.0, 27.0, 38.0, 52.0, 70.0)
_CAND = np.array([(dx, dy, ring) for ring in _RINGS for dx, dy in _DIRS], dtype=float)


def _place_labels(ax, fig, renderer, points: list[Point], number: dict) -> None:
    """Number each point where the number overlaps no other number, no marker, and stays inside the panel.

    Points of one regime drawn on the same spot (common: no change at all) share one label, "1,3,8", instead of
    fanning out numbers whose owner a reader could not tell. All candidate spots of a label are tested against
    all obstacles in one array operation, so thousands of points stay fast.
    """
    from matplotlib.collections import LineCollection

    if len(points) > MAX_LABELS_PER_PANEL:
        ax.text(0.01, 0.99, f"{len(points)} points: too many to number", transform=ax.transAxes, fontsize=7,
                va="top", color="0.3")
        return
    inside = ax.get_window_extent(renderer)
    centers = ax.transData.transform(np.array([(p.x, p.y) for p in points]))
    rad = MARKER_SIZE / 2 * DPI / 72 + 1.0   # marker half-size in pixels, plus a hair
    spots: dict[tuple, list[int]] = {}
    for i, p in enumerate(points):
        spots.setdefault((p.regime, round(centers[i][0] / 2), round(centers[i][1] / 2)), []).append(i)
    # Obstacles: every marker, then each placed label grown by GAP pixels (so "4" next to "2" never reads "42").
    obstacles = np.empty((len(points) + len(spots), 4))
    obstacles[:len(points)] = np.column_stack([centers - rad, centers + rad])
    n_obs = len(points)
    sizes: dict[str, tuple[float, float]] = {}
    leaders, leader_colors = [], []
    skipped = 0
    for (regime, _, _), members in spots.items():
        text = ",".join(str(n) for n in sorted({number[points[i].model] for i in members}))
        if text not in sizes:
            sizes[text] = _text_size(fig, renderer, text, LABEL_SIZE, "bold")
        tw, th = sizes[text]
        cx, cy = centers[members[0]]
        # the label's centre for each candidate: its near edge sits `ring` pixels beyond the marker's edge
        lx = cx + _CAND[:, 0] * (rad + _CAND[:, 2] + tw / 2)
        ly = cy + _CAND[:, 1] * (rad + _CAND[:, 2] + th / 2)
        boxes = np.column_stack([lx - tw / 2, ly - th / 2, lx + tw / 2, ly + th / 2])
        ok = ((boxes[:, 0] >= inside.x0) & (boxes[:, 2] <= inside.x1) & (boxes[:, 1] >= inside.y0)
              & (boxes[:, 3] <= inside.y1))
        obs = obstacles[:n_obs]
        hit = ((obs[None, :, 0] < boxes[:, None, 2]) & (obs[None, :, 2] > boxes[:, None, 0])
               & (obs[None, :, 1] < boxes[:, None, 3]) & (obs[None, :, 3] > boxes[:, None, 1])).any(axis=1)
        free = np.flatnonzero(ok & ~hit)
        if not len(free):
            skipped += len(members)
            continue
        k = int(free[0])
        obstacles[n_obs] = boxes[k] + np.array([-GAP, -GAP, GAP, GAP])
        n_obs += 1
        p = points[members[0]]
        ax.annotate(text, (p.x, p.y), xytext=(lx[k] - cx, ly[k] - cy), textcoords="offset pixels", ha="center",
                    va="center", fontsize=LABEL_SIZE, color=COLORS[regime], fontweight="bold", gid=LABEL_GID,
                    zorder=4, annotation_clip=False)
        if _CAND[k, 2] >= _RINGS[2]:
            # a leader line once the label is not next to its point: from the marker's edge to the label's edge
            dx, dy = _CAND[k, 0], _CAND[k, 1]
            norm = math.hypot(dx, dy)
            start = (cx + dx / norm * rad, cy + dy / norm * rad)
            end = (lx[k] - dx * tw / 2, ly[k] - dy * th / 2)
            leaders.append(ax.transData.inverted().transform([start, end]))
            leader_colors.append(COLORS[regime])
    if leaders:
        ax.add_collection(LineCollection(leaders, colors=leader_colors, linewidths=0.6, alpha=0.8, zorder=2),
                          autolim=False)
    if skipped:
        ax.text(0.01, 0.99, f"{skipped} point(s) unnumbered (crowded)", transform=ax.transAxes, fontsize=7,
                va="top", color="0.3")


def draw(board: Leaderboard, path: Path) -> Path:
    """Write the plot to ``path`` (PNG) and return it. Uses Agg directly: no display, no global pyplot state."""
    import matplotlib.style

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Saved under the default style too: a user's savefig.bbox = tight or savefig.dpi would change the picture.
    with matplotlib.style.context("default"):
        fig = figure(board)
        # No "Software" entry (it names the matplotlib version); PNG output has no timestamp otherwise.
        fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path
