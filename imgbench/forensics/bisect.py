"""`imgbench bisect`: the first commit between GOOD and BAD at which the selected cases got slower.

The commits are BAD's first parents after GOOD (a merge is one commit of that line, as
`git bisect --first-parent` takes it). Every step is an interleaved A/B (imgbench.ab) of GOOD, the base,
against one commit, both checked out aside. Step 0 times BAD: a case slower by the minimum effect is a
slowdown to find, and sqrt(its ratio), the geometric midpoint between GOOD's level and BAD's, divides
slow commits from fast ones; step 0 adds pairs until BAD's interval lies wholly above that midpoint,
so that the midpoint is below the true slowdown. A commit is slow when a case's ratio interval lies wholly above its
midpoint, fast when every case's lies wholly below. Why GOOD as the base every time rather than the
neighbours of the range: every commit is then read on one scale, and a commit is called by which end
of the slowdown it sits at, so a reading off by up to half the slowdown (in log) never flips a step.

A step that cannot say adds pairs, the total doubling from 12 up to ab.MAX_PAIRS, while its budget
lasts; each look's interval is taken at alpha split over the possible looks and the cases
(Bonferroni), so a step's verdict is wrong with a chance of at most alpha. A set of pairs measured
under contention is dropped. A commit that does not run the cases (its worker stops, a case fails or
is not collected) is skipped, as `git bisect skip` does: the next commit tried is the untried one
nearest the middle of the range left. Checkouts live in one temporary folder and are removed whatever
ends the run (Ctrl-C; SIGTERM, which the command line turns into Ctrl-C); at most two at a time: GOOD's
and the commit under test."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgbench.core import config
from imgbench.core.config import ALPHA, BISECT_MIN_EFFECT
from imgbench.core.errors import UserError
from imgbench.forensics import ab, git
from imgbench.forensics.git import Commit
from imgbench.forensics.worker import Side, WorkerStopped, collection_error
from imgbench.hw import contention
from imgbench.judge import stats, verdict

SLOW, FAST, UNDECIDED, SKIPPED = "slow", "fast", "undecided", "skipped"
FOUND, NO_SLOWDOWN, OPEN = 0, 1, 3  # exit codes (2: bad input)
STEP_BUDGET_S = config.BISECT_STEP_BUDGET_S
LISTED = 10   # commits named in a range left open; the rest counted


def _ladder() -> list[int]:
    out = [ab.MIN_PAIRS]
    while out[-1] < ab.MAX_PAIRS:
        out.append(min(2 * out[-1], ab.MAX_PAIRS))
    return out


LADDER = _ladder()  # a case's pairs in all at each look: 12, 24, 48, 96, 192, 300


class BisectError(UserError):
    pass


@dataclass
class Search:
    """Where the first slow commit can lie: after commits[lo], the last known fast (0: GOOD), up to
    commits[hi], the first known slow (at first BAD). A skipped commit is not tried again."""
    hi: int
    lo: int = 0
    skipped: set[int] = field(default_factory=set)

    def next(self) -> int | None:
        """The untried commit nearest the middle (the earlier of two as near: the choice is repeatable),
        or None when every commit left between lo and hi was skipped."""
        middle = (self.lo + self.hi) / 2
        left = [i for i in range(self.lo + 1, self.hi) if i not in self.skipped]
        return min(left, key=lambda i: (abs(i - middle), i), default=None)

    def record(self, i: int, found: str):
        if found == SLOW:
            self.hi = i
        elif found == FAST:
            self.lo = i
        elif found == SKIPPED:
            self.skipped.add(i)
        else:
            raise ValueError(f"a step ends slow, fast or skipped, not {found!r}")

    @property
    def suspects(self) -> list[int]:
        """The commits that may be the first slow one."""
        return list(range(self.lo + 1, self.hi + 1))


@dataclass(frozen=True)
class Reading:
    """One case at one step: the Hodges-Lehmann ratio against GOOD and its interval at the step's level."""
    case: str
    ratio: float
    ci: tuple[float, float]
    pairs: int
    verdict: str
    why: str = ""

    def __str__(self) -> str:
        if not self.pairs:
            return f"{self.case} no pairs kept"
        return f"{self.case} x{self.ratio:.3f} ({self.ci[0]:.3f}-{self.ci[1]:.3f}), {self.pairs} pairs"


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
    return f"step {step.number} [{where}] {step.commit}: " + (f"{cases} vs GOOD: {said}" if cases else said)


Judge = Callable[[float, tuple[float, float]], str]


def _first_judge(min_effect: float) -> Judge:
    """Step 0: is BAD slower than GOOD by the minimum effect (verdict's rules, the interval deciding), and
    is the slowdown known well enough to divide slow from fast: its interval wholly above its own midpoint?
    Else more pairs. The midpoint then lies between no change and the true slowdown (whose lower bound is
    above it), so each later step's call, right with the chance its interval is, is right about the commit:
    a first reading that stopped early can read high (x1.43 for a true x1.18 here), and a midpoint from it
    called slow commits fast."""
    calls = {verdict.REGRESSION: SLOW, verdict.UNCHANGED: FAST, verdict.IMPROVEMENT: FAST}

    def judge(ratio: float, ci: tuple[float, float]) -> str:
        found = calls.get(verdict.by_interval(ratio, ci, min_effect), UNDECIDED)
        return UNDECIDED if found == SLOW and ci[0] <= math.sqrt(ratio) else found
    return judge


def _midpoint_judge(midpoint: float) -> Judge:
    return lambda ratio, ci: SLOW if ci[0] > midpoint else FAST if ci[1] < midpoint else UNDECIDED


def _reading(name: str, d: list[float], level: float, judge: Judge) -> Reading:
    centre, lo, hi = stats.hodges_lehmann(d, level)
    ratio, ci = math.exp(centre), (math.exp(lo), math.exp(hi))
    return Reading(name, ratio, ci, len(d), judge(ratio, ci))


def _read(p: ab.Pairing, judge: Judge, level: float, budget_s: float) -> tuple[Reading, int]:
    """One case's pairs in sets, looking at LADDER's totals, until `judge` calls the interval or the next
    set would overrun `budget_s` (the first always runs). Returns the reading and the sets after the first."""
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
        reading = _reading(p.m.name, d, level, judge)
        if reading.verdict != UNDECIDED:
            return reading, sets - 1
    return replace(reading, why=f"too noisy to say in {len(d)} pairs"), sets - 1


def _ab_step(good: Side, cand: Side, args: list[str], folder: Path, seed: int, budget_s: float,
             alpha: float, judges: dict[str, Judge] | Judge, note: Callable[[str], None]
             ) -> tuple[list[Reading], dict[str, str], int]:
    """One A/B of GOOD against a commit. `judges`: one judge for every matched case (step 0), or a judge
    per case to read (the rest are left alone; once one reads slow the others need no pairs). Returns
    the readings, why any of the named cases did not run, and the sets of pairs added."""
    folder.mkdir()
    readings: list[Reading] = []
    not_run: dict[str, str] = {}
    added = 0
    with ab.session(good, cand, args, folder, seed, note=note) as s:
        named = judges if isinstance(judges, dict) else {m.name: judges for m in s.cases}
        not_run.update({n: "not collected" for n in named if n not in {m.name for m in s.cases}})
        # Each look calls a case by one bound of a two-sided interval: wrong with a chance of at most half
        # its level, so the level is 2 alpha split over the looks and the cases (as ab.decide does).
        level = 2 * alpha / (len(LADDER) * max(1, len(named)))
        for m, p in s.each():  # walked to the end: the workers wait for every case
            if m.name not in named or (isinstance(judges, dict) and any(r.verdict == SLOW for r in readings)):
                continue
            if isinstance(p, str):
                not_run[m.name] = p
                continue
            try:
                r, more = _read(p, named[m.name], level, budget_s)
            except ab.CaseFailed as e:
                not_run[m.name] = str(e)
                continue
            readings.append(r)
            added += more
    return readings, not_run, added


@dataclass
class Outcome:
    code: int                 # FOUND, NO_SLOWDOWN or OPEN
    steps: list[Step]
    summary: list[str]        # the answer, its evidence and the count of steps
    culprit: Commit | None = None
    suspects: list[Commit] = field(default_factory=list)


@dataclass
class _Stepper:
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
    steps: list[Step] = field(default_factory=list)

    def __call__(self, i: int, judges: dict[str, Judge] | Judge) -> Step:
        number, commit, n = len(self.steps), self.commits[i], len(self.commits) - 1
        self.note(f"step {number}: {commit} ({i}/{n}) against GOOD")
        path = self.trees.add(commit)
        cand = Side("candidate", path / self.rel, self.good.python)
        try:
            readings, not_run, added = _ab_step(self.good, cand, self.args, self.trees.folder / f"step{number}",
                                                self.seed + number, self.budget_s, self.alpha, judges, self.note)
            if "not collected" in not_run.values():
                found = collection_error(cand, self.args)
                not_run = {c: f"not collected: {found}" if w == "not collected" else w for c, w in not_run.items()}
            step = _step(number, i, commit, readings, not_run, added)
        except WorkerStopped as e:
            if e.worker.side is self.good:  # not this commit's fault, and nothing left to read commits against
                step = Step(number, i, commit, UNDECIDED, [], f"GOOD's worker stopped (exit {e.code}): "
                                                              f"{e.worker.tail()}")
            else:
                who = "BAD's" if i == n else "its"
                step = Step(number, i, commit, SKIPPED, [], f"{who} worker stopped (exit {e.code}): {e.worker.tail()}")
        finally:
            self.trees.remove(path)
        self.steps.append(step)
        return step


def run(here: Path, commits: list[Commit], args: list[str], python: str, alpha: float = ALPHA,
        min_effect: float = BISECT_MIN_EFFECT, budget_s: float = STEP_BUDGET_S, seed: int = 0,
        show: Callable[[str], None] = lambda s: None, note: Callable[[str], None] = lambda s: None) -> Outcome:
    """Bisect `commits` (from `line`: GOOD first, BAD last) with `args` for pytest on each tree's benches/
    (`here`'s place in the repository); `show` gets each step's line as it ends."""
    n, repo = len(commits) - 1, git.toplevel(here)
    note(f"{n} commit(s) after GOOD up to BAD along first parents: about {math.ceil(math.log2(n))} step(s) after "
         f"step 0; seed {seed} (replay the pair orders with --seed {seed})")
    with tempfile.TemporaryDirectory(prefix="imgbench-bisect-") as tmp:
        note(f"checkouts and worker logs in {tmp}, removed at the end")
        trees = git.Checkouts(repo, Path(tmp))
        try:
            rel = here.resolve().relative_to(repo)
            good = Side("base", trees.add(commits[0]) / rel, python)
            step = _Stepper(commits, trees, good, rel, args, alpha, budget_s, seed, note)
            return _bisect(step, min_effect, show, note)
        finally:
            trees.close()


def _bisect(step: _Stepper, min_effect: float, show: Callable[[str], None],
            note: Callable[[str], None]) -> Outcome:
    """Step 0 (BAD against GOOD: the slowdown to find), then the commits between, halving the range."""
    n = len(step.commits) - 1
    first = step(n, _first_judge(min_effect))
    if not first.readings:
        raise BisectError(f"GOOD and BAD do not both run the selected cases: {first.why or 'none is in both'}")
    midpoints = {r.case: math.sqrt(r.ratio) for r in first.readings if r.verdict == SLOW}
    if midpoints:
        first.why = "the slowdown to find; slow above " + ", ".join(f"x{m:.3f}" for m in midpoints.values())
    show(describe(first, n))
    for c, why in first.not_run.items():
        note(f"{c}: not bisected (did not run at both GOOD and BAD: {why})")
    for r in first.readings:
        if r.verdict != SLOW:
            note(f"{r.case}: not bisected ({r.verdict} from GOOD to BAD)")
    if not midpoints:
        return _no_slowdown(first, min_effect)
    judges = {c: _midpoint_judge(m) for c, m in midpoints.items()}
    search = Search(hi=n)
    while (i := search.next()) is not None:
        show(describe(step(i, judges), n))
        if step.steps[-1].verdict == UNDECIDED:
            break
        search.record(i, step.steps[-1].verdict)
    return _conclude(step.commits, step.steps, search, midpoints)


def _step(number: int, i: int, commit: Commit, readings: list[Reading], not_run: dict[str, str],
          added: int) -> Step:
    """A step's verdict: slow if any case reads slow; else skipped if a case did not run (at step 0 such a
    case is only left out); else undecided if a case could not say; else fast."""
    def made(found: str, why: str = "") -> Step:
        return Step(number, i, commit, found, readings, why, added, not_run)
    if any(r.verdict == SLOW for r in readings):
        return made(SLOW)
    if not_run and (number or not readings):
        return made(SKIPPED, "; ".join(f"{c}: {w}" for c, w in not_run.items()))
    open_ = [r for r in readings if r.verdict == UNDECIDED]
    return made(UNDECIDED, "; ".join(f"{r.case}: {r.why}" for r in open_)) if open_ else made(FAST)


def _no_slowdown(first: Step, min_effect: float) -> Outcome:
    if any(r.verdict == UNDECIDED for r in first.readings):
        return Outcome(OPEN, [first], [f"undecided: step 0 could not say whether, or by how much, BAD is slower "
                                       f"than GOOD ({first.why}); give more --budget or a quieter machine"])
    return Outcome(NO_SLOWDOWN, [first], [f"no slowdown of {min_effect:.0%} or more from GOOD to BAD in the "
                                          "selected cases: nothing to bisect"])


def _names(commits: list[Commit], idx: list[int], steps: dict[int, Step]) -> str:
    def one(i: int) -> str:
        s = steps.get(i)
        return f"{commits[i]} ({s.verdict}{': ' + s.why if s and s.verdict == SKIPPED else ''})" if s else \
            str(commits[i])
    more = f" and {len(idx) - LISTED} more" if len(idx) > LISTED else ""
    return ", ".join(one(i) for i in idx[:LISTED]) + more


def _conclude(commits: list[Commit], steps: list[Step], search: Search, midpoints: dict[str, float]) -> Outcome:
    n = len(commits) - 1
    at = {s.index: s for s in steps}  # each commit's step (a commit is tried once)
    mids = ", ".join(f"{c} x{m:.3f}" for c, m in midpoints.items())
    added = sum(s.added for s in steps)
    count = (f"{len(steps) - 1} step(s) after step 0 for {n} commit(s) (log2 {n} = {math.log2(n):.1f}): "
             f"{sum(s.verdict == SKIPPED for s in steps)} skipped, {added} set(s) of pairs added")
    suspects = search.suspects
    if steps[-1].verdict == UNDECIDED:
        last = steps[-1]
        return Outcome(OPEN, steps, [
            f"undecided at step {last.number}, {last.commit}: {last.why}",
            f"the first slow commit is one of {len(suspects)}: {_names(commits, suspects, at)}",
            f"last fast: {'GOOD ' if search.lo == 0 else ''}{commits[search.lo]}; midpoints: {mids}", count],
            suspects=[commits[i] for i in suspects])
    if len(suspects) > 1:
        return Outcome(OPEN, steps, [
            f"the first slow commit is one of {len(suspects)} (skipped commits in between): "
            f"{_names(commits, suspects, at)}", count], suspects=[commits[i] for i in suspects])
    culprit, before = commits[search.hi], at.get(search.lo)
    if before is None:
        evidence = f"its parent is GOOD ({commits[0]}, x1 by definition)"
    else:
        evidence = (f"its parent {commits[search.lo]}: {'; '.join(map(str, before.readings))}: fast "
                    f"(step {before.number})")
    slow = at[search.hi]
    return Outcome(FOUND, steps, [
        f"first slow commit: {culprit} ({culprit.date}) {culprit.sha}",
        f"evidence against GOOD: {evidence}; it: {'; '.join(map(str, slow.readings))}: slow (step {slow.number}); "
        f"midpoints: {mids}", count], culprit=culprit, suspects=[culprit])
