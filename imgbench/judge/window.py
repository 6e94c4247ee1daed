"""The reference a run is judged against, taken from stored history without a ratchet: per case the
medians of the newest WINDOW earlier runs of the same machine class and conditions. Left out: the
run itself and anything recorded at or after it, contended records, records of other numeric
conditions, and records judged a regression when they were saved (compare --save-to) that no one has
accepted. Accepting (`imgbench accept`, runs.acceptances) makes a regressed level the new reference:
the window of an accepted case starts at its first regressed run. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgbench.hw import contention
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
            out.medians[key] = [r.median for r in usable[-size:]]
        if level and len(usable) < MIN_RUNS:
            out.settling[key] = len(usable)
    return out


MIN_RUNS = 3  # a window needs this many runs for a bound (stats.history_interval)


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
    for r in records:
        if r.datetime < start:
            out.leave("before an accepted new level", r)
        elif r.regressed and r.datetime >= last:
            out.leave("judged a regression, not accepted", r)
        else:
            usable.append(r)
    return usable, bool(start)
