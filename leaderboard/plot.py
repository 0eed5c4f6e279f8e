"""Draw the richness-vs-gain plot (:mod:`.scatter`) as a PNG of small multiples, with matplotlib.

Points carry the model's number from the key below the panels; each number is placed next to its point where it
overlaps no other number, no marker and stays inside the panel (a greedy search over positions around the point,
measured with the renderer), so labels never overprint however many models there are. A point with no free spot
nearby stays unnumbered, and its panel says how many.

Only aggregated points are drawn (one per row and regime, never per run), with one matplotlib call per marker
group, so thousands of result folders plot in seconds. Same results -> same PNG bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scatter import (
    COLORS,
    NOTHING,
    QUADRANTS,
    TITLE,
    X_AXIS,
    Y_AXIS,
    Panel,
    Point,
    key_texts,
    legend_of,
    markers_of,
    numbers_of,
    panels_of,
    points_of,
)
from .table import Leaderboard

DPI = 100
# Layout in inches, fixed before any label is placed (a later tight_layout would move the panels).
PANEL_W, PANEL_H = 4.0, 3.2
LEFT, RIGHT, TITLE_H, WSPACE, HSPACE = 0.8, 0.3, 0.55, 0.8, 0.75
TITLE_SIZE, TITLE_ROW, TITLE_MARGIN = 12.0, 0.22, 0.15   # points; inches per further title line; inches each side
LEGEND_ROW = 0.24
KEY_ROW, KEY_PAD = 0.2, 0.55
MAX_COLS = 3
MARKER_SIZE = 7.0          # points
LABEL_SIZE = 8.0           # points
MAX_LABELS_PER_PANEL = 80  # beyond this a panel is a cloud (numbers unreadable); numbering it only costs time
LABEL_GID = "point-label"  # tests find the labels by this id
GAP = 3.0                  # pixels kept free between two labels
# matplotlib's default style, whatever the user's matplotlibrc says; and text drawn as it is: a "$" in a model
# folder's name would otherwise start mathtext, and "a$\\x$" is a parse error that kills the plot.
STYLE = ["default", {"text.parse_math": False}]
GREY = "0.3"               # legend entries that have no regime colour
AXIS_PAD = 0.12            # room around the points for their numbers


@dataclass(frozen=True)
class Layout:
    cols: int
    rows: int
    key_rows: int
    key_cols: int
    key_col_w: float   # inches
    legend_rows: int
    title: tuple[str, ...] = (TITLE,)   # the title's lines, wrapped to the figure's width

    @property
    def top(self) -> float:
        return self.title_h + self.legend_rows * LEGEND_ROW + 0.35

    @property
    def title_h(self) -> float:
        """Inches from the figure's top edge down to the legend: the title's lines."""
        return TITLE_H + (len(self.title) - 1) * TITLE_ROW

    @property
    def size(self) -> tuple[float, float]:
        w = LEFT + self.cols * PANEL_W + (self.cols - 1) * WSPACE + RIGHT
        h = self.top + self.rows * PANEL_H + (self.rows - 1) * HSPACE + HSPACE + KEY_PAD + self.key_rows * KEY_ROW
        return w, h

    def panel_box(self, i: int) -> tuple[float, float, float, float]:
        """The i-th panel's axes rectangle in figure fractions (left, bottom, width, height)."""
        w, h = self.size
        r, c = divmod(i, self.cols)
        x0 = LEFT + c * (PANEL_W + WSPACE)
        y0 = h - self.top - PANEL_H - r * (PANEL_H + HSPACE)
        return (x0 / w, y0 / h, PANEL_W / w, PANEL_H / h)

    @property
    def key_top(self) -> float:
        """Inches from the bottom where the key below the panels starts."""
        return self.size[1] - self.top - self.rows * PANEL_H - (self.rows - 1) * HSPACE - HSPACE


def figure_width(n_panels: int) -> float:
    """Inches: the panels side by side (at most MAX_COLS) with their margins."""
    cols = max(1, min(MAX_COLS, n_panels))
    return LEFT + cols * PANEL_W + (cols - 1) * WSPACE + RIGHT


def _layout(n_panels: int, key_widths: list[float], n_handles: int, title: tuple[str, ...] = (TITLE,)) -> Layout:
    cols = max(1, min(MAX_COLS, n_panels))
    rows = max(1, math.ceil(n_panels / cols))
    width = figure_width(n_panels)
    col_w = (max(key_widths) + 0.35) if key_widths else 1.0
    key_cols = max(1, min(len(key_widths) or 1, int((width - LEFT - RIGHT) // col_w)))
    key_rows = math.ceil(len(key_widths) / key_cols) if key_widths else 0
    return Layout(cols, rows, key_rows, key_cols, col_w, math.ceil(n_handles / _legend_cols(cols, n_handles)),
                  title)


def wrap(text: str, width: float, measure) -> tuple[str, ...]:
    """``text`` in lines no wider than ``width`` (as ``measure`` gives a line's width), broken between words; a
    single word wider than that keeps a line of its own."""
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}" if current else word
        if current and measure(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return (*lines, current)


def _legend_cols(cols: int, n_handles: int) -> int:
    return max(1, min(n_handles, 3 * cols - 2))


def _measured_layout(n_panels: int, key_text: list[str], n_handles: int) -> Layout:
    """The layout, with the key's columns as wide as its widest text measured by the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    probe = Figure(dpi=DPI)
    FigureCanvasAgg(probe)
    renderer = probe.canvas.get_renderer()
    key_widths = [_text_size(probe, renderer, t, 8.5)[0] / DPI for t in key_text]
    # The title fits the figure's width (one panel is narrower than the title's one line).
    room = (figure_width(n_panels) - 2 * TITLE_MARGIN) * DPI
    title = wrap(TITLE, room, lambda line: _text_size(probe, renderer, line, TITLE_SIZE)[0])
    return _layout(n_panels, key_widths, n_handles, title)


def figure(board: Leaderboard):
    """The figure (Agg canvas attached, labels placed). ``draw`` saves it; tests measure it."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = points_of(board)
    panels = panels_of(points)
    key_text = key_texts(points)
    # The default style, whatever the user's matplotlibrc says, so the same results give the same picture.
    with matplotlib.style.context(STYLE):
        lay = _measured_layout(len(panels), key_text, len(legend_of(points)))
        w, h = lay.size
        fig = Figure(figsize=(w, h), dpi=DPI)
        FigureCanvasAgg(fig)
        fig.suptitle("\n".join(lay.title), y=1 - 0.22 / h, fontsize=TITLE_SIZE)
        _legend(fig, points, lay)
        if not panels:
            _empty_panel(fig, lay)
        marker, number = markers_of(points), numbers_of(points)
        for i, panel in enumerate(panels):
            _panel(fig.add_axes(lay.panel_box(i)), panel, marker=marker, number=number)
        _key(fig, lay, key_text)
    return fig


def _legend(fig, points: list[Point], lay: Layout) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker=e.marker, color=e.color or GREY,
                      markerfacecolor="none" if e.hollow else None,
                      label=f"projector: {e.text}" if e.family else e.text) for e in legend_of(points)]
    if handles:
        h = lay.size[1]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - (lay.title_h - 0.15) / h),
                   ncol=_legend_cols(lay.cols, len(handles)), fontsize=8.5, frameon=False)


def _empty_panel(fig, lay: Layout) -> None:
    ax = fig.add_axes(lay.panel_box(0))
    ax.text(0.5, 0.5, NOTHING, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _key(fig, lay: Layout, key_text: list[str]) -> None:
    """The key: model numbers, in columns below the panels."""
    w, h = lay.size
    if key_text:
        fig.text(LEFT / w, lay.key_top / h, "Key: point numbers", fontsize=9, fontweight="bold", va="top")
    for j, text in enumerate(key_text):
        r, c = j % lay.key_rows, j // lay.key_rows
        fig.text((LEFT + c * lay.key_col_w) / w, (lay.key_top - 0.3 - r * KEY_ROW) / h, text, fontsize=8.5,
                 va="top")


def _text_size(fig, renderer, text: str, size: float, weight: str = "normal") -> tuple[float, float]:
    t = fig.text(0, 0, text, fontsize=size, fontweight=weight)
    bb = t.get_window_extent(renderer)
    t.remove()
    return bb.width, bb.height


def _error_bars(ax, points: tuple[Point, ...]) -> None:
    """Error bars of the whole panel as one collection: errorbar() per point or group builds many artists and
    dominates the time with thousands of points."""
    from matplotlib.collections import LineCollection

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


def _panel(ax, panel: Panel, *, marker: dict, number: dict) -> None:
    ax.axhline(QUADRANTS[1], color="0.5", linewidth=0.8, linestyle="--", zorder=0)
    ax.axvline(QUADRANTS[0], color="0.5", linewidth=0.8, linestyle="--", zorder=0)
    _error_bars(ax, panel.points)
    # Markers as one plot call per (family, regime, limited).
    groups: dict[tuple, list[Point]] = {}
    for p in panel.points:
        groups.setdefault((p.family, p.regime, p.hollow), []).append(p)
    for (family, regime, limited), ps in sorted(groups.items()):
        color = COLORS[regime]
        ax.plot([p.x for p in ps], [p.y for p in ps], linestyle="none", marker=marker[family], color=color,
                markerfacecolor="white" if limited else color, markersize=MARKER_SIZE, zorder=3)
    # Both zero lines and every point in view, with room around the points for their numbers.
    (x0, x1), (y0, y1) = panel.ranges(AXIS_PAD)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(X_AXIS[1], fontsize=8.5)
    ax.set_ylabel(Y_AXIS[1], fontsize=8.5)
    ax.tick_params(labelsize=8)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    _place_labels(ax, list(panel.points), number)


# Label positions tried around a point, nearest first: 8 directions x growing distances (pixels).
_DIRS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
_RINGS = (0.0, 5.0, 11.0, 18.0, 27.0, 38.0, 52.0, 70.0)
_CAND = np.array([(dx, dy, ring) for ring in _RINGS for dx, dy in _DIRS], dtype=float)


def _place_labels(ax, points: list[Point], number: dict) -> None:
    """Number each point where the number overlaps no other number, no marker, and stays inside the panel.

    Points of one regime drawn on the same spot (common: no change at all) share one label, "1,3,8", instead of
    fanning out numbers whose owner a reader could not tell. All candidate spots of a label are tested against
    all obstacles in one array operation, so thousands of points stay fast.
    """
    if len(points) > MAX_LABELS_PER_PANEL:
        ax.text(0.01, 0.99, f"{len(points)} points: too many to number", transform=ax.transAxes, fontsize=7,
                va="top", color=GREY)
        return
    renderer = ax.figure.canvas.get_renderer()
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
    leaders, leader_colors, skipped = [], [], 0
    for (regime, _, _), members in spots.items():
        text = ",".join(str(n) for n in sorted({number[points[i].model] for i in members}))
        if text not in sizes:
            sizes[text] = _text_size(ax.figure, renderer, text, LABEL_SIZE, "bold")
        center = centers[members[0]]
        spot = _free_spot(center, sizes[text], rad=rad, inside=inside, obstacles=obstacles[:n_obs])
        if spot is None:
            skipped += len(members)
            continue
        k, box, label_at = spot
        obstacles[n_obs] = box + np.array([-GAP, -GAP, GAP, GAP])
        n_obs += 1
        p = points[members[0]]
        ax.annotate(text, (p.x, p.y), xytext=(label_at[0] - center[0], label_at[1] - center[1]),
                    textcoords="offset pixels", ha="center", va="center", fontsize=LABEL_SIZE,
                    color=COLORS[regime], fontweight="bold", gid=LABEL_GID, zorder=4, annotation_clip=False)
        if _CAND[k, 2] >= _RINGS[2]:
            leaders.append(ax.transData.inverted().transform(_leader(k, center, label_at, sizes[text], rad)))
            leader_colors.append(COLORS[regime])
    _finish_labels(ax, leaders, leader_colors, skipped)


def _free_spot(center, size: tuple[float, float], *, rad: float, inside, obstacles):
    """(candidate index, label box, label centre) of the nearest spot for a label of ``size`` pixels around the
    marker at ``center`` that stays ``inside`` and hits no obstacle; None if there is none."""
    cx, cy = center
    tw, th = size
    # the label's centre for each candidate: its near edge sits `ring` pixels beyond the marker's edge
    lx = cx + _CAND[:, 0] * (rad + _CAND[:, 2] + tw / 2)
    ly = cy + _CAND[:, 1] * (rad + _CAND[:, 2] + th / 2)
    boxes = np.column_stack([lx - tw / 2, ly - th / 2, lx + tw / 2, ly + th / 2])
    ok = ((boxes[:, 0] >= inside.x0) & (boxes[:, 2] <= inside.x1) & (boxes[:, 1] >= inside.y0)
          & (boxes[:, 3] <= inside.y1))
    obs = obstacles
    hit = ((obs[None, :, 0] < boxes[:, None, 2]) & (obs[None, :, 2] > boxes[:, None, 0])
           & (obs[None, :, 1] < boxes[:, None, 3]) & (obs[None, :, 3] > boxes[:, None, 1])).any(axis=1)
    free = np.flatnonzero(ok & ~hit)
    if not len(free):
        return None
    k = int(free[0])
    return k, boxes[k], (lx[k], ly[k])


def _leader(k: int, center, label_at, size: tuple[float, float], rad: float) -> list[tuple[float, float]]:
    """A leader line (pixels) for a label not next to its point: from the marker's edge to the label's edge."""
    cx, cy = center
    tw, th = size
    dx, dy = _CAND[k, 0], _CAND[k, 1]
    norm = math.hypot(dx, dy)
    start = (cx + dx / norm * rad, cy + dy / norm * rad)
    end = (label_at[0] - dx * tw / 2, label_at[1] - dy * th / 2)
    return [start, end]


def _finish_labels(ax, leaders: list, leader_colors: list[str], skipped: int) -> None:
    from matplotlib.collections import LineCollection

    if leaders:
        ax.add_collection(LineCollection(leaders, colors=leader_colors, linewidths=0.6, alpha=0.8, zorder=2),
                          autolim=False)
    if skipped:
        ax.text(0.01, 0.99, f"{skipped} point(s) unnumbered (crowded)", transform=ax.transAxes, fontsize=7,
                va="top", color=GREY)


def draw(board: Leaderboard, path: Path) -> Path:
    """Write the plot to ``path`` (PNG) and return it. Uses Agg directly: no display, no global pyplot state."""
    import matplotlib.style

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Saved under the default style too: a user's savefig.bbox = tight or savefig.dpi would change the picture.
    with matplotlib.style.context(STYLE):
        fig = figure(board)
        # No "Software" entry (it names the matplotlib version); PNG output has no timestamp otherwise.
        fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path
