"""The one set of decision rules. Whatever measures the noise (an interval of one pair of runs, a
signed-rank test on interleaved A/B pairs, a history's run-to-run spread), a case is called a
regression only when that measure says slower and the slowdown reaches the minimum effect; where a
history exists, its window of runs is that measure; a case measured under contention gets no verdict
at all. compare, ab, gate-check, plots and the report all decide here; plots only draw what
was decided."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from imgbench.core import table

REGRESSION, IMPROVEMENT, UNCHANGED, NOISY = ("regression", "improvement", "unchanged",
                                             "too noisy to say")
# other processes took the CPUs: the interval is tight and wrong
CONTENDED = "measured under contention"
# a paired A/B's information tier: significantly slower by the minimum effect, but not gated
SLOWER_INFO = "slower (information tier: not gated)"
# compare without a history bound for the case: one pair of runs cannot tell a change from the
# day-to-day spread of a machine (nominal 99% intervals covered 71-82% below 3 history runs here)
SLOWER_NO_HISTORY = "slower (no history: information only)"
VERDICTS = (REGRESSION, IMPROVEMENT, UNCHANGED, NOISY, CONTENDED)


@dataclass(frozen=True)
class History:
    ratio: float    # the candidate's median over the history's median
    low: float      # smallest usual ratio for this machine (stats.history_interval)
    bound: float    # largest usual ratio


@dataclass(frozen=True)
class Verdict:
    name: str
    test: str
    base_median: float
    cand_median: float
    ratio: float                  # candidate / baseline median: > 1 is slower
    ci: tuple[float, float] | None  # interval of the ratio; None without per-round data
    history_ratio: float | None   # candidate / the history's median, for machine classes with
                                  # history
    history_bound: float | None   # largest history_ratio the history's run-to-run spread allows
    min_effect: float
    verdict: str
    kind: str = "time"            # "time": medians in seconds; "speedup": GPU-over-CPU speedups
    why: str | None = None        # why there is no verdict (CONTENDED: which run, how much of the
                                  # CPUs)
    detectable: float | None = None  # the smallest slowdown this comparison would have called a
                                     # regression with 90% power (0.041: 4.1%)
    level: float | None = None    # compare: the case's Holm level (its interval's and bound's)


def judge(ratio: float, effect: float, slower: bool, faster: bool, ci: tuple[float, float] | None,
          history: History | None = None) -> str:
    """`slower` / `faster`: whether the measure of noise says so (an interval above / below 1, or a
    significant one-sided test). Where a history exists it is the reference instead: its window of
    runs pins the machine's level far better than one baseline run, so slower means beyond the
    history's bound and the minimum effect is measured against the history's median. Regression:
    slower by the minimum effect; improvement the mirror image. Unchanged: the interval rules out
    the minimum effect either way. With neither an interval nor a history there is no measure of
    noise, so nothing is decided."""
    if ci is None and history is None:
        return NOISY
    if history is not None:
        ratio, slower, faster = (history.ratio, history.ratio > history.bound,
                                 history.ratio < history.low)
    if slower and ratio >= 1 + effect:
        return REGRESSION
    if faster and ratio <= 1 / (1 + effect):
        return IMPROVEMENT
    if ci is not None and ci[0] >= 1 / (1 + effect) and ci[1] <= 1 + effect:
        return UNCHANGED
    if ci is None and history.low <= history.ratio <= history.bound and abs(ratio - 1) < effect:
        return UNCHANGED
    return NOISY


def by_interval(ratio: float, ci: tuple[float, float] | None, effect: float,
                history: History | None = None) -> str:
    """judge, the interval (or, without one, the ratio itself against the history) saying slower or
    faster."""
    lo, hi = ci if ci else (ratio, ratio)
    return judge(ratio, effect, lo > 1, hi < 1, ci, history)


def contended(v: Verdict, why: str | None) -> Verdict:
    """No verdict on a case measured under contention (`why`, from contention.flag; None: it was
    not): its figures stay in the table, the verdict says why it is not judged."""
    return v if why is None else replace(v, verdict=CONTENDED, why=why, detectable=None)


def counts(verdicts: list, kinds=VERDICTS) -> dict[str, int]:
    """How many of `verdicts` (anything with a .verdict: Verdict, memory.MemoryVerdict) say each of
    `kinds`."""
    return {k: sum(v.verdict == k for v in verdicts) for k in kinds}


def render(verdicts: list[Verdict], markdown: bool = False) -> str:
    """The verdicts' table; with a "could detect" column where they say what they could have seen
    (a gated case that could not see its minimum effect is marked so)."""
    head = ["case", "baseline", "candidate", "ratio", "interval", "vs history (bound)", "verdict"]
    seen = any(v.detectable is not None for v in verdicts)
    rows = []
    for v in verdicts:
        row = [v.name, _value(v, v.base_median), _value(v, v.cand_median), f"{v.ratio:.3f}",
               f"{v.ci[0]:.3f}-{v.ci[1]:.3f}" if v.ci else "-",
               f"{v.history_ratio:.3f} ({v.history_bound:.3f})" if v.history_bound else "-",
               v.verdict]
        if seen:
            row.append(detectable(v))
        rows.append(row)
    return table.render(head + ["could detect"] * seen, rows, markdown)


def detectable(v: Verdict) -> str:
    """'>= 4.1%', and '(above the minimum effect)' where this job could not see its minimum effect
    with 90% power."""
    if v.detectable is None:
        return "-"
    if not math.isfinite(v.detectable):
        return "nothing (too few pairs)"
    above = " (above the minimum effect)" if v.detectable > v.min_effect else ""
    return f">= {v.detectable:.1%}{above}"


def _value(v: Verdict, x: float) -> str:
    return f"{x:.2f}x" if v.kind == "speedup" else table.seconds(x)
