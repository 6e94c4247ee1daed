"""Acceptances: that the current level of regressed cases on one machine class is the new reference
(`imgbench accept`). Each is a small file beside the runs, under HISTORY/<machine class>/accepted/;
stored runs are never modified. No torch here."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from imgbench.core import atomic
from imgbench.core.errors import UserError
from imgbench.runs import runfile
from imgbench.runs.history import CLOCK_SKEW
from imgbench.runs.record import Record

# not *.json: a history reader never takes one for a run
ACCEPT_DIR, ACCEPT_SUFFIX = "accepted", ".accept"


@dataclass(frozen=True)
class Acceptance:
    datetime: str               # when the level was accepted (UTC, ISO)
    cases: tuple[str, ...]      # substrings of case names; () = every case
    fingerprint: str | None     # the machine class it was accepted for; None = any
    path: str = ""

    def covers(self, r: Record) -> bool:
        return (self.fingerprint in (None, r.machine)
                and (not self.cases or any(c in r.name for c in self.cases)))


def read(paths, notes: list[str] | None = None) -> list[Acceptance]:
    """Every acceptance file under the given history folders. One that cannot be trusted is not
    applied: with `notes`, a line naming it and why is added there and the others are read (it
    accepts nothing, so its regressions stay out of the reference: a crafted or damaged file can
    neither stop the gate nor pass it); without, it is a UserError. Trusted: readable, filed as
    accept files them (<machine class>/accepted/), for that machine class, and dated no later than
    this machine's clock allows (a date ahead would accept every regression still to come)."""
    out = []
    for p in map(Path, paths):
        for f in sorted(p.rglob(f"*{ACCEPT_SUFFIX}")) if p.is_dir() else ():
            try:
                out.append(_read(f))
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
                line = f"{f}: not a readable acceptance ({e}); move it aside or fix it"
                if notes is None:
                    raise UserError(line) from None
                notes.append(f"{line}: not applied")
    return out


def _read(f: Path) -> Acceptance:
    doc = json.loads(f.read_text(encoding="utf-8"))
    when, cases, fp = doc["datetime"], doc.get("cases", []), doc.get("fingerprint")
    when = runfile.canonical_time(when)
    if not (isinstance(cases, list) and all(isinstance(c, str) for c in cases)
            and (fp is None or isinstance(fp, str))):
        raise TypeError("cases must be a list of texts, fingerprint a text")
    folder = f.parent.parent.name
    if f.parent.name != ACCEPT_DIR:
        raise ValueError(f"not in a <machine class>/{ACCEPT_DIR}/ folder, where accept files it")
    if fp not in (None, folder):  # one written without a class covers its folder's only
        raise ValueError(f"for machine class {fp}, filed under {folder}")
    if _naive(when) > _now() + CLOCK_SKEW:
        raise ValueError(f"dated {when}, later than this machine's clock")
    if (through := doc.get("through")) is not None:
        # it accepts the runs up to the newest it saw regressed, never a later one, whatever its
        # date says
        # spelt as the runs are (aware or naive), so that the text comparisons of readers hold
        limit = dt.datetime.fromisoformat(runfile.canonical_time(through))
        when = min(when, (limit + dt.timedelta(microseconds=1)).isoformat(), key=_naive)
    return Acceptance(when, tuple(cases), folder, str(f))


def _naive(when: str) -> dt.datetime:
    """A canonical date as a naive UTC datetime, so that dated texts of either spelling compare."""
    moment = dt.datetime.fromisoformat(when)
    return moment if moment.tzinfo is None else moment.astimezone(dt.timezone.utc).replace(
        tzinfo=None)


def _now() -> dt.datetime:
    """UTC, naive, as accept dates acceptances."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def write(folder: Path, cases: list[str], fingerprint: str, note: str = "",
          through: str | None = None) -> Path:
    """Record that the current level of `cases` (all when empty) on one machine class is accepted,
    in FOLDER/<machine class>/accepted/, where a compare --history of that class's folder finds
    it; `through`: the date of the newest regressed run it accepts (readers let it accept nothing
    recorded later)."""
    # as pytest-benchmark dates runs
    now = _now().isoformat()
    path = (folder / fingerprint / ACCEPT_DIR
            / f"{now.replace(':', '-')}_{os.getpid()}{ACCEPT_SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"datetime": now, "cases": cases, "fingerprint": fingerprint, "note": note,
           **({"through": through} if through else {})}
    with atomic.written(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def unaccepted(runs: list[list[Record]], accepted: list[Acceptance]) -> list[Record]:
    """The newest regressed record of each case that no later acceptance covers (what accept would
    accept)."""
    newest: dict[tuple, Record] = {}
    for run in runs:
        for r in run:
            if r.regressed and not any(a.covers(r) and r.datetime < a.datetime for a in accepted):
                newest[(r.fingerprint, r.key)] = r
    return list(newest.values())
