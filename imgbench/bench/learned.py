"""The run's estimate, learned: a case the previous saved run of this machine class also ran is
estimated by what it took there (its `case_s`: setup, call and teardown, which the plugin stores in
each case's extra_info; a case it skipped, by the seconds the run's `imgbench.skipped` list gives
it), the others by the cost model (bench/estimate.py). The line says how many came from which
run."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbench.bench import estimate
from imgbench.core.options import Settings
from imgbench.runs import runfile


def previous_seconds(path: str | Path | None) -> dict[tuple, float]:
    """Case key -> seconds the case took in the run at `path` (nothing where the run is missing,
    unreadable, or predates `case_s`)."""
    if not path:
        return {}
    try:
        run = runfile.read(path)
    except (OSError, runfile.RunError):
        return {}
    skipped = run.meta.get("skipped")
    cases = [(b, (b.get("extra_info") or {}).get("case_s")) for b in run.benchmarks]
    cases += [(c, c.get("case_s")) for c in (skipped if isinstance(skipped, list) else [])
              if isinstance(c, dict) and isinstance(c.get("name"), str)]
    return {runfile.case_key(b): float(seconds) for b, seconds in cases
            if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0}


SECONDS = pytest.StashKey[dict]()  # node id -> {name, params, case_s, skipped}


def record(item, report, params: dict) -> None:
    """After each phase of a bench case: its seconds so far, into its extra_info (`case_s`) where
    it is timed, and kept for the run's list of skipped cases (a skip is no result, but the next
    run should not think it costs what the cost model says)."""
    if (bench := getattr(item, "funcargs", {}).get("benchmark")) is not None:
        bench.extra_info["case_s"] = round(bench.extra_info.get("case_s", 0.0) + report.duration, 3)
    seen = item.config.stash.setdefault(SECONDS, {})
    case = seen.setdefault(item.nodeid, {"name": item.name, "case_s": 0.0, "skipped": False,
                                         "params": {k: v if isinstance(v, int | str) else str(v)
                                                    for k, v in params.items()}})
    case["case_s"] = round(case["case_s"] + report.duration, 3)
    case["skipped"] = case["skipped"] or report.skipped


def skipped(config) -> list[dict]:
    """The run's skipped cases, each with its params and seconds (for the run's imgbench block)."""
    return [{k: c[k] for k in ("name", "params", "case_s")}
            for c in config.stash.get(SECONDS, {}).values() if c["skipped"]]


def run_seconds(cases: list[tuple[str, str, dict]], s: Settings,
                previous: dict[tuple, float]) -> tuple[dict[str, float], int]:
    """Seconds per family of these (family, test, params) cases, a case the previous run holds at
    what it took there; and how many were. Calibration is the cost model's where no case was
    learned (a learned case's time holds its share of it)."""
    per_family = estimate.run_seconds(cases, s)
    learned = 0
    for family, test, p in cases:
        if (took := _took(test, p, previous)) is not None:
            per_family[family] += took - estimate.case_seconds(family, test, p, s)
            learned += 1
    if learned:
        per_family.pop("calibration", None)
    return per_family, learned


def expected(cases: list[tuple[str, str, dict]], s: Settings,
             previous: dict[tuple, float]) -> list[float]:
    """Seconds each (family, test, params) case is expected to take: what it took in the previous
    run, else the cost model's (the hang limit's scale: bench/hang.py)."""
    return [took if (took := _took(test, p, previous)) is not None
            else estimate.case_seconds(family, test, p, s) for family, test, p in cases]


def _took(test: str, p: dict, previous: dict[tuple, float]) -> float | None:
    return previous.get(runfile.case_key({"name": test, "params": p}))


def describe(per_family: dict[str, float], cases: int, learned: int, previous: str | None) -> str:
    """The estimate line: estimate.describe's, saying which cases came from the previous run."""
    line = estimate.describe(per_family, cases)
    if not learned:
        return line
    head = line.split("; a cost model", 1)[0]
    rest = cases - learned
    return (f"{head}; {learned} case(s) at what they took in the previous run "
            f"{Path(previous).name}" + (f", {rest} by the cost model (imgbench/bench/estimate.py)"
                                        if rest else ""))
