"""The richness-vs-gain plot as data: points, panels, axes, legend and the number key, for any back-end.

One point per (model, task, fine-tuned regime): x = task gain, y = richness change of the post-projection
embeddings, the mean over seeds; its error bars are the mean's 95% interval where the results carry one, else
± std. One panel per task (full or limited). Marker shape = projector family, colour = regime, hollow = limited
run. The paper's claim reads off the quadrants the zero lines cut: right of 0 and below 0 = the task gained
while the projector's output lost domain information.

:mod:`.plot` draws this model as a PNG (matplotlib) and :mod:`.html.plot` as inline SVG, so both pictures show
the same points with the same bars, markers, colours and axis rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.schema import Regime

from .columns import REGIME_LABELS, number, spread, task_label
from .stats import Ratio, Stat
from .table import FINETUNED, Leaderboard, Row

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")   # matplotlib's names; SVG draws the same
COLORS = {Regime.FT_PROJ: "#1f77b4", Regime.FT_E2E: "#d62728", Regime.FT_E2E_LORA: "#ff7f0e"}   # by regime folder
TITLE = ("Richness of post-projection embeddings vs. task gain, per task (error bars: 95% interval where the "
         "results carry one, else ± std over seeds)")
X_AXIS = ("task gain", "task gain (F1 − zero-shot F1)")              # (short, long)
Y_AXIS = ("richness change", "richness change (probe − original)")
QUADRANTS = (0.0, 0.0)   # the zero lines (x, y): no task gain, no richness change
NOTHING = "no finished fine-tuned runs\nwith a zero-shot baseline"


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
    ci = getattr(s, "ci", None)
    if ci is not None:
        return f"95% interval [{number(ci[0], kind)}, {number(ci[1], kind)}]"
    return f"± {spread(s.std, kind)}" if s.std is not None else "(one seed, no interval)"


@dataclass(frozen=True)
class Point:
    model: str
    task: str
    limit: int | None
    regime: str   # folder: ft-proj, ft-e2e or ft-e2e-lora
    gain: Stat | Ratio
    richness: Stat | Ratio
    family: str

    @property
    def key(self) -> tuple:
        """(model, task, limit, regime folder): what a point stands for, unique on a board."""
        return (self.model, self.task, self.limit, self.regime)

    @property
    def x(self) -> float:
        return self.gain.mean

    @property
    def y(self) -> float:
        return self.richness.mean

    @property
    def xbar(self) -> tuple[float, float]:
        return error_bar(self.gain)

    @property
    def ybar(self) -> tuple[float, float]:
        return error_bar(self.richness)

    @property
    def hollow(self) -> bool:
        return self.limit is not None

    @property
    def label(self) -> str:
        return f"{self.model}/{task_label(self.task, self.limit)} {REGIME_LABELS[self.regime]}"

    @property
    def tip(self) -> str:
        """The point's values in words (a tooltip)."""
        return (f"{self.model} · {task_label(self.task, self.limit)} · {REGIME_LABELS[self.regime]} · {self.family}\n"
                f"gain {number(self.x, 'delta')} {bar_text(self.gain)}\n"
                f"richness {number(self.y, 'delta')} {bar_text(self.richness)}")


def point_of(row: Row, regime: str) -> Point | None:
    """A row's point in a fine-tuned regime; None without both a gain and a richness change (missing runs are
    listed in the leaderboard, there is nothing to place)."""
    gain, rich = row.gain[regime], row.richness[regime]
    if gain is None or rich is None:
        return None
    return Point(row.model, row.task, row.limit, row.folder(regime), gain, rich,
                 "+".join(row.projector_families) or "unknown")


def points_of(board: Leaderboard) -> list[Point]:
    """One point per fine-tuned regime of a row with both a gain and a richness change, in board order."""
    out: dict[tuple, Point] = {}
    for row in board.rows:
        for regime in FINETUNED:
            point = point_of(row, regime)
            if point is not None:
                # FT-Proj is shared by a model/task's full and LoRA rows: draw it once.
                out.setdefault(point.key, point)
    return list(out.values())


@dataclass(frozen=True)
class Panel:
    task: str
    limit: int | None
    points: tuple[Point, ...]

    @property
    def title(self) -> str:
        return task_label(self.task, self.limit)

    def ranges(self, pad_frac: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """The (x, y) axis ranges (see :func:`axis_range`)."""
        return (axis_range([p.x for p in self.points], [p.xbar for p in self.points], pad_frac),
                axis_range([p.y for p in self.points], [p.ybar for p in self.points], pad_frac))


def panels_of(points: list[Point]) -> list[Panel]:
    """One panel per task, full runs before limited ones, tasks in name order."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault((p.task, p.limit is not None, p.limit or 0), []).append(p)
    return [Panel(task, limit if limited else None, tuple(groups[(task, limited, limit)]))
            for task, limited, limit in sorted(groups)]


def markers_of(points: list[Point]) -> dict[str, str]:
    """Projector family -> marker shape, families in name order."""
    families = sorted({p.family for p in points})
    return {f: MARKERS[i % len(MARKERS)] for i, f in enumerate(families)}


@dataclass(frozen=True)
class LegendEntry:
    text: str
    marker: str
    color: str | None   # None: the back-end's neutral grey
    hollow: bool = False
    family: bool = False   # a projector family (the back-end may prefix it)


def legend_of(points: list[Point]) -> list[LegendEntry]:
    """Markers by family, colours by regime, and the hollow marker if any run is limited."""
    marker = markers_of(points)
    out = [LegendEntry(f, m, None, family=True) for f, m in marker.items()]
    out += [LegendEntry(REGIME_LABELS[r], "o", COLORS[r]) for r in COLORS if any(p.regime == r for p in points)]
    if any(p.hollow for p in points):
        out.append(LegendEntry("hollow: limited run", "o", None, hollow=True))
    return out


def numbers_of(points: list[Point]) -> dict[str, int]:
    """Model -> its number in the key (the PNG labels points with it), models in name order."""
    return {m: i + 1 for i, m in enumerate(sorted({p.model for p in points}))}


def key_texts(points: list[Point]) -> list[str]:
    """The key's lines: "number  model (projector families)"."""
    numbers = numbers_of(points)
    return [f"{n}  {m} ({', '.join(sorted({p.family for p in points if p.model == m}))})" for m, n in numbers.items()]


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


def ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k) covering [lo, hi]."""
    span = hi - lo
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    out = []
    k = first
    while k * step <= hi + 1e-9 * step:
        out.append(k * step)
        k += 1
    return out


def tick_text(v: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{v:.{decimals}f}"
    return "0" if float(text) == 0 else text
