"""What `imgbench run` says at its end, in a few lines: how many cases and where the run went, the
families that took the time, and what moved against the previous run of this machine class, with
the caveat that two separate runs on a noisy machine inform and never gate (the interleaved A/B
does)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from imgbench.core.config import RUN_MOVED
from imgbench.core.identity import family_of
from imgbench.runs import runfile

SHOWN = 5  # moved cases listed each way


def _medians(run: runfile.Run) -> dict[tuple, tuple[str, float]]:
    out = {}
    for b in run.benchmarks:
        median = (b.get("stats") or {}).get("median")
        if isinstance(median, int | float) and median > 0 and math.isfinite(median):
            out[runfile.case_key(b)] = (str(b.get("name")), float(median))
    return out


def families(run: runfile.Run) -> list[tuple[str, float]]:
    """The families by the seconds their cases took (extra_info case_s), most first."""
    took: dict[str, float] = defaultdict(float)
    for b in run.benchmarks:
        seconds = (b.get("extra_info") or {}).get("case_s")
        if isinstance(seconds, int | float) and math.isfinite(seconds):
            took[family_of(str(b.get("fullname", ""))) or "other"] += seconds
    return sorted(took.items(), key=lambda kv: -kv[1])


def moved(run: runfile.Run, previous: runfile.Run) -> tuple[list[tuple[str, float]], int]:
    """The cases of both runs whose median moved by more than config.RUN_MOVED, as (name, ratio
    now / before), largest move first; and how many cases both runs hold."""
    now, before = _medians(run), _medians(previous)
    both = now.keys() & before.keys()
    ratios = [(now[k][0], now[k][1] / before[k][1]) for k in both]
    out = [(n, r) for n, r in ratios if abs(math.log(r)) > math.log1p(RUN_MOVED)]
    return sorted(out, key=lambda nr: -abs(math.log(nr[1]))), len(both)


def lines(run: runfile.Run, previous: runfile.Run | None) -> list[str]:
    out = [f"imgbench: run saved to {run.path} ({len(run.benchmarks)} case(s))"]
    if top := families(run)[:3]:
        out.append("imgbench: the families that took the time: "
                   + ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in top))
    if previous is None:
        return out
    changed, both = moved(run, previous)
    slower = [(n, r) for n, r in changed if r > 1][:SHOWN]
    faster = [(n, r) for n, r in changed if r < 1][:SHOWN]
    out.append(f"imgbench: against the previous run {previous.path.name}: {len(changed)} of "
               f"{both} case(s) moved by more than {RUN_MOVED:.0%}"
               + (f" (median move x{statistics.median(r for _, r in changed):.2f})"
                  if changed else ""))
    out += [f"  slower x{r:.2f}  {n}" for n, r in slower]
    out += [f"  faster x{r:.2f}  {n}" for n, r in faster]
    if len(changed) > len(slower) + len(faster):
        out.append(f"  and {len(changed) - len(slower) - len(faster)} more")
    out.append("imgbench: two separate runs on a noisy machine inform and never gate: for a "
               "verdict, `imgbench ab` (interleaved) or `imgbench compare` with a history")
    return out
