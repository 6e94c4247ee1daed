"""How one A/B job's pairs are sized and decided, the same for ab and gate-check: pairs by precision
under one job cap (Sizing), then the paired policy (judge/paired.py) over the job's cases: Holm's
rule over the gated cases (a contended case enters with p = 1), each interval at the level Holm held
its case to, and the information tier decided apart, never failing the job."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from imgbench.core.config import AB_INFORMATION_FAMILIES, AB_PROCESS_SD, AB_ROUNDS
from imgbench.core.identity import family_of, test_of
from imgbench.hw import contention
from imgbench.judge import paired, verdict
from imgbench.judge.paired import ProcessTerm
from imgbench.judge.verdict import Verdict


def informational(nodeid: str) -> bool:
    """Whether a case is in the information tier (config.AB_INFORMATION_FAMILIES): measured and
    shown in one round, outside Holm's family, never failing the job."""
    return family_of(nodeid) in AB_INFORMATION_FAMILIES


@dataclass
class Sizing:
    """Pairs by precision under one job cap (`budget_s` per trial on average; a trial is one case in
    one round): each trial's first set takes `budget_s / 2` (12 to 300 pairs, and no longer than
    config.AB_SET_LIMIT_S); it then doubles while the case is still open (paired.still_open on all
    its pairs so far, with the process term of the rounds it will have, at Holm's first level) and
    the next set ends before its allowance: at most twice its share of what is left of the cap, and
    never into the first sets of the trials still to come. Time a clear case leaves flows to the
    cases after it. (A first version let a case run to the cap less the others' first sets: on a
    noisy day the first cases took it all.)"""
    budget_s: float
    trials: int                      # the job's trials, all cases and rounds
    cases: int                       # the gated cases: Holm's first level is alpha over them
    alpha: float
    min_effect: float
    process: ProcessTerm | float
    rounds: int = 1                  # the rounds a gated case's pairs come from
    start: float = field(default_factory=time.monotonic)
    done: int = 0

    def allowance(self) -> float:
        """When the next trial's sets must end (time.monotonic())."""
        now, left = time.monotonic(), max(1, self.trials - self.done)
        end = self.start + self.budget_s * self.trials
        return min(end - (left - 1) * self.budget_s / 2, now + 2 * max(end - now, 0.0) / left)

    def trial(self, p, slowdown: float = 0.0, extend: bool = True, before: tuple = ()):
        """One trial of Pairing `p`; `before`: the case's pairs of each earlier round."""
        until, level = self.allowance(), self.alpha / max(1, self.cases)
        self.done += 1
        sd = paired.term(self.process).sd(p.m.name)

        def still_open(d: list[float]) -> bool:
            return paired.still_open(d, sd, level, self.min_effect, before, self.rounds)
        return p.trial(p.budget_pairs(self.budget_s / 2), slowdown, until,
                       still_open if extend else None)


def decide(trials: list, alpha: float, min_effect: float,
           process: ProcessTerm | float = AB_PROCESS_SD) -> list[Verdict]:
    """Verdicts for one job's trials (ab.Trial, each holding all its rounds) by the paired policy:
    Holm over the job's cases (a case under contention enters with p = 1 and gets no verdict),
    each interval at the level Holm held its case to, the Hodges-Lehmann ratio against the minimum
    effect, and per case the smallest slowdown the job could have caught alone (at Holm's first
    level)."""
    term = paired.term(process)
    flags = [contention.flag(t.contention) for t in trials]
    est = [paired.estimate(t.d, term.sd(t.name), t.sizes) for t in trials]
    slower = paired.holm([1.0 if f else e.p_slower for e, f in zip(est, flags, strict=True)], alpha)
    faster = paired.holm([1.0 if f else e.p_faster for e, f in zip(est, flags, strict=True)], alpha)
    out = []
    for t, e, (s, level), (f, _), why in zip(trials, est, slower, faster, flags, strict=True):
        ratio, ci = math.exp(e.centre), e.interval(2 * level)
        v = Verdict(t.name, test_of(t.name), float(np.median(t.base)), float(np.median(t.cand)),
                    ratio, ci, None, None, min_effect, verdict.judge(ratio, min_effect, s, f, ci),
                    detectable=e.detectable(alpha / len(trials)))
        out.append(verdict.contended(v, why))
    return out


def tiered(trials: list, alpha: float, min_effect: float,
           process: ProcessTerm | float = AB_PROCESS_SD) -> list[Verdict]:
    """The gated trials decided together; the information tier's apart (Holm among themselves),
    where a slowdown is shown as such and is never a regression. In the trials' order."""
    info = [t for t in trials if informational(t.nodeid)]
    gated = [t for t in trials if not informational(t.nodeid)]
    by_trial = dict(zip(map(id, gated), decide(gated, alpha, min_effect, process)
                        if gated else [], strict=True))
    for t, v in zip(info, decide(info, alpha, min_effect, process) if info else [],
                    strict=True):
        by_trial[id(t)] = (replace(v, verdict=verdict.SLOWER_INFO)
                           if v.verdict == verdict.REGRESSION else v)
    return [by_trial[id(t)] for t in trials]


def rounds_of(nodeid: str, rounds: int = AB_ROUNDS) -> int:
    """The rounds a case runs in: the information tier's one, a gated case's all."""
    return 1 if informational(nodeid) else rounds
