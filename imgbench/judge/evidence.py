"""One evidence rule for a comparison of runs (compare, the GPU-over-CPU speedup verdict, report):
per case the log ratio of medians with its autocorrelation-aware standard error (stats.log_ratio),
the between-run term from the history where it has 3 runs (counted once: the history's spread holds
a run's within-run noise already), the history's own bound where it exists, and
Holm's step-down across the cases of one comparison, so that a report of hundreds of cases keeps
its level for the whole run, not per case. numpy only."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from imgbench.judge import stats
from imgbench.judge.verdict import History

POWER = 0.9  # "could detect": the smallest slowdown called a regression this often


@dataclass(frozen=True)
class Evidence:
    """What one comparison knows of one case: `log` is (centre, se, df) of the log ratio (None
    without rounds on both sides); `history` the window's medians (at least 3, else None) and
    `cand` the candidate's median, judged against them."""
    log: tuple[float, float, float] | None
    history: tuple[float, ...] | None = None
    cand: float = math.nan

    def p_slower(self) -> float:
        """The p-value that says slower: against the history's spread where there is one (one-sided,
        as its bound), else the two-sided test of the interval (twice the one-sided p); 1 with
        neither."""
        if self.history is not None:
            mean, scale, df = self._spread
            return 1 - stats.t_cdf((self._from_level() - mean) / scale, df) if scale > 0 else (
                0.0 if self._from_level() > mean else 1.0)
        if self.log is not None:
            centre, se, df = self.log
            return min(1.0, 2 * (1 - stats.t_cdf(centre / se, df))) if se > 0 else float(
                centre <= 0)
        return 1.0

    def interval(self, alpha: float) -> tuple[float, float] | None:
        if self.log is None:
            return None
        centre, se, df = self.log
        half = stats.t_quantile(1 - alpha / 2, df) * se
        return math.exp(centre - half), math.exp(centre + half)

    def bounds(self, alpha: float) -> History | None:
        """The candidate over the history's median, and the one-sided (1 - alpha) prediction
        bounds of a run's ratio there (stats.history_interval)."""
        if self.history is None:
            return None
        low, high = stats.history_interval(self.history, alpha)
        return History(self.cand / float(np.median(self.history)), low, high)

    def detectable(self, alpha: float, effect: float) -> float:
        """The smallest slowdown called a regression with POWER at this level: the bound (history)
        or the interval's half width (without), plus POWER's quantile of the noise, and never below
        the minimum effect; inf with no measure of noise."""
        if self.history is not None:
            mean, scale, df = self._spread
            reach = mean + (stats.t_quantile(1 - alpha, df) + stats.t_quantile(POWER, df)) * scale
        elif self.log is not None:
            _, se, df = self.log
            reach = (stats.t_quantile(1 - alpha / 2, df) + stats.t_quantile(POWER, df)) * se
        else:
            return math.inf
        return max(math.expm1(reach), effect)

    @functools.cached_property  # p_slower, bounds and detectable each ask for it
    def _spread(self) -> tuple[float, float, int]:
        """The history's log medians about their median: mean, the prediction scale of one new run,
        degrees of freedom (as stats.history_interval)."""
        logs = np.log(np.asarray(self.history) / np.median(self.history))
        n = logs.size
        return float(logs.mean()), float(logs.std(ddof=1)) * math.sqrt(1 + 1 / n), n - 1

    def _from_level(self) -> float:
        return math.log(self.cand / float(np.median(self.history)))


def of_runs(base_rounds, cand_rounds, cand_median: float, history: list[float]) -> Evidence:
    """The evidence on one case from its rounds in two runs and its window's medians (judge.window;
    a bound and the between-run term need 3)."""
    hist = tuple(history) if len(history) >= 3 else None
    if not (_has(base_rounds) and _has(cand_rounds)):
        return Evidence(None, hist, cand_median)
    return Evidence(stats.log_ratio([cand_rounds], [base_rounds], stats.between_runs(history)),
                    hist, cand_median)


def _has(rounds) -> bool:
    return rounds is not None and len(rounds) > 0


def holm(ps: list[float], alpha: float) -> list[float]:
    """Holm's step-down: the level each p-value is tested at so that the chance of any false call
    among them stays alpha. Sorted ascending, the j-th is tested at alpha / (m - j) until the first
    that fails; it and every later one keep that failing level (none of them can pass it), so that
    each case's interval and bound, drawn at its level, say what was decided."""
    m = len(ps)
    levels = [0.0] * m
    level = alpha / m if m else alpha
    passing = True
    for j, i in enumerate(sorted(range(m), key=lambda i: ps[i])):
        if passing:
            level = alpha / (m - j)
            passing = ps[i] <= level
        levels[i] = level
    return levels
