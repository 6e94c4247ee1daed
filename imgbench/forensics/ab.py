"""Interleaved A/B: the same cases of two versions (two git refs, or two Python environments) timed
burst by burst in one job. Each side is a worker process running its own tree's benches under
pytest (the worker plugin, workers/ab_worker.py), so each version builds its cases its own way; the
coordinator here walks both workers through the matched cases together and, per case, alternates
short bursts of calls between them in counterbalanced order (ABBA...), pairing adjacent bursts.

Why: on a 2-core runner the host moves a case 15-28% between processes and in regimes lasting
seconds; bursts of ~50 ms, paired back to back, see the same regime. A pair's log-ratio is
log(candidate burst / base burst), each burst summarised by its median call (robust to a regime
switch inside it). But a pair of processes also keeps a bias of its own for its lifetime (2.1% sd
measured for kerascnn's forward), which its pairs cannot see: so a job runs in rounds, each with
fresh workers (config.AB_ROUNDS), and a gated case's pairs come from all of them. The decision
follows the one paired policy (forensics/policy.py, judge/paired.py); the information tier
(config.AB_INFORMATION_FAMILIES) runs in the first round only, with its first set."""

from __future__ import annotations

import math
import random
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from imgbench.core.config import (
    AB_BUDGET_S,
    AB_BURST_S,
    AB_MIN_EFFECT,
    AB_MIN_PAIRS,
    AB_PROCESS_SD,
    AB_ROUNDS,
    AB_SET_LIMIT_S,
    ALPHA,
)
from imgbench.core.identity import case_key
from imgbench.forensics.policy import Sizing, informational, rounds_of, tiered
from imgbench.forensics.worker import AB_PLUGIN, START_S, ABError, Side, Worker, start
from imgbench.hw import contention
from imgbench.judge import paired
from imgbench.judge.paired import ProcessTerm
from imgbench.judge.verdict import Verdict

BURST_S, MIN_PAIRS = AB_BURST_S, AB_MIN_PAIRS
LEAD_BELOW_S = 0.1   # calls shorter than this get one untimed call at the head of each burst
MAX_PAIRS = 300      # a case's first set at most: 300 suffice
MAX_TOTAL_PAIRS = 1200  # a case's pairs, its later sets (each as many again) included


class CaseFailed(ABError):
    """A case that raised while timed: it is not compared, and the A/B goes on."""


@dataclass
class Matched:
    name: str            # the candidate's test id (test_forward[kerascnn-cpu-bs32])
    base_id: str
    cand_id: str


def match(base: list, cand: list) -> tuple[list[Matched], list[str], list[str]]:
    """Cases matched by test function and params (not by id: a renamed id still matches), in the
    candidate's order; and the node ids of one side with no single match on the other (a test
    function and params found twice on a side, in two files, is not paired at all)."""
    twice = {k for side in (base, cand)
             for k, n in Counter(case_key(f, p) for _, f, p in side).items() if n > 1}
    by_key = {case_key(f, p): nid for nid, f, p in base if case_key(f, p) not in twice}
    cand_keys = {case_key(f, p) for _, f, p in cand if case_key(f, p) not in twice}
    both = [Matched(nid.rsplit("::", 1)[-1], by_key[case_key(f, p)], nid) for nid, f, p in cand
            if case_key(f, p) in by_key and case_key(f, p) in cand_keys]
    only_base = [nid for nid, f, p in base if case_key(f, p) not in cand_keys]
    only_cand = [nid for nid, f, p in cand if case_key(f, p) not in by_key]
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
    nodeid: str = ""                 # the candidate's node id (its family: the bench file)
    sizes: tuple[int, ...] = ()      # pairs per round (pair of worker processes); (): one round

    @property
    def rounds(self) -> int:
        return max(1, len(self.sizes))

    def groups(self) -> tuple[tuple[float, ...], ...]:
        """The log-ratios of each round."""
        return tuple(map(tuple, paired.split(self.d, self.sizes)))

    def join(self, later: Trial) -> Trial:
        """This case's pairs and those of a later round (fresh workers): one trial of both; its
        contention record the round's that flags, if one does."""
        worse = later.contention if contention.flag(later.contention) and not contention.flag(
            self.contention) else self.contention
        return replace(self, d=self.d + later.d, base=self.base + later.base,
                       cand=self.cand + later.cand, seconds=self.seconds + later.seconds,
                       contention=worse, sizes=(self.sizes or (len(self.d),))
                       + (later.sizes or (len(later.d),)))

    @property
    def sd(self) -> float:
        return float(np.std(self.d, ddof=1)) if len(self.d) > 1 else float("nan")

    def summary(self) -> str:
        return (f"{len(self.d)} pairs of {self.calls} call(s), x{math.exp(np.median(self.d)):.3f}, "
                f"sd {self.sd:.3f}, {self.seconds:.0f} s")


class Pairing:
    """Both workers at one case: calibrated bursts, then pairs of bursts in counterbalanced
    order."""

    def __init__(self, m: Matched, base: Worker, cand: Worker, rng: random.Random):
        self.m, self.base, self.cand, self.rng = m, base, cand, rng
        self.lead, self.calls, self.replayed = 1, 3, False
        started = time.monotonic()
        first = [self._burst(w) for w in (base, cand)]
        wall_per_call = (time.monotonic() - started) / (2 * (self.lead + self.calls))
        self.call_s = max(float(np.median(f)) for f in first)
        if self.replayed:
            # each call reruns the test body (a torchrun launch): one per burst, no lead
            self.lead, self.calls = 0, 1
        else:
            self.lead = 1 if self.call_s < LEAD_BELOW_S else 0
            self.calls = max(1, round(BURST_S / max(self.call_s, 1e-9)))
        # what a pair costs here
        self.pair_s = 2 * (self.lead + self.calls) * max(wall_per_call, self.call_s)
        self.cand_median = float(np.median(first[1]))

    def _burst(self, w: Worker, extra: float = 0.0) -> list[float]:
        """One burst on `w`: `lead` untimed calls (the worker was idle: caches and threads went
        cold), then `calls` timed ones."""
        w.send("burst", self.lead + self.calls, extra)
        msg = w.recv()
        if msg[0] == "error":
            raise CaseFailed(f"{w.side.name}: failed while timed: {msg[2]}")
        if msg[0] != "times" or len(msg[1]) < self.lead + self.calls:
            raise ABError(f"the {w.name} answered {msg[0]!r} instead of burst times: out of step")
        self.replayed = msg[2]
        return msg[1][len(msg[1]) - self.calls:]

    def budget_pairs(self, budget_s: float = AB_BUDGET_S) -> int:
        return int(min(MAX_PAIRS, max(MIN_PAIRS, math.ceil(budget_s / self.pair_s))))

    def trial(self, pairs: int, slowdown: float = 0.0, until: float | None = None,
              still_open: Callable[[list[float]], bool] | None = None) -> Trial:
        """`pairs` pairs, then as many again while `still_open` says more pairs could change the
        verdict and the next set ends before `until` (time.monotonic()); the candidate's calls
        slowed by `slowdown` times its median call (gate-check's injection; 0 in a real A/B). The
        first set stops early at AB_SET_LIMIT_S: a long case is cut as a case."""
        extra = slowdown * self.cand_median
        t = Trial(self.m.name, [], [], [], self.calls, 0.0, nodeid=self.m.cand_id)
        start, snap = time.monotonic(), contention.snapshot()
        self.add_pairs(t, pairs, extra, start + AB_SET_LIMIT_S)
        while (still_open is not None and 2 * len(t.d) <= MAX_TOTAL_PAIRS and still_open(t.d)
               and (until is None or time.monotonic() + len(t.d) * self.pair_s <= until)):
            self.add_pairs(t, len(t.d), extra)
        t.seconds, t.contention = (time.monotonic() - start,
                                   contention.between(snap, contention.snapshot()))
        return t

    def add_pairs(self, t: Trial, pairs: int, extra: float = 0.0, until: float | None = None):
        """`pairs` more pairs into `t`, the candidate's calls slowed by `extra` seconds each; none
        begun that would end after `until` (time.monotonic()), save the first."""
        first = self.rng.random() < 0.5
        for i in range(pairs):
            if i and until is not None and time.monotonic() + self.pair_s > until:
                return
            sides = [("base", self.base, 0.0), ("candidate", self.cand, extra)]
            if (i % 2 == 0) == first:  # ABBA: each side goes first in half the pairs
                sides.reverse()
            got = {name: float(np.median(self._burst(w, x))) for name, w, x in sides}
            t.base.append(got["base"])
            t.cand.append(got["candidate"])
            t.d.append(math.log(got["candidate"] / got["base"]))


@dataclass
class Session:
    """The workers of both sides, started and walked through the matched cases together."""
    base: Worker
    cand: Worker
    cases: list[Matched]
    only_base: list[str]
    only_cand: list[str]
    rng: random.Random               # the pair orders, from the run's seed

    def each(self) -> Iterator[tuple[Matched, Pairing | str]]:
        """Per matched case: a Pairing while both workers hold it, or why it could not run. A
        consumer whose trial raises CaseFailed catches it and goes on: the workers are let go all
        the same."""
        workers = (self.base, self.cand)
        for m in self.cases:
            got = [(w, w.recv(START_S)) for w in workers]
            for w, msg in got:
                expected = m.base_id if w is self.base else m.cand_id
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
                yield m, "; ".join(sorted({f"{w.side.name}: "
                                           + (msg[2] if msg[0] == "ended"
                                              else f"its session ended early ({w.tail()})")
                                           for w, msg in ended}))
            for w, msg in got:
                if msg[0] == "ready":
                    w.send("next")
                elif msg[0] == "finished":
                    w.finished = True
            if any(w.finished for w in workers):
                return


def rounds(base: Side, cand: Side, args: list[str], folder: Path, seed: int, n: int,
           note: Callable[[str], None] = lambda s: None) -> Iterator[tuple[int, Session]]:
    """`n` sessions one after the other, each with fresh workers (round r in folder/round<r>): the
    first holds every matched case, the later ones the gated cases only (policy.rounds_of). A pair
    of processes keeps a bias for its lifetime; several pairs average it out."""
    for r in range(n):
        sub = folder / f"round{r}"
        sub.mkdir()
        with session(base, cand, args, sub, seed if r == 0 else f"{seed}:{r}", note,
                     lambda m, r=r: rounds_of(m.cand_id, n) > r) as s:
            yield r, s
        if not any(rounds_of(m.cand_id, n) > r + 1 for m in s.cases):
            return


def copy_plugin(folder: Path) -> None:
    """The A/B worker plugin beside the run, under the module name both sides' pytest load it by."""
    shutil.copyfile(Path(__file__).parent / "workers" / "ab_worker.py", folder / f"{AB_PLUGIN}.py")


@contextmanager
def session(base: Side, cand: Side, args: list[str], folder: Path, seed: int | str,
            note: Callable[[str], None] = lambda s: None,
            keep: Callable[[Matched], bool] = lambda m: True) -> Iterator[Session]:
    """Start one worker per side on `args` (an option the base's pytest does not know is dropped for
    it, with a note), match their cases (those `keep` keeps), and stop them whatever happens."""
    copy_plugin(folder)
    workers = start([base, cand], args, folder, note)
    try:
        lists = [w.recv(START_S)[1] for w in workers]
        both, only_base, only_cand = match(*lists)
        both = [m for m in both if keep(m)]
        for w in workers:
            w.put([m.base_id if w.side is base else m.cand_id for m in both])
        yield Session(*workers, both, only_base, only_cand, random.Random(seed))
        for w in workers:
            if not w.finished:
                w.recv(START_S)  # "finished": the session ran to its end
    finally:
        for w in workers:
            w.stop()


def draw_seed(given: int | None) -> int:
    """The seed given, or one drawn for this run (printed by the caller, so the run can be
    replayed)."""
    return secrets.randbelow(2**31) if given is None else given


@dataclass
class Outcome:
    verdicts: list[Verdict]
    trials: list[Trial]
    not_run: dict[str, str]          # case -> why it did not run on both sides
    seed: int
    seconds: float
    only_base: list[str] = field(default_factory=list)  # node ids only the base has

    @property
    def missing(self) -> dict[str, str]:
        """Cases the base runs and the candidate does not (lacks, skips or fails), and why: no pass
        unless the change says it removed them, whatever the times of the others say."""
        out = {nid.rsplit("::", 1)[-1]: "the candidate has no such case" for nid in self.only_base}
        out.update({n: why.removeprefix("candidate: ") for n, why in self.not_run.items()
                    if why.startswith("candidate: ")})
        return out


def unexplained(missing: dict[str, str], removed: list[str]) -> dict[str, str]:
    """The missing cases the change does not say it removed (`removed`: test ids, or test functions
    for every case of one)."""
    return {n: why for n, why in missing.items()
            if n not in removed and n.split("[", 1)[0] not in removed}


def run(base: Side, cand: Side, args: list[str], folder: Path, alpha: float = ALPHA,
        min_effect: float = AB_MIN_EFFECT, seed: int | None = None, budget_s: float = AB_BUDGET_S,
        note: Callable[[str], None] = lambda s: None,
        process: ProcessTerm | float = AB_PROCESS_SD, n_rounds: int = AB_ROUNDS) -> Outcome:
    """`imgbench ab`: every matched case paired, in `n_rounds` rounds of fresh workers (the
    information tier in the first only), then decided together."""
    seed = draw_seed(seed)
    note(f"seed {seed} (replay the pair order with --seed {seed})")
    start = time.monotonic()
    trials: dict[str, Trial] = {}
    not_run: dict[str, str] = {}
    only_base: list[str] = []
    sizing = None
    for r, s in rounds(base, cand, args, folder, seed, n_rounds, note):
        if r == 0:
            only_base = s.only_base
            _note_unmatched(s, note)
            gated = [m for m in s.cases if not informational(m.cand_id)]
            sizing = Sizing(budget_s / n_rounds, sum(rounds_of(m.cand_id, n_rounds)
                                                      for m in s.cases),
                            len(gated), alpha, min_effect, process, n_rounds)
        for i, (m, p) in enumerate(s.each()):
            if m.name in not_run:
                continue
            if isinstance(p, str):
                not_run[m.name] = p
                trials.pop(m.name, None)
                note(f"{m.name}: not compared ({p})")
                continue
            before = trials[m.name].groups() if m.name in trials else ()
            try:
                t = sizing.trial(p, extend=not informational(m.cand_id), before=before)
            except CaseFailed as e:
                not_run[m.name] = str(e)
                trials.pop(m.name, None)
                note(f"{m.name}: not compared ({e})")
                continue
            trials[m.name] = trials[m.name].join(t) if m.name in trials else t
            note(f"[round {r + 1}/{n_rounds}, {i + 1}/{len(s.cases)}] {m.name}: {t.summary()}")
    verdicts = tiered(list(trials.values()), alpha, min_effect, process)
    return Outcome(verdicts, list(trials.values()), not_run, seed, time.monotonic() - start,
                   only_base)


def _note_unmatched(s: Session, note: Callable[[str], None]) -> None:
    for name, ids in (("base", s.only_base), ("candidate", s.only_cand)):
        if ids:
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            note(f"only the {name} has {len(ids)} case(s), not compared: "
                 f"{', '.join(ids[:10])}{more}")
    note(f"{len(s.cases)} case(s) in both versions")
