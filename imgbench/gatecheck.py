"""The gate measures itself: how often it cries wolf when nothing changed (A/A), and how often it
catches a slowdown injected on purpose (5%, 10%), for three ways of judging the same kind of data:

- `ab`: interleaved pairs in random order, one-sided Mann-Whitney U at alpha plus the minimum effect,
  confirmed by a second set of pairs (the decision code of `imgbench ab`, its samples taken in this
  process instead of one pytest run each);
- `compare`: two runs one after the other, bootstrap interval of the ratio of medians plus the
  minimum effect, no history (`imgbench compare` on two fresh runs);
- `pytest-benchmark median:5%`: the same two runs judged by pytest-benchmark's own
  `--benchmark-compare-fail median:5%` check.

The slowdown is real work: after each call of the candidate's workload the clock keeps running
while the process spins for `effect` times the workload's calibrated median."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgbench import ab, stats, table, timing, verdict

CASE = "case"
METHODS = ("ab", "compare", "pytest-benchmark median:5%")


@dataclass
class Tally:
    method: str
    effect: float
    flagged: int = 0
    trials: int = 0

    @property
    def rate(self) -> float:
        return self.flagged / self.trials if self.trials else float("nan")


def spin(seconds: float):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def rounds(fn: Callable[[], object], sync: Callable[[], None], n: int, extra: float = 0.0) -> list[float]:
    """n timed calls; `extra` seconds of busy work inside the clock after each."""
    def slowed():
        fn()
        sync()  # else the host spins while queued device work runs, hiding the slowdown
        spin(extra)

    return [timing.clocked(slowed if extra else fn, sync) for _ in range(n)]


def native_fails(base: list[float], cand: list[float], threshold: str = "median:5%") -> bool:
    """pytest-benchmark's own --benchmark-compare-fail check on two runs' rounds."""
    from pytest_benchmark.utils import parse_compare_fail

    check = parse_compare_fail(threshold)
    return bool(check.fails({"median": float(np.median(cand))}, {"median": float(np.median(base))}))


def compare_flags(base: list[float], cand: list[float], min_effect: float, alpha: float) -> bool:
    ratio = stats.ratio_of_medians(base, cand)
    ci = stats.bootstrap_ratio_ci(base, cand, alpha, resamples=1000)
    return verdict.by_interval(ratio, ci, min_effect) == verdict.REGRESSION


def measure(fn: Callable[[], object], sync: Callable[[], None], effects: list[float], trials: int, pairs: int = 10,
            rounds_per_sample: int = 5, min_effect: float = 0.05, alpha: float = 0.01,
            progress: Callable[[str], None] = lambda s: None) -> list[Tally]:
    """For each effect (0 = A/A), `trials` independent trials of every method; tallies of flagged trials."""
    rounds(fn, sync, 3 * rounds_per_sample)  # warm-up: lazy init, allocator growth
    reference = float(np.median(rounds(fn, sync, 3 * rounds_per_sample)))
    tallies = {(m, e): Tally(m, e) for e in effects for m in METHODS}
    start, done, total = time.monotonic(), 0, trials * len(effects)
    for effect in effects:
        extra = effect * reference
        for t in range(trials):
            def side(extra_s):
                return lambda: {CASE: float(np.median(rounds(fn, sync, rounds_per_sample, extra_s)))}
            verdicts = ab.run({"base": side(0.0), "candidate": side(extra)}, pairs, alpha, min_effect, seed=t)
            _tally(tallies[("ab", effect)], verdicts[0].verdict == verdict.REGRESSION)
            # Two runs one after the other, each as long as one side of the A/B.
            base = rounds(fn, sync, pairs * rounds_per_sample)
            cand = rounds(fn, sync, pairs * rounds_per_sample, extra)
            _tally(tallies[("compare", effect)], compare_flags(base, cand, min_effect, alpha))
            _tally(tallies[("pytest-benchmark median:5%", effect)], native_fails(base, cand))
            done += 1
            elapsed = time.monotonic() - start
            progress(f"slowdown {effect:.0%}: trial {t + 1}/{trials}, about "
                     f"{elapsed / done * (total - done):.0f} s left")
    return list(tallies.values())


def _tally(t: Tally, flagged: bool):
    t.trials += 1
    t.flagged += bool(flagged)


def render(tallies: list[Tally], markdown: bool = False) -> str:
    effects = sorted({t.effect for t in tallies})
    head = ["method"] + [("A/A false alarms" if e == 0 else f"{e:.0%} slowdown caught") for e in effects]
    by = {(t.method, t.effect): t for t in tallies}
    rows = [[m] + [f"{by[m, e].flagged}/{by[m, e].trials} ({by[m, e].rate:.0%})" for e in effects]
            for m in METHODS]
    return table.render(head, rows, markdown)


def case(model: str, family: str, device: str, batch_size: str, threads: str | None):
    """The one case gate-check times, from its options: (case, the workload's call, its device's sync)."""
    import torch

    from imgbench import cases, devices, options

    opts = {**options.DEFAULTS, "device": device, "batch_size": batch_size, "model": model, "threads": threads}
    s = options.settings(opts.get)
    if len(s.devices) != 1 or len(s.batch_sizes) != 1 or len(s.models) != 1:
        raise options.AxisError("gate-check times one case: give one --device, one --batch-size and one --model")
    devices.check(s.devices[0])
    torch.set_num_threads(s.threads)
    c = cases.Case(s.models[0], s.devices[0], s.batch_sizes[0], s)
    return c, getattr(c, family)().fn, devices.synchronizer(c.device)
