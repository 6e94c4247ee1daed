"""The reference a run is judged against, taken from stored history without a ratchet: per case the
medians of the newest WINDOW earlier runs of the same machine class and conditions. Left out: the
run itself and anything recorded at or after it, contended records, records of other numeric
conditions, and records judged a regression when they were saved (compare --save-to) that no one has
accepted, unless a lone one that the next run did not repeat (a false alarm). Accepting (`imgbench
accept`, runs.acceptances) makes a regressed level the new reference: the window of an accepted case
starts at its first regressed run. No torch here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from imgbench.hw import contention
from imgbench.judge.stats import t_quantile
from imgbench.runs.acceptances import Acceptance
from imgbench.runs.history import identity
from imgbench.runs.record import Record, differences, flag_differences

# newest eligible runs per case: spans enough runs for a spread, not months of other commits
WINDOW = 20


@dataclass
class Window:
    medians: dict[tuple, list[float]]                      # per case key, oldest first
    left_out: dict[str, set] = field(default_factory=dict)  # why -> the runs (paths) left out
                                                            # for it
    settling: dict[tuple, int] = field(default_factory=dict)  # case -> runs so far of a newly
                                                              # accepted level

    def leave(self, why: str, run: Record):
        self.left_out.setdefault(why, set()).add(run.path)

    def notes(self) -> list[str]:
        return [f"history: {len(runs)} run(s) left out ({why})"
                for why, runs in sorted(self.left_out.items())]


def _before(a: str, b: str) -> bool:
    """Whether a run recorded at `a` precedes one recorded at `b` (ISO dates; unknown dates never
    do)."""
    return bool(a) and bool(b) and a < b


def window(history: list[list[Record]], cand: list[Record], accepted: list[Acceptance] = (),
           size: int = WINDOW) -> Window:
    """Per case of `cand`, the medians of the newest `size` runs it may be judged against."""
    out = Window({})
    if not cand:
        return out
    me, when, machine = identity(cand), cand[0].datetime, cand[0].fingerprint
    wanted = {r.key: r for r in cand}
    kept: dict[tuple, list[Record]] = {}
    for run in history:
        if identity(run) == me:
            out.leave("the candidate itself", run[0])
        elif not _before(run[0].datetime, when):
            out.leave("recorded at or after the candidate", run[0])
        elif run[0].fingerprint != machine:
            out.leave("another machine class", run[0])
        elif diff := differences(run[0], cand[0]):
            out.leave(f"other conditions: {'; '.join(diff)}", run[0])
        else:
            for r in run:
                if (c := wanted.get(r.key)) is None:
                    continue
                if contention.flag(r.contention):
                    out.leave("a case measured under contention", r)
                elif flag_differences(r, c):
                    out.leave("a case ran under other numeric conditions", r)
                else:
                    kept.setdefault(r.key, []).append(r)
    for key, records in kept.items():
        usable, level = _accepted_level(records,
                                        [a for a in accepted if a.covers(records[-1])], out)
        if usable:
            out.medians[key] = [r.median for r in _screened(usable[-size:], out)]
        if level and len(usable) < MIN_RUNS:
            out.settling[key] = len(usable)
    return out


MIN_RUNS = 3  # a window needs this many runs for a bound (stats.history_interval)
# A run whose median the window's other runs exclude at this level (Bonferroni over the window) is
# left out: the bound is their spread, which one run far off would otherwise widen without limit
# (one file of a x5 median let a 30% slowdown pass as "too noisy to say").
OUTLIER_P = 0.001


def _screened(records: list[Record], out: Window) -> list[Record]:
    """`records` (one case) without the run farthest from the others when their prediction bound
    (log scale, Student's t with the others' mean and sd) excludes it at OUTLIER_P over the window.
    Needs 3 others with a spread; one run only: two far off hide each other, as in any screen."""
    if len(records) < MIN_RUNS + 1:
        return records
    logs = np.log([r.median for r in records])
    far = int(np.argmax(np.abs(logs - np.median(logs))))
    others = np.delete(logs, far)
    sd = others.std(ddof=1)
    if not sd > 0:  # identical others: no spread to judge by
        return records
    t = abs(logs[far] - others.mean()) / (sd * math.sqrt(1 + 1 / others.size))
    if t <= t_quantile(1 - OUTLIER_P / 2 / logs.size, others.size - 1):
        return records
    out.leave("a median far outside the other runs' (a crafted or broken run?)", records[far])
    return records[:far] + records[far + 1:]


def _accepted_level(records: list[Record], accepted: list[Acceptance],
                    out: Window) -> tuple[list[Record], bool]:
    """`records` (one case, oldest first) without unaccepted regressions, and whether an accepted
    level starts them: each acceptance after a stretch of regressed runs starts the case's reference
    at the first run of the newest such stretch (an older, isolated false alarm does not pull it
    back)."""
    start, last = "", ""
    for a in sorted(accepted, key=lambda a: a.datetime):
        stretch = []
        for r in reversed([r for r in records if r.datetime < a.datetime]):
            if not r.regressed:
                break
            stretch.append(r)
        if stretch:
            start = stretch[-1].datetime
        last = a.datetime
    usable = []
    for i, r in enumerate(records):
        if r.datetime < start:
            out.leave("before an accepted new level", r)
        elif r.regressed and r.datetime >= last and not _lone(records, i):
            out.leave("judged a regression, not accepted", r)
        else:
            usable.append(r)
    return usable, bool(start)


def _lone(records: list[Record], i: int) -> bool:
    """Whether records[i] is a regression alone between runs that were not: a false alarm, which
    rejoins the window once the next run is back (left out, it would narrow the spread after every
    false alarm: a slow ratchet). Two in a row are a regression (changepoints.CONFIRM_RUNS)."""
    return (0 < i + 1 < len(records) and not records[i + 1].regressed
            and (i == 0 or not records[i - 1].regressed))
