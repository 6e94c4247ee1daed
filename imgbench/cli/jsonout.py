"""--json of compare, ab, changes and bisect: the verdicts as one JSON document on stdout instead of
the tables, with the same exit code (also in the document). Progress and notes that went to stdout
go to stderr then, so that stdout parses. No torch here."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

FORMAT_VERSION = 1


def option(p):
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout instead of the tables (same exit code)")


def out(as_json: bool):
    """Where lines meant for the reader go: stderr when stdout carries the JSON document."""
    return sys.stderr if as_json else sys.stdout


def plain(x):
    """`x` as JSON values: dataclasses as objects, tuples as lists, a NaN or infinity as null."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)
                if f.init and f.repr}
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def emit(command: str, code: int, doc: dict) -> int:
    """The document, after its command, format and exit code; returns the code."""
    head = {"command": command, "format_version": FORMAT_VERSION, "exit_code": code}
    print(json.dumps(plain({**head, **doc}), indent=2))
    return code


def run_of(point) -> dict:
    """A stored run, as a change point names it (a speedup's: its accelerator run's): file, time
    and commit."""
    r = getattr(point, "accel", point)
    return {"path": r.path, "datetime": r.datetime, "commit": r.commit}


def memory(v) -> dict:
    return {**plain(v), "verdict": v.verdict, "growth": plain(v.growth), "change": v.change}


def change(c) -> dict:
    """A change point: its series, the first run after it (and the last before), the levels
    either side, their ratio with its interval, and p."""
    return {"machine": c.machine, "case": c.case, "test": c.test, "kind": c.kind,
            "first": run_of(c.first), "since": run_of(c.since) if c.since is not None else None,
            "before": plain(c.before), "after": plain(c.after), "ratio": plain(c.ratio),
            "ci": plain(c.ci), "p": plain(c.p), "conditions": plain(c.conditions),
            "software": list(c.software)}


def pending(p) -> dict:
    return {"machine": p.machine, "case": p.case, "test": p.test, "kind": p.kind,
            "first": run_of(p.first), "runs": p.runs, "called": p.called,
            "ratio": plain(p.ratio), "bound": plain(p.bound)}
