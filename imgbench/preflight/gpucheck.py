"""The summary of the one-shot GPU check (.ci/gpu-check): what its steps left in a work folder -> at
most 8 files of at most 16 MiB each in an output folder, every file written whole or not at all.

The work folder holds steps.tsv (one line per step: name, exit code, limit and wall seconds), and
per step NAME.log (its output) and, for pytest steps, NAME.json (pytest-benchmark) and NAME.xml
(junit). Steps are `doctor`, `family-<family>` and `speedup-<path>`. A missing or broken file is a
line in the summary, never a traceback.

    python3 -m imgbench.preflight.gpucheck summarize WORKDIR OUTDIR
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from pathlib import Path

from imgbench.core import table
from imgbench.core.config import PROCESS_START_S
from imgbench.judge import speedup
from imgbench.preflight.checkfiles import (
    MAX_BYTES,
    Cases,
    Step,
    fit,
    merge,
    read_cases,
    read_collected,
    read_run,
    read_steps,
    tail,
    write_text,
)
from imgbench.runs import record, runfile
from imgbench.runs.runfile import RunError

DOCTOR_BYTES = 64 * 2**10
DOCTOR_LINES = 40          # in summary.md; doctor.txt has them all
LISTED = 30                # failures and skip reasons named in summary.md
CROSS_CHECK_TOLERANCE = 0.05
CUT = (124, 137)           # exit codes of a step stopped at its limit (SIGINT, then KILL)
OUTPUTS = ("summary.md", "runs.json", "speedup.json", "speedup.png", "log.txt", "doctor.txt")


# --- summary.md sections ---

def machine_lines(run: runfile.Run | None) -> list[str]:
    if run is None:
        return ["Machine unknown: no step left a readable run."]
    env, meta = run.env, run.meta
    gpus = ", ".join(f"{g.get('name')} ({g.get('memory_gib')} GiB)"
                     for g in env.get("gpus") or []) or "none"
    cpu = env.get("cpu") or {}
    return [f"- GPU: {gpus}; driver {env.get('driver') or 'unknown'}",
            f"- torch {env.get('torch')}, CUDA {env.get('cuda') or '-'}, "
            f"cuDNN {env.get('cudnn') or '-'}, "
            f"torchvision {env.get('torchvision')}, Python {env.get('python')}",
            f"- CPU: {cpu.get('brand')}, {cpu.get('cores')} usable cores; "
            f"{meta.get('threads')} threads",
            f"- machine class {run.fingerprint}; commit {(run.commit or '-')[:12]}; {run.datetime}"]


def steps_table(steps: list[Step], work: Path) -> str:
    """The table of steps, the start-up of their processes, then the failures and skip reasons of
    their cases and the cases a step cut short did not reach."""
    rows, failures, skips, unreached, startups = [], [], Counter(), [], []
    for s in steps:
        counts, cases, startup, missed = ["", "", "", ""], None, "", []
        if s.name != "doctor":
            cases, run = read_cases(work / f"{s.name}.xml"), read_run(work / f"{s.name}.json")
            stored = str(len(run.benchmarks)) if isinstance(run, runfile.Run) else "-"
            counts = ["-", "-", "-", stored]
            if isinstance(cases, Cases):
                counts = [str(cases.passed), str(len(cases.failed)), str(cases.skipped.total()),
                          stored]
                failures += [f"- {s.name}: `{name}`: {message}" for name, message in cases.failed]
                skips.update(cases.skipped)
                startup = f"{cases.startup_s(s.wall_s):.1f}"
                if s.rc not in CUT:  # a cut step's wall holds the case it cut too
                    startups.append(cases.startup_s(s.wall_s))
            missed = _unreached(s, cases, work)
            unreached += [f"- {s.name}: `{node}`" for node in missed]
        rows.append([s.name, s.outcome, f"{s.wall_s:.0f}", *counts, startup,
                     _note(s, cases, work, missed)])
    text = table.render(["step", "result", "wall s", "passed", "failed", "skipped", "cases stored",
                         "start-up s", "note"], rows, markdown=True)
    lines = [text, "", startup_line(startups)]
    for title, items in (("Failed cases", failures), ("Cases not reached", unreached)):
        if items:
            lines += ["", f"{title} ({len(items)}):", *items[:LISTED]]
            lines += ([f"- ... and {len(items) - LISTED} more (log.txt)"]
                      if len(items) > LISTED else [])
    if skips:
        lines += ["", f"Skip reasons ({skips.total()} cases):",
                  *[f"- {n} x {reason or '(no reason given)'}"
                    for reason, n in skips.most_common(LISTED)]]
    return "\n".join(lines)


def startup_line(startups: list[float]) -> str:
    head = ("Start-up per pytest process (its wall time less its cases' junit times: interpreter, "
            "imports, collection, writing its files): ")
    if not startups:
        return head + "not measured (no pytest step ended with its junit XML)."
    low, high = min(startups), max(startups)
    return (head + f"median {statistics.median(startups):.1f} s of {len(startups)} steps "
            f"({low:.1f} to {high:.1f} s); the schedule assumes {PROCESS_START_S:.0f} s "
            "(imgbench/preflight/plan.py).")


def _unreached(s: Step, cases: Cases | str | None, work: Path) -> list[str]:
    """The cases a failed step collected and its junit XML did not record."""
    collected = read_collected(work / f"{s.name}.collected")
    if s.rc == 0 or not collected:
        return []
    recorded = cases.recorded if isinstance(cases, Cases) else set()
    return [node for node in collected if node not in recorded]


def _note(s: Step, cases: Cases | str | None, work: Path, missed: list[str]) -> str:
    """Why a step failed where its failed cases do not say: the cases a cut step did not reach, or
    the last line of its output."""
    if s.rc == 0 or (isinstance(cases, Cases) and cases.failed and not missed):
        return ""
    if s.rc in CUT and s.name != "doctor":
        collected = read_collected(work / f"{s.name}.collected")
        if collected is None:
            return "interrupted at its limit before its collection ended"
        return (f"interrupted at its limit after {len(collected) - len(missed)} of "
                f"{len(collected)} cases: {len(missed)} not reached (listed below); the cases "
                "that finished are kept")
    if missed:
        return f"{len(missed)} cases not reached (listed below)"
    log = work / f"{s.name}.log"
    lines = [x for x in tail(log) if x.strip()] if log.is_file() else []
    return f"`{lines[-1].strip()}`".replace("|", "\\|") if lines else "no output"


def speedup_lines(run: runfile.Run | None, why: str) -> tuple[list[str], list[speedup.Speedup]]:
    if run is None:
        return [f"No speedup run: {why}."], []
    try:
        records = record.of_run(run)
    except RunError as e:
        return [f"Speedup run unreadable: {e}"], []
    pairs = speedup.within(records)
    if not pairs:
        devices = sorted({str(r.params.get("device")) for r in records})
        return ["No GPU-over-CPU pairs: no case of the speedup run was timed on both the CPU and "
                f"an accelerator (devices: {', '.join(devices) or 'none'}; with "
                "GPU_CHECK_DEVICE=cpu the step runs on the CPU only)."], []
    pairs.sort(key=lambda s: (str(s.accel.params.get("path")),
                              int(s.accel.params.get("batch_size", 0))))
    rows = [[f"{s.test} {s.accel.params.get('model', '-')}", _cell(s.cpu), _cell(s.accel),
             f"{s.speedup:.1f}x", str(s.accel.params.get("path", "-")),
             str(s.accel.params.get("batch_size", "-"))] for s in pairs]
    head = ["case", "CPU median", f"{pairs[0].device} median", "speedup", "path", "batch size"]
    return [table.render(head, rows, markdown=True)], pairs


def _cell(r: record.Record) -> str:
    rates = ([f"{r.extra['images_per_s']:,.0f} images/s"]
             if isinstance(r.extra.get("images_per_s"), int | float) else [])
    if isinstance(r.extra.get("data_stall_share"), int | float):
        rates.append(f"data stall {r.extra['data_stall_share']:.0%}")
    return table.seconds(r.median) + (f" ({', '.join(rates)})" if rates else "")


def cross_check_lines(runs: list[runfile.Run]) -> list[str]:
    rows, notes, flagged = [], [], 0
    for run in runs:
        for b in run.benchmarks:
            cc = (b.get("extra_info") or {}).get("cross_check") if isinstance(b, dict) else None
            if cc is None:
                continue
            try:
                suite, other = float(b["stats"]["median"]), float(cc["median_s"])
                ratio = other / suite
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                notes.append(f"- {b.get('name')}: cross_check unreadable: {json.dumps(cc)[:120]}")
                continue
            differs = abs(ratio - 1) > CROSS_CHECK_TOLERANCE
            flagged += differs
            rows.append([f"`{b.get('name')}`", str(cc.get("clock", "?")), table.seconds(suite),
                         table.seconds(other), f"{ratio:.3f}", str(cc.get("calls", "?")),
                         f"**differs by {abs(ratio - 1):.0%}**" if differs else ""])
    if not rows and not notes:
        return ["No case has a cross_check entry "
                "(cases of >= 1 ms get one under --cross-check on)."]
    head = ["case", "clock", "suite median", "cross-check median", "ratio", "calls",
            f"> {CROSS_CHECK_TOLERANCE:.0%}"]
    return [f"{len(rows)} cases cross-checked; {flagged} differ by more than "
            f"{CROSS_CHECK_TOLERANCE:.0%}.", "", table.render(head, rows, markdown=True), *notes]


def figure(pairs: list[speedup.Speedup], machine: str, outdir: Path) -> str | None:
    """speedup.png: a bar per case; None when written, else the line that says why not."""
    # the figure is a convenience: whatever keeps it from being drawn is a line, the summary goes on
    try:
        from matplotlib.figure import Figure

        from imgbench.show import plots

        fig = Figure(figsize=(max(5, 1.2 * len(pairs) + 2), 4), layout="constrained")
        ax = fig.subplots()
        labels = [plots.describe(s.accel.params) for s in pairs]
        bars = ax.bar(labels, [s.speedup for s in pairs],
                      color=[plots.device_color(s.device) for s in pairs])
        ax.bar_label(bars, [f"{s.speedup:.1f}x" for s in pairs], fontsize=8)
        ax.axhline(1, color="#555555", linewidth=0.8, linestyle=":")
        ax.set_ylabel("speedup (x)\nCPU time / GPU time")
        ax.tick_params(axis="x", labelsize=8, labelrotation=20)
        ax.set_title(f"GPU-over-CPU speedup, {machine}", fontsize=10)
        plots.save(fig, outdir, "speedup")
    except Exception as e:
        return f"No speedup.png: {type(e).__name__}: {e}"
    return None


# --- the whole summary ---

def _runs(work: Path, steps: list[Step], prefix: str) -> tuple[list[runfile.Run], list[str]]:
    runs, notes = [], []
    for s in steps:
        if s.name.startswith(prefix):
            run = read_run(work / f"{s.name}.json")
            if isinstance(run, runfile.Run):
                (runs.append(run) if run.benchmarks
                 else notes.append(f"{s.name}: its run holds no case"))
            else:
                notes.append(f"{s.name}: {run}")
    return runs, notes


def summarize(work: str | Path, outdir: str | Path) -> list[Path]:
    """Writes the check's files into `outdir` (at most 8, each at most MAX_BYTES) and returns
    them."""
    work, outdir = Path(work), Path(outdir)
    steps, notes = read_steps(work)
    family_runs, family_notes = _runs(work, steps, "family-")
    speedup_runs, speedup_notes = _runs(work, steps, "speedup-")
    written = []
    for name, runs in (("runs.json", family_runs), ("speedup.json", speedup_runs)):
        if runs:
            text, dropped = fit(merge(runs).raw, name)
            written.append(write_text(outdir / name, text))
            notes += dropped
    first = (family_runs + speedup_runs or [None])[0]
    speedup_run = merge(speedup_runs) if speedup_runs else None
    lines_s, pairs = speedup_lines(speedup_run, "; ".join(speedup_notes) or "no speedup step ran")
    if pairs:
        gpu = (", ".join(g.get("name", "?") for g in speedup_run.env.get("gpus") or [])
               or pairs[0].device)
        why = figure(pairs, f"{gpu}, torch {speedup_run.env.get('torch')}", outdir)
        lines_s += [why] if why else ["", "Figure: speedup.png"]
        written += [] if why else [outdir / "speedup.png"]
    doctor = work / "doctor.log"
    doctor_lines = (doctor.read_bytes()[:DOCTOR_BYTES].decode("utf-8", errors="replace")
                    .splitlines() if doctor.is_file() else [])
    if doctor.is_file():
        written.append(write_text(outdir / "doctor.txt", "\n".join(doctor_lines) + "\n"))
    written.append(write_text(outdir / "log.txt", _log(work, steps)))
    failed = [s.name for s in steps if s.rc != 0]
    summary = [
        "# GPU check", "",
        (f"{len(failed)} of {len(steps)} steps failed: {', '.join(failed)}." if failed
         else f"All {len(steps)} steps passed."), "",
        "## Machine", "", *machine_lines(first), "",
        "## Preflight (imgbench doctor)", "",
        *(["```", *doctor_lines[:DOCTOR_LINES], "```"] if doctor_lines else ["No doctor output."]),
        *([f"({len(doctor_lines) - DOCTOR_LINES} more lines in doctor.txt)"]
          if len(doctor_lines) > DOCTOR_LINES else []), "",
        "## Steps", "", steps_table(steps, work), "",
        "## GPU-over-CPU epoch speedup (kerascnn)", "", *lines_s, "",
        "## Cross-check (the same workload timed a second way)", "",
        *cross_check_lines(family_runs + speedup_runs), "",
    ]
    notes += family_notes + speedup_notes
    if notes:
        summary += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    written.append(outdir / "summary.md")
    summary += ["## Files", "", *[f"- {p.name}" for p in written], ""]
    write_text(outdir / "summary.md", "\n".join(summary)[:MAX_BYTES])
    # a file of an earlier check would mislead
    for name in set(OUTPUTS) - {p.name for p in written}:
        (outdir / name).unlink(missing_ok=True)
    return written


def _log(work: Path, steps: list[Step]) -> str:
    """The tail of every step's output, the steps in order, then any log of a step that left no
    record."""
    names = [s.name for s in steps]
    names += (sorted(p.stem for p in work.glob("*.log") if p.stem not in names)
              if work.is_dir() else [])
    out = []
    for name in names:
        log = work / f"{name}.log"
        out += [f"== {name}", *(tail(log) if log.is_file() else ["(no output)"]), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "summarize":
        print("usage: python3 -m imgbench.preflight.gpucheck summarize WORKDIR OUTDIR "
              f"(got: {' '.join(args) or 'nothing'})", file=sys.stderr)
        return 2
    try:
        written = summarize(args[1], args[2])
    except OSError as e:
        print(f"checkup: cannot write into {args[2]}: {e.strerror or e}", file=sys.stderr)
        return 2
    print("\n".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
