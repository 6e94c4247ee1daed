"""Regression gate: a candidate run against a baseline run (and, where stored, the history of its
machine class). Cases are matched by family and params, not by test id. Per case: the ratio of
medians, a bootstrap interval from the per-round data, the history's run-to-run bound, a verdict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgbench import stats
from imgbench.results import Record, differences, identity

REGRESSION, IMPROVEMENT, UNCHANGED, NOISY = "regression", "improvement", "unchanged", "too noisy to say"


class CompareError(ValueError):
    pass


@dataclass(frozen=True)
class Verdict:
    name: str
    family: str
    base_median: float
    cand_median: float
    ratio: float                  # candidate / baseline median: > 1 is slower
    ci: tuple[float, float] | None  # bootstrap interval of the ratio; None without per-round data
    history_ratio: float | None   # candidate / the history's median, for machine classes with history
    history_bound: float | None   # largest history_ratio the history's run-to-run spread allows
    min_effect: float
    verdict: str
    kind: str = "time"            # "time": medians in seconds; "speedup": GPU-over-CPU speedups


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


def check_same_conditions(base: list[Record], cand: list[Record]):
    if base and cand and (diff := differences(base[0], cand[0])):
        raise CompareError(f"the runs measured different things (baseline vs candidate: {'; '.join(diff)}); "
                           "compare runs of one profile, dataset and optimizer")


def judge(ratio: float, ci, history_ratio: float | None, bound: float | None, effect: float,
          low: float | None = None) -> str:
    """Regression: slower beyond the interval, the minimum effect and (with history) the run-to-run
    spread, all three. Improvement: the mirror image. Unchanged: the interval rules out the minimum
    effect either way. Otherwise too noisy to say. With neither an interval (runs saved without
    per-round data) nor a history there is no measure of noise, so nothing is a regression."""
    has_history = bound is not None and history_ratio is not None
    low = low if low is not None else 1 / bound if bound else None  # smallest usual history_ratio
    if ci is None and not has_history:
        return NOISY
    lo, hi = ci if ci else (ratio, ratio)
    if lo > 1 and ratio >= 1 + effect and (not has_history or history_ratio > bound):
        return REGRESSION
    if hi < 1 and ratio <= 1 / (1 + effect) and (not has_history or history_ratio < low):
        return IMPROVEMENT
    if ci is not None and lo >= 1 / (1 + effect) and hi <= 1 + effect:
        return UNCHANGED
    if ci is None and has_history and low <= history_ratio <= bound and abs(ratio - 1) < effect:
        return UNCHANGED
    return NOISY


def effect_of(record: Record, per_family: dict[str, float] | None, default: float) -> float:
    """The minimum effect for a case: per family as the user names it (the bench file), e.g. dataloader."""
    return (per_family or {}).get(record.bench or record.family, default)


def compare(base: list[Record], cand: list[Record], history: list[list[Record]] = (), min_effect: float = 0.05,
            per_family: dict[str, float] | None = None, alpha: float = 0.01) -> tuple[list[Verdict], list, list]:
    """Verdicts for the cases in both runs, and the keys found only in the candidate / only in the baseline."""
    check_same_hardware(base, cand)
    check_same_conditions(base, cand)
    by_base = {r.key: r for r in base}
    by_cand = {r.key: r for r in cand}
    machine = {r.fingerprint for r in cand}
    past: dict[tuple, list[float]] = {}
    for run in history:
        if run and identity(run) == identity(cand):
            continue  # the candidate itself, saved into the history before being judged
        for r in run:
            if r.fingerprint in machine and not differences(r, cand[0]):  # other machines, profiles...
                past.setdefault(r.key, []).append(r.median)
    out = []
    for key in sorted(by_base.keys() & by_cand.keys()):
        b, c = by_base[key], by_cand[key]
        ratio = c.median / b.median
        ci = stats.bootstrap_ratio_ci(b.data, c.data, alpha) if b.data and c.data else None
        hist = past.get(key, [])
        low, bound = stats.history_interval(hist, alpha) or (None, None)  # None below 3 past runs
        history_ratio = c.median / float(np.median(hist)) if bound else None
        effect = effect_of(c, per_family, min_effect)
        out.append(Verdict(c.name, c.family, b.median, c.median, ratio, ci, history_ratio, bound, effect,
                           judge(ratio, ci, history_ratio, bound, effect, low)))
    only_cand = sorted(by_cand[k].name for k in by_cand.keys() - by_base.keys())
    only_base = sorted(by_base[k].name for k in by_base.keys() - by_cand.keys())
    return out, only_cand, only_base


def speedup_verdict(b, c, effect: float = 0.05, alpha: float = 0.01) -> Verdict:
    """Baseline speedup `b` against candidate speedup `c` (speedup.Speedup) of one case and accelerator."""
    ratio = b.speedup / c.speedup
    ci = None
    if b.cpu.data and b.accel.data and c.cpu.data and c.accel.data:
        bc, ba, cc, ca = stats.bootstrap_medians([b.cpu.data, b.accel.data, c.cpu.data, c.accel.data])
        ci = stats.interval((bc / ba) / (cc / ca), alpha)
    return Verdict(f"{c.device}/cpu {c.case}", c.family, b.speedup, c.speedup, ratio, ci, None, None, effect,
                   judge(ratio, ci, None, None, effect), kind="speedup")


def compare_speedups(base: list[Record], cand: list[Record], min_effect: float = 0.05,
                     per_family: dict[str, float] | None = None,
                     alpha: float = 0.01) -> tuple[list[Verdict], list, list]:
    """Across machine classes only ratios mean anything: each run's GPU-over-CPU speedups, matched by
    case and accelerator. The ratio is baseline speedup / candidate speedup, so > 1 is worse, as for times."""
    from imgbench import speedup

    check_same_conditions(base, cand)
    by_base = {(s.key, s.device): s for s in speedup.within(base, alpha)}
    by_cand = {(s.key, s.device): s for s in speedup.within(cand, alpha)}
    for run, found in (("baseline", by_base), ("candidate", by_cand)):
        if not found:
            raise CompareError(f"{hardware(base, cand)}: absolute times only compare within one machine class, "
                               f"and the {run} has no case timed on both the CPU and an accelerator, so there "
                               "is no GPU-over-CPU speedup to compare instead")
    out = [speedup_verdict(by_base[k], by_cand[k], effect_of(by_cand[k].accel, per_family, min_effect), alpha)
           for k in sorted(by_base.keys() & by_cand.keys(), key=str)]
    only_cand = sorted(f"{by_cand[k].device}/cpu {by_cand[k].case}" for k in by_cand.keys() - by_base.keys())
    only_base = sorted(f"{by_base[k].device}/cpu {by_base[k].case}" for k in by_base.keys() - by_cand.keys())
    return out, only_cand, only_base


def table(verdicts: list[Verdict], markdown: bool = False) -> str:
    head = ["case", "baseline", "candidate", "ratio", "interval", "vs history (bound)", "verdict"]
    rows = [[v.name, _value(v, v.base_median), _value(v, v.cand_median), f"{v.ratio:.3f}",
             f"{v.ci[0]:.3f}-{v.ci[1]:.3f}" if v.ci else "-",
             f"{v.history_ratio:.3f} ({v.history_bound:.3f})" if v.history_bound else "-", v.verdict]
            for v in verdicts]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in [head, *rows])


def _value(v: Verdict, x: float) -> str:
    return f"{x:.2f}x" if v.kind == "speedup" else _t(x)


def _t(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds / 1e-9:.0f} ns"
