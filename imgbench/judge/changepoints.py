"""Change points in stored history: where a case's time, or a GPU-over-CPU speedup, stepped to a new
level and stayed there (E-divisive means on each series: judge.edivisive), and the slowdowns at a
series' end too recent for one (pending). numpy only.

Each series is the log of one case's median time per run (scale-free: a 5% step is the same size on
a 5 ms and a 5 s case), per machine class, run conditions and case, oldest first; cases measured
under contention are left out. The GPU-over-CPU speedups form series of their own (log of the
speedup).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgbench.core import config, table
from imgbench.hw import contention
from imgbench.judge import edivisive, speedup, stats
from imgbench.judge.edivisive import MIN_SEGMENT, P_MAX, segment
from imgbench.judge.speedup import Speedup
from imgbench.runs.record import UNKNOWN, Record

ALPHA = 0.01                # of the interval of the ratio (99%)
ENVIRONMENT_CASES = 2       # cases of one run stepping where its software changed: the
                            # environment's change, reported once
RESAMPLES = 4000
DRIFT_FALSE_RATE = 0.009    # own drift, lag-1 correlation 0.5: tools/measure_changepoints.py
CONFIRM_RUNS = 2            # consecutive runs past the bound that call a slowdown at a series' end
TIME, SPEEDUP = "time", "speedup"


@dataclass(frozen=True)
class ChangePoint:
    machine: str                   # the machine class (Record.fingerprint)
    case: str                      # e.g. "train_step[batch_size=32,device=cpu,model=kerascnn]"
    test: str                      # the test (core.identity.test_of)
    kind: str                      # TIME (median time per run) or SPEEDUP (GPU over CPU)
    first: Record | Speedup        # the first run after the change
    before: float                  # medians of the segments either side: seconds, or the
                                   # speedup (x)
    after: float
    ratio: float                   # after / before. time: > 1 slower. speedup: < 1 the GPU lost
                                   # ground
    ci: tuple[float, float]        # 99% bootstrap interval of the ratio, over the runs of both
                                   # segments
    p: float
    conditions: tuple = ()         # Record.conditions of the series
    since: Record | Speedup | None = None  # the last run before the change
    software: tuple = ()           # what the run records of its software moved there
                                   # ("torch 2.13.0 -> 2.14.1"): software_change

    @property
    def record(self) -> Record:
        """The run file's record: for a speedup, the accelerator's (its CPU time may come from
        another run)."""
        return _record(self.first)

    @property
    def path(self) -> str:
        return self.record.path

    @property
    def datetime(self) -> str:
        return self.record.datetime

    @property
    def commit(self) -> str | None:
        return self.record.commit


@dataclass(frozen=True)
class Pending:
    """A slowdown at a series' end, too recent to be a change point (MIN_SEGMENT runs must follow
    one): its newest `runs` runs each past the one-sided 99% bound of the runs before them in its
    segment, and by the minimum effect. One run is pending; two in a row are a regression called
    (CONFIRM_RUNS), as large dashboards call one."""
    machine: str
    case: str
    test: str
    kind: str                      # TIME or SPEEDUP (a speedup that fell)
    first: Record | Speedup        # the first run past the bound
    runs: int                      # 1 or 2
    ratio: float                   # the newest run over its segment's median (speedup: < 1 lost)
    bound: float                   # the bound it passed

    @property
    def called(self) -> bool:
        return self.runs >= CONFIRM_RUNS


@dataclass
class Scan:
    changes: list[ChangePoint] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)  # slowdowns at series' ends
    tested: int = 0                # series long enough to test
    short: int = 0                 # series with fewer than 2 x MIN_SEGMENT runs: not tested
    contended: int = 0             # records left out: measured under contention
    drifts: dict = field(default_factory=dict)  # (kind, machine) -> the pooled drift whitened
                                                # by (None: each series its own)


# --- history -> series -> change points ----------------------------------------------------------


def _series(runs: list[list[Record]], speedups: list[Speedup] | None) -> tuple[dict, int]:
    """{(kind, machine, conditions, case key): [(value, Record or Speedup), ...] oldest first} and
    the number of records left out as contended."""
    out: dict[tuple, list] = {}
    contended = 0
    for run in runs:
        for r in run:
            if contention.flag(r.contention):
                contended += 1
                continue
            out.setdefault((TIME, r.fingerprint, r.conditions, r.key), []).append((r.median, r))
    for s in speedup.series(runs) if speedups is None else speedups:
        if not (contention.flag(s.cpu.contention) or contention.flag(s.accel.contention)):
            out.setdefault((SPEEDUP, s.accel.fingerprint, s.accel.conditions, (s.key, s.device)),
                           []).append((s.speedup, s))
    return out, contended


def _record(point: Record | Speedup) -> Record:
    return point.accel if isinstance(point, Speedup) else point


def software_change(before: Record, after: Record) -> tuple[str, ...]:
    """What the two runs recorded of their software (runfile.software) that differs, as
    "torch 2.13.0 -> 2.14.1"; a field one of them did not record is no change."""
    a, b = dict(before.software), dict(after.software)
    return tuple(f"{k} {a[k]} -> {b[k]}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k])


def attributed(changes: list[ChangePoint], least: int = ENVIRONMENT_CASES
               ) -> tuple[list[tuple[ChangePoint, list[ChangePoint]]], list[ChangePoint]]:
    """The change points that stepped at one run of one machine class where the software changed,
    at least `least` of them: each group once, as the environment's (its first change point
    standing for the run), and the rest."""
    groups: dict[tuple, list[ChangePoint]] = {}
    for c in changes:
        if c.software:
            groups.setdefault((c.machine, c.path, c.software), []).append(c)
    shared = [g for g in groups.values() if len(g) >= least]
    inside = {id(c) for g in shared for c in g}
    return [(g[0], g) for g in shared], [c for c in changes if id(c) not in inside]


def _label(kind: str, point: Record | Speedup) -> str:
    if kind == TIME:
        return speedup.label(point.key)
    return f"{point.case} {point.device} over cpu"


def scan(runs: list[list[Record]], p_max: float = P_MAX, seed: int = 0,
         speedups: list[Speedup] | None = None) -> Scan:
    """Change points of every series in a History's runs (oldest first), and the slowdowns pending
    at their ends. `speedups`: speedup.series(runs) when the caller already has it."""
    series, contended = _series(runs, speedups)
    out = Scan(contended=contended)
    pools: dict[tuple, list] = {}
    for (kind, machine, _, _), points in series.items():
        pools.setdefault((kind, machine), []).append(np.log([v for v, _ in points]))
    drifts = out.drifts = {k: edivisive.pooled_drift(v) for k, v in pools.items()}
    for (kind, machine, conditions, _), points in series.items():
        if len(points) < 2 * MIN_SEGMENT:
            out.short += 1
            continue
        out.tested += 1
        values = np.array([v for v, _ in points])
        cuts = segment(np.log(values), p_max, seed, rho=drifts[kind, machine])
        edges = [0] + [i for i, _ in cuts] + [len(values)]
        for j, (i, p) in enumerate(cuts):
            left, right = values[edges[j]:i], values[i:edges[j + 2]]
            b, a = stats.bootstrap_medians([left, right], RESAMPLES, seed)
            first, since = points[i][1], points[i - 1][1]
            before, after = float(np.median(left)), float(np.median(right))
            out.changes.append(ChangePoint(machine or UNKNOWN, _label(kind, first), first.test,
                                           kind, first, before, after, after / before,
                                           stats.interval(a / b, ALPHA), p, conditions, since,
                                           software_change(_record(since), _record(first))))
        if (tail := pending(values[edges[-2]:], kind)) is not None:
            runs_past, ratio, bound = tail
            first = points[-runs_past][1]
            out.pending.append(Pending(machine or UNKNOWN, _label(kind, first), first.test, kind,
                                       first, runs_past, ratio, bound))
    out.changes.sort(key=lambda c: (c.machine, c.datetime, c.kind, c.case))
    out.pending.sort(key=lambda c: (c.machine, c.kind, c.case))
    return out


def pending(values: np.ndarray, kind: str, effect: float = config.MIN_EFFECT,
            alpha: float = ALPHA) -> tuple[int, float, float] | None:
    """Whether the newest runs of a series' last segment are a slowdown: (runs past the bound, the
    newest run over the median of the runs before them, that bound), two runs tried before one;
    None when neither is, or fewer than 3 runs precede them. Slower is a longer time, or a
    smaller speedup."""
    for k in (CONFIRM_RUNS, 1):
        before = values[:-k]
        if before.size < 3:
            continue
        low, high = stats.history_interval(before, alpha)
        ratios = values[-k:] / np.median(before)
        if kind == TIME and np.all((ratios > high) & (ratios >= 1 + effect)):
            return k, float(ratios[-1]), high
        if kind == SPEEDUP and np.all((ratios < low) & (ratios <= 1 / (1 + effect))):
            return k, float(ratios[-1]), low
    return None


def find(runs: list[list[Record]], p_max: float = P_MAX, seed: int = 0,
         speedups: list[Speedup] | None = None) -> list[ChangePoint]:
    """Every change point over a History's runs, per machine class, oldest first."""
    return scan(runs, p_max, seed, speedups).changes


# --- text -----------------------------------------------------------------------------------------


def _value(c: ChangePoint, v: float) -> str:
    return table.seconds(v) if c.kind == TIME else f"{v:.2f}x"


def _ratio(c: ChangePoint) -> str:
    if c.kind == TIME:
        return f"{c.ratio:.3f} ({'slower' if c.ratio > 1 else 'faster: a new baseline to record'})"
    return f"{c.ratio:.3f} (speedup {'lost' if c.ratio < 1 else 'gained'})"


def render(changes: list[ChangePoint], markdown: bool = False) -> str:
    """The table of one machine class's change points. ratio = after / before: for a time > 1 is
    slower; for a speedup < 1 means the accelerator lost ground on the CPU."""
    several = len({c.conditions for c in changes}) > 1
    # the split was chosen on these runs: the interval is narrower than a fresh one would be
    head = ["case", "first run after", "commit", "file", "before", "after", "ratio",
            "99% bootstrap, split chosen on these runs (optimistic)", "p", "what else changed"]
    rows = [[c.case + (" (" + ", ".join(f"{k} {v}" for k, v in c.conditions if v) + ")"
                       if several else ""),
             c.datetime[:16].replace("T", " "), (c.commit or "-")[:7], Path(c.path).name,
             _value(c, c.before), _value(c, c.after), _ratio(c), f"{c.ci[0]:.3f}-{c.ci[1]:.3f}",
             f"{c.p:.2g}", _else(c)] for c in changes]
    return table.render(head, rows, markdown)


def _else(c: ChangePoint) -> str:
    """The software that moved at the change, else the commits between the runs either side."""
    if c.software:
        return "; ".join(c.software)
    since = _record(c.since).commit if c.since is not None else None
    return f"code only: {(since or '-')[:7]}..{(c.commit or '-')[:7]}"


def render_machine(changes: list[ChangePoint], markdown: bool = False) -> str:
    """One machine class's change points: each change of the environment once, with the cases it
    moved; then the table of the others."""
    groups, rest = attributed(changes)
    out = []
    for first, moved in groups:
        names = [c.case for c in moved]
        ratios = np.median([c.ratio for c in moved])
        out.append(f"- environment change at {first.datetime[:16].replace('T', ' ')} "
                   f"({Path(first.path).name}, commit {(first.commit or '-')[:7]}): "
                   f"{'; '.join(first.software)}: moved {len(moved)} case(s), median ratio "
                   f"{ratios:.3f}: {', '.join(names[:5])}"
                   + (f" and {len(names) - 5} more" if len(names) > 5 else ""))
    if out:
        out.append("")
    if rest:
        out.append(render(rest, markdown))
    return "\n".join(out).rstrip("\n")


def render_pending(items: list[Pending]) -> list[str]:
    """One line per slowdown at a series' end."""
    out = []
    for t in items:
        state = (f"regression: {t.runs} runs in a row past the bound" if t.called
                 else "pending: 1 run past the bound (a second confirms it)")
        how = (f"x{t.ratio:.3f} of its level (bound x{t.bound:.3f})" if t.kind == TIME
               else f"speedup x{t.ratio:.3f} of its level (bound x{t.bound:.3f})")
        out.append(f"- {t.case}: {state}, since {t.first.datetime[:16].replace('T', ' ')} "
                   f"({Path(_record(t.first).path).name}, commit "
                   f"{(_record(t.first).commit or '-')[:7]}): {how}")
    return out


def summary(s: Scan, p_max: float = P_MAX) -> list[str]:
    """The count line and notes under the tables."""
    n = len(s.changes)
    drift = ", ".join(f"{machine} {kind} {'own per series' if rho is None else f'{rho:.2f}'}"
                      for (kind, machine), rho in sorted(s.drifts.items(), key=str))
    lines = [f"{n} change point{'' if n == 1 else 's'} in {s.tested} series (E-divisive means on "
             f"ranks pre-whitened by the machine's drift, permutation test at p <= {p_max:g})",
             # each series' first split is tested at p_max: false ones expected across the scan
             f"expected false change points in this scan: about {s.tested * p_max:.2g} (simulated "
             f"drifting series, lag-1 correlation up to 0.5, held this; a series whitened by its "
             f"own drift: up to {DRIFT_FALSE_RATE:.1%} of series); drift (lag-1 correlation of "
             f"run medians): {drift or '-'}",
             f"a slowdown at a series' end is pending after 1 run past its 99% bound (about 1% of "
             f"series by chance), called after {CONFIRM_RUNS} in a row"]
    if s.short:
        lines.append(f"{s.short} series too short to test (fewer than {2 * MIN_SEGMENT} runs)")
    if s.contended:
        lines.append(f"{s.contended} case record(s) measured under contention left out")
    return lines


def describe(s: Scan, p_max: float = P_MAX, markdown: bool = False) -> str:
    """Per machine class a heading, the table and the slowdowns at series' ends; then the count and
    the notes."""
    out = []
    for machine in sorted({c.machine for c in [*s.changes, *s.pending]}):
        out += [f"## {machine}" if markdown else machine, ""]
        if changes := [c for c in s.changes if c.machine == machine]:
            out += [render_machine(changes, markdown), ""]
        if tails := [t for t in s.pending if t.machine == machine]:
            out += ["at the series' ends:", *render_pending(tails), ""]
    return "\n".join(out + summary(s, p_max))
