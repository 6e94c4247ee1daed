"""History you can see: per machine class and test (a family), each case's median time per run over
the history, over the case's own median across it (log scale: a 10% step looks alike on a 5 ms and a
5 s case); x = the machine class's runs, oldest first, dated. Change points (judge.changepoints) and
pending changes are marked, software changes between runs drawn as labelled vertical lines,
acceptances (runs.acceptances) as dotted lines with a marker on each case they cover.

With tens of cases per family a legend of every line hides the data: the cases with a change point
or a pending change are drawn in color (the MAX_COLORED with the largest steps), each with its
level between change points; every other case is grey, as a thin line, or beyond DENSE runs as one
band (their 10-90% range per run). Artists carry a gid (CHANGE, PENDING, ENVIRONMENT, ACCEPTED,
OTHERS) so that what was drawn can be checked. Draws, never decides."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from imgbench.hw import contention
from imgbench.judge import changepoints
from imgbench.runs.record import Record
from imgbench.show import plots

MAX_COLORED = 8          # colored cases per figure; more and their colors repeat
MAX_ENV_LABELS = 8       # software changes labelled per figure (each drawn)
DENSE = 150              # runs above which points are drawn unjoined and the other cases as a band
CHANGE, PENDING, ENVIRONMENT, ACCEPTED = "change point", "pending", "environment", "accepted"
OTHERS = "other cases"
ENV_COLOR, ACCEPT_COLOR, GREY, DARK_GREY = "#6a3d9a", "#2ca02c", "#b5b5b5", "#6e6e6e"
# plots.CASE_COLORS without its grey (here the other cases' color), and no device's color
COLORS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#843c39", "#e7ba52")
# y ticks: the change in time against the case's own median
Y_TICKS = (0.25, 0.5, 0.67, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 4.0)


@dataclass
class Series:
    """One case's medians per run (x: the run's index among the machine class's runs)."""
    key: tuple                     # (Record.conditions, Record.key)
    records: list[Record] = field(default_factory=list)
    xs: list[int] = field(default_factory=list)
    changes: list = field(default_factory=list)   # changepoints.ChangePoint
    pending: list = field(default_factory=list)

    @cached_property
    def ys(self) -> np.ndarray:
        """Medians over the case's own median across the history."""
        m = np.array([r.median for r in self.records], float)
        return m / np.median(m)

    def y_at(self, x: int) -> float | None:
        """The value at run x, else at the case's first run after it."""
        i = int(np.searchsorted(self.xs, x))
        return float(self.ys[i]) if i < len(self.xs) else None

    @property
    def step(self) -> float:
        """The largest |log ratio| of its change points and pending changes (0: none)."""
        return max((abs(math.log(c.ratio)) for c in self.changes + self.pending if c.ratio > 0),
                   default=0.0)


def _utc(text: str) -> datetime | None:
    try:
        d = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return d.astimezone(timezone.utc).replace(tzinfo=None) if d.tzinfo else d


def series(runs: list[list[Record]], test: str | None = None) -> dict:
    """{test: {(conditions, case key): Series}} over the runs (oldest first), or that of `test`
    alone; records measured under contention left out, as the change-point scan leaves them."""
    out: dict[str, dict[tuple, Series]] = {}
    for i, run in enumerate(runs):
        for r in run:
            if ((test is None or r.test == test) and r.median > 0
                    and not contention.flag(r.contention)):
                s = out.setdefault(r.test, {}).setdefault((r.conditions, r.key),
                                                          Series((r.conditions, r.key)))
                s.records.append(r)
                s.xs.append(i)
    return out if test is None else out.get(test, {})


def software_changes(runs: list[list[Record]], changes=()) -> dict[int, tuple[str, ...]]:
    """{run index: what its recorded software changed against the run before it}, and the runs
    where a change point says so (its case may have skipped the runs between)."""
    out = {}
    for i in range(1, len(runs)):
        if moved := changepoints.software_change(runs[i - 1][0], runs[i][0]):
            out[i] = moved
    index = {run[0].path: i for i, run in enumerate(runs)}
    for c in changes:
        if c.software and (i := index.get(c.path)) is not None:
            out.setdefault(i, tuple(c.software))
    return out


def acceptance_runs(runs: list[list[Record]], accepted) -> list[tuple[int, object]]:
    """(index of the first run at or after it, acceptance) for each acceptance of these runs'
    machine class; one after the last run sits at len(runs)."""
    stamps = [_utc(run[0].datetime) for run in runs]
    machine = runs[0][0].machine if runs else None
    out = []
    for a in accepted:
        when = _utc(a.datetime)
        if when is None or a.fingerprint not in (None, machine):
            continue
        out.append((next((i for i, s in enumerate(stamps) if s is not None and s >= when),
                         len(runs)), a))
    return out


def assign(found: dict[tuple, Series], changes, pending) -> None:
    """Each time change point and pending change of the series' test to its series."""
    for attr, items in (("changes", changes), ("pending", pending)):
        for c in items:
            if getattr(c, "kind", changepoints.TIME) != changepoints.TIME:
                continue
            first = c.first
            s = found.get((first.conditions, first.key))
            if s is not None:
                getattr(s, attr).append(c)


def date_ticks(runs: list[list[Record]], most: int = 9) -> tuple[list[int], list[str]]:
    """Evenly spread run indices and their labels: the date (with the hour when the runs span
    under 4 days) over the run's number."""
    stamps = [_utc(run[0].datetime) for run in runs]
    known = [s for s in stamps if s is not None]
    short = bool(known) and (max(known) - min(known)).days < 4
    step = max(1, math.ceil(len(runs) / most))
    ticks = list(range(0, len(runs), step))
    labels = []
    for i in ticks:
        s = stamps[i]
        day = (s.strftime("%m-%d %H:%M" if short else "%Y-%m-%d") if s
               else plots.esc(runs[i][0].datetime[:10]))
        labels.append(f"{day}\n#{i + 1}")
    return ticks, labels


def y_limits(drawn: list[Series]) -> tuple[float, float]:
    """The central 99.6% of every value drawn, widened to at least +-12% and to every colored
    segment's level: one far outlier must not flatten a 10% step."""
    values = np.concatenate([s.ys for s in drawn]) if drawn else np.ones(1)
    lo, hi = np.quantile(values, [0.002, 0.998])
    return min(lo / 1.03, 1 / 1.12), max(hi * 1.03, 1.12)


def same_params(found: dict[tuple, Series]) -> tuple[str, ...]:
    """The params every case of the figure shares (the device of a CPU machine's cases, say): left
    out of their labels. The model is always named."""
    params = [s.records[-1].params for s in found.values()]
    keys = {k for p in params for k in p}
    return tuple(k for k in keys if k != "model" and len({str(p.get(k)) for p in params}) == 1)


def _label(s: Series, several: bool, same: tuple[str, ...] = ()) -> str:
    r = s.records[-1]
    name = plots.describe(r.params, same)
    if several:  # the family ran under more than one set of run conditions
        name += " (" + ", ".join(f"{k} {v}" for k, v in r.conditions if v) + ")"
    return plots.esc(name)


def _note(s: Series, index: dict[str, int]) -> str:
    """The case's largest step, for its legend entry: 'x1.10 at #31', 'pending x1.10 at #48'."""
    kind, c = max([("", c) for c in s.changes] + [("pending ", c) for c in s.pending],
                  key=lambda kc: abs(math.log(kc[1].ratio)) if kc[1].ratio > 0 else 0)
    where = index.get(c.first.path)
    return f"{kind}x{c.ratio:.2f}" + (f" at #{where + 1}" if where is not None else "")


def pick(found: dict[tuple, Series], n: int) -> list[Series]:
    """The series drawn in color: all where they fit and their `n` runs are few, else those with a
    change point or a pending change, the largest steps first (a thousand runs of cases that did
    not move read best as one grey median)."""
    if len(found) <= MAX_COLORED and n <= DENSE:
        return sorted(found.values(), key=lambda s: -s.step)
    return sorted((s for s in found.values() if s.step > 0), key=lambda s: -s.step)[:MAX_COLORED]


def _others(ax, grey: list[Series], n: int, alone: bool) -> list:
    """The cases not in color: a thin grey line each, or beyond DENSE runs their median per run
    and the 10-90% range of their values (not a hundred zigzags); the legend's handles."""
    if not grey:
        return []
    what = f"the {'' if alone else 'other '}{len(grey)} case(s)"
    if n <= DENSE:  # one artist: the cases draw at once
        ax.add_collection(LineCollection([np.column_stack([s.xs, s.ys]) for s in grey],
                                         colors=GREY, linewidths=0.7, alpha=0.8, zorder=1,
                                         gid=OTHERS), autolim=True)
        return [Line2D([], [], color=GREY, label=what)]
    values = np.full((len(grey), n), np.nan)
    for i, s in enumerate(grey):
        values[i, s.xs] = s.ys
    runs = np.flatnonzero(~np.isnan(values).all(axis=0))
    lo, mid, hi = np.nanquantile(values[:, runs], [0.1, 0.5, 0.9], axis=0)
    ax.fill_between(runs, lo, hi, color=GREY, alpha=0.6, linewidth=0.3, edgecolor=GREY,
                    zorder=1, gid=OTHERS)
    ax.plot(runs, mid, color=DARK_GREY, linewidth=0.5, zorder=1, gid=OTHERS)
    return [Line2D([], [], color=DARK_GREY, linewidth=1, label=f"{what}: median per run"),
            Patch(color=GREY, alpha=0.6, label="and their 10-90% range")]


def _lines(ax, found: dict[tuple, Series], colored: list[Series], n: int, index: dict,
           several: bool) -> list:
    """The other cases, then the colored ones with their levels between change points; the
    legend's handles."""
    dense = n > DENSE
    same = same_params(found)
    other = _others(ax, [s for s in found.values() if not any(s is c for c in colored)], n,
                    not colored)
    handles = []
    for i, s in enumerate(colored):
        color = COLORS[i % len(COLORS)]
        label = _label(s, several, same) + (f": {_note(s, index)}" if s.step else "")
        ax.plot(s.xs, s.ys, color=color, linewidth=0 if dense else 1.0, marker="o",
                markersize=1.5 if dense else 3, alpha=0.6 if dense else 1.0, zorder=3)
        handles.append(Line2D([], [], color=color, marker="o", markersize=3, label=label))
        cuts = sorted(index[c.first.path] for c in s.changes if c.first.path in index)
        bounds = [s.xs[0]] + cuts + [s.xs[-1] + 1]
        xs, ys = np.asarray(s.xs), s.ys
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            inside = (xs >= lo) & (xs < hi)
            if inside.any():  # the level between change points: on top where points are dense
                ax.hlines(float(np.median(ys[inside])), lo - 0.5, hi - 0.5, color=color,
                          linewidth=2.5, alpha=0.8 if dense else 0.45, zorder=4 if dense else 2)
    return handles + other


def _marks(ax, found: dict[tuple, Series], colored: list[Series], index: dict) -> list:
    """Change points (filled triangles: up slower, down faster) and pending changes (hollow
    circles) at the first run after them; legend handles for those present."""
    color = {id(s): COLORS[i % len(COLORS)] for i, s in enumerate(colored)}
    points = {"^": [], "v": [], PENDING: []}
    for s in found.values():
        for c, kind in [(c, "^" if c.ratio > 1 else "v") for c in s.changes] + [
                (c, PENDING) for c in s.pending]:
            x = index.get(c.first.path)
            y = s.y_at(x) if x is not None else None
            if y is not None:
                points[kind].append((x, y, color.get(id(s), "#555555")))
    handles = []
    for kind, pts in points.items():
        if not pts:
            continue
        x, y, c = zip(*pts, strict=True)
        if kind == PENDING:
            ax.scatter(x, y, s=110, marker="o", facecolors="none", edgecolors=c, linewidths=1.6,
                       zorder=6, gid=PENDING)
            handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                                  markeredgecolor="#333333", label="pending change (not yet "
                                  "confirmed by enough runs)"))
        else:
            ax.scatter(x, y, s=70, marker=kind, c=c, edgecolors="#000000", linewidths=0.8,
                       zorder=5, gid=CHANGE)
            handles.append(Line2D([], [], marker=kind, linestyle="", color="#333333",
                                  label=f"change point ({'slower' if kind == '^' else 'faster'}"
                                        " from this run on)"))
    return handles


def _environment(ax, moved: dict[int, tuple[str, ...]]) -> list:
    """One dashed vertical line per run whose recorded software changed, labelled with what moved
    (the first MAX_ENV_LABELS of them)."""
    for j, (i, what) in enumerate(sorted(moved.items())):
        ax.axvline(i - 0.5, color=ENV_COLOR, linestyle="--", linewidth=1.1, zorder=4,
                   gid=ENVIRONMENT)
        if j < MAX_ENV_LABELS:
            text = "; ".join(what[:2]) + (f" (+{len(what) - 2} more)" if len(what) > 2 else "")
            ax.text(i - 0.5, 0.98, plots.esc(text), transform=ax.get_xaxis_transform(),
                    rotation=90, ha="right", va="top", fontsize=7, color=ENV_COLOR, zorder=7,
                    gid=ENVIRONMENT, bbox={"facecolor": "white", "edgecolor": "none",
                                           "alpha": 0.7, "pad": 1})
    return ([Line2D([], [], color=ENV_COLOR, linestyle="--", label="software changed (recorded "
                    "environment)")] if moved else [])


def _accepted(ax, found: dict[tuple, Series], colored: list[Series], at: list) -> list:
    """A dotted vertical line per acceptance at the first run from its date, and a diamond there on
    each drawn case it covers (on grey cases only where it names cases)."""
    points, drew = [], False
    for i, a in at:
        if not any(a.covers(s.records[-1]) for s in found.values()):
            continue
        drew = True
        ax.axvline(i - 0.5, color=ACCEPT_COLOR, linestyle=":", linewidth=1.4, zorder=4,
                   gid=ACCEPTED)
        what = f"{len(a.cases)} case pattern(s)" if a.cases else "every case"
        ax.text(i - 0.5, 0.02, f"accepted: {what}", transform=ax.get_xaxis_transform(),
                rotation=90, ha="right", va="bottom", fontsize=7, color=ACCEPT_COLOR, zorder=7,
                gid=ACCEPTED)
        points += [(i, y) for s in found.values()
                   if a.covers(s.records[-1]) and (a.cases or any(s is c for c in colored))
                   and (y := s.y_at(i)) is not None]
    if points:
        ax.scatter(*zip(*points, strict=True), s=45, marker="D", color=ACCEPT_COLOR,
                   edgecolors="#000000", linewidths=0.6, zorder=6, gid=ACCEPTED)
    return ([Line2D([], [], color=ACCEPT_COLOR, linestyle=":", marker="D",
                    label="accepted level (from this run on)")] if drew else [])


def figure(runs: list[list[Record]], machine: str, test: str, changes=(), pending=(),
           accepted=(), found: dict[tuple, Series] | None = None) -> Figure | None:
    """The history of one test's cases on one machine class (`runs`: its runs, oldest first);
    `changes` and `pending`: changepoints.scan's (other tests' and kinds' are ignored);
    `accepted`: runs.acceptances.read's; `found`: series(runs, test) where the caller has it.
    None when no run holds the test."""
    found = series(runs, test) if found is None else found
    if not found:
        return None
    assign(found, changes, pending)
    index = {run[0].path: i for i, run in enumerate(runs)}
    colored = pick(found, len(runs))
    several = len({key[0] for key in found}) > 1
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax = fig.subplots()
    handles = _lines(ax, found, colored, len(runs), index, several)
    handles += _marks(ax, found, colored, index)
    handles += _environment(ax, software_changes(runs, [c for s in found.values()
                                                        for c in s.changes]))
    handles += _accepted(ax, found, colored, acceptance_runs(runs, accepted))
    ax.set_yscale("log")
    lo, hi = y_limits(list(found.values()))
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_locator(FixedLocator([t for t in Y_TICKS if lo <= t <= hi]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{(v - 1) * 100:+.0f}%"
                                               if abs(v - 1) > 1e-9 else "0%"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel("median time per run vs the\ncase's median over the history")
    ticks, labels = date_ticks(runs)
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlim(-0.5, len(runs) - 0.5 + any(i >= len(runs) for i, _ in
                                            acceptance_runs(runs, accepted)))
    ax.set_xlabel(f"run, oldest first ({len(runs)} runs of this machine class; date over number)")
    ax.grid(True, axis="y", alpha=0.3)
    marked = sum(s.step > 0 for s in found.values())
    params = next(iter(found.values())).records[-1].params
    shared = ", ".join(f"{k} {params[k]}" for k in sorted(same_params(found)))
    if not marked:
        shown = "none with a change point or a pending change"
    elif len(found) > len(colored):
        shown = (f"in color the {len(colored)} with a change point or a pending change (largest "
                 f"steps first){f' of {marked}' if marked > len(colored) else ''}, the rest grey")
    else:
        shown = f"{marked} with a change point or a pending change"
    ax.set_title(plots.esc(f"{len(found)} case(s){f', all with {shared}' if shared else ''}: "
                           f"{shown}"), loc="left", fontsize=8)
    fig.suptitle(plots.esc(f"{test}: each case's median time per run, {machine}"), fontsize=11,
                 x=0.02, ha="left")
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    return fig


def draw(runs: list[list[Record]], machine: str, out: Path, svg: bool = False, changes=(),
         pending=(), accepted=()) -> list[Path]:
    """figure() for every test of the runs, each saved as history_<machine>_<test> and let go
    before the next is drawn."""
    paths = []
    for test, found in sorted(series(runs).items()):
        fig = figure(runs, machine, test, changes, pending, accepted, found)
        if fig is not None:
            paths += plots.save(fig, out, f"history_{machine}_{test}", svg)
    return paths
