"""`imgbench bisect`: the first commit between GOOD and BAD at which the selected cases got slower.

The commits are BAD's first parents after GOOD (a merge is one commit of that line, as
`git bisect --first-parent` takes it). Every step is an interleaved A/B (imgbench.ab) of GOOD, the
base, against one commit, both checked out aside. Step 0 times BAD: a case slower by the minimum
effect is a slowdown to find, and sqrt(its ratio), the geometric midpoint between GOOD's level and
BAD's, divides slow commits from fast ones; step 0 adds pairs until BAD's interval lies wholly above
that midpoint, so that the midpoint is below the true slowdown. A commit is slow when a case's ratio
interval lies wholly above its midpoint, fast when every case's lies wholly below. Why GOOD as the
base every time rather than the neighbours of the range: every commit is then read on one scale, and
a commit is called by which end of the slowdown it sits at, so a reading off by up to half the
slowdown (in log) never flips a step.

A step that cannot say adds pairs, the total doubling from 12 up to ab.MAX_PAIRS, while its budget
lasts; each look's interval (the paired policy's, judge/paired.py: the pairs' noise and the bias of
a pair of processes) is taken at alpha split over the possible looks and the cases (Bonferroni), so
a step's verdict is wrong with a chance of at most alpha. A set of pairs measured
under contention is dropped. A commit that does not run the cases (its worker stops, a case fails or
is not collected) is skipped, as `git bisect skip` does: the next commit tried is the untried one
nearest the middle of the range left. Checkouts live in one temporary folder and are removed
whatever ends the run (Ctrl-C; SIGTERM, which the command line turns into Ctrl-C); at most two at a
time: GOOD's and the commit under test.

This module is the search over the commits; one step (the A/B of GOOD against one commit, its
readings and its verdict) is imgbench.forensics.steps."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.core import config
from imgbench.core.config import AB_MIN_EFFECT, AB_PROCESS_SD, ALPHA
from imgbench.core.errors import UserError
from imgbench.forensics import git
from imgbench.forensics.git import Commit
from imgbench.forensics.steps import (
    FAST,
    SKIPPED,
    SLOW,
    UNDECIDED,
    Step,
    Stepper,
    describe,
    first_judge,
    midpoint_judge,
)
from imgbench.forensics.worker import Side
from imgbench.judge.paired import ProcessTerm

FOUND, NO_SLOWDOWN, OPEN = 0, 1, 3  # exit codes (2: bad input)
STEP_BUDGET_S = config.BISECT_STEP_BUDGET_S
LISTED = 10   # commits named in a range left open; the rest counted


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
        """The untried commit nearest the middle (the earlier of two as near: the choice is
        repeatable), or None when every commit left between lo and hi was skipped."""
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


@dataclass
class Outcome:
    code: int                 # FOUND, NO_SLOWDOWN or OPEN
    steps: list[Step]
    summary: list[str]        # the answer, its evidence and the count of steps
    culprit: Commit | None = None
    suspects: list[Commit] = field(default_factory=list)


def run(here: Path, commits: list[Commit], args: list[str], python: str, alpha: float = ALPHA,
        min_effect: float = AB_MIN_EFFECT, budget_s: float = STEP_BUDGET_S, seed: int = 0,
        show: Callable[[str], None] = lambda s: None,
        note: Callable[[str], None] = lambda s: None,
        process_sd: float | ProcessTerm = AB_PROCESS_SD,
        cases: list[str] | None = None) -> Outcome:
    """Bisect `commits` (from `line`: GOOD first, BAD last) with `args` for pytest on each tree's
    benches/ (`here`'s place in the repository); `show` gets each step's line as it ends. `cases`:
    only these test ids are read (e.g. those `imgbench ab --regressions` wrote); None: every
    matched case."""
    n, repo = len(commits) - 1, git.toplevel(here)
    note(f"{n} commit(s) after GOOD up to BAD along first parents: about "
         f"{math.ceil(math.log2(n))} step(s) after step 0; seed {seed} (replay the pair orders "
         f"with --seed {seed})")
    with tempfile.TemporaryDirectory(prefix="imgbench-bisect-") as tmp:
        note(f"checkouts and worker logs in {tmp}, removed at the end")
        trees = git.Checkouts(repo, Path(tmp))
        try:
            rel = here.resolve().relative_to(repo)
            good = Side("base", trees.add(commits[0]) / rel, python)
            step = Stepper(commits, trees, good, rel, args, alpha, budget_s, seed, note,
                           process_sd)
            return _bisect(step, min_effect, show, note, cases)
        finally:
            trees.close()


def _bisect(step: Stepper, min_effect: float, show: Callable[[str], None],
            note: Callable[[str], None], cases: list[str] | None = None) -> Outcome:
    """Step 0 (BAD against GOOD: the slowdown to find), then the commits between, halving the
    range."""
    n = len(step.commits) - 1
    judge = first_judge(min_effect)
    first = step(n, judge if cases is None else {c: judge for c in cases})
    if not first.readings:
        raise BisectError("GOOD and BAD do not both run the selected cases: "
                          f"{first.why or 'none is in both'}")
    midpoints = {r.case: math.sqrt(r.ratio) for r in first.readings if r.verdict == SLOW}
    if midpoints:
        first.why = ("the slowdown to find; slow above "
                     + ", ".join(f"x{m:.3f}" for m in midpoints.values()))
    show(describe(first, n))
    for c, why in first.not_run.items():
        note(f"{c}: not bisected (did not run at both GOOD and BAD: {why})")
    for r in first.readings:
        if r.verdict != SLOW:
            note(f"{r.case}: not bisected ({r.verdict} from GOOD to BAD)")
    if not midpoints:
        return _no_slowdown(first, min_effect)
    judges = {c: midpoint_judge(m) for c, m in midpoints.items()}
    search = Search(hi=n)
    while (i := search.next()) is not None:
        show(describe(step(i, judges), n))
        if step.steps[-1].verdict == UNDECIDED:
            break
        search.record(i, step.steps[-1].verdict)
    return _conclude(step.commits, step.steps, search, midpoints)


def _no_slowdown(first: Step, min_effect: float) -> Outcome:
    if any(r.verdict == UNDECIDED for r in first.readings):
        return Outcome(OPEN, [first], ["undecided: step 0 could not say whether, or by how much, "
                                       f"BAD is slower than GOOD ({first.why}); give more --budget "
                                       "or a quieter machine"])
    return Outcome(NO_SLOWDOWN, [first], [f"no slowdown of {min_effect:.0%} or more from GOOD to "
                                          "BAD in the selected cases: nothing to bisect"])


def _names(commits: list[Commit], idx: list[int], steps: dict[int, Step]) -> str:
    def one(i: int) -> str:
        s = steps.get(i)
        return (f"{commits[i]} ({s.verdict}{': ' + s.why if s and s.verdict == SKIPPED else ''})"
                if s else str(commits[i]))
    more = f" and {len(idx) - LISTED} more" if len(idx) > LISTED else ""
    return ", ".join(one(i) for i in idx[:LISTED]) + more


def _conclude(commits: list[Commit], steps: list[Step], search: Search,
              midpoints: dict[str, float]) -> Outcome:
    n = len(commits) - 1
    at = {s.index: s for s in steps}  # each commit's step (a commit is tried once)
    mids = ", ".join(f"{c} x{m:.3f}" for c, m in midpoints.items())
    added = sum(s.added for s in steps)
    count = (f"{len(steps) - 1} step(s) after step 0 for {n} commit(s) "
             f"(log2 {n} = {math.log2(n):.1f}): "
             f"{sum(s.verdict == SKIPPED for s in steps)} skipped, {added} set(s) of pairs added")
    suspects = search.suspects
    if steps[-1].verdict == UNDECIDED:
        last = steps[-1]
        return Outcome(OPEN, steps, [
            f"undecided at step {last.number}, {last.commit}: {last.why}",
            f"the first slow commit is one of {len(suspects)}: {_names(commits, suspects, at)}",
            f"last fast: {'GOOD ' if search.lo == 0 else ''}{commits[search.lo]}; "
            f"midpoints: {mids}", count],
            suspects=[commits[i] for i in suspects])
    if len(suspects) > 1:
        return Outcome(OPEN, steps, [
            f"the first slow commit is one of {len(suspects)} (skipped commits in between): "
            f"{_names(commits, suspects, at)}", count], suspects=[commits[i] for i in suspects])
    culprit, before = commits[search.hi], at.get(search.lo)
    if before is None:
        evidence = f"its parent is GOOD ({commits[0]}, x1 by definition)"
    else:
        evidence = (f"its parent {commits[search.lo]}: {'; '.join(map(str, before.readings))}: "
                    f"fast (step {before.number})")
    slow = at[search.hi]
    return Outcome(FOUND, steps, [
        f"first slow commit: {culprit} ({culprit.date}) {culprit.sha}",
        f"evidence against GOOD: {evidence}; it: {'; '.join(map(str, slow.readings))}: slow "
        f"(step {slow.number}); midpoints: {mids}", count], culprit=culprit, suspects=[culprit])
