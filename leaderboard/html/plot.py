"""Draw the richness-vs-gain plot (:mod:`..scatter`) as inline SVG small multiples, one panel per task.

The same points, error bars, markers, colours and axis rule as the PNG; each point is focusable, carries its
values as a tooltip and the id of its table line, so the page's script can show the line behind it.
"""

from __future__ import annotations

import math

from ..scatter import (
    COLORS,
    QUADRANTS,
    X_AXIS,
    Y_AXIS,
    Panel,
    Point,
    legend_of,
    markers_of,
    panels_of,
    tick_text,
    ticks,
)
from .tables import esc

# Marker shapes by matplotlib name (scatter.MARKERS), as SVG polygons in unit coordinates (y down); "o" is a circle.
SHAPES = {
    "o": None,
    "s": ((-1, -1), (1, -1), (1, 1), (-1, 1)),
    "^": ((0, -1.2), (1.1, 0.9), (-1.1, 0.9)),
    "D": ((0, -1.3), (1.1, 0), (0, 1.3), (-1.1, 0)),
    "v": ((0, 1.2), (1.1, -0.9), (-1.1, -0.9)),
    "P": ((-0.35, -1.1), (0.35, -1.1), (0.35, -0.35), (1.1, -0.35), (1.1, 0.35), (0.35, 0.35), (0.35, 1.1),
          (-0.35, 1.1), (-0.35, 0.35), (-1.1, 0.35), (-1.1, -0.35), (-0.35, -0.35)),
    "X": ((-0.8, -1.1), (0, -0.3), (0.8, -1.1), (1.1, -0.8), (0.3, 0), (1.1, 0.8), (0.8, 1.1), (0, 0.3),
          (-0.8, 1.1), (-1.1, 0.8), (-0.3, 0), (-1.1, -0.8)),
    "*": tuple((round(r * math.sin(a), 3), round(-r * math.cos(a), 3))
               for i in range(10) for r, a in ((1.3 if i % 2 == 0 else 0.55, math.pi * i / 5),)),
    "h": tuple((round(1.15 * math.sin(math.pi * i / 3), 3), round(-1.15 * math.cos(math.pi * i / 3), 3))
               for i in range(6)),
    "<": ((-1.2, 0), (0.9, -1.1), (0.9, 1.1)),
    ">": ((1.2, 0), (-0.9, -1.1), (-0.9, 1.1)),
}
GREY = "#444"
W, H = 330, 270
ML, MR, MT, MB = 52, 12, 26, 40
AXIS_PAD = 0.08
MARKER_R = 4.5


def marker_svg(shape: str, at: tuple[float, float], color: str, *, size: float = MARKER_R,
               hollow: bool = False) -> str:
    cx, cy = at
    fill = "#fff" if hollow else color
    style = f'fill="{fill}" stroke="{color}" stroke-width="1.4"'
    if SHAPES[shape] is None:
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{size:.1f}" {style}/>'
    pts = " ".join(f"{cx + size * dx:.1f},{cy + size * dy:.1f}" for dx, dy in SHAPES[shape])
    return f'<polygon points="{pts}" {style}/>'


class _Scale:
    """Data to pixels in one panel, clamped: an error bar beyond the axis range stops at the panel's edge."""

    def __init__(self, panel: Panel):
        # The same axis rule as the PNG: every point in view, very wide error bars clipped at the panel's edge.
        (self.x0, self.x1), (self.y0, self.y1) = panel.ranges(AXIS_PAD)
        self.pw, self.ph = W - ML - MR, H - MT - MB

    def x(self, v: float) -> float:
        return ML + (min(max(v, self.x0), self.x1) - self.x0) / (self.x1 - self.x0) * self.pw

    def y(self, v: float) -> float:
        return MT + (self.y1 - min(max(v, self.y0), self.y1)) / (self.y1 - self.y0) * self.ph


def _axes_svg(s: _Scale) -> list[str]:
    """Grid and tick labels, the zero lines that cut the quadrants, and the axis titles."""
    pw, ph = s.pw, s.ph
    out = []
    xt, yt = ticks(s.x0, s.x1), ticks(s.y0, s.y1)
    xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
    ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0
    for v in xt:
        out.append(f'<line class="grid" x1="{s.x(v):.1f}" x2="{s.x(v):.1f}" y1="{MT}" y2="{MT + ph}"/>'
                   f'<text class="tick" x="{s.x(v):.1f}" y="{MT + ph + 13}" text-anchor="middle">'
                   f'{tick_text(v, xstep)}</text>')
    for v in yt:
        out.append(f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{s.y(v):.1f}" y2="{s.y(v):.1f}"/>'
                   f'<text class="tick" x="{ML - 4}" y="{s.y(v) + 3:.1f}" text-anchor="end">'
                   f'{tick_text(v, ystep)}</text>')
    zx, zy = s.x(QUADRANTS[0]), s.y(QUADRANTS[1])
    out.append(f'<line class="zero" x1="{zx:.1f}" x2="{zx:.1f}" y1="{MT}" y2="{MT + ph}"/>'
               f'<line class="zero" x1="{ML}" x2="{ML + pw}" y1="{zy:.1f}" y2="{zy:.1f}"/>')
    out.append(f'<text class="axis" x="{ML + pw / 2:.1f}" y="{H - 6}" text-anchor="middle">{X_AXIS[0]}</text>'
               f'<text class="axis" transform="translate(12 {MT + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{Y_AXIS[0]}</text>')
    return out


def _point_svg(p: Point, s: _Scale, *, shape: str, line_id: int) -> str:
    color = COLORS[p.regime]
    cx, cy = s.x(p.x), s.y(p.y)
    bars = ""
    if p.xbar[0] != p.xbar[1]:
        bars += f'<line x1="{s.x(p.xbar[0]):.1f}" x2="{s.x(p.xbar[1]):.1f}" y1="{cy:.1f}" y2="{cy:.1f}"/>'
    if p.ybar[0] != p.ybar[1]:
        bars += f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{s.y(p.ybar[0]):.1f}" y2="{s.y(p.ybar[1]):.1f}"/>'
    return (f'<g class="pt" data-id="{line_id}" tabindex="0" stroke="{color}"><title>{esc(p.tip)}</title>'
            f'{bars}{marker_svg(shape, (cx, cy), color, hollow=p.hollow)}</g>')


def panel_svg(panel: Panel, marker: dict[str, str], line_ids: dict[tuple, int]) -> str:
    s = _Scale(panel)
    title = panel.title
    out = [f'<svg class="panel" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{esc(title)}: richness change vs task gain">',
           f'<text class="ptitle" x="{ML + s.pw / 2:.1f}" y="16" text-anchor="middle">{esc(title)}</text>',
           f'<rect x="{ML}" y="{MT}" width="{s.pw}" height="{s.ph}" class="frame"/>']
    out += _axes_svg(s)
    out += [_point_svg(p, s, shape=marker[p.family], line_id=line_ids[p.key]) for p in panel.points]
    out.append("</svg>")
    return "".join(out)


def _legend_html(points: list[Point]) -> str:
    out = []
    for entry in legend_of(points):
        out.append(f'<span class="key"><svg width="14" height="14" viewBox="0 0 14 14">'
                   f'{marker_svg(entry.marker, (7, 7), entry.color or GREY, hollow=entry.hollow)}</svg>'
                   f'{esc(entry.text)}</span>')
    return "".join(out)


def plots_html(points: list[Point], line_ids: dict[tuple, int]) -> str:
    """The panels with their legend; ``line_ids`` maps a point's key to its line in the table."""
    if not points:
        return "<p>No finished fine-tuned runs with a zero-shot baseline yet: nothing to plot.</p>"
    marker = markers_of(points)
    svgs = [panel_svg(panel, marker, line_ids) for panel in panels_of(points)]
    return (f'<p class="keys">Marker: projector family. Colour: regime. {_legend_html(points)}</p>'
            f'<div class="panels">{"".join(svgs)}</div>'
            '<p id="pt-detail" class="detail" aria-live="polite">Hover a point for its values; click it to '
            'show its line in the table with its runs.</p>')
