"""One bisect step: the A/B of GOOD against one commit (both checked out aside), read in sets of
pairs until its judge can call the commit slow or fast, or its budget is spent; the step's verdict
and its line. The search over the commits is imgbench.forensics.bisect."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgbench.forensics import ab, git
from imgbench.forensics.git import Commit
from imgbench.forensics.worker import Side, WorkerStopped, collection_error
from imgbench.hw import contention
from imgbench.judge import paired, verdict

SLOW, FAST, UNDECIDED, SKIPPED = "slow", "fast", "undecided", "skipped"


def _ladder() -> list[int]:
    out = [ab.MIN_PAIRS]
    while out[-1] < ab.MAX_PAIRS:
        out.append(min(2 * out[-1], ab.MAX_PAIRS))
    return out


LADDER = _ladder()  # a case's pairs in all at each look: 12, 24, 48, 96, 192, 300


@dataclass(frozen=True)
class Reading:
    """One case at one step: the Hodges-Lehmann ratio against GOOD and its interval at the step's
    level."""
    case: str
    ratio: float
    ci: tuple[float, float]
    pairs: int
    verdict: str
    why: str = ""

    def __str__(self) -> str:
        if not self.pairs:
            return f"{self.case} no pairs kept"
        return (f"{self.case} x{self.ratio:.3f} ({self.ci[0]:.3f}-{self.ci[1]:.3f}), "
                f"{self.pairs} pairs")


@dataclass
class Step:
    number: int
    index: int                # the commit's place on the line: 1 is GOOD's child, n is BAD
    commit: Commit
    verdict: str
    readings: list[Reading]
    why: str = ""
    added: int = 0            # sets of pairs added after the cases' first
    not_run: dict[str, str] = field(default_factory=dict)  # case -> why it did not run


def describe(step: Step, n: int) -> str:
    """The step's line: number, commit, each case's ratio against GOOD, verdict and why."""
    where = f"{step.index}/{n}{', BAD' if step.index == n else ''}"
    cases = "; ".join(map(str, step.readings))
    said = f"{step.verdict} ({step.why})" if step.why else step.verdict
    return (f"step {step.number} [{where}] {step.commit}: "
            + (f"{cases} vs GOOD: {said}" if cases else said))


Judge = Callable[[float, tuple[float, float]], str]


def first_judge(min_effect: float) -> Judge:
    """Step 0: is BAD slower than GOOD by the minimum effect (verdict's rules, the interval
    deciding), and is the slowdown known well enough to divide slow from fast: its interval wholly
    above its own midpoint? Else more pairs. The midpoint then lies between no change and the true
    slowdown (whose lower bound is above it), so each later step's call, right with the chance its
    interval is, is right about the commit: a first reading that stopped early can read high (x1.43
    for a true x1.18 here), and a midpoint from it called slow commits fast."""
    calls = {verdict.REGRESSION: SLOW, verdict.UNCHANGED: FAST, verdict.IMPROVEMENT: FAST}

    def judge(ratio: float, ci: tuple[float, float]) -> str:
        found = calls.get(verdict.by_interval(ratio, ci, min_effect), UNDECIDED)
        return UNDECIDED if found == SLOW and ci[0] <= math.sqrt(ratio) else found
    return judge


def midpoint_judge(midpoint: float) -> Judge:
    return lambda ratio, ci: SLOW if ci[0] > midpoint else FAST if ci[1] < midpoint else UNDECIDED


def _reading(name: str, d: list[float], level: float, judge: Judge, process_sd: float) -> Reading:
    e = paired.estimate(d, process_sd)
    ratio, ci = math.exp(e.centre), e.interval(level)
    return Reading(name, ratio, ci, len(d), judge(ratio, ci))


def read(p: ab.Pairing, judge: Judge, level: float, budget_s: float,
         process_sd: float | paired.ProcessTerm) -> tuple[Reading, int]:
    """One case's pairs in sets, looking at LADDER's totals, until `judge` calls the interval or the
    next set would overrun `budget_s` (the first always runs). Returns the reading and the sets
    after the first."""
    d: list[float] = []
    reading = Reading(p.m.name, math.nan, (math.nan, math.nan), 0, UNDECIDED)
    sets, dropped, start = 0, "", time.monotonic()
    for total in LADDER:
        while len(d) < total:
            if sets and time.monotonic() - start + (total - len(d)) * p.pair_s > budget_s:
                why = dropped or f"too noisy to say within --budget {budget_s:g} s, {len(d)} pairs"
                return replace(reading, why=why), sets - 1
            t = ab.Trial(p.m.name, [], [], [], p.calls, 0.0)
            snap = contention.snapshot()
            p.add_pairs(t, total - len(d))
            sets += 1
            why = contention.flag(contention.between(snap, contention.snapshot()))
            if why:  # tight and wrong: dropped
                dropped = f"pairs dropped, {why}"
                continue
            d += t.d
        reading = _reading(p.m.name, d, level, judge, paired.term(process_sd).sd(p.m.name))
        if reading.verdict != UNDECIDED:
            return reading, sets - 1
    return replace(reading, why=f"too noisy to say in {len(d)} pairs"), sets - 1


def ab_step(good: Side, cand: Side, args: list[str], folder: Path, seed: int, budget_s: float,
            alpha: float, judges: dict[str, Judge] | Judge, note: Callable[[str], None],
            process_sd: float | paired.ProcessTerm) -> tuple[list[Reading], dict[str, str], int]:
    """One A/B of GOOD against a commit. `judges`: one judge for every matched case (step 0), or a
    judge per case to read (the rest are left alone; once one reads slow the others need no pairs).
    Returns the readings, why any of the named cases did not run, and the sets of pairs added."""
    folder.mkdir()
    readings: list[Reading] = []
    not_run: dict[str, str] = {}
    added = 0
    with ab.session(good, cand, args, folder, seed, note=note) as s:
        named = judges if isinstance(judges, dict) else {m.name: judges for m in s.cases}
        not_run.update({n: "not collected" for n in named if n not in {m.name for m in s.cases}})
        # Each look calls a case by one bound of a two-sided interval: wrong with a chance of at
        # most half its level, so the level is 2 alpha split over the looks and the cases (as
        # policy.decide does).
        level = 2 * alpha / (len(LADDER) * max(1, len(named)))
        for m, p in s.each():  # walked to the end: the workers wait for every case
            if m.name not in named or (isinstance(judges, dict)
                                       and any(r.verdict == SLOW for r in readings)):
                continue
            if isinstance(p, str):
                not_run[m.name] = p
                continue
            try:
                r, more = read(p, named[m.name], level, budget_s, process_sd)
            except ab.CaseFailed as e:
                not_run[m.name] = str(e)
                continue
            readings.append(r)
            added += more
    return readings, not_run, added


@dataclass
class Stepper:
    """Runs one step: checks the commit out beside GOOD's, times it against GOOD, removes it."""
    commits: list[Commit]
    trees: git.Checkouts
    good: Side
    rel: Path                 # the benches' parent inside a checkout
    args: list[str]
    alpha: float
    budget_s: float
    seed: int
    note: Callable[[str], None]
    process_sd: float | paired.ProcessTerm
    steps: list[Step] = field(default_factory=list)

    def __call__(self, i: int, judges: dict[str, Judge] | Judge) -> Step:
        number, commit, n = len(self.steps), self.commits[i], len(self.commits) - 1
        self.note(f"step {number}: {commit} ({i}/{n}) against GOOD")
        path = self.trees.add(commit)
        cand = Side("candidate", path / self.rel, self.good.python)
        try:
            readings, not_run, added = ab_step(self.good, cand, self.args,
                                               self.trees.folder / f"step{number}",
                                               self.seed + number, self.budget_s, self.alpha,
                                               judges, self.note, self.process_sd)
            if "not collected" in not_run.values():
                found = collection_error(cand, self.args)
                not_run = {c: f"not collected: {found}" if w == "not collected" else w
                           for c, w in not_run.items()}
            step = _step(number, i, commit, readings, not_run, added)
        except WorkerStopped as e:
            if e.worker.side is self.good:
                # not this commit's fault, and nothing left to read commits against
                step = Step(number, i, commit, UNDECIDED, [],
                            f"GOOD's worker stopped (exit {e.code}): {e.worker.tail()}")
            else:
                who = "BAD's" if i == n else "its"
                step = Step(number, i, commit, SKIPPED, [],
                            f"{who} worker stopped (exit {e.code}): {e.worker.tail()}")
        finally:
            self.trees.remove(path)
        self.steps.append(step)
        return step


def _step(number: int, i: int, commit: Commit, readings: list[Reading], not_run: dict[str, str],
          added: int) -> Step:
    """A step's verdict: slow if any case reads slow; else skipped if a case did not run (at step 0
    such a case is only left out); else undecided if a case could not say; else fast."""
    def made(found: str, why: str = "") -> Step:
        return Step(number, i, commit, found, readings, why, added, not_run)
    if any(r.verdict == SLOW for r in readings):
        return made(SLOW)
    if not_run and (number or not readings):
        return made(SKIPPED, "; ".join(f"{c}: {w}" for c, w in not_run.items()))
    open_ = [r for r in readings if r.verdict == UNDECIDED]
    return made(UNDECIDED, "; ".join(f"{r.case}: {r.why}" for r in open_)) if open_ else made(FAST)
