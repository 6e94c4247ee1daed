"""The run's estimate, learned: a case the previous saved run of this machine class also ran is
estimated by what it took there (its `case_s`: setup, call and teardown, which the plugin stores in
each case's extra_info), the others by the cost model (bench/estimate.py). The line says how many
came from which run."""

from __future__ import annotations

from pathlib import Path

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
    out = {}
    for b in run.benchmarks:
        seconds = (b.get("extra_info") or {}).get("case_s")
        if isinstance(seconds, int | float) and seconds >= 0:
            out[runfile.case_key(b)] = float(seconds)
    return out


def run_seconds(cases: list[tuple[str, str, dict]], s: Settings,
                previous: dict[tuple, float]) -> tuple[dict[str, float], int]:
    """Seconds per family of these (family, test, params) cases, a case the previous run holds at
    what it took there; and how many were. Calibration is the cost model's where no case was
    learned (a learned case's time holds its share of it)."""
    per_family = estimate.run_seconds(cases, s)
    learned = 0
    for family, test, p in cases:
        took = previous.get(runfile.case_key({"name": test, "params": p}))
        if took is not None:
            per_family[family] += took - estimate.case_seconds(family, test, p, s)
            learned += 1
    if learned:
        per_family.pop("calibration", None)
    return per_family, learned


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
