"""The paired A/B policy, one for ab, gate-check and bisect: how a case's pair log-ratios become an
estimate, a test, an interval and the smallest slowdown the job could have caught.

A case's pairs all come from one pair of worker processes, and two processes of the same tree can
differ on their own for their whole lifetime (malloc state, memory layout: x0.95-1.05 measured
here for kerascnn's forward, the loader x0.88 once). The pairs cannot see that: it is one draw per
job. So the estimate's variance is the within-job part (from the pairs, through the Hodges-Lehmann
interval, robust to wild pairs) plus the between-process part, `process_sd` squared: the sd of the
log-ratio of two processes of the same tree, a property of the case and the machine (estimated by
`imgbench gate-check` from its A/A jobs; config.AB_PROCESS_SD by default). Tests and intervals use
Student's t with Welch-Satterthwaite degrees of freedom (the process term counts as known)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from imgbench.core.identity import on_accelerator
from imgbench.judge import stats

WITHIN_LEVEL = 0.05  # the Hodges-Lehmann interval the within-job standard error is read from
Z_WITHIN = 1.959964  # its normal quantile
POWER = 0.90         # "could detect": the slowdown caught this often


@dataclass(frozen=True)
class Estimate:
    """One case's log-ratio (candidate over base): centre, standard error with both terms, degrees
    of freedom, and the pairs themselves. Its test and interval are the more cautious of two: the
    t test on the total variance (which holds the process term) and the exact signed-rank test on
    the pairs alone (exact where few pairs make the t approximation too bold: 8 pairs cannot
    reach p < 2/256 whatever they read). Requiring both keeps the level of either."""
    centre: float
    se: float
    df: float
    pairs: int
    d: tuple = ()
    within: float = math.inf  # the standard error of the pairs' own noise, without the process term

    @property
    def p_slower(self) -> float:
        """One-sided p-value that the candidate is slower (1 without a finite standard error)."""
        if not self._measured:
            return 1.0
        return max(self._t_tail(self.centre), stats.signed_rank_greater(self.d) if self.d else 0.0)

    @property
    def p_faster(self) -> float:
        if not self._measured:
            return 1.0
        return max(self._t_tail(-self.centre),
                   stats.signed_rank_greater([-x for x in self.d]) if self.d else 0.0)

    def _t_tail(self, centre: float) -> float:
        """P(T >= centre / se); without any spread, 0 above 0 and 1 otherwise."""
        if self.se == 0:
            return 0.0 if centre > 0 else 1.0
        return 1 - stats.t_cdf(centre / self.se, self.df)

    @property
    def _measured(self) -> bool:
        return self.se < math.inf

    def interval(self, level: float) -> tuple[float, float]:
        """Two-sided (1 - level) interval of the ratio: the hull of the t interval and the exact
        Hodges-Lehmann one, so that a bound beyond 1 means both tests reject at level / 2."""
        half = stats.t_quantile(1 - level / 2, self.df) * self.se if self._measured else math.inf
        lo, hi = self.centre - half, self.centre + half
        if self.d:
            _, exact_lo, exact_hi = stats.hodges_lehmann(self.d, level)
            lo, hi = min(lo, exact_lo), max(hi, exact_hi)
        return math.exp(lo), math.exp(hi)

    def detectable(self, level: float) -> float:
        """The smallest slowdown (0.05: 5%) a one-sided test at `level` would find significant with
        chance POWER at this noise (the t test's; inf without a standard error)."""
        if not self._measured:
            return math.inf
        t = stats.t_quantile(1 - level, self.df) + stats.t_quantile(POWER, self.df)
        return math.expm1(t * self.se)


@dataclass(frozen=True)
class ProcessTerm:
    """The between-process sd a case's variance holds: the default (`accelerator` instead for a case
    whose id names an accelerator, where each process also autotunes its own kernels; None: the
    default everywhere), raised per case where the machine's own gate-check measured more
    (`measured`: case -> sd, from at least config.AB_PROCESS_MIN_JOBS A/A jobs of this machine
    class; a measured figure below the default is not used to lower it, as a few jobs can read low
    by chance). Per pair of processes: a case measured over several (rounds) divides it by their
    square root (`estimate`)."""
    default: float
    measured: Mapping[str, float] = field(default_factory=dict)
    accelerator: float | None = None

    def sd(self, case: str) -> float:
        floor = (self.accelerator if self.accelerator is not None and on_accelerator(case)
                 else self.default)
        return max(floor, self.measured.get(case, 0.0))


def term(process_sd: float | ProcessTerm) -> ProcessTerm:
    """A plain sd as the term for every case."""
    return process_sd if isinstance(process_sd, ProcessTerm) else ProcessTerm(process_sd)


def estimate(d, process_sd: float, sizes: tuple[int, ...] = ()) -> Estimate:
    """The log-ratios `d` as an estimate: per round (`sizes`: the pairs of each pair of processes,
    in order; () for one) the Hodges-Lehmann centre and its within-job standard error (the half-
    width of its exact 95% interval over the normal quantile); the rounds weighted alike, so that
    their biases average as the process term assumes (a round with more pairs must not count as more
    processes); and the process term over the rounds added in quadrature. A round with too few pairs
    for an interval is left out."""
    d = list(d)
    parts = [_round(g) for g in split(d, sizes)]
    parts = [pt for pt in parts if math.isfinite(pt[1])]
    if not parts:  # too few pairs for an interval
        return Estimate(stats.hodges_lehmann(d, WITHIN_LEVEL)[0], math.inf, 1.0, len(d), tuple(d),
                        math.inf)
    k = len(parts)
    centre = sum(c for c, _, _ in parts) / k
    within = math.sqrt(sum(w**2 for _, w, _ in parts)) / k
    se = math.hypot(within, process_sd / math.sqrt(k))
    # Welch-Satterthwaite: the rounds' own noise with their degrees of freedom, the process term
    # known (infinite degrees of freedom)
    spread = sum((w / k) ** 4 / max(n - 1, 1) for _, w, n in parts)
    df = se**4 / spread if spread > 0 else math.inf
    return Estimate(centre, se, min(df, 1e6), len(d), tuple(d), within)


def split(d: list[float], sizes: tuple[int, ...]) -> list[list[float]]:
    """`d` cut into its rounds (`sizes`: pairs per round; () or one size: one round)."""
    if len(sizes) < 2:
        return [list(d)]
    out, i = [], 0
    for n in sizes:
        out.append(d[i:i + n])
        i += n
    return out


def _round(d: list[float]) -> tuple[float, float, int]:
    """One round's Hodges-Lehmann centre, within standard error (inf below an interval), pairs."""
    centre, lo, hi = stats.hodges_lehmann(d, WITHIN_LEVEL)
    if not math.isfinite(lo) or not math.isfinite(hi):
        return centre, math.inf, len(d)
    return centre, (hi - lo) / (2 * Z_WITHIN), len(d)


def holm(pvalues: list[float], alpha: float) -> list[tuple[bool, float]]:
    """Holm's step-down rule over one job's cases: per case, whether it is rejected and the
    one-sided level it was held to (alpha over the hypotheses still open at its step; cases after
    the first one kept are held to that step's level). The chance of any false rejection stays at
    alpha."""
    m = len(pvalues)
    out: list[tuple[bool, float]] = [(False, alpha / m)] * m
    stopped = None
    for step, i in enumerate(sorted(range(m), key=pvalues.__getitem__)):
        level = alpha / (m - step) if stopped is None else stopped
        rejected = stopped is None and pvalues[i] <= level
        if not rejected and stopped is None:
            stopped = level
        out[i] = (rejected, level)
    return out


def still_open(d, process_sd: float, level: float, min_effect: float,
               before: tuple[tuple[float, ...], ...] = (), rounds: int = 1) -> bool:
    """Whether more pairs in this round (`d`; `before`: the case's earlier rounds, of `rounds` in
    all) could still change its verdict: the interval the case would have with the process term of
    all its rounds (one-sided `level`) reaches the minimum effect, and this round's own noise is not
    yet small next to the process term (at half of it, more pairs narrow the round's part by at
    most 11%). Stopping only when a case cannot be a regression never raises the false-alarm rate:
    a case that stops is never called one, and one that goes on ends where a fixed-size test
    would."""
    groups = [*before, tuple(d)]
    k = len(groups)
    # the process term as the case will have it: over `rounds` processes, not the k so far
    e = estimate([x for g in groups for x in g], process_sd * math.sqrt(k / max(rounds, k)),
                 tuple(len(g) for g in groups))
    within = e.within if k == 1 else _round(list(d))[1]
    return within > process_sd / 2 and e.interval(2 * level)[1] >= 1 + min_effect
