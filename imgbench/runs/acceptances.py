"""Acceptances: that the current level of regressed cases on one machine class is the new reference
(`imgbench accept`). Each is a small file beside the runs, under HISTORY/<machine class>/accepted/;
stored runs are never modified. No torch here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from imgbench.core import atomic
from imgbench.core.errors import UserError
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



def read(paths) -> list[Acceptance]:
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
                raise UserError(f"{f}: not a readable acceptance ({e}); "
                                "move it aside or fix it") from None
    return out


def write(folder: Path, cases: list[str], fingerprint: str, note: str = "") -> Path:
    """Record that the current level of `cases` (all when empty) on one machine class is accepted,
    in FOLDER/<machine class>/accepted/, where a compare --history of that class's folder finds
    it."""
    # as pytest-benchmark dates runs
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
    path = (folder / fingerprint / ACCEPT_DIR
            / f"{now.replace(':', '-')}_{os.getpid()}{ACCEPT_SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"datetime": now, "cases": cases, "fingerprint": fingerprint, "note": note}
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
