"""The real gate measures itself, as users get it. Each job is one real `imgbench ab` session on the
gate set: a base worker running a checkout of the base ref and a candidate worker running this tree,
both separate pytest processes. In each job every case runs an A/A trial (nothing injected), and per
injected effect one case drawn at random also runs a slowed trial, the candidate's worker spinning
for `effect` times the case's median call after each call (after the device sync, inside the clock).
The job's A/A trials are decided together exactly as `imgbench ab` decides a job (Holm over the
cases); each effect is decided as a job in which that one case regressed and the others did not
(its slowed trial in place of its A/A one), so detection is that of a regression touching one case.

Every trial is appended to a results file (JSON lines), so rates accumulate over runs of gate-check;
the table is computed from the file, for this machine class: job-level A/A false alarms, A/A case
trials flagged, single-case detection per family and effect, each with a 95% Wilson interval, pairs
and minutes; and per case the sd of the log-ratio between pairs of processes, estimated from the A/A
jobs (the spread of their estimates less their own noise): the figure --process-sd stands for.

With `--hog` a busy process outside the job runs beside it: there the gate must call nothing a
regression (cases are flagged "measured under contention")."""

from __future__ import annotations

import datetime
import json
import math
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from imgbench.core import atomic, table
from imgbench.core.config import AB_BUDGET_S, AB_PROCESS_MIN_JOBS, AB_PROCESS_SD, AB_ROUNDS
from imgbench.core.errors import UserError
from imgbench.core.identity import family_of
from imgbench.forensics import ab, policy
from imgbench.forensics.worker import Side
from imgbench.judge import paired, stats, verdict
from imgbench.judge.paired import ProcessTerm


def run_jobs(base: Side, cand: Side, args: list[str], folder: Path, jobs: int, effects: list[float],
             alpha: float, min_effect: float, seed: int, budget_s: float = AB_BUDGET_S,
             progress: Callable[[str], None] = lambda s: None,
             process: ProcessTerm | float = AB_PROCESS_SD, stamp: dict | None = None,
             done: Callable[[list[dict]], None] = lambda lines: None,
             n_rounds: int = AB_ROUNDS) -> list[dict]:
    """`jobs` real A/B jobs (each `n_rounds` rounds of fresh workers, as `imgbench ab` runs); one
    line per trial (see the module's text). `stamp`: fields every line carries (machine class,
    base, date); `done` gets each job's lines as it ends (so that an interrupted run keeps the jobs
    it finished)."""
    lines: list[dict] = []
    for j in range(jobs):
        started = time.monotonic()
        aa, slowed = _job(base, cand, args, folder / f"job{j}", seed + j, effects,
                          policy.Sizing(budget_s / n_rounds, 0, 0, alpha, min_effect, process,
                                        n_rounds),
                          lambda s, j=j: progress(f"job {j + 1}/{jobs}: {s}"))
        minutes = (time.monotonic() - started) / 60
        base_line = {**(stamp or {}), "seed": seed + j, "job_minutes": round(minutes, 2),
                     "alpha": alpha, "min_effect": min_effect,
                     "process_sd": paired.term(process).default, "rounds": n_rounds}
        job = _decided(list(aa.values()), None, 0.0, base_line, alpha, min_effect, process)
        for e, t in slowed.items():
            others = [a for name, a in aa.items() if name != t.name]
            job += _decided(others, t, e, base_line, alpha, min_effect, process)
        done(job)
        lines += job
        progress(f"job {j + 1}/{jobs} done in {minutes:.1f} min")
    return lines


def _job(base: Side, cand: Side, args: list[str], folder: Path, job_seed: int,
         effects: list[float], sizing: policy.Sizing, progress: Callable[[str], None]
         ) -> tuple[dict[str, ab.Trial], dict[float, ab.Trial]]:
    """One job's trials: per case its A/A trial, and per effect the slowed trial of the case drawn
    for it, each holding its pairs of every round. `sizing`: the policy, its job size set here."""
    rng = random.Random(job_seed)
    chosen: dict[float, str] = {}
    got: dict[tuple[str, float], ab.Trial] = {}
    failed: set[str] = set()
    folder.mkdir()
    for r, s in ab.rounds(base, cand, args, folder, job_seed, sizing.rounds, progress):
        if r == 0:
            chosen = {e: rng.choice(s.cases).name for e in effects if e > 0} if s.cases else {}
            sizing.cases = sum(not policy.informational(m.cand_id) for m in s.cases)
            sizing.trials = sum(policy.rounds_of(m.cand_id, sizing.rounds)
                                * (1 + list(chosen.values()).count(m.name)) for m in s.cases)
            sizing.start = time.monotonic()
        for m, p in s.each():
            if isinstance(p, str) or m.name in failed:
                failed.add(m.name)
                progress(f"{m.name} not compared ({p if isinstance(p, str) else 'failed before'})")
                continue
            order = [0.0] + [e for e, name in chosen.items() if name == m.name]
            rng.shuffle(order)
            try:
                for e in order:
                    key = (m.name, e)
                    t = sizing.trial(p, e, extend=not policy.informational(m.cand_id),
                                     before=got[key].groups() if key in got else ())
                    got[key] = got[key].join(t) if key in got else t
                    progress(f"round {r + 1} {m.name} +{e:.0%}: {t.summary()}")
            except ab.CaseFailed as err:
                failed.add(m.name)
                progress(f"{m.name} not compared ({err})")
    got = {k: t for k, t in got.items() if k[0] not in failed}
    return ({name: t for (name, e), t in got.items() if e == 0},
            {e: t for (name, e), t in got.items() if e > 0})


def _decided(trials: list[ab.Trial], slowed: ab.Trial | None, effect: float, base_line: dict,
             alpha: float, min_effect: float,
             process: ProcessTerm | float) -> list[dict]:
    """One decision as ab makes it: the A/A lines (effect 0: all the job's cases), or the slowed
    case's line (its trial decided among the others' A/A trials)."""
    job = trials + ([slowed] if slowed else [])
    if not job:
        return []
    verdicts = policy.tiered(job, alpha, min_effect, process)
    job_flagged = any(v.verdict == verdict.REGRESSION
                      for t, v in zip(job, verdicts, strict=True) if t is not slowed)
    out = []
    for t, v in zip(job, verdicts, strict=True):
        if slowed is not None and t is not slowed:
            continue
        e = paired.estimate(t.d, 0.0)  # the job's own noise: what the process term is read against
        out.append({**base_line, "case": t.name, "family": family_of(t.nodeid) or "-",
                    "effect": effect, "verdict": v.verdict,
                    "flagged": v.verdict in (verdict.REGRESSION, verdict.SLOWER_INFO),
                    "gated": not policy.informational(t.nodeid), "aa_job_flagged": job_flagged,
                    "rounds": t.rounds, "case_process_sd": paired.term(process).sd(t.name),
                    "log_ratio": e.centre, "within_se": e.se, "ratio": v.ratio,
                    "ci": list(v.ci) if v.ci else None,
                    "detectable": v.detectable if _finite(v.detectable) else None,
                    "pairs": len(t.d), "sd": t.sd, "seconds": round(t.seconds, 2)})
    return out


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def append(path: Path, lines: list[dict]) -> None:
    """The lines added to the results file, written whole (the old file stays until the new one is
    complete)."""
    old = path.read_text() if path.exists() else ""
    with atomic.written(path) as tmp:
        tmp.write_text(old + "".join(json.dumps(ln, sort_keys=True) + "\n" for ln in lines))


def load(path: Path, machine: str | None = None, option: str = "--results") -> list[dict]:
    """The results file's lines (of `machine` only, if given); `option`: the one that named it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UserError(f"{option} {str(path)!r}: {e.strerror or e}") from None
    out = []
    for i, ln in enumerate(text.splitlines(), 1):
        try:
            line = json.loads(ln)
        except json.JSONDecodeError:
            raise UserError(f"{option} {str(path)!r} line {i} is not JSON (valid: the lines "
                            "gate-check appends)") from None
        if machine is None or line.get("machine") == machine:
            out.append(line)
    return out


def _rate(k: int, n: int) -> str:
    if not n:
        return "-"
    lo, hi = stats.wilson(k, n)
    return f"{k}/{n} ({k / n:.0%}; {lo:.0%}-{hi:.0%})"


def process_sd(lines: list[dict]) -> dict[str, tuple[float, int]]:
    """Per case, from its A/A lines of at least 3 jobs: the sd of the log-ratio between two worker
    processes (the variance of the jobs' estimates less their own squared standard errors, each
    job's term times its rounds, since a job's estimate averages that many pairs of processes; at
    least 0) and the number of jobs."""
    by_case = defaultdict(list)
    for ln in lines:
        if ln["effect"] == 0 and ln["verdict"] != verdict.CONTENDED:
            by_case[ln["case"]].append((ln["log_ratio"], ln["within_se"], ln.get("rounds", 1)))
    out = {}
    for case, got in by_case.items():
        n = len(got)
        if n >= 3:
            centres, ses, rounds = np.array(got).T
            terms = rounds * ((centres - centres.mean()) ** 2 * n / (n - 1) - ses**2)
            out[case] = (math.sqrt(max(float(terms.mean()), 0.0)), n)
    return out


def process_term(path: Path, machine: str, default: float,
                 accelerator: float | None = None) -> ProcessTerm:
    """The process term for this machine class: the default (`accelerator` for accelerator cases),
    raised per case where the results file's A/A jobs (without a hog) measured more in at least
    config.AB_PROCESS_MIN_JOBS jobs."""
    lines = [ln for ln in load(path, machine, "--process-from") if not ln.get("hog")]
    return ProcessTerm(default, {case: sd for case, (sd, n) in process_sd(lines).items()
                                 if n >= AB_PROCESS_MIN_JOBS}, accelerator)


def render(lines: list[dict], markdown: bool = False) -> str:
    """The tables of a results file's lines: job-level and case-level A/A rates, detection per
    family and effect, the between-process sd per case."""
    aa = [ln for ln in lines if ln["effect"] == 0]
    jobs = {(ln.get("machine"), ln["seed"], ln.get("date")): ln["aa_job_flagged"] for ln in aa}
    rows = [["A/A: jobs with any gated case flagged", _rate(sum(jobs.values()), len(jobs)), "-",
             "-"]]
    for tier, label in ((True, "gated"), (False, "information-tier")):
        got = [ln for ln in aa if ln.get("gated", True) == tier]
        if got:
            rows.append([f"A/A: {label} case trials flagged",
                         _rate(sum(ln["flagged"] for ln in got), len(got)), _mean(got, "pairs"),
                         _minutes(got)])
    # each interval is at the level Holm held its case to: 1 - 2 alpha / cases at the least
    shown = [ln for ln in aa if ln.get("gated", True) and ln.get("ci")]
    if shown:
        rows.append(["A/A: gated intervals not covering 1",
                     _rate(sum(not ln["ci"][0] <= 1 <= ln["ci"][1] for ln in shown), len(shown)),
                     "-", "-"])
    groups = defaultdict(list)
    for ln in lines:
        if ln["effect"] > 0:
            groups[(ln["family"], ln["effect"], ln.get("gated", True))].append(ln)
    for (family, effect, gated), got in sorted(groups.items()):
        tier = "" if gated else " (information tier)"
        rows.append([f"+{effect:.0%} in one {family} case{tier}: detected",
                     _rate(sum(ln["flagged"] for ln in got), len(got)), _mean(got, "pairs"),
                     _minutes(got)])
    head = ["trials", "rate (95% Wilson interval)", "pairs (mean)", "minutes per trial (mean)"]
    sds = process_sd(lines)
    per_case = table.render(
        ["case", "A/A trials", "pair sd (median)", "could detect (median)",
         "between-process sd (jobs)"],
        [[case, str(len(got)), f"{np.median([ln['sd'] for ln in got]):.3f}",
          _median_detectable(got),
          f"{100 * sds[case][0]:.2f}% ({sds[case][1]})" if case in sds else "- (fewer than 3)"]
         for case, got in _by_case(aa).items()], markdown)
    contended = sum(ln["verdict"] == verdict.CONTENDED for ln in lines)
    tail = (f"{len(lines)} trial(s) from {len(jobs)} job(s); {contended} measured under "
            "contention (no verdict)")
    return "\n".join([table.render(head, rows, markdown), "", per_case, "", tail])


def _by_case(lines: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for ln in lines:
        out[ln["case"]].append(ln)
    return out


def _mean(lines: list[dict], key: str) -> str:
    return f"{np.mean([ln[key] for ln in lines]):.0f}" if lines else "-"


def _minutes(lines: list[dict]) -> str:
    return f"{np.mean([ln['seconds'] for ln in lines]) / 60:.2f}" if lines else "-"


def _median_detectable(lines: list[dict]) -> str:
    got = [ln["detectable"] for ln in lines if ln.get("detectable") is not None]
    return f">= {np.median(got):.1%}" if got else "-"


def stamp(machine: str, base: str) -> dict:
    """The fields every line of one gate-check run carries."""
    return {"machine": machine, "base": base,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


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
