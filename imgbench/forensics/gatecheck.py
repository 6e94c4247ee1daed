"""The real gate measures itself. Each job is one real `imgbench ab` session on the gate set: a base
worker running a checkout of the base ref and a candidate worker running this tree, both separate
pytest processes. In each job every case runs one trial per effect (in random order): A/A (nothing
injected) and the injected slowdowns, where the candidate's worker spins for `effect` times the
case's median call after each call (after the device sync, inside the clock). Each effect's trials
of one job are decided together exactly as `imgbench ab` decides a job (Holm over the cases), so:

- job-level false alarms: the share of jobs whose A/A trials flagged any case a regression;
- detection: the share of (job, case) trials with a slowdown flagged a regression;

each with a 95% Wilson interval. With `--hog` a busy process outside the job runs beside it: there
the gate must call nothing a regression (cases are flagged "measured under contention")."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgbench.core import table
from imgbench.core.config import AB_BUDGET_S
from imgbench.forensics import ab
from imgbench.forensics.worker import Side
from imgbench.judge import stats, verdict


@dataclass
class Tally:
    effect: float
    trials: int = 0
    flagged: int = 0            # trials called a regression
    contended: int = 0          # trials given no verdict: measured under contention
    jobs: int = 0
    jobs_flagged: int = 0       # jobs with at least one case called a regression

    def rate(self, job: bool = False) -> tuple[int, int, float, float]:
        k, n = (self.jobs_flagged, self.jobs) if job else (self.flagged, self.trials)
        return (k, n, *stats.wilson(k, n))


@dataclass
class CaseLog:
    sds: list[float] = field(default_factory=list)
    pairs: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


@dataclass
class Measured:
    tallies: dict[float, Tally]
    cases: dict[str, CaseLog]
    job_seconds: list[float]
    seeds: list[int]


def run_jobs(base: Side, cand: Side, args: list[str], folder: Path, jobs: int, effects: list[float],
             alpha: float, min_effect: float, seed: int, budget_s: float = AB_BUDGET_S,
             progress: Callable[[str], None] = lambda s: None) -> Measured:
    tallies = {e: Tally(e) for e in effects}
    cases: dict[str, CaseLog] = {}
    out = Measured(tallies, cases, [], [])
    for j in range(jobs):
        job_seed = seed + j
        out.seeds.append(job_seed)
        rng, start = random.Random(job_seed), time.monotonic()
        trials: dict[float, list[ab.Trial]] = {e: [] for e in effects}
        sub = folder / f"job{j}"
        sub.mkdir()
        with ab.session(base, cand, args, sub, job_seed, note=progress) as s:
            for m, p in s.each():
                if isinstance(p, str):
                    progress(f"job {j + 1}: {m.name} not compared ({p})")
                    continue
                order = list(effects)
                rng.shuffle(order)
                for e in order:
                    try:
                        t = p.trial(p.budget_pairs(budget_s), e)
                    except ab.CaseFailed as err:
                        progress(f"job {j + 1}: {m.name} not compared ({err})")
                        break
                    trials[e].append(t)
                    log = cases.setdefault(m.name, CaseLog())
                    log.sds.append(t.sd)
                    log.pairs.append(len(t.d))
                    log.seconds.append(t.seconds)
                    progress(f"job {j + 1}/{jobs} {m.name} +{e:.0%}: {t.summary()}")
        for e, ts in trials.items():
            if not ts:
                continue
            calls = [v.verdict for v in ab.decide(ts, alpha, min_effect)]
            tally = tallies[e]
            tally.trials += len(calls)
            tally.flagged += calls.count(verdict.REGRESSION)
            tally.contended += calls.count(verdict.CONTENDED)
            tally.jobs += 1
            tally.jobs_flagged += verdict.REGRESSION in calls
        out.job_seconds.append(time.monotonic() - start)
        progress(f"job {j + 1}/{jobs} done in {out.job_seconds[-1]:.0f} s")
    return out


def _rate(k: int, n: int, lo: float, hi: float) -> str:
    return f"{k}/{n} ({k / n:.0%}; {lo:.0%}-{hi:.0%})" if n else "-"


def render(m: Measured, markdown: bool = False) -> str:
    head = ["injected", "jobs with a regression", "trials called a regression", "contended trials"]
    rows = [["none (A/A)" if e == 0 else f"+{e:.0%}", _rate(*t.rate(job=True)), _rate(*t.rate()),
             f"{t.contended}/{t.trials}"] for e, t in sorted(m.tallies.items())]
    per_case = table.render(["case", "sd of pair log-ratios (median)", "pairs (mean)",
                             "seconds per trial (mean)"],
                            [[name, f"{np.median(c.sds):.3f}", f"{np.mean(c.pairs):.0f}",
                              f"{np.mean(c.seconds):.1f}"] for name, c in m.cases.items()],
                            markdown)
    jobs = (f"{len(m.job_seconds)} job(s), {np.mean(m.job_seconds):.0f} s each on average; seeds "
            f"{m.seeds[0]}-{m.seeds[-1]}" if m.job_seconds else "no job ran")
    return "\n".join([table.render(head, rows, markdown), "", per_case, "", jobs])


@contextmanager
def hog(on: bool):
    """A CPU-bound process outside this process tree (re-parented away by a shell), for the run's
    length."""
    if not on:
        yield None
        return
    pid = subprocess.run(["sh", "-c",
                          f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield int(pid)
    finally:
        subprocess.run(["kill", pid], capture_output=True)
