"""Reading and writing the one-shot GPU check's files for imgbench.preflight.gpucheck: the step
records, junit XML, pytest-benchmark runs and logs its steps left in the work folder, and the output
files, each written whole or not at all and never over MAX_BYTES."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.core import atomic
from imgbench.runs import record, runfile
from imgbench.runs.runfile import RunError

MAX_BYTES = 16 * 2**20     # per output file: the most the lent machine's transfer brings back
LOG_LINES = 80             # per step in log.txt: the tail, where pytest's summary and errors are
LINE_CHARS = 400


@dataclass(frozen=True)
class Step:
    name: str
    rc: int
    limit_s: int
    wall_s: float

    @property
    def outcome(self) -> str:
        if self.rc == 0:
            return "passed"
        if self.rc == 124:
            return f"timed out after {self.limit_s} s"
        if self.rc == 137:
            return (f"killed after {self.wall_s:.0f} s (it did not stop when interrupted at "
                    f"{self.limit_s} s)")
        return f"exit {self.rc}"


@dataclass
class Cases:
    """One pytest step's cases, from its junit XML."""

    passed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (test id, first line of the
                                                                 # message)
    skipped: Counter = field(default_factory=Counter)             # reason -> cases
    seconds: float = 0.0          # the cases' junit times: setup, call and teardown
    recorded: set[str] = field(default_factory=set)               # their node ids

    def startup_s(self, wall_s: float) -> float:
        """The process's own seconds: its wall time less its cases' (interpreter, imports,
        collection, writing its files)."""
        return max(0.0, wall_s - self.seconds)


def read_steps(work: Path) -> tuple[list[Step], list[str]]:
    path = work / "steps.tsv"
    if not path.is_file():
        return [], [f"{path}: no step records (the check stopped before its first step ended?)"]
    steps, notes = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            name, rc, limit, wall = line.split("\t")
            steps.append(Step(name, int(rc), int(limit), float(wall)))
        except ValueError:
            notes.append(f"{path} line {n} unreadable (expected name, exit code, limit, wall "
                         f"seconds): {line!r:.120}")
    return steps, notes


def read_cases(path: Path) -> Cases | str:
    """The cases of a junit XML, or the line that says why there are none."""
    if not path.is_file():
        return "no junit XML (pytest did not finish)"
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        return f"unreadable junit XML ({e})"
    out = Cases()
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:  # pytest's entry for a session interrupted between cases
            continue
        out.seconds += _float(case.get("time"))
        # pytest's classname is the node id's path, dotted, without .py
        out.recorded.add(f"{(case.get('classname') or '').replace('.', '/')}.py::{name}")
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            out.failed.append((name, _first_line(bad.get("message") or bad.text or "")))
        elif (skip := case.find("skipped")) is not None:
            out.skipped[_first_line(skip.get("message") or "")] += 1
        else:
            out.passed += 1
    return out


def _float(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def read_collected(path: Path) -> list[str] | None:
    """The node ids a step collected (imgbench.preflight.collected), or None when it wrote none
    (cut before its collection ended, or not a pytest step)."""
    if not path.is_file():
        return None
    return [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if line]


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:LINE_CHARS]


def read_run(path: Path) -> runfile.Run | str:
    """A step's pytest-benchmark run, every case readable, or the line that says why there is
    none."""
    if not path.is_file():
        return "no pytest-benchmark JSON (pytest wrote none)"
    try:
        run = runfile.read(path)
        record.of_run(run)  # each case with a name and the statistics the suite reads
    except RunError as e:
        return str(e)
    return run


def merge(runs: list[runfile.Run]) -> runfile.Run:
    """One run of several pytest processes: the first one's header and every case (runfile.merged
    unions the imgbench block's axis lists and peaks and names the runs merged in)."""
    acc = runs[0]
    for run in runs[1:]:
        doc, _ = runfile.merged(acc, run)
        acc = dataclasses.replace(acc, raw=doc, benchmarks=doc["benchmarks"])
    return acc


def fit(doc: dict, what: str) -> tuple[str, list[str]]:
    """`doc` as JSON of at most MAX_BYTES, and a line for whatever was dropped to get there: first
    every case's per-round times, then, if still too large, the cases at the end."""
    text = json.dumps(doc)  # ASCII: characters are bytes
    if len(text) <= MAX_BYTES:
        return text, []
    notes = [f"{what}: per-round times (stats.data) dropped: with them it would be "
             f"{len(text) / 2**20:.1f} MiB (limit {MAX_BYTES / 2**20:.0f} MiB); medians and the "
             "other statistics are kept"]
    cases = [{**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
             if isinstance(b, dict) and isinstance(b.get("stats"), dict) else b
             for b in doc["benchmarks"]]
    text = json.dumps({**doc, "benchmarks": cases})
    if len(text) <= MAX_BYTES:
        return text, notes
    size, keep = len(json.dumps({**doc, "benchmarks": []})), []
    for b in cases:
        size += len(json.dumps(b)) + 2
        if size > MAX_BYTES:
            break
        keep.append(b)
    notes.append(f"{what}: still over the limit without rounds: the last "
                 f"{len(cases) - len(keep)} of {len(cases)} cases left out")
    return json.dumps({**doc, "benchmarks": keep}), notes


def tail(path: Path) -> list[str]:
    """The last LOG_LINES lines of a log, each cut at LINE_CHARS; a huge log is read from its end
    only."""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - LOG_LINES * LINE_CHARS * 4))
        text = f.read().decode("utf-8", errors="replace")
    return [line[:LINE_CHARS] for line in text.splitlines()[-LOG_LINES:]]


def write_text(path: Path, text: str) -> Path:
    """Written whole or not at all, and never over MAX_BYTES (JSON is fitted before: never cut)."""
    with atomic.written(path) as tmp:
        tmp.write_bytes(text.encode("utf-8")[:MAX_BYTES])
    return path
