"""The summary of the one-shot GPU check (.ci/gpu-check): what its steps left in a work folder -> at most
8 files of at most 16 MiB each in an output folder, every file written whole or not at all.

The work folder holds steps.tsv (one line per step: name, exit code, limit and wall seconds), and per
step NAME.log (its output) and, for pytest steps, NAME.json (pytest-benchmark) and NAME.xml (junit).
Steps are `doctor`, `family-<family>` and `speedup-<path>`. A missing or broken file is a line in the
summary, never a traceback.

    python3 -m imgbench.preflight.gpucheck summarize WORKDIR OUTDIR
"""

from __future__ import annotations

import dataclasses
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.core import atomic, table
from imgbench.judge import speedup
from imgbench.runs import record, runfile
from imgbench.runs.runfile import RunError

MAX_BYTES = 16 * 2**20     # per output file: the most the lent machine's transfer brings back
LOG_LINES = 80             # per step in log.txt: the tail, where pytest's summary and errors are
LINE_CHARS = 400
DOCTOR_BYTES = 64 * 2**10
DOCTOR_LINES = 40          # in summary.md; doctor.txt has them all
LISTED = 30                # failures and skip reasons named in summary.md
CROSS_CHECK_TOLERANCE = 0.05
OUTPUTS = ("summary.md", "runs.json", "speedup.json", "speedup.png", "log.txt", "doctor.txt")


@dataclass(frozen=True)
class Step:
    name: str
    rc: int
    limit_s: int
    wall_s: int

    @property
    def outcome(self) -> str:
        if self.rc == 0:
            return "passed"
        if self.rc == 124:
            return f"timed out after {self.limit_s} s"
        if self.rc == 137:
            return f"killed after {self.wall_s} s (it did not stop when interrupted at {self.limit_s} s)"
        return f"exit {self.rc}"


@dataclass
class Cases:
    """One pytest step's cases, from its junit XML."""

    passed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (test id, first line of the message)
    skipped: Counter = field(default_factory=Counter)             # reason -> cases


def read_steps(work: Path) -> tuple[list[Step], list[str]]:
    path = work / "steps.tsv"
    if not path.is_file():
        return [], [f"{path}: no step records (the check stopped before its first step ended?)"]
    steps, notes = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            name, rc, limit, wall = line.split("\t")
            steps.append(Step(name, int(rc), int(limit), int(wall)))
        except ValueError:
            notes.append(f"{path} line {n} unreadable (expected name, exit code, limit, wall seconds): {line!r:.120}")
    return steps, notes


def read_cases(path: Path) -> Cases | str:
    """The cases of a junit XML, or the line that says why there are none."""
    if not path.is_file():
        return "no junit XML (pytest did not finish)"
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        return f"unreadable junit XML ({e})"
    out = Cases()
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:  # pytest's entry for a session interrupted between cases
            continue
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            out.failed.append((name, _first_line(bad.get("message") or bad.text or "")))
        elif (skip := case.find("skipped")) is not None:
            out.skipped[_first_line(skip.get("message") or "")] += 1
        else:
            out.passed += 1
    return out


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:LINE_CHARS]


def read_run(path: Path) -> runfile.Run | str:
    """A step's pytest-benchmark run, every case readable, or the line that says why there is none."""
    if not path.is_file():
        return "no pytest-benchmark JSON (pytest wrote none)"
    try:
        run = runfile.read(path)
        record.of_run(run)  # each case with a name and the statistics the suite reads
    except RunError as e:
        return str(e)
    return run


def merge(runs: list[runfile.Run]) -> runfile.Run:
    """One run of several pytest processes: the first one's header and every case (runfile.merged
    unions the imgbench block's axis lists and peaks and names the runs merged in)."""
    acc = runs[0]
    for run in runs[1:]:
        doc, _ = runfile.merged(acc, run)
        acc = dataclasses.replace(acc, raw=doc, benchmarks=doc["benchmarks"])
    return acc


def fit(doc: dict, what: str) -> tuple[str, list[str]]:
    """`doc` as JSON of at most MAX_BYTES, and a line for whatever was dropped to get there: first every
    case's per-round times, then, if still too large, the cases at the end."""
    text = json.dumps(doc)  # ASCII: characters are bytes
    if len(text) <= MAX_BYTES:
        return text, []
    notes = [f"{what}: per-round times (stats.data) dropped: with them it would be {len(text) / 2**20:.1f} MiB "
             f"(limit {MAX_BYTES / 2**20:.0f} MiB); medians and the other statistics are kept"]
    cases = [{**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
             if isinstance(b, dict) and isinstance(b.get("stats"), dict) else b for b in doc["benchmarks"]]
    text = json.dumps({**doc, "benchmarks": cases})
    if len(text) <= MAX_BYTES:
        return text, notes
    size, keep = len(json.dumps({**doc, "benchmarks": []})), []
    for b in cases:
        size += len(json.dumps(b)) + 2
        if size > MAX_BYTES:
            break
        keep.append(b)
    notes.append(f"{what}: still over the limit without rounds: the last {len(cases) - len(keep)} of "
                 f"{len(cases)} cases left out")
    return json.dumps({**doc, "benchmarks": keep}), notes


def tail(path: Path) -> list[str]:
    """The last LOG_LINES lines of a log, each cut at LINE_CHARS; a huge log is read from its end only."""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - LOG_LINES * LINE_CHARS * 4))
        text = f.read().decode("utf-8", errors="replace")
    return [line[:LINE_CHARS] for line in text.splitlines()[-LOG_LINES:]]


def write_text(path: Path, text: str) -> Path:
    """Written whole or not at all, and never over MAX_BYTES (JSON is fitted before: never cut)."""
    with atomic.written(path) as tmp:
        tmp.write_bytes(text.encode("utf-8")[:MAX_BYTES])
    return path


# --- summary.md sections ---

def machine_lines(run: runfile.Run | None) -> list[str]:
    if run is None:
        return ["Machine unknown: no step left a readable run."]
    env, meta = run.env, run.meta
    gpus = ", ".join(f"{g.get('name')} ({g.get('memory_gib')} GiB)" for g in env.get("gpus") or []) or "none"
    cpu = env.get("cpu") or {}
    return [f"- GPU: {gpus}; driver {env.get('driver') or 'unknown'}",
            f"- torch {env.get('torch')}, CUDA {env.get('cuda') or '-'}, cuDNN {env.get('cudnn') or '-'}, "
            f"torchvision {env.get('torchvision')}, Python {env.get('python')}",
            f"- CPU: {cpu.get('brand')}, {cpu.get('cores')} usable cores; {meta.get('threads')} threads",
            f"- machine class {run.fingerprint}; commit {(run.commit or '-')[:12]}; {run.datetime}"]


def steps_table(steps: list[Step], work: Path) -> str:
    """The table of steps, then the failures and skip reasons of their cases."""
    rows, failures, skips = [], [], Counter()
    for s in steps:
        counts, cases = ["", "", "", ""], None
        if s.name != "doctor":
            cases, run = read_cases(work / f"{s.name}.xml"), read_run(work / f"{s.name}.json")
            stored = str(len(run.benchmarks)) if isinstance(run, runfile.Run) else "-"
            if isinstance(cases, Cases):
                counts = [str(cases.passed), str(len(cases.failed)), str(cases.skipped.total()), stored]
                failures += [f"- {s.name}: `{name}`: {message}" for name, message in cases.failed]
                skips.update(cases.skipped)
            else:
                counts = ["-", "-", "-", stored]
        rows.append([s.name, s.outcome, str(s.wall_s), *counts, _note(s, cases, work)])
    text = table.render(["step", "result", "wall s", "passed", "failed", "skipped", "cases stored", "note"],
                        rows, markdown=True)
    lines = [text]
    if failures:
        lines += ["", f"Failed cases ({len(failures)}):", *failures[:LISTED]]
        lines += [f"- ... and {len(failures) - LISTED} more (log.txt)"] if len(failures) > LISTED else []
    if skips:
        lines += ["", f"Skip reasons ({skips.total()} cases):",
                  *[f"- {n} x {reason or '(no reason given)'}" for reason, n in skips.most_common(LISTED)]]
    return "\n".join(lines)


def _note(s: Step, cases: Cases | str | None, work: Path) -> str:
    """Why a step failed where its failed cases do not say: the last line of its output."""
    if s.rc == 0 or (isinstance(cases, Cases) and cases.failed):
        return ""
    if s.rc == 124 and s.name != "doctor":
        return "interrupted at its limit: the cases that finished are kept"
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
        return [f"No GPU-over-CPU pairs: no case of the speedup run was timed on both the CPU and an accelerator "
                f"(devices: {', '.join(devices) or 'none'}; with GPU_CHECK_DEVICE=cpu the step runs on the "
                "CPU only)."], []
    pairs.sort(key=lambda s: (str(s.accel.params.get("path")), int(s.accel.params.get("batch_size", 0))))
    rows = [[f"{s.test} {s.accel.params.get('model', '-')}", _cell(s.cpu), _cell(s.accel), f"{s.speedup:.1f}x",
             str(s.accel.params.get("path", "-")), str(s.accel.params.get("batch_size", "-"))] for s in pairs]
    head = ["case", "CPU median", f"{pairs[0].device} median", "speedup", "path", "batch size"]
    return [table.render(head, rows, markdown=True)], pairs


def _cell(r: record.Record) -> str:
    rates = [f"{r.extra['images_per_s']:,.0f} images/s"] if isinstance(r.extra.get("images_per_s"), int | float) else []
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
            rows.append([f"`{b.get('name')}`", str(cc.get("clock", "?")), table.seconds(suite), table.seconds(other),
                         f"{ratio:.3f}", str(cc.get("calls", "?")),
                         f"**differs by {abs(ratio - 1):.0%}**" if differs else ""])
    if not rows and not notes:
        return ["No case has a cross_check entry (cases of >= 1 ms get one under --cross-check on)."]
    head = ["case", "clock", "suite median", "cross-check median", "ratio", "calls", f"> {CROSS_CHECK_TOLERANCE:.0%}"]
    return [f"{len(rows)} cases cross-checked; {flagged} differ by more than {CROSS_CHECK_TOLERANCE:.0%}.", "",
            table.render(head, rows, markdown=True), *notes]


def figure(pairs: list[speedup.Speedup], machine: str, outdir: Path) -> str | None:
    """speedup.png: a bar per case; None when written, else the line that says why not."""
    try:  # the figure is a convenience: whatever keeps it from being drawn is a line, the summary goes on
        from matplotlib.figure import Figure

        from imgbench.show import plots

        fig = Figure(figsize=(max(5, 1.2 * len(pairs) + 2), 4), layout="constrained")
        ax = fig.subplots()
        labels = [plots.describe(s.accel.params) for s in pairs]
        bars = ax.bar(labels, [s.speedup for s in pairs], color=[plots.device_color(s.device) for s in pairs])
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
                runs.append(run) if run.benchmarks else notes.append(f"{s.name}: its run holds no case")
            else:
                notes.append(f"{s.name}: {run}")
    return runs, notes


def summarize(work: str | Path, outdir: str | Path) -> list[Path]:
    """Writes the check's files into `outdir` (at most 8, each at most MAX_BYTES) and returns them."""
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
        gpu = ", ".join(g.get("name", "?") for g in speedup_run.env.get("gpus") or []) or pairs[0].device
        why = figure(pairs, f"{gpu}, torch {speedup_run.env.get('torch')}", outdir)
        lines_s += [why] if why else ["", "Figure: speedup.png"]
        written += [] if why else [outdir / "speedup.png"]
    doctor = work / "doctor.log"
    doctor_lines = doctor.read_bytes()[:DOCTOR_BYTES].decode("utf-8", errors="replace").splitlines() \
        if doctor.is_file() else []
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
        *([f"({len(doctor_lines) - DOCTOR_LINES} more lines in doctor.txt)"] if len(doctor_lines) > DOCTOR_LINES
          else []), "",
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
    for name in set(OUTPUTS) - {p.name for p in written}:  # a file of an earlier check would mislead
        (outdir / name).unlink(missing_ok=True)
    return written


def _log(work: Path, steps: list[Step]) -> str:
    """The tail of every step's output, the steps in order, then any log of a step that left no record."""
    names = [s.name for s in steps]
    names += sorted(p.stem for p in work.glob("*.log") if p.stem not in names) if work.is_dir() else []
    out = []
    for name in names:
        log = work / f"{name}.log"
        out += [f"== {name}", *(tail(log) if log.is_file() else ["(no output)"]), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "summarize":
        print(f"usage: python3 -m imgbench.preflight.gpucheck summarize WORKDIR OUTDIR (got: {' '.join(args) or 'nothing'})",
              file=sys.stderr)
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
