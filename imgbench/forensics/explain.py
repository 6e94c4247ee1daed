"""What got slower: one case's time per operator in two versions, from torch.profiler, and the
difference.

Each side is one pytest process running its own tree's benches (forensics.worker, as in
`imgbench ab`) with the `profworker` plugin. Once both sides hold the case (after the bench's own
warm-up, and `warmup` calls more), blocks of calls run under the profiler alternately on the two
sides, in counterbalanced order (base, candidate; candidate, base; ...): on a host whose speed
moves in regimes lasting seconds, the two blocks of a pair see the same regime. Per block and
operator: its self time per step (self CPU time of the CPU operators; on a CUDA case the device time
of the kernels each operator launched itself, keyed by the operator because cuDNN's choice of kernel
differs between processes), and the block's wall time per step.

Per operator, the added time is the median over the pairs of (candidate - base) per step, and its
share is that over the change in step time (the same median of the blocks' wall time per step).

The noise rule: a line counts when its added time exceeds its noise, the larger of
- Z standard errors of that median, from the spread of the pairs' differences (1.4826 x their median
  absolute deviation, so one pair hit by a regime switch does not widen it; the standard error of a
  median is 1.2533 x spread / sqrt(pairs)), and
- FLOOR of the base's step time: a process keeps some state of its own (where its allocations
  land), so two processes of the same version differ by a small steady amount that the pairs'
  spread cannot see.
An A/A (a version against itself) must show no line above its noise: tests/test_explain.py runs
one."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imgbench.core import atomic, config, table
from imgbench.core.errors import UserError
from imgbench.forensics import ab
from imgbench.forensics.worker import START_S, Side, Worker, WorkerStopped, start
from imgbench.hw import contention
from imgbench.runs import storage

PAIRS = config.EXPLAIN_PAIRS  # pairs of blocks
WARMUP = config.EXPLAIN_WARMUP
BLOCK_S = 0.2     # calls per block: about this long (at least one call)
MAX_STEPS = 200
# standard errors: over the few dozen operators of a case, an A/A line beyond is rare
Z = 4.0
FLOOR = 0.02      # share of the base's step time below which no line counts
# version 2: CUDA tables keyed by operator; a version-1 CUDA table (keyed by kernel) loads as
# "cuda-kernels", which diff does not pair with an operator table
FORMAT, VERSION = "imgbench-explain-ops", 2
PLUGIN = "imgbench_profworker"
METRIC = {"cpu": "self CPU time",
          "cuda": "self CUDA time (the kernels each operator launched itself)",
          "cuda-kernels": "self CUDA time of the kernels"}


class ExplainError(UserError):
    pass


@dataclass
class Profile:
    """One side's blocks: what `profworker` measured, as saved in SIDE.ops.json."""
    side: str                  # "base" or "candidate"
    case: str                  # the test id
    version: str               # the git ref and commit, or "this checkout"
    device: str                # "cpu", "cuda" (or an old "cuda-kernels"): what ops carry (METRIC)
    steps: int                 # calls per block
    step_s: list[float]        # per block: wall seconds per call under the profiler
    ops: list[dict]            # per block: operator -> [calls, self microseconds] over the block
    trace: str = ""            # the Chrome trace of the first block, beside this file

    def per_step(self, name: str, n: int) -> np.ndarray:
        return np.array([b.get(name, (0, 0.0))[1] * 1e-6 / self.steps for b in self.ops[:n]])

    def calls(self, name: str, n: int) -> float:
        return float(np.median([b.get(name, (0, 0.0))[0] / self.steps for b in self.ops[:n]]))


def save(p: Profile, path: Path):
    with atomic.written(path) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "format_version": VERSION, **asdict(p)},
                                  indent=1))


def load(path: str | Path) -> Profile:
    """A profile explain saved; anything else is one line naming the file and what it should be."""
    bad = (f"{path}: not an operator table written by imgbench explain "
           "(give its base.ops.json and candidate.ops.json)")
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ExplainError(f"{path}: no such file (give the base.ops.json and candidate.ops.json "
                           "explain wrote)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ExplainError(bad) from None
    if (not isinstance(raw, dict) or raw.get("format") != FORMAT
            or not isinstance(raw.get("format_version"), int)):
        raise ExplainError(bad)
    if raw["format_version"] > VERSION:
        raise ExplainError(f"{path}: written by a newer imgbench (table version "
                           f"{raw['format_version']}; this one reads up to {VERSION})")
    try:
        p = Profile(**{k: raw[k] for k in Profile.__dataclass_fields__ if k in raw})
        if raw["format_version"] < 2 and p.device == "cuda":
            p.device = "cuda-kernels"
        ok = (p.device in METRIC and p.steps >= 1 and len(p.step_s) == len(p.ops) > 0
              and all(t > 0 for t in p.step_s)
              and all(len(v) == 2 and v[0] >= 0 and v[1] >= 0 for b in p.ops for v in b.values()))
    except (TypeError, AttributeError):
        ok = False
    if not ok:
        raise ExplainError(bad)
    return p


@dataclass
class Line:
    name: str
    base_s: float              # per step, median over the blocks compared
    cand_s: float
    added_s: float             # median over the pairs of candidate - base
    noise_s: float
    calls: tuple[float, float]  # per step, base and candidate

    @property
    def above(self) -> bool:
        return abs(self.added_s) > self.noise_s


@dataclass
class Diff:
    base: Profile
    cand: Profile
    pairs: int
    step: Line                 # the wall time per step
    lines: list[Line]          # every operator, the most added time first

    def share(self, line: Line) -> float | None:
        """The line's share of the change in step time; None when the step time did not change
        beyond its noise."""
        return line.added_s / self.step.added_s if self.step.above else None


def noise(d: np.ndarray, base_step_s: float) -> float:
    """The noise rule (module docstring): Z standard errors of the median of `d`, at least FLOOR of
    the step."""
    spread = 1.4826 * float(np.median(np.abs(d - np.median(d)))) if len(d) > 1 else 0.0
    return max(Z * 1.2533 * spread / math.sqrt(len(d)), FLOOR * base_step_s)


def _line(name: str, b: np.ndarray, c: np.ndarray, base_step_s: float, calls=(0.0, 0.0)) -> Line:
    return Line(name, float(np.median(b)), float(np.median(c)), float(np.median(c - b)),
                noise(c - b, base_step_s), calls)


def diff(base: Profile, cand: Profile) -> Diff:
    """Block i of the base paired with block i of the candidate (as they ran, alternating)."""
    if {base.device, cand.device} == {"cuda", "cuda-kernels"}:
        raise ExplainError("one CUDA table is keyed by kernel (an older imgbench explain wrote it) "
                           "and the other by operator: profile both sides again")
    if base.device != cand.device:
        raise ExplainError(f"the base was profiled on {base.device} and the candidate on "
                           f"{cand.device}: give two profiles of the same case on the same "
                           "device")
    n = min(len(base.step_s), len(cand.step_s))
    step = _line("step time", np.array(base.step_s[:n]), np.array(cand.step_s[:n]),
                 float(np.median(base.step_s[:n])))
    names = sorted({k for p in (base, cand) for b in p.ops[:n] for k in b})
    lines = [_line(k, base.per_step(k, n), cand.per_step(k, n), step.base_s,
                   (base.calls(k, n), cand.calls(k, n)))
             for k in names]
    return Diff(base, cand, n, step, sorted(lines, key=lambda line: -line.added_s))


def _signed(t: float) -> str:
    return ("+" if t >= 0 else "-") + table.seconds(abs(t))


def _time(t: float) -> str:
    return table.seconds(t) if t else "-"  # not run on that side


def _name(name: str, markdown: bool) -> str:
    short = name if len(name) <= 70 else name[:69] + "…"
    return "`" + short.replace("`", "'").replace("|", "\\|") + "`" if markdown else short


def _calls(calls: tuple[float, float]) -> str:
    b, c = (f"{x:.3g}" for x in calls)
    return b if b == c else f"{b} -> {c}"


def render(d: Diff, markdown: bool = False, notes: list[str] = ()) -> str:
    """The lines above their noise, the step time, what stayed within the noise, and any notes."""
    head = ["operator", "base", "candidate", "added", "share", "calls/step", "noise"]
    rows = [[_name(x.name, markdown), _time(x.base_s), _time(x.cand_s), _signed(x.added_s),
             "-" if (s := d.share(x)) is None else f"{100 * s:+.0f}%", _calls(x.calls),
             table.seconds(x.noise_s)]
            for x in d.lines if x.above]
    steps = d.base.steps if d.base.steps == d.cand.steps else f"{d.base.steps} and {d.cand.steps}"
    title = (f"{d.cand.case}: {METRIC[d.cand.device]} per step, base {d.base.version} vs candidate "
             f"{d.cand.version}; {d.pairs} pair(s) of blocks of {steps} step(s)")
    s = d.step
    out = [f"step time (wall, under the profiler): base {table.seconds(s.base_s)}, candidate "
           f"{table.seconds(s.cand_s)}, {_signed(s.added_s)} ({100 * s.added_s / s.base_s:+.1f}%), "
           f"noise {table.seconds(s.noise_s)}"
           + ("" if s.above else ": no change beyond the noise, so no shares")]
    within = [x for x in d.lines if not x.above]
    if rows:
        out.append(f"{len(rows)} operator(s) above their noise, {len(within)} within it")
    else:
        out.append(f"no operator changed beyond its noise ({len(within)} compared)")
    if d.pairs < 3:
        out.append(f"only {d.pairs} pair(s) of blocks: the noise is barely estimated")
    out += list(notes)
    if markdown:
        return "\n".join([f"**imgbench explain** {title}", "",
                          *([table.render(head, rows, True), ""] if rows else [])]
                         + [f"- {line}" for line in out])
    return "\n".join([title, *([table.render(head, rows)] if rows else []), *out])


def select(case: str, listed: list[str], side: str) -> str:
    """The node id of the one case CASE names among a side's collected node ids: pytest's -k
    narrowed them already; a test id or node id equal to CASE wins over cases it only matches."""
    exact = [nid for nid in listed if case == nid or nid.endswith("::" + case)]
    found = exact or listed
    if len(found) == 1:
        return found[0]
    if not found:
        raise ExplainError(f"the {side} has no case matching {case!r} (give a test id such as "
                           "test_forward[kerascnn-cpu-bs32], or a -k expression, with the axis "
                           "options that make it, e.g. --device cpu)")
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    raise ExplainError(f"{case!r} matches {len(found)} cases of the {side}: "
                       f"{', '.join(n.rsplit('::', 1)[-1] for n in found[:5])}{more} (name one)")


@dataclass
class Outcome:
    case: str
    diff: Diff | None          # None: cut before the first pair
    notes: list[str] = field(default_factory=list)

    def describe(self, markdown: bool, out: Path) -> str:
        notes = [*self.notes, f"traces and operator tables in {out}"]
        if self.diff is not None:
            return render(self.diff, markdown, notes)
        if markdown:
            return "\n".join([f"**imgbench explain** {self.case}: not profiled", ""]
                             + [f"- {x}" for x in notes])
        return "\n".join([f"{self.case}: not profiled", *notes])


def out_folder(given: str | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="imgbench-explain-"))
    return storage.writable_folder(Path(given), "--out")


class _Run:
    """Both workers through one case: selection, warm-up, block size, the pairs of blocks."""

    def __init__(self, case: str, workers: list[Worker], out: Path):
        self.case, self.workers, self.out = case, workers, out
        self.blocks: dict[str, list] = {"base": [], "candidate": []}
        self.cuda: dict[str, bool] = {}
        self.steps = 1

    def hold(self):
        """Each side runs its one matching case up to its benchmark call."""
        for w in self.workers:
            w.put([select(self.case, [c[0] for c in w.recv(START_S)[1]], w.side.name)])
        for w in self.workers:
            msg = w.recv(START_S)
            if msg[0] != "ready":
                why = msg[2] if msg[0] == "ended" else "its session ended"
                raise ExplainError(f"the {w.side.name} did not reach the benchmark call of "
                                   f"{self.case}: {why}")
            self.cuda[w.side.name] = msg[2]

    def warm_up(self, calls: int):
        """`calls` calls and one profiled call per side (the profiler's own start-up), then the
        block size from the slower side's median call (without warm-up calls: its profiled call)."""
        per_call = []
        for w in self.workers:
            times = self._ask(w, "warmup", calls)[0] if calls else []
            profiled = self._ask(w, "block", 1, None)[0]
            per_call.append(float(np.median(times)) if times else profiled)
        self.steps = int(min(MAX_STEPS, max(1, round(BLOCK_S / max(max(per_call), 1e-9)))))

    def pair(self, i: int):
        order = self.workers if i % 2 == 0 else self.workers[::-1]
        for w in order:
            trace = str(self.out / f"{w.side.name}.trace.json") if i == 0 else None
            self.blocks[w.side.name].append(self._ask(w, "block", self.steps, trace))

    def _ask(self, w: Worker, *msg):
        w.send(*msg)
        got = w.recv()
        if got[0] == "error":
            raise ExplainError(f"the {w.side.name} failed in {self.case} while profiled: {got[2]}")
        return got[1:]

    def profile(self, name: str, version: str, pairs: int) -> Profile:
        """The side's first `pairs` blocks (a pair cut short leaves one side a block more)."""
        blocks = self.blocks[name][:pairs]
        trace = f"{name}.trace.json" if (self.out / f"{name}.trace.json").is_file() else ""
        return Profile(name, self.case, version, "cuda" if self.cuda[name] else "cpu", self.steps,
                       [b[0] for b in blocks], [b[1] for b in blocks], trace)

    def save_profiles(self, versions: tuple[str, str], pairs: int) -> list[Profile]:
        """Both sides' profiles (base, candidate) of their first `pairs` blocks, each saved into
        `out` as <side>.ops.json."""
        profiles = [self.profile(name, version, pairs)
                    for name, version in zip(("base", "candidate"), versions, strict=True)]
        for p in profiles:
            save(p, self.out / f"{p.side}.ops.json")
        return profiles


def run(case: str, base: Side, cand: Side, args: list[str], folder: Path, out: Path,
        versions: tuple[str, str], pairs: int = PAIRS, warmup: int = WARMUP,
        max_seconds: float | None = None, note: Callable[[str], None] = lambda s: None) -> Outcome:
    """`imgbench explain`: both sides profiled in pairs of blocks; the operator tables and traces
    written into `out`. Past `max_seconds` the workers are stopped, and the outcome says how far it
    got."""
    began = time.monotonic()
    ab.copy_plugin(folder)  # the profile worker imports the A/B worker's hooks
    shutil.copyfile(Path(__file__).parent / "workers" / "profile_worker.py",
                    folder / f"{PLUGIN}.py")
    args = [*args, "-k", case.rsplit("::", 1)[-1]]  # a node id's last part is what -k matches
    workers: list[Worker] = []
    cut = threading.Event()

    def stop_all():  # from the watchdog thread: the main thread sees the workers gone and ends
        cut.set()
        for w in list(workers):
            w.kill()
    watchdog = threading.Timer(max_seconds, stop_all) if max_seconds else None
    if watchdog:
        watchdog.start()
    r = _Run(case, workers, out)
    done, busy = 0, None
    try:
        start([base, cand], args, folder, note, PLUGIN, workers)
        r.hold()
        note(f"both sides hold {case}: warming up")
        r.warm_up(warmup)
        pair_s, snap = 0.0, contention.snapshot()
        for i in range(pairs):
            if max_seconds and time.monotonic() - began + 1.5 * pair_s > max_seconds:
                cut.set()
                break
            t0 = time.monotonic()
            r.pair(i)
            pair_s, done = time.monotonic() - t0, i + 1
        note(f"{done} pair(s) of blocks of {r.steps} step(s) profiled")
        busy = contention.flag(contention.between(snap, contention.snapshot()))
    except WorkerStopped as e:
        if not cut.is_set():  # its log is kept in `out`: the temporary one goes
            raise e.keep(out / f"{e.worker.side.name}.log") from None
    finally:
        if watchdog:
            watchdog.cancel()
        for w in workers:
            w.stop()
            with suppress(OSError):
                shutil.copyfile(w.log, out / f"{w.side.name}.log")
    notes = []
    if cut.is_set() and done < pairs:
        notes.append(f"cut at --max-seconds {max_seconds:g}: " + (
            f"{done} of {pairs} pairs of blocks profiled" if done else
            f"nothing profiled after {time.monotonic() - began:.0f} s of start-up and warm-up"))
    if busy:
        notes.append(f"{busy}: the noise is wider, so fewer lines stand out")
    if not done:
        return Outcome(case, None, notes)
    profiles = r.save_profiles(versions, done)
    return Outcome(case, diff(*profiles), notes)
