"""Interleaved A/B: the same cases of two versions (two git refs, or two Python environments) timed
burst by burst in one job. Each side is one long-lived worker process running its own tree's benches
under pytest (`abworker`), so each version builds its cases its own way; the coordinator here walks
both workers through the matched cases together and, per case, alternates short bursts of calls
between them in counterbalanced order (ABBA...), pairing adjacent bursts.

Why: on a 2-core runner the host moves a case 15-28% between processes and in regimes lasting
seconds; bursts of ~50 ms, paired back to back, see the same regime. A pair's log-ratio is
log(candidate burst / base burst), each burst summarised by its median call (robust to a regime
switch inside it). The decision (`decide`) is a one-sided exact signed-rank test on the pairs'
log-ratios, Holm's rule over all cases of the job (the chance of any false alarm in a job stays at
alpha, as far as pairs are independent of one another: `imgbench gate-check` measures it), and the
Hodges-Lehmann estimate against the minimum effect. A case whose first set of pairs
looks slower gets as many pairs again; the test runs on all pairs, so alpha still holds."""

from __future__ import annotations

import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Listener
from pathlib import Path

import numpy as np

from imgbench.hw import contention
from imgbench.judge import stats, verdict
from imgbench.core.errors import UserError
from imgbench.runs.record import family_of
from imgbench.judge.verdict import Verdict

BURST_S = 0.05       # a burst this long (at least one call): timer-safe, short next to the host's regimes
LEAD_BELOW_S = 0.1   # calls shorter than this get one untimed call at the head of each burst
# First-set time per case, both sides: on the 2-core box the pairs' log-ratios have an sd of 0.1-0.25
# (the host's), so only hundreds of pairs resolve 5%; the pairs it buys lie within the bounds below.
CASE_BUDGET_S = 20.0
MIN_PAIRS, MAX_PAIRS = 12, 300  # 12: the exact test can reach alpha 0.01 over a dozen cases (2^-12)
SCREEN_P = 0.10      # a first set this suggestive of a slowdown earns the second set
START_S = 600        # a worker that has not reached its first case by then is stuck
WORKERS = 1          # per side; more cycle pairs through every (base, candidate) combination
WORKER_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",  # an idle worker's OpenMP threads sleep instead of spinning
    # A fixed malloc: no dynamic mmap threshold, no trimming. Else each process settles into its own
    # allocation pattern (page faults per call or none), which biased measured pairs of processes by 10-25%.
    # (Threads bound to cores, OMP_PROC_BIND, also steadied pairs, but pins forked DataLoader workers and
    # torchrun ranks to the first core: not the workload a run times.)
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647",
}
PLUGIN = "imgbench_abworker"


class ABError(UserError):
    pass


@dataclass(frozen=True)
class Side:
    name: str       # "base" or "candidate"
    tree: Path      # checkout whose benches/ run
    python: str


def worktree(ref: str, repo: Path, into: Path) -> Path:
    """A detached checkout of `ref` (no effect on the current checkout's files)."""
    proc = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(into), ref],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed"
        raise ABError(f"cannot check out {ref!r}: {why}")
    return into


def remove_worktree(repo: Path, path: Path):
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)


def python_of(path: str | None) -> str:
    if path is None:
        return sys.executable
    if not Path(path).is_file() or not os.access(path, os.X_OK):
        raise ABError(f"--base-python {path!r} is not an executable file (give the python executable of the "
                      "other environment)")
    return path


class Worker:
    """One pytest process running one side's tree, connected to the coordinator by its own socket."""

    def __init__(self, side: Side, index: int, args: list[str], folder: Path, plugin: str = PLUGIN):
        self.side, self.index, self.plugin, self.name = side, index, plugin, f"{side.name} worker {index + 1}"
        self.log = folder / f"{side.name}{index + 1}.log"
        key = secrets.token_bytes(16)
        self.listener = Listener(str(folder / f"{side.name}{index + 1}.sock"), family="AF_UNIX", authkey=key)
        env = {**os.environ, **WORKER_ENV, "PYTHONPATH": os.pathsep.join(
            [str(side.tree), str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "IMGBENCH_AB_ADDRESS": self.listener.address, "IMGBENCH_AB_KEY": key.hex()}
        cmd = [side.python, "-m", "pytest", str(side.tree / "benches"), *args, "-p", plugin, "-q",
               "-p", "no:cacheprovider", "-p", "no:xdist"]
        try:
            with open(self.log, "w") as log:
                # Its own process group: stopping it stops what it started too (torchrun, loader workers).
                self.proc = subprocess.Popen(cmd, cwd=side.tree, env=env, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        except OSError as e:
            self.listener.close()
            raise ABError(f"the {side.name} worker could not start {side.python}: {e.strerror or e}") from None
        self.conn, self.finished = None, False

    def connect(self):
        """Wait until the worker has collected its cases and called back."""
        accepted: list = []

        def accept():
            with suppress(OSError):  # the listener closed under it: the worker stopped first
                accepted.append(self.listener.accept())
        waiter = threading.Thread(target=accept, daemon=True)
        waiter.start()
        deadline = time.monotonic() + START_S
        while waiter.is_alive() and self.proc.poll() is None and time.monotonic() < deadline:
            waiter.join(0.2)
        if not accepted:
            raise WorkerStopped(self, "before it collected its cases")
        self.conn = accepted[0]

    def send(self, *msg):
        self.conn.send(msg)

    def recv(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.conn.poll(0.5):
            if self.proc.poll() is not None or (deadline and time.monotonic() > deadline):
                raise WorkerStopped(self, "while serving")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise WorkerStopped(self, "while serving") from None

    def tail(self) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else "no output"

    def stop(self):
        with suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


class CaseFailed(ABError):
    """A case that raised while timed: it is not compared, and the A/B goes on."""


class WorkerStopped(ABError):
    def __init__(self, worker: Worker, when: str):
        code = worker.proc.poll()
        self.worker, self.code = worker, code
        super().__init__(f"the {worker.name} stopped {when} (exit {code}): {worker.tail()} "
                         f"(log: {worker.log})")


def unknown_options(worker: Worker) -> list[str]:
    """The arguments pytest refused ("unrecognized arguments: ..."), from a worker that stopped."""
    for line in worker.log.read_text(errors="replace").splitlines():
        if "unrecognized arguments:" in line:
            return line.split("unrecognized arguments:", 1)[1].split()
    return []


def without(args: list[str], refused: list[str]) -> list[str]:
    """`args` less the refused ones, matched in order (as pytest lists them), so that a value equal to
    a refused one elsewhere (`--model all` beside a refused `--cases all`) stays."""
    out, j = [], 0
    for a in args:
        if j < len(refused) and a == refused[j]:
            j += 1
        else:
            out.append(a)
    return out


CaseKey = tuple[str, tuple]


def key_of(family: str, params: dict) -> CaseKey:
    return family, tuple(sorted((k, str(v)) for k, v in params.items()))


@dataclass
class Matched:
    name: str            # the candidate's test id (test_forward[kerascnn-cpu-bs32])
    base_id: str
    cand_id: str


def match(base: list, cand: list) -> tuple[list[Matched], list[str], list[str]]:
    """Cases matched by test function and params (not by id: a renamed id still matches), in the
    candidate's order; and the node ids of one side with no single match on the other (a test function
    and params found twice on a side, in two files, is not paired at all)."""
    twice = {k for side in (base, cand) for k, n in Counter(key_of(f, p) for _, f, p in side).items() if n > 1}
    by_key = {key_of(f, p): nid for nid, f, p in base if key_of(f, p) not in twice}
    cand_keys = {key_of(f, p) for _, f, p in cand if key_of(f, p) not in twice}
    both = [Matched(nid.rsplit("::", 1)[-1], by_key[key_of(f, p)], nid) for nid, f, p in cand
            if key_of(f, p) in by_key and key_of(f, p) in cand_keys]
    only_base = [nid for nid, f, p in base if key_of(f, p) not in cand_keys]
    only_cand = [nid for nid, f, p in cand if key_of(f, p) not in by_key]
    return both, only_base, only_cand


@dataclass
class Trial:
    """One case's pairs: the log-ratios and what the decision needs."""
    name: str
    d: list[float]                   # log(candidate burst / base burst), one per pair
    base: list[float]                # the bursts' median calls, seconds
    cand: list[float]
    calls: int                       # calls per burst
    seconds: float                   # wall time of the pairs
    contention: dict = field(default_factory=dict)
    p_slower: float = 1.0
    p_faster: float = 1.0
    stages: int = 1

    @property
    def sd(self) -> float:
        return float(np.std(self.d, ddof=1)) if len(self.d) > 1 else float("nan")

    def summary(self) -> str:
        return (f"{len(self.d)} pairs of {self.calls} call(s), x{math.exp(np.median(self.d)):.3f}, "
                f"sd {self.sd:.3f}, {self.seconds:.0f} s")


class Pairing:
    """Every worker at one case: calibrated bursts, pairs in counterbalanced order, each pair on the next
    (base worker, candidate worker) combination so that no one process's state decides the ratio."""

    def __init__(self, m: Matched, base: list[Worker], cand: list[Worker], rng: random.Random):
        self.m, self.base, self.cand, self.rng = m, base, cand, rng
        self.lead, self.calls, self.replayed = 1, 3, False
        for w in base[1:] + cand[1:]:
            self._burst(w)  # each worker's warm-up after the case's own
        started = time.monotonic()
        first = [self._burst(ws[0]) for ws in (base, cand)]
        wall_per_call = (time.monotonic() - started) / (2 * (self.lead + self.calls))
        self.call_s = max(float(np.median(f)) for f in first)
        if self.replayed:  # each call reruns the test body (a torchrun launch): one per burst, no lead
            self.lead, self.calls = 0, 1
        else:
            self.lead = 1 if self.call_s < LEAD_BELOW_S else 0
            self.calls = max(1, round(BURST_S / max(self.call_s, 1e-9)))
        self.pair_s = 2 * (self.lead + self.calls) * max(wall_per_call, self.call_s)  # what a pair costs here
        self.cand_median = float(np.median(first[1]))

    def _burst(self, w: Worker, extra: float = 0.0) -> list[float]:
        """One burst on `w`: `lead` untimed calls (the worker was idle: caches and threads went cold), then
        `calls` timed ones."""
        w.send("burst", self.lead + self.calls, extra)
        msg = w.recv()
        if msg[0] == "error":
            raise CaseFailed(f"{w.side.name}: failed while timed: {msg[2]}")
        if msg[0] != "times" or len(msg[1]) < self.lead + self.calls:
            raise ABError(f"the {w.name} answered {msg[0]!r} instead of burst times: out of step")
        self.replayed = msg[2]
        return msg[1][len(msg[1]) - self.calls:]

    def budget_pairs(self, budget_s: float = CASE_BUDGET_S) -> int:
        return int(min(MAX_PAIRS, max(MIN_PAIRS, math.ceil(budget_s / self.pair_s))))

    def trial(self, pairs: int, slowdown: float = 0.0, screen: bool = True) -> Trial:
        """`pairs` pairs (twice as many if the first set looks slower), the candidate's calls slowed by
        `slowdown` times its median call (gate-check's injection; 0 in a real A/B)."""
        extra = slowdown * self.cand_median
        t = Trial(self.m.name, [], [], [], self.calls, 0.0)
        start, snap = time.monotonic(), contention.snapshot()
        self._pairs(t, pairs, extra)
        t.p_slower = stats.signed_rank_greater(t.d)
        if screen and t.p_slower < SCREEN_P:
            self._pairs(t, pairs, extra)
            t.stages, t.p_slower = 2, stats.signed_rank_greater(t.d)
        t.p_faster = stats.signed_rank_greater(-np.asarray(t.d))
        t.seconds, t.contention = time.monotonic() - start, contention.between(snap, contention.snapshot())
        return t

    def _pairs(self, t: Trial, pairs: int, extra: float):
        first, k = self.rng.random() < 0.5, len(self.base)
        for i in range(pairs):
            j = len(t.d)  # cycles through every (base, candidate) worker combination
            sides = [("base", self.base[j % k], 0.0), ("candidate", self.cand[(j + j // k) % k], extra)]
            if (i % 2 == 0) == first:  # ABBA: each side goes first in half the pairs
                sides.reverse()
            got = {name: float(np.median(self._burst(w, x))) for name, w, x in sides}
            t.base.append(got["base"])
            t.cand.append(got["candidate"])
            t.d.append(math.log(got["candidate"] / got["base"]))


def decide(trials: list[Trial], alpha: float, min_effect: float) -> list[Verdict]:
    """Verdicts for one job's trials: Holm over the job's cases, the Hodges-Lehmann ratio against the
    minimum effect, its interval at the Bonferroni level; no verdict on a case under contention."""
    slower = stats.holm([t.p_slower for t in trials], alpha)
    faster = stats.holm([t.p_faster for t in trials], alpha)
    out = []
    for t, s, f in zip(trials, slower, faster, strict=True):
        centre, lo, hi = stats.hodges_lehmann(t.d, 2 * alpha / len(trials))
        ratio, ci = math.exp(centre), (math.exp(lo), math.exp(hi))
        v = Verdict(t.name, family_of(t.name), float(np.median(t.base)), float(np.median(t.cand)), ratio, ci,
                    None, None, min_effect, verdict.judge(ratio, min_effect, s, f, ci))
        out.append(verdict.contended(v, contention.flag(t.contention)))
    return out


@dataclass
class Session:
    """The workers of both sides, started and walked through the matched cases together."""
    base: list[Worker]
    cand: list[Worker]
    cases: list[Matched]
    only_base: list[str]
    only_cand: list[str]
    dropped: list[str]               # options the base did not know, dropped for it
    rng: random.Random               # the pair orders, from the run's seed

    def each(self) -> Iterator[tuple[Matched, Pairing | str]]:
        """Per matched case: a Pairing while every worker holds it, or why it could not run. A consumer
        whose trial raises CaseFailed catches it and goes on: the workers are let go all the same."""
        workers = self.base + self.cand
        for m in self.cases:
            got = [(w, w.recv(START_S)) for w in workers]
            for w, msg in got:
                expected = m.base_id if w in self.base else m.cand_id
                if msg[0] in ("ready", "ended") and msg[1] != expected:
                    raise ABError(f"the {w.name} is at {msg[1]}, not at {expected}: out of step")
            ended = [(w, msg) for w, msg in got if msg[0] != "ready"]
            if not ended:
                try:
                    pairing: Pairing | str = Pairing(m, self.base, self.cand, self.rng)
                except CaseFailed as e:
                    pairing = str(e)
                yield m, pairing
            else:
                yield m, "; ".join(sorted({f"{w.side.name}: " + (msg[2] if msg[0] == "ended" else
                                                                  f"its session ended early ({w.tail()})")
                                           for w, msg in ended}))
            for w, msg in got:
                if msg[0] == "ready":
                    w.send("next")
                elif msg[0] == "finished":
                    w.finished = True
            if any(w.finished for w in workers):
                return


def connected(w: Worker, args: list[str], folder: Path, note: Callable[[str], None]) -> tuple[Worker, list[str]]:
    """`w` once it has collected its cases. A base whose pytest does not know options of `args` (exit 4,
    "unrecognized arguments": e.g. one the candidate's own conftest adds) is started again without them,
    with a note. Returns the worker and the arguments it runs with; a worker that fails is stopped."""
    while True:
        try:
            w.connect()
            return w, args
        except BaseException as e:
            w.stop()
            stopped = isinstance(e, WorkerStopped) and e.code == 4 and w.side.name == "base"
            refused = unknown_options(w) if stopped else []
            if not refused or not set(refused) <= set(args):
                raise
            args = without(args, refused)
            note(f"the base does not know {' '.join(refused)}: dropped for the base")
            w = Worker(w.side, w.index, args, folder, w.plugin)


def _start(side: Side, args: list[str], folder: Path, workers: int, note: Callable[[str], None]
           ) -> tuple[list[Worker], list[str]]:
    ws: list[Worker] = []
    try:
        for i in range(workers):
            ws.append(Worker(side, i, args, folder))
        for i, w in enumerate(ws):
            ws[i], args = connected(w, args, folder, note)
    except BaseException:
        for w in ws:
            w.stop()
        raise
    return ws, args


@contextmanager
def session(base: Side, cand: Side, args: list[str], folder: Path, seed: int, workers: int = 1,
            note: Callable[[str], None] = lambda s: None) -> Iterator[Session]:
    """Start `workers` workers per side on `args` (an option the base's pytest does not know is dropped
    for it, with a note), match their cases, and stop them whatever happens."""
    shutil.copyfile(Path(__file__).parent / "workers" / "ab_worker.py", folder / f"{PLUGIN}.py")
    started: list[Worker] = []
    try:
        cand_ws, _ = _start(cand, args, folder, workers, note)
        started += cand_ws
        base_ws, base_args = _start(base, args, folder, workers, note)
        started += base_ws
        dropped = list((Counter(args) - Counter(base_args)).elements())
        lists = {id(w): w.recv(START_S)[1] for w in started}
        both, only_base, only_cand = match(lists[id(base_ws[0])], lists[id(cand_ws[0])])
        for w in started:
            w.conn.send([m.base_id if w.side is base else m.cand_id for m in both])
        yield Session(base_ws, cand_ws, both, only_base, only_cand, dropped, random.Random(seed))
        for w in started:
            if not w.finished:
                w.recv(START_S)  # "finished": the session ran to its end
    finally:
        for w in started:
            w.stop()


def draw_seed(given: int | None) -> int:
    """The seed given, or one drawn for this run (printed by the caller, so the run can be replayed)."""
    return secrets.randbelow(2**31) if given is None else given


@dataclass
class Outcome:
    verdicts: list[Verdict]
    trials: list[Trial]
    not_run: dict[str, str]          # case -> why it did not run on both sides
    seed: int
    seconds: float

    @property
    def broken(self) -> list[str]:
        """Cases the base runs and the candidate fails: no pass, whatever the times say."""
        return [n for n, why in self.not_run.items() if "candidate: failed" in why and "base: failed" not in why]


def run(base: Side, cand: Side, args: list[str], folder: Path, alpha: float = 0.01, min_effect: float = 0.03,
        seed: int | None = None, slowdown: float = 0.0, workers: int = WORKERS, budget_s: float = CASE_BUDGET_S,
        note: Callable[[str], None] = lambda s: None) -> Outcome:
    """`imgbench ab`: every matched case paired, then decided together."""
    seed = draw_seed(seed)
    note(f"seed {seed} (replay the pair order with --seed {seed})")
    start = time.monotonic()
    trials, not_run = [], {}
    with session(base, cand, args, folder, seed, workers, note) as s:
        for name, ids in (("base", s.only_base), ("candidate", s.only_cand)):
            if ids:
                more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
                note(f"only the {name} has {len(ids)} case(s), not compared: {', '.join(ids[:10])}{more}")
        note(f"{len(s.cases)} case(s) in both versions")
        for i, (m, p) in enumerate(s.each()):
            if isinstance(p, str):
                not_run[m.name] = p
                note(f"{m.name}: not compared ({p})")
                continue
            try:
                t = p.trial(p.budget_pairs(budget_s), slowdown)
            except CaseFailed as e:
                not_run[m.name] = str(e)
                note(f"{m.name}: not compared ({e})")
                continue
            trials.append(t)
            note(f"[{i + 1}/{len(s.cases)}] {m.name}: {t.summary()}")
    verdicts = decide(trials, alpha, min_effect) if trials else []
    return Outcome(verdicts, trials, not_run, seed, time.monotonic() - start)
