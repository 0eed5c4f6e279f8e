"""The leaderboard's estimators: a quantity over seeds with its 95% interval, and the paper's % change.

Every mean over seeds carries the hierarchical bootstrap interval of its runs' stored test predictions
(:mod:`.resample`: seeds, then probe seeds, then test images within class, stratified BCa), the same method for
any seed count. Where the predictions are not there (older results, or quantities whose predictions no run
keeps: controls, baselines), the older method stands in and is marked: Student t over seeds with two or more
seeds (no interval where the seeds agree exactly: zero spread is not certainty), else the run's own recorded
interval. The % changes are the paper's Table 2 estimator: the change of the seed-averaged means relative to the
seed-averaged baseline (over the seeds both have), not a mean of per-seed ratios (biased upwards when the
baseline is small).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from benchmark.evaluate.intervals import METHOD, SMALL_CLASS_N

CI_LEVEL = 0.95
OLDER_T = "t over seeds"                       # the older methods, for results without predictions
OLDER_BOOTSTRAP = "unstratified bootstrap over test images"


@dataclass(frozen=True)
class Interval:
    """A 95% interval of a mean over seeds, and how it was made."""

    ci: tuple[float, float]
    method: str
    p_value: float | None = None        # changes: two-sided p-value of "no change"
    min_class_n: int | None = None      # test images of the smallest class, where known
    older: bool = False                 # made by an older method (t over seeds / unstratified bootstrap)

    @property
    def small_classes(self) -> bool:
        return self.min_class_n is not None and self.min_class_n < SMALL_CLASS_N


@dataclass(frozen=True)
class Stat:
    """Per-seed values of one quantity, with the seeds they came from (sorted), and a 95% interval of the mean.

    ``source``: the hierarchical bootstrap over the runs' predictions, computed on first use (a cell that is
    never rendered never reads them); ``fallback``: the interval where that gives none.
    """

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    fallback: Interval | None = None
    source: Callable[[], dict | None] | None = field(default=None, compare=False, repr=False)
    mark: str = ""                      # a note on the value itself (e.g. an older control), shown after it

    @property
    def n(self) -> int:
        return len(self.values)

    # cached: every format asks for them per cell, and stdev's exact (Fraction) arithmetic is slow at scale.
    @cached_property
    def mean(self) -> float:
        # statistics.fmean sums exactly (fsum): the result does not depend on summation order.
        return statistics.fmean(self.values)

    @cached_property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None for a single seed (there is no spread to report)."""
        return statistics.stdev(self.values) if self.n > 1 else None

    @cached_property
    def interval(self) -> Interval | None:
        got = self.source() if self.source is not None else None
        if got is None:
            return self.fallback
        return Interval((got["ci95"][0], got["ci95"][1]), got["method"], got.get("p_value"), got["min_class_n"])

    @property
    def ci(self) -> tuple[float, float] | None:
        return None if self.interval is None else self.interval.ci

    @property
    def ci_method(self) -> str | None:
        return None if self.interval is None else self.interval.method

    @property
    def p_value(self) -> float | None:
        return None if self.interval is None else self.interval.p_value

    @property
    def includes_zero(self) -> bool | None:
        """Whether the interval contains 0 (a change not told apart from none); None without an interval."""
        return None if self.ci is None else self.ci[0] <= 0.0 <= self.ci[1]


@dataclass(frozen=True)
class Ratio:
    """A % change in the paper's Table 2 form: 100 * (mean(new) - mean(base)) / mean(base), over paired seeds.

    Duck-types :class:`Stat` for rendering (``mean``, ``std``, ``n``, ``seeds``); there is no per-seed spread.
    """

    seeds: tuple[int, ...]
    new_mean: float
    base_mean: float
    mark: str = ""                      # a note on the value itself, as :attr:`Stat.mark`
    ci = None
    ci_method = None
    p_value = None
    includes_zero = None
    std = None

    @property
    def mean(self) -> float:
        return 100.0 * (self.new_mean - self.base_mean) / self.base_mean

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def values(self) -> tuple[float, ...]:
        return ()


def t_interval(values: tuple[float, ...]) -> tuple[tuple[float, float], float] | None:
    """(95% Student-t interval of the mean, two-sided p-value of mean 0); needs at least two values. None when
    the values are all equal: zero spread over seeds that share one test split is not a zero-width interval."""
    # scipy.special's Student-t functions are what scipy.stats.t.ppf/sf call, without the per-call argument
    # handling that made them most of the leaderboard's time at 10,000 runs (and scipy.stats' import).
    from scipy.special import stdtr, stdtrit

    n = len(values)
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(n)
    if se == 0:
        return None
    half = float(stdtrit(n - 1, (1 + CI_LEVEL) / 2)) * se
    return (mean - half, mean + half), float(2 * stdtr(n - 1, -abs(mean / se)))


def stat_of(pairs: list[tuple[int, float | None]], cis: dict[int, Interval | None] | None = None, *,
            paired: bool = False, source=None, mark: str = "") -> Stat | None:
    """A Stat from (seed, value) pairs; None if there are none, or if any value is undefined (a zero baseline).

    ``source``: the hierarchical interval (see :class:`Stat`). The fallback: with two or more seeds the older
    Student t over seeds (a p-value for ``paired`` changes); with one, the run's own recorded interval from
    ``cis`` (by seed).
    """
    if not pairs or any(v is None for _, v in pairs):
        return None
    pairs = sorted(pairs)
    seeds, values = tuple(s for s, _ in pairs), tuple(v for _, v in pairs)
    fallback = (cis or {}).get(seeds[0])
    if len(values) > 1:
        t = t_interval(values)
        fallback = None if t is None else Interval(t[0], OLDER_T, t[1] if paired else None, older=True)
    return Stat(seeds, values, fallback, source, mark)


def recorded(ci: tuple[float, float] | None, schema_version: int, min_class_n: int | None = None):
    """A run's own recorded interval: the stratified BCa one from schema 3 on, an unstratified bootstrap before."""
    if ci is None:
        return None
    if schema_version >= 3:
        return Interval(ci, METHOD, min_class_n=min_class_n)
    return Interval(ci, OLDER_BOOTSTRAP, older=True)


def ratio_of(pairs: list[tuple[int, float, float]]) -> Ratio | None:
    """The % change of seed-averaged means from (seed, new, base) triples; None if none, or a zero baseline."""
    if not pairs:
        return None
    pairs = sorted(pairs)
    base = statistics.fmean(b for _, _, b in pairs)
    if base == 0:
        return None
    return Ratio(tuple(s for s, _, _ in pairs), statistics.fmean(n for _, n, _ in pairs), base)


def pct_change(new: float, base: float) -> float | None:
    """Relative change in percent (the paper's Table 2 form); undefined when the baseline is 0."""
    return None if base == 0 else 100.0 * (new - base) / base
