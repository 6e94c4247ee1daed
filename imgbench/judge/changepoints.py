"""Change points in stored history: where a case's time, or a GPU-over-CPU speedup, stepped to a new
level and stayed there. numpy only.

E-divisive means (Matteson & James 2014, distance exponent alpha = 1), as MongoDB's performance CI
and Apache Otava use it. For a segment x, each split tau into a left part (m values) and a right
part (k values) scores the scaled energy statistic

    Q(tau) = m k / (m + k) * (2 * mean |left - right| - mean |within left| - mean |within right|)

(the within means over distinct pairs). The best split is the tau of the largest Q; its p-value
comes from a permutation test (p = (1 + #permutations whose best Q >= the observed one) / (1 + B)).
Q is taken on the series' ranks, so the permutation null depends on the length alone and is computed
once per length for every series of it (a thousand-run history tests its 170 series in seconds). A
significant split is kept and both sides are searched again the same way (hierarchical bisection),
each test at p_max. Matteson & James also maximise over where the right part ends (kappa); like
MongoDB's implementation, kappa is always the segment's end.

Each series is the log of one case's median time per run (scale-free: a 5% step is the same size on
a 5 ms and a 5 s case), per machine class, run conditions and case, oldest first; cases measured
under contention are left out. The GPU-over-CPU speedups form series of their own (log of the
speedup).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgbench.core import config, table
from imgbench.hw import contention
from imgbench.judge import speedup, stats
from imgbench.judge.speedup import Speedup
from imgbench.runs.record import UNKNOWN, Record

P_MAX = config.CHANGE_P
PERMUTATIONS = 999          # the smallest p they can give is 1 / (1 + 999) = P_MAX
MIN_SEGMENT = 3             # runs on each side of a split, at least: a change is named once 3 runs
                            # follow it
BLOCK_BYTES = 1 << 20       # pairwise distances computed at a time (float32): stays in the CPU's
                            # cache
MAX_BATCH = 64              # permutations computed at a time
ALPHA = 0.01                # of the interval of the ratio (99%)
ENVIRONMENT_CASES = 2       # cases of one run stepping where its software changed: the
                            # environment's change, reported once
RESAMPLES = 4000
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


@dataclass
class Scan:
    changes: list[ChangePoint] = field(default_factory=list)
    tested: int = 0                # series long enough to test
    short: int = 0                 # series with fewer than 2 x MIN_SEGMENT runs: not tested
    contended: int = 0             # records left out: measured under contention


# --- the statistics -------------------------------------------------------------------------------


def _lower(y: np.ndarray) -> np.ndarray:
    """sum_{j<i} |y_i - y_j| for every row of y (b, n) and every i: the pairwise distances of the
    lower triangle only, computed a block of rows at a time so that each block stays within
    BLOCK_BYTES."""
    b, n = y.shape
    y = y.astype(np.float32)
    out = np.empty((b, n))
    step = max(1, BLOCK_BYTES // (4 * b * n))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        d = y[:, lo:hi, None] - y[:, None, :hi]
        np.abs(d, out=d)
        d[:, :, lo:] *= np.tri(hi - lo, k=-1, dtype=np.float32)  # of the block's square, only j < i
        out[:, lo:hi] = d.sum(axis=2)
    return out


def _q(xs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Q(tau) for every row of xs (b series of n values) and every split tau in
    MIN_SEGMENT..n - MIN_SEGMENT at once (the right part always ends at the segment's end: kappa
    fixed, as in MongoDB's implementation), from prefix sums of the pairwise distances. rows:
    sum_j |x_i - x_j| for each value, which a permutation only reorders. Shape
    (b, n - 2 MIN_SEGMENT + 1)."""
    n = xs.shape[1]
    zero = np.zeros((len(xs), 1))
    # ordered pairs in x[:tau]
    within_left = 2 * np.concatenate([zero, np.cumsum(_lower(xs), axis=1)], axis=1)
    row_prefix = np.concatenate([zero, np.cumsum(rows, axis=1)], axis=1)  # i < tau, any j
    total = row_prefix[:, -1:]
    between = row_prefix - within_left                                  # i < tau <= j
    within_right = total - 2 * row_prefix + within_left                 # ordered pairs in x[tau:]
    tau = np.arange(MIN_SEGMENT, n - MIN_SEGMENT + 1)
    m, k = tau.astype(float), (n - tau).astype(float)
    s = np.s_[:, MIN_SEGMENT:n - MIN_SEGMENT + 1]
    return m * k / n * (2 * between[s] / (m * k) - within_left[s] / (m * (m - 1))
                        - within_right[s] / (k * (k - 1)))


def ranks(x) -> np.ndarray:
    """Ranks 0..n-1 of x, ties sharing their mean rank."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(x.size)
    r[order] = np.arange(x.size)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


@functools.lru_cache(maxsize=256)
def null(n: int, permutations: int = PERMUTATIONS, seed: int = 0) -> np.ndarray:
    """The largest Q of `permutations` random orders of the ranks 0..n-1, sorted: the permutation
    null of every series of n distinct values, computed once per length and shared by all of them
    (the series of one history mostly have one length)."""
    rng = np.random.default_rng([seed, n])
    x = np.arange(n, dtype=np.float32)
    rows = np.abs(x[:, None] - x[None, :]).sum(axis=1, dtype=np.float64)
    out = []
    for done in range(0, permutations, MAX_BATCH):
        order = rng.permuted(np.broadcast_to(np.arange(n),
                                             (min(MAX_BATCH, permutations - done), n)), axis=1)
        out.append(_q(x[order], rows[order]).max(axis=1))
    return np.sort(np.concatenate(out))


def best_split(x, p_max: float = P_MAX, permutations: int = PERMUTATIONS,
               seed: int = 0) -> tuple[int, float]:
    """The split of x with the largest Q and its permutation p-value. The test takes Q on the ranks
    of x: a wild run counts no more than any other run beyond it, and the permutation null depends
    only on the length, so one null (`null`) serves every series of that length. Ties (identical
    medians, rare) are given mean ranks and tested against the null of distinct values. The split is
    placed where Q on the values peaks (on the ranks: 176 of 200 steps of 5% in 1% noise at their
    exact run, on the values 194)."""
    def scores(v: np.ndarray) -> np.ndarray:
        rows = np.abs(v[:, None] - v[None, :]).sum(axis=1, dtype=np.float64)
        return _q(v[None, :], rows[None, :])[0]

    x = np.asarray(x, float)
    observed = float(scores(ranks(x).astype(np.float32)).max())
    # placed where Q on the values peaks: the sizes of the values say more about where than
    # their order
    tau = int(np.argmax(scores((x - np.median(x)).astype(np.float32)))) + MIN_SEGMENT
    reference = null(x.size, permutations, seed)
    # >= observed, rounding aside
    above = reference.size - int(np.searchsorted(reference, observed * (1 - 1e-6)))
    return tau, (1 + above) / (1 + permutations)


def segment(x, p_max: float = P_MAX, seed: int = 0,
            permutations: int | None = None) -> list[tuple[int, float]]:
    """Change points of one series, (index of the first value after the change, p), in order."""
    x = np.asarray(x, float)
    # enough for p_max to be reachable
    b = permutations or max(PERMUTATIONS, math.ceil(1 / p_max) - 1)
    out, todo = [], [(0, x.size)]
    while todo:
        lo, hi = todo.pop()
        if hi - lo < 2 * MIN_SEGMENT:
            continue
        tau, p = best_split(x[lo:hi], p_max, b, seed)
        if p <= p_max:
            out.append((lo + tau, p))
            todo += [(lo + tau, hi), (lo, lo + tau)]
    return sorted(out)


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
    """Change points of every series in a History's runs (oldest first). `speedups`:
    speedup.series(runs) when the caller already has it."""
    series, contended = _series(runs, speedups)
    out = Scan(contended=contended)
    for (kind, machine, conditions, _), points in series.items():
        if len(points) < 2 * MIN_SEGMENT:
            out.short += 1
            continue
        out.tested += 1
        values = np.array([v for v, _ in points])
        cuts = segment(np.log(values), p_max, seed)
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
    out.changes.sort(key=lambda c: (c.machine, c.datetime, c.kind, c.case))
    return out


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


def summary(s: Scan, p_max: float = P_MAX) -> list[str]:
    """The count line and notes under the tables."""
    n = len(s.changes)
    lines = [f"{n} change point{'' if n == 1 else 's'} in {s.tested} series (E-divisive means, "
             f"permutation test at p <= {p_max:g})",
             # each series' first split is tested at p_max: false ones expected across the scan
             f"expected false change points in this scan: about {s.tested * p_max:.2g} where runs "
             "are independent; more where they drift (serial correlation is not modelled)"]
    if s.short:
        lines.append(f"{s.short} series too short to test (fewer than {2 * MIN_SEGMENT} runs)")
    if s.contended:
        lines.append(f"{s.contended} case record(s) measured under contention left out")
    return lines


def describe(s: Scan, p_max: float = P_MAX, markdown: bool = False) -> str:
    """Per machine class a heading and the table; then the count and the notes."""
    out = []
    for machine in sorted({c.machine for c in s.changes}):
        out += [f"## {machine}" if markdown else machine, "",
                render_machine([c for c in s.changes if c.machine == machine], markdown), ""]
    return "\n".join(out + summary(s, p_max))
