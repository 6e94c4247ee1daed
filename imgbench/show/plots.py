"""Figures from stored runs: the GPU-over-CPU speedup trend, throughput against batch size, the
latest run against its baseline per test, and the epoch time breakdown. matplotlib's object API only
(no pyplot, no global backend); one color per device in every figure drawn per device; files written
atomically."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from imgbench.core import atomic
from imgbench.core.options import DEFAULTS
from imgbench.judge.speedup import Speedup
from imgbench.judge.verdict import (
    IMPROVEMENT,
    NOISY,
    REGRESSION,
    SLOWER_NO_HISTORY,
    UNCHANGED,
    Verdict,
)
from imgbench.runs.record import Record

DPI = 100
DEVICE_COLORS = {"cpu": "#1f77b4", "cuda": "#d62728", "mps": "#9467bd"}
REGRESSION_COLOR = "#ff7f0e"  # not a device's color: a red bar must not read as "CUDA"
VERDICT_COLORS = {REGRESSION: REGRESSION_COLOR, IMPROVEMENT: "#2ca02c", UNCHANGED: "#9e9e9e",
                  NOISY: "#e3d9a6", SLOWER_NO_HISTORY: "#f5c08a"}
# Speedup-trend lines are cases, not devices: colors that are neither a device's nor a verdict's.
CASE_COLORS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
               "#843c39")
COMPONENT_COLORS = {"compute": "#4c72b0", "data stall": "#dd8452", "host-to-device copy": "#55a868"}
TEST_STYLES = {"train_step": "-", "forward": "--"}
MAX_LINES = 8  # per panel of the speedup trend: beyond that a legend hides the data


def esc(text) -> str:
    """Text from run files (case names, params, commits, machine classes) as matplotlib shows it
    literally: a "$" would otherwise start math text, which draws "$x^2$" as a formula and fails
    the whole report on "$a_b_c$"."""
    return str(text).replace("$", r"\$")


def device_color(device: str) -> str:
    return DEVICE_COLORS.get(str(device).split(":")[0], "#7f7f7f")


def describe(params: dict, drop=("device",)) -> str:
    """A case in a few words: model first, batch size as bsN, axes only where not the default."""
    items = sorted(params.items(), key=lambda kv: (kv[0] != "model", kv[0] == "batch_size", kv[0]))
    words = [f"bs{v}" if k == "batch_size" else str(v) for k, v in items
             if k not in drop and DEFAULTS.get(k) != str(v)]
    return " ".join(words) or "-"


def save(fig: Figure, folder: Path, name: str, svg: bool = False) -> list[Path]:
    """PNG (and SVG) via a temporary file renamed into place."""
    out = []
    for fmt in ("png", "svg") if svg else ("png",):
        with atomic.written(folder / f"{name}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        out.append(folder / f"{name}.{fmt}")
    return out


def _day(text: str) -> str:
    try:
        return datetime.fromisoformat(text).strftime("%m-%d %H:%M")
    except ValueError:
        return text[:16]


def run_label(r: Record) -> str:
    torch = (r.torch or "?").split("+")[0]
    return esc(f"{(r.commit or '-')[:7]}\ntorch {torch}\n{_day(r.datetime)}")


def speedup_trend(speedups: list[Speedup], machine: str, fell: list[Speedup] = (),
                  changes=()) -> Figure:
    """One panel per test; per case the speedup of each run with its interval's band; the runs in
    `fell` (judged a regression against the case's previous run) are marked, and so, by a dashed
    line in the case's color, is the first run after each of `changes` (changes.ChangePoint) of a
    drawn case."""
    fell_ids = {id(s) for s in fell}
    starts: dict[tuple, list[str]] = {}
    for c in changes:
        if isinstance(c.first, Speedup):
            starts.setdefault((c.first.key, c.first.device), []).append(c.first.datetime)
    stamps = sorted({s.datetime for s in speedups})
    x_of = {d: i for i, d in enumerate(stamps)}
    tests = sorted({s.test for s in speedups})
    fig = Figure(figsize=(12, 1.2 + 3.2 * len(tests)), layout="constrained")
    axes = fig.subplots(len(tests), 1, sharex=True, squeeze=False)[:, 0]
    handles = {}
    for ax, test in zip(axes, tests, strict=True):
        by_case: dict[tuple, list[Speedup]] = {}
        for s in speedups:
            if s.test == test:
                by_case.setdefault((s.key, s.device), []).append(s)
        latest = sorted(by_case, key=lambda k: -by_case[k][-1].speedup)[:MAX_LINES]
        for i, k in enumerate(sorted(latest, key=str)):
            points = by_case[k]
            xs = [x_of[s.datetime] for s in points]
            color = CASE_COLORS[i % len(CASE_COLORS)]
            label = esc(f"{describe(dict(k[0][1]))} ({k[1]})")
            (line,) = ax.plot(xs, [s.speedup for s in points], marker="o", ms=3, color=color,
                              label=label)
            handles[f"{test}: {label}"] = line
            if all(s.ci for s in points):
                ax.fill_between(xs, [s.ci[0] for s in points], [s.ci[1] for s in points],
                                color=color, alpha=0.18, linewidth=0)
            for cur in points:
                if id(cur) in fell_ids:
                    m = ax.scatter([x_of[cur.datetime]], [cur.speedup], marker="v", s=90,
                                   facecolor="none", edgecolor=REGRESSION_COLOR, linewidth=1.8,
                                   zorder=5)
                    handles["speedup fell (regression vs the previous run)"] = m
            for when in starts.get(k, ()):
                ax.axvline(x_of[when], color=color, linestyle="--", linewidth=1.2)
                handles["change point (first run after it)"] = Line2D([], [], color="#555555",
                                                                      linestyle="--")
        ax.axhline(1, color="#555555", linewidth=0.8, linestyle=":")
        ax.set_yscale("log")
        shown = (f" ({len(latest)} of {len(by_case)} cases, the fastest)"
                 if len(by_case) > len(latest) else "")
        ax.set_title(esc(f"{test}{shown}"), loc="left", fontsize=10)
        ax.set_ylabel("speedup (x)\nCPU time / GPU time")
        ax.grid(True, which="both", alpha=0.3)
    step = max(1, math.ceil(len(stamps) / 12))
    ticks = list(range(0, len(stamps), step))
    first = {s.datetime: s.accel for s in speedups}
    axes[-1].set_xticks(ticks, [run_label(first[stamps[i]]) for i in ticks], fontsize=7)
    axes[-1].set_xlabel("run (commit, torch, date)")
    fig.suptitle(esc(f"GPU-over-CPU speedup per run, {machine} (band: 99% interval of each "
                     "run's speedup)"))
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside right upper", fontsize=7)
    return fig


def throughput(records: list[Record], machine: str) -> Figure:
    """images/s against batch size (log2) per model; color = device, line style = test."""
    picked = [r for r in records
              if r.test in TEST_STYLES and "batch_size" in r.params and r.median > 0]
    models = sorted({str(r.params.get("model")) for r in picked})
    cols = min(3, max(1, len(models)))
    rows = max(1, math.ceil(len(models) / cols))
    fig = Figure(figsize=(4.2 * cols + 2.2, 3.2 * rows + 0.8), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    for ax in grid.flat[len(models):]:
        ax.set_visible(False)
    devices_seen = set()
    for ax, model in zip(grid.flat, models, strict=False):
        groups: dict[tuple, list[Record]] = {}
        for r in picked:
            if str(r.params.get("model")) == model:
                rest = {k: v for k, v in r.params.items() if k not in ("batch_size", "model")}
                groups.setdefault((r.test, tuple(sorted(rest.items()))), []).append(r)
        sizes = set()
        for (test, rest), rs in sorted(groups.items(), key=str):
            rs.sort(key=lambda r: int(r.params["batch_size"]))
            device = str(dict(rest).get("device", "cpu"))
            devices_seen.add(device)
            bs = [int(r.params["batch_size"]) for r in rs]
            sizes.update(bs)
            ips = [float(r.extra.get("images", r.params["batch_size"])) / r.median for r in rs]
            extra = describe(dict(rest), drop=("device",))
            ax.plot(bs, ips, TEST_STYLES[test], marker="o", color=device_color(device),
                    label=esc(f"{device} {test}" + (f" {extra}" if extra != "-" else "")))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(sizes), [str(b) for b in sorted(sizes)])
        ax.set_title(esc(model), fontsize=10)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=device_color(d), marker="o", label=esc(d))
               for d in sorted(devices_seen)]
    handles += [Line2D([], [], color="#333333", linestyle=s, label=f)
                for f, s in TEST_STYLES.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(esc(f"Throughput against batch size, {machine} (latest run of each case)"))
    return fig


def versus_baseline(verdicts: list[Verdict], test: str, machine: str, base: str,
                    cand: str) -> Figure:
    """Per case the candidate's change in median time against the baseline run with compare's
    interval (the rounds' autocorrelation-aware standard errors and the history's between-run
    spread), colored by compare's verdict; where the case has a history, its bound (the largest
    usual ratio to the history's median) and the candidate's ratio to that median, which the
    verdict weighs."""
    verdicts = sorted(verdicts, key=lambda v: v.name)
    fig = Figure(figsize=(10, 1.6 + 0.26 * len(verdicts)), layout="constrained")
    ax = fig.subplots()
    ys = range(len(verdicts))
    change = [(v.ratio - 1) * 100 for v in verdicts]
    err = [[max(0.0, (v.ratio - v.ci[0]) * 100) if v.ci else 0 for v in verdicts],
           [max(0.0, (v.ci[1] - v.ratio) * 100) if v.ci else 0 for v in verdicts]]
    ax.barh(ys, change, xerr=err, color=[VERDICT_COLORS[v.verdict] for v in verdicts], capsize=2,
            error_kw={"elinewidth": 0.8})
    effect = verdicts[0].min_effect * 100 if verdicts else 5
    ax.axvspan(-effect, effect, color="#000000", alpha=0.06)
    ax.axvline(0, color="#333333", linewidth=0.8)
    bounded = [(y, v) for y, v in zip(ys, verdicts, strict=True) if v.history_bound is not None]
    if bounded:
        ax.scatter([(v.history_bound - 1) * 100 for _, v in bounded], [y for y, _ in bounded],
                   marker="|", s=120, color="#000000", linewidths=1.5, zorder=4)
        ax.scatter([(v.history_ratio - 1) * 100 for _, v in bounded], [y for y, _ in bounded],
                   marker="o", s=14, color="#000000", zorder=4)
    ax.set_yticks(list(ys), [esc(v.name.split("[", 1)[-1].rstrip("]")) for v in verdicts],
                  fontsize=7)
    ax.invert_yaxis()
    # the changes, bounds and minimum effect decide the axis; an interval wider runs off it
    reach = max([abs(c) for c in change] + [effect]
                + [abs(r - 1) * 100 for _, v in bounded for r in (v.history_ratio,
                                                                   v.history_bound)])
    reach = max(1.5 * reach, 3 * effect)
    ax.set_xlim(-reach, reach)
    off = sum(bool(v.ci) and max(1 - v.ci[0], v.ci[1] - 1) * 100 > reach for v in verdicts)
    ax.set_xlabel("change in median time against the run before, % (> 0: slower; shade: minimum "
                  "effect)\nbars: compare's 99% interval (the rounds' spread and the history's "
                  "between-run spread)" + (f"; {off} run off the axis" if off else ""), fontsize=8)
    handles = [Patch(color=c, label=k) for k, c in VERDICT_COLORS.items()]
    handles += [Line2D([], [], marker="o", linestyle="", color="#000000", markersize=4,
                       label="vs the history's median"),
                Line2D([], [], marker="|", linestyle="", color="#000000", markersize=9,
                       label="the history's bound")] * bool(bounded)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(esc(f"{test}: latest run against the run before it, {machine}\n{cand} vs {base}"),
                 fontsize=10, x=0.02, ha="left")
    return fig


def _epoch_label(r: Record) -> str:
    text = describe(r.params, ())
    return text if r.test == "epoch" else f"{r.test}: {text}"  # e.g. the fixed reference epoch


def epoch_breakdown(records: list[Record], machine: str) -> Figure:
    """Seconds per epoch split into compute, data stall and host-to-device copy (shares of host time
    as the epoch family records them)."""
    rows = sorted((r for r in records if "data_stall_share" in r.extra),
                  key=lambda r: _epoch_label(r))
    fig = Figure(figsize=(10, 1.6 + 0.3 * len(rows)), layout="constrained")
    ax = fig.subplots()
    left = [0.0] * len(rows)
    for part, color in COMPONENT_COLORS.items():
        widths = []
        for r in rows:
            stall, copy = (float(r.extra.get("data_stall_share") or 0),
                           float(r.extra.get("copy_share") or 0))
            share = {"compute": max(0.0, 1 - stall - copy), "data stall": stall,
                     "host-to-device copy": copy}[part]
            widths.append(r.median * share)
        ax.barh(range(len(rows)), widths, left=left, color=color, label=part)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(list(range(len(rows))), [esc(_epoch_label(r)) for r in rows], fontsize=7)
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color(device_color(r.params.get("device", "cpu")))
    ax.invert_yaxis()
    images = {int(r.extra.get("images", 0)) for r in rows}
    ax.set_xlabel(f"seconds per epoch ({', '.join(map(str, sorted(images)))} images; labels "
                  "colored by device)")
    fig.legend(loc="outside right upper", fontsize=8)
    fig.suptitle(esc(f"Where an epoch's time goes, {machine} (latest run)"))
    return fig


def ddp_scaling(records: list[Record], machine: str) -> Figure:
    """Per model and device: images/s against world size, and scaling efficiency against one replica
    with the exposed gradient-communication share."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if r.test == "ddp" and "world_size" in r.params:
            rest = tuple(sorted((k, str(v)) for k, v in r.params.items() if k != "world_size"))
            groups.setdefault(rest, []).append(r)
    for i, (rest, rs) in enumerate(sorted(groups.items())):
        rs.sort(key=lambda r: int(r.params["world_size"]))
        params = dict(rest)
        color = device_color(params.get("device", "cpu"))
        marker = "osD^v<>"[i % 7]
        label = esc(describe(params, ()))
        ws = [int(r.params["world_size"]) for r in rs]
        left.plot(ws, [float(r.extra.get("images_per_s") or 0) for r in rs], marker=marker,
                  color=color, label=label)
        eff = [(w, float(r.extra["scaling_efficiency"])) for w, r in zip(ws, rs, strict=True)
               if r.extra.get("scaling_efficiency") is not None]
        if eff:
            right.plot(*zip(*eff, strict=True), marker=marker, color=color,
                       label=f"{label}: efficiency")
        comm = [(w, float(r.extra["comm_share"])) for w, r in zip(ws, rs, strict=True)
                if "comm_share" in r.extra]
        if comm:
            right.plot(*zip(*comm, strict=True), marker=marker, color=color, linestyle=":",
                       alpha=0.8, label=f"{label}: communication share")
    worlds = sorted({int(r.params["world_size"]) for rs in groups.values() for r in rs}) or [1]
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(worlds, [str(w) for w in worlds])
        ax.set_xlabel("world size (replicas)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_ylabel("images/s (all replicas)")
    left.set_title("throughput", loc="left", fontsize=10)
    right.set_ylim(0, 1.1)
    right.set_ylabel("fraction")
    right.set_title("scaling efficiency (solid), communication share (dotted)", loc="left",
                    fontsize=10)
    fig.legend(*right.get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    fig.suptitle(esc(f"Data-parallel scaling, {machine} (latest run)"))
    return fig
