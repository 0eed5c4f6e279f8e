"""The leaderboard's estimators: a quantity over seeds with its 95% interval, and the paper's % change.

Every mean carries a 95% interval: over seeds (Student t, paired by seed for changes) with two or more seeds, or
the run's bootstrap over test images with one. The % changes are the paper's Table 2 estimator: the change of the
seed-averaged means relative to the seed-averaged baseline (over the seeds both have), not a mean of per-seed
ratios (biased upwards when the baseline is small).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cached_property

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Stat:
    """Per-seed values of one quantity, with the seeds they came from (sorted), and a 95% interval of the mean."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    ci: tuple[float, float] | None = None   # 95% interval of the mean (see ci_method); None if there is none
    ci_method: str | None = None            # "t over seeds" | "bootstrap over test images" | "paired bootstrap ..."
    p_value: float | None = None            # changes over >= 2 seeds: paired t-test of "no change"

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


def t_interval(values: tuple[float, ...]) -> tuple[tuple[float, float], float]:
    """(95% Student-t interval of the mean, two-sided p-value of mean 0); needs at least two values."""
    # scipy.special's Student-t functions are what scipy.stats.t.ppf/sf call, without the per-call argument
    # handling that made them most of the leaderboard's time at 10,000 runs (and scipy.stats' import).
    from scipy.special import stdtr, stdtrit

    n = len(values)
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(n)
    if se == 0:  # identical values: no spread to test against
        return (mean, mean), (1.0 if mean == 0 else 0.0)
    half = float(stdtrit(n - 1, (1 + CI_LEVEL) / 2)) * se
    return (mean - half, mean + half), float(2 * stdtr(n - 1, -abs(mean / se)))


def stat_of(pairs: list[tuple[int, float | None]], cis: dict[int, tuple[float, float] | None] | None = None,
          one_seed_method: str = "bootstrap over test images", paired: bool = False) -> Stat | None:
    """A Stat from (seed, value) pairs; None if there are none, or if any value is undefined (a zero baseline).

    The interval: Student t over seeds with two or more (with a p-value for ``paired`` changes), else the one
    run's own bootstrap interval from ``cis`` (by seed), if it has one.
    """
    if not pairs or any(v is None for _, v in pairs):
        return None
    pairs = sorted(pairs)
    seeds, values = tuple(s for s, _ in pairs), tuple(v for _, v in pairs)
    if len(values) > 1:
        ci, p = t_interval(values)
        return Stat(seeds, values, ci, "t over seeds", p if paired else None)
    ci = (cis or {}).get(seeds[0])
    return Stat(seeds, values, ci, one_seed_method if ci is not None else None)


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
