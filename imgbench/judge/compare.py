"""Regression gate: a candidate run against a baseline run (and, where stored, the reference window
of its machine class's history, judge.window). Cases are matched by test and params, not by test id.
Per case: the ratio of medians, its interval (stats.ratio_interval: each run's autocorrelated
rounds, widened by the history's between-run spread), the history's run-to-run bound, a verdict
(none for a case either run measured under contention)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from imgbench.core.config import ALPHA, MIN_EFFECT
from imgbench.core.errors import UserError
from imgbench.hw import contention
from imgbench.judge import evidence, speedup, stats, verdict
from imgbench.judge.verdict import Verdict
from imgbench.judge.window import MIN_RUNS, WINDOW, Window, window
from imgbench.runs.acceptances import Acceptance
from imgbench.runs.record import Record, differences, flag_differences


class CompareError(UserError):
    pass


def hardware(base: list[Record], cand: list[Record]) -> str | None:
    """None when both runs come from one machine class, else a line naming both."""
    fb = {r.fingerprint for r in base}
    fc = {r.fingerprint for r in cand}
    if fb == fc:
        return None
    return (f"different hardware: baseline {', '.join(map(str, sorted(fb, key=str)))} vs candidate "
            f"{', '.join(map(str, sorted(fc, key=str)))}")


def check_same_hardware(base: list[Record], cand: list[Record]):
    if (why := hardware(base, cand)) is not None:
        raise CompareError(f"{why}; absolute times only compare within one machine class")


def check_same_conditions(base: list[Record], cand: list[Record], threads: bool = True):
    """Runs measured under different conditions are not compared: one line naming the first
    difference. threads=False: across machine classes, where each machine uses its own cores
    (speedups are compared)."""
    ignore = () if threads else ("threads",)
    if base and cand and (diff := differences(base[0], cand[0], ignore)):
        raise CompareError("the runs measured different things (baseline vs candidate: "
                           f"{'; '.join(diff)}); "
                           "compare runs of one profile, dataset, optimizer and thread count")
    by_base = {r.key: r for r in base}
    for c in cand:
        if (b := by_base.get(c.key)) is not None and (diff := flag_differences(b, c, ignore)):
            raise CompareError(f"{c.name} ran under other numeric conditions (baseline vs "
                               f"candidate: {'; '.join(diff)}); compare runs measured alike")


def why_contended(**runs: list[Record]) -> str | None:
    """Why a case cannot be judged: the records it was measured by, per run ("candidate",
    "baseline"), that other processes crowded (contention.flag), each named by its run; None when
    none was."""
    why = [f"{flag} in the {run} run" for run, rs in runs.items() for r in rs
           if (flag := contention.flag(r.contention))]
    # a speedup's two cases of one run may say the same
    return "; ".join(dict.fromkeys(why)) or None


def effect_of(record: Record, per_family: dict[str, float] | None, default: float) -> float:
    """The minimum effect for a case: per family as the user names it (the bench file), e.g.
    dataloader."""
    return (per_family or {}).get(record.family or record.test, default)


def compare(base: list[Record], cand: list[Record], history: list[list[Record]] = (),
            min_effect: float = MIN_EFFECT, per_family: dict[str, float] | None = None,
            alpha: float = ALPHA, accepted: list[Acceptance] = (),
            past: Window | None = None) -> tuple[list[Verdict], list, list]:
    """Verdicts for the cases in both runs, and the keys found only in the candidate / only in the
    baseline. The history counts through its reference window (judge.window), which never holds the
    candidate, later runs or unaccepted regressions. One evidence rule (judge.evidence), Holm's
    step-down across the cases: each case's interval and bound are drawn at its Holm level."""
    check_same_hardware(base, cand)
    check_same_conditions(base, cand)
    # `past`: where the caller has it
    past = window(history, cand, accepted) if past is None else past
    by_base = {r.key: r for r in base}
    by_cand = {r.key: r for r in cand}
    keys = sorted(by_base.keys() & by_cand.keys())
    found = [evidence.of_runs(by_base[k].data, by_cand[k].data, by_cand[k].median,
                              past.medians.get(k, [])) for k in keys]
    why = [why_contended(candidate=[by_cand[k]], baseline=[by_base[k]]) for k in keys]
    levels = _levels(found, why, alpha)
    out = []
    for key, e, level, busy in zip(keys, found, levels, why, strict=True):
        b, c = by_base[key], by_cand[key]
        v = _verdict(c.name, c.test, b.median, c.median, e, level,
                     effect_of(c, per_family, min_effect))
        # the baseline predates the accepted level
        if key in past.settling and v.verdict == verdict.REGRESSION:
            v = replace(v, verdict=verdict.NOISY,
                        why=f"a newly accepted level: {past.settling[key]} run(s) of it in the "
                            f"history, judged against it from {MIN_RUNS}")
        out.append(verdict.contended(v, busy))
    only_cand = sorted(by_cand[k].name for k in by_cand.keys() - by_base.keys())
    only_base = sorted(by_base[k].name for k in by_base.keys() - by_cand.keys())
    return out, only_cand, only_base


def _levels(found: list[evidence.Evidence], why: list[str | None], alpha: float) -> list[float]:
    """Each case's Holm level among the cases judged (those measured under contention are not)."""
    judged = [i for i, w in enumerate(why) if w is None]
    levels = [alpha] * len(found)
    for i, level in zip(judged, evidence.holm([found[i].p_slower() for i in judged], alpha),
                        strict=True):
        levels[i] = level
    return levels


def _verdict(name: str, test: str, base: float, cand: float, e: evidence.Evidence, level: float,
             effect: float, kind: str = "time") -> Verdict:
    ci, h = e.interval(level), e.bounds(level)
    return Verdict(name, test, base, cand, cand / base if kind == "time" else base / cand, ci,
                   h.ratio if h else None, h.bound if h else None, effect,
                   verdict.by_interval(cand / base if kind == "time" else base / cand, ci, effect,
                                       h),
                   kind=kind, detectable=e.detectable(level, effect), level=level)


def speedup_evidence(b, c, history: list[float] = ()) -> evidence.Evidence:
    """Baseline speedup `b` against candidate speedup `c` (speedup.Speedup): the log of b / c, from
    the four cases' rounds (> 0: the accelerator lost ground); `history`, earlier speedups of the
    case on the machine class (3 or more), gives how far a run's speedup moves between runs, as for
    times (stats.log_ratio)."""
    runs = (b.cpu.data, b.accel.data, c.cpu.data, c.accel.data)
    if not all(x is not None and len(x) for x in runs):
        return evidence.Evidence(None)
    return evidence.Evidence(stats.log_ratio([b.cpu.data, c.accel.data],
                                             [b.accel.data, c.cpu.data],
                                             stats.between_runs(history)))


def speedup_verdict(b, c, effect: float = MIN_EFFECT, alpha: float = ALPHA,
                    history: list[float] = ()) -> Verdict:
    """Baseline speedup `b` against candidate speedup `c` (speedup.Speedup) of one case and
    accelerator, at level `alpha`, with the case's earlier speedups as `history`."""
    v = _verdict(f"{c.device}/cpu {c.case}", c.test, b.speedup, c.speedup,
                 speedup_evidence(b, c, history), alpha, effect, kind="speedup")
    return verdict.contended(v, why_contended(candidate=[c.cpu, c.accel],
                                              baseline=[b.cpu, b.accel]))


def compare_speedups(base: list[Record], cand: list[Record], min_effect: float = MIN_EFFECT,
                     per_family: dict[str, float] | None = None,
                     alpha: float = ALPHA) -> tuple[list[Verdict], list, list]:
    """Across machine classes only ratios mean anything: each run's GPU-over-CPU speedups, matched
    by case and accelerator. The ratio is baseline speedup / candidate speedup, so > 1 is worse, as
    for times. Holm's step-down across the speedups compared."""
    check_same_conditions(base, cand, threads=False)
    by_base = {(s.key, s.device): s for s in speedup.within(base, alpha)}
    by_cand = {(s.key, s.device): s for s in speedup.within(cand, alpha)}
    for run, found in (("baseline", by_base), ("candidate", by_cand)):
        if not found:
            raise CompareError(f"{hardware(base, cand)}: absolute times only compare within one "
                               f"machine class, and the {run} has no case timed on both the CPU "
                               "and an accelerator, so there is no GPU-over-CPU speedup to compare "
                               "instead")
    keys = sorted(by_base.keys() & by_cand.keys(), key=str)
    why = [why_contended(candidate=[by_cand[k].cpu, by_cand[k].accel],
                         baseline=[by_base[k].cpu, by_base[k].accel]) for k in keys]
    levels = _levels([speedup_evidence(by_base[k], by_cand[k]) for k in keys], why, alpha)
    out = [speedup_verdict(by_base[k], by_cand[k],
                           effect_of(by_cand[k].accel, per_family, min_effect), level)
           for k, level in zip(keys, levels, strict=True)]
    only_cand = sorted(f"{by_cand[k].device}/cpu {by_cand[k].case}"
                       for k in by_cand.keys() - by_base.keys())
    only_base = sorted(f"{by_base[k].device}/cpu {by_base[k].case}"
                       for k in by_base.keys() - by_cand.keys())
    return out, only_cand, only_base


def speedup_falls(series: list, min_effect: float = MIN_EFFECT) -> list:
    """The points of a speedup series (speedup.series) whose speedup fell against the same case's
    previous point: a regression by speedup_verdict, with the newest WINDOW earlier points of the
    case as its history (at least MIN_RUNS of them)."""
    by_case: dict[tuple, list] = {}
    for s in series:
        by_case.setdefault((s.key, s.device), []).append(s)
    # below MIN_RUNS earlier points a fall is information only, as a time without history
    return [points[j] for points in by_case.values() for j in range(MIN_RUNS, len(points))
            if speedup_verdict(points[j - 1], points[j], min_effect,
                               history=[p.speedup for p in points[max(0, j - WINDOW):j]]
                               ).verdict == verdict.REGRESSION]


@dataclass
class Judged:
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)  # contended cases; cases only one run has; the
                                                    # history unused
    across: str | None = None                       # why speedups were compared instead of times


def runs(base: list[Record], cand: list[Record], history: list[list[Record]] = (),
         min_effect: float = MIN_EFFECT, per_family: dict[str, float] | None = None,
         accepted: list[Acceptance] = (), gate_without_history: bool = False) -> Judged:
    """A candidate run against a baseline run: times within one machine class (with the reference
    window of its history), GPU-over-CPU speedups across machine classes. A slowdown of a case
    without a history bound is information only (SLOWER_NO_HISTORY, never failing a gate) unless
    `gate_without_history`."""
    other = hardware(base, cand)
    if other is None:
        past = window(history, cand, accepted)
        verdicts, only_cand, only_base = compare(base, cand, history, min_effect, per_family,
                                                 past=past)
        judged = Judged(verdicts, past.notes() if history else [])
    else:
        verdicts, only_cand, only_base = compare_speedups(base, cand, min_effect, per_family)
        judged = Judged(verdicts,
                        ["the history is not used across machine classes"] if history else [],
                        f"{other}: absolute times are not compared; comparing GPU-over-CPU "
                        "speedups (ratio = baseline speedup / candidate speedup, > 1 is worse)")
    if not gate_without_history:
        bare = [i for i, v in enumerate(judged.verdicts)
                if v.verdict == verdict.REGRESSION and v.history_bound is None]
        for i in bare:
            judged.verdicts[i] = replace(judged.verdicts[i], verdict=verdict.SLOWER_NO_HISTORY)
        if bare:
            judged.notes.append(f"{len(bare)} case(s) slower without a history of {MIN_RUNS} runs "
                                "to judge them by: information only (give --history, or "
                                "--gate-without-history to fail on them)")
    judged.notes += [f"{v.name}: {v.why}" for v in verdicts if v.verdict == verdict.CONTENDED]
    if levels := [v.level for v in verdicts if v.level is not None
                  and v.verdict != verdict.CONTENDED]:
        judged.notes.append(f"Holm across the {len(levels)} case(s) judged: each interval and "
                            f"bound at its case's level (from {min(levels):.2g} to "
                            f"{max(levels):.2g}), so the chance of any false regression in this "
                            f"comparison is {ALPHA:g}; could detect: the smallest slowdown called "
                            "a regression 9 times in 10")
    if only_base:
        judged.notes.append("only in the baseline (not run by the candidate): "
                            f"{', '.join(only_base)}")
    if only_cand:
        judged.notes.append(f"only in the candidate (new, no baseline): {', '.join(only_cand)}")
    return judged
