"""The reference a run is judged against, taken from stored history without a ratchet: per case the
medians of the newest WINDOW earlier runs of the same machine class and conditions. Left out: the run
itself and anything recorded at or after it, contended records, records of other numeric conditions,
and records judged a regression when they were saved (compare --save-to) that no one has accepted.
Accepting (`imgbench accept`) makes a regressed level the new reference: the window of an accepted
case starts at its first regressed run. Acceptances are small files beside the runs; runs are never
modified. No torch here."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from imgbench.core import atomic as files
from imgbench.hw import contention
from imgbench.runs import runfile, storage
from imgbench.core.errors import UserError
from imgbench.runs.record import UNKNOWN, Record, differences, flag_differences, identity

WINDOW = 20  # newest eligible runs per case: spans enough runs for a spread, not months of other commits
ACCEPT_DIR, ACCEPT_SUFFIX = "accepted", ".accept"  # not *.json: a history reader never takes one for a run


@dataclass(frozen=True)
class Acceptance:
    datetime: str               # when the level was accepted (UTC, ISO)
    cases: tuple[str, ...]      # substrings of case names; () = every case
    fingerprint: str | None     # the machine class it was accepted for; None = any
    path: str = ""

    def covers(self, r: Record) -> bool:
        return (self.fingerprint in (None, r.machine)
                and (not self.cases or any(c in r.name for c in self.cases)))


@dataclass
class Window:
    medians: dict[tuple, list[float]]                      # per case key, oldest first
    left_out: dict[str, set] = field(default_factory=dict)  # why -> the runs (paths) left out for it
    settling: dict[tuple, int] = field(default_factory=dict)  # case -> runs so far of a newly accepted level

    def leave(self, why: str, run: Record):
        self.left_out.setdefault(why, set()).add(run.path)

    def notes(self) -> list[str]:
        return [f"history: {len(runs)} run(s) left out ({why})" for why, runs in sorted(self.left_out.items())]


def _before(a: str, b: str) -> bool:
    """Whether a run recorded at `a` precedes one recorded at `b` (ISO dates; unknown dates never do)."""
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
        usable, level = _accepted_level(records, [a for a in accepted if a.covers(records[-1])], out)
        if usable:
            out.medians[key] = [r.median for r in usable[-size:]]
        if level and len(usable) < MIN_RUNS:
            out.settling[key] = len(usable)
    return out


MIN_RUNS = 3  # a window needs this many runs for a bound (stats.history_interval)


def _accepted_level(records: list[Record], accepted: list[Acceptance], out: Window) -> tuple[list[Record], bool]:
    """`records` (one case, oldest first) without unaccepted regressions, and whether an accepted level
    starts them: each acceptance after a stretch of regressed runs starts the case's reference at the
    first run of the newest such stretch (an older, isolated false alarm does not pull it back)."""
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


def save(run: runfile.Run, folder: Path, regressions: list[str], baseline: str) -> Path:
    """A judged run saved into a history folder (FOLDER/<machine class>/<platform>/NNNN_<profile>.json,
    numbered as `imgbench run` numbers them), with what it was judged: its `judged` block names the
    cases found regressed, which history.window keeps out of the reference until accepted."""
    doc = copy.deepcopy(run.raw)
    meta = doc.setdefault("imgbench", {})
    meta["judged"] = {"datetime": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
                      "baseline": baseline, "regressions": regressions}
    target = storage.writable_folder(folder / (run.fingerprint or UNKNOWN), "--save-to")
    with storage.partial(target, "judged") as tmp:
        runfile.write(tmp, doc)
        return storage.save_run(tmp, target, run.profile or "run")


def acceptances(paths) -> list[Acceptance]:
    """Every acceptance file under the given history folders (an unreadable one is a UserError: a
    silently misread acceptance would accept too much or nothing)."""
    out = []
    for p in map(Path, paths):
        for f in sorted(p.rglob(f"*{ACCEPT_SUFFIX}")) if p.is_dir() else ():
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
                when, cases, fp = doc["datetime"], doc.get("cases", []), doc.get("fingerprint")
                datetime.fromisoformat(when)
                if not (isinstance(cases, list) and all(isinstance(c, str) for c in cases)
                        and (fp is None or isinstance(fp, str))):
                    raise TypeError("cases must be a list of texts, fingerprint a text")
                out.append(Acceptance(when, tuple(cases), fp, str(f)))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UserError(f"{f}: not a readable acceptance ({e}); move it aside or fix it") from None
    return out


def accept(folder: Path, cases: list[str], fingerprint: str, note: str = "") -> Path:
    """Record that the current level of `cases` (all when empty) on one machine class is accepted, in
    FOLDER/<machine class>/accepted/, where a compare --history of that class's folder finds it."""
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()  # as pytest-benchmark dates runs
    path = folder / fingerprint / ACCEPT_DIR / f"{now.replace(':', '-')}_{os.getpid()}{ACCEPT_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"datetime": now, "cases": cases, "fingerprint": fingerprint, "note": note}
    with files.atomic(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def unaccepted(runs: list[list[Record]], accepted: list[Acceptance]) -> list[Record]:
    """The newest regressed record of each case that no later acceptance covers (what accept would accept)."""
    newest: dict[tuple, Record] = {}
    for run in runs:
        for r in run:
            if r.regressed and not any(a.covers(r) and r.datetime < a.datetime for a in accepted):
                newest[(r.fingerprint, r.key)] = r
    return list(newest.values())
