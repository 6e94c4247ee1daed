"""Histories of stored runs: every run under the given files and folders, read from the files or,
light (no per-round data), through the cache of stored runs (runs.cache). No torch here."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgbench.runs import cache, record
from imgbench.runs.record import Record
from imgbench.runs.runfile import RunError


def find(paths) -> list[Path]:
    """JSON files named directly, and every *.json under folders named; in a stable order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.rglob("*.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise RunError(f"{p}: no such file or folder")
    return out


def identity(run: list[Record]) -> tuple:
    """What makes two files the same run (a copy kept as a CI artifact beside the history, say)."""
    return ((run[0].fingerprint, run[0].datetime, tuple((r.name, r.median) for r in run))
            if run else ())


@dataclass
class History:
    runs: list[list[Record]]   # one list per readable file with at least one case, oldest first
    skipped: list[str]         # one line per file that could not be read, naming it and why
    versions: set[str]         # pytest-benchmark versions that wrote the runs
    notes: list[str] = field(default_factory=list)  # about the cache of stored runs (rebuilt,
                                                    # not usable)


# how far ahead of this machine's clock a run's date may be (another machine's clock)
CLOCK_SKEW = dt.timedelta(days=1)


def _utc(when: str) -> dt.datetime:
    """A run's date (runfile.canonical_time) as an aware UTC time; naive ones are UTC."""
    t = dt.datetime.fromisoformat(when)
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


def marked(runs: list[list[Record]]) -> list[list[Record]]:
    """`runs` with every case measured exactly as a case judged a regression (the same machine
    class, case, median, min and rounds) marked regressed too: a copy of a judged run with a new
    date or without its verdict is that same measurement, and stays out of the reference."""
    bad = {_measured(r) for run in runs for r in run if r.regressed}
    return [[replace(r, regressed=True) if not r.regressed and _measured(r) in bad else r
             for r in run] for run in runs] if bad else runs


def _measured(r: Record) -> tuple:
    return r.fingerprint, r.key, r.median, r.min, r.rounds


def _load(path: Path) -> list[Record] | RunError:
    try:
        return record.load(path)
    except RunError as e:
        return e


def load(paths, rounds: bool = True) -> History:
    """Every run under the given files and folders. Unreadable files are skipped with a line each,
    so one corrupt file does not hide a history; no readable run at all is a RunError. rounds=False
    gives light records (cache.light: no per-round data, extra_info trimmed to what history readers
    use) from the cache of stored runs, which a thousand runs need: their JSON is gigabytes."""
    files = find(paths)
    for p in map(Path, paths):
        if p.is_dir() and not any(f.is_relative_to(p) for f in files):
            raise RunError(f"{p}: holds no stored runs (no *.json below it; expected a storage "
                           "folder such as .benchmarks/ or baselines/, or pytest-benchmark JSON "
                           "files)")
    if rounds:
        loaded, notes = map(_load, files), []
    else:
        loaded, notes = cache.records(files, [p for p in map(Path, paths) if p.is_dir()])
    runs, skipped, versions, seen = [], [], set(), {}
    latest = dt.datetime.now(dt.timezone.utc) + CLOCK_SKEW
    for run in loaded:
        if isinstance(run, RunError):
            skipped.append(str(run))
            continue
        if not run:
            continue
        if run[0].datetime and _utc(run[0].datetime) > latest:
            # it would be the newest run (the next baseline) for ever
            skipped.append(f"{run[0].path}: dated {run[0].datetime}, later than this machine's "
                           f"clock ({latest - CLOCK_SKEW:%Y-%m-%dT%H:%M} UTC): a clock set wrong, "
                           "or a crafted file")
            continue
        # a copy of a run (a CI artifact beside the history) counts once
        if (i := seen.get(identity(run))) is None:
            seen[identity(run)] = len(runs)
            runs.append(run)
            versions.add(run[0].version)
        elif any(r.regressed for r in run) and not any(r.regressed for r in runs[i]):
            runs[i] = run  # the copy saved with its verdict: its regressed cases must stay marked
    if not runs:
        raise RunError(f"no readable run with any case in {', '.join(map(str, paths))}"
                       + (f" ({len(skipped)} unreadable: {skipped[0]})" if skipped else ""))
    runs = marked(runs)
    runs.sort(key=lambda run: (run[0].datetime, run[0].path))
    lacking = Counter(run[0].lacks for run in runs if run[0].lacks)
    notes += [f"{n} run(s) lack {fields} (older imgbench, or another tool): "
              "read, those settings not checked"
              for fields, n in sorted(lacking.items())]
    return History(runs, skipped, versions, notes)
