"""The one evidence rule (imgbench.judge.evidence): Holm's step-down, the p-value that agrees with
the interval and the bound drawn at a case's level, the between-run term counted once, and seeded
simulations of the coverage of compare's and the speedup's intervals with drifting rounds and
levels that move between runs."""

import math

import numpy as np
import pytest

from imgbench.judge import compare, evidence, stats, verdict
from tests.helpers import records
from tests.judge.test_stats import ar1


def test_holm_steps_down_and_keeps_the_failing_level():
    levels = evidence.holm([0.003, 0.0001, 0.03, 0.0045], 0.01)
    # sorted: 0.0001 passes 0.01/4, 0.003 passes 0.01/3, 0.0045 passes 0.01/2, 0.03 fails 0.01/1
    assert levels == pytest.approx([0.01 / 3, 0.01 / 4, 0.01, 0.01 / 2])
    # the first failure stops it: later (larger) p-values keep its level
    assert evidence.holm([0.004, 0.0001, 0.03, 0.004], 0.01) == pytest.approx(
        [0.01 / 3, 0.01 / 4, 0.01 / 3, 0.01 / 3])
    assert evidence.holm([], 0.01) == []


@pytest.mark.parametrize("seed", range(20))
def test_a_case_is_slower_at_its_level_exactly_when_its_p_value_passes_it(seed):
    rng = np.random.default_rng(seed)
    b = np.exp(0.03 * rng.standard_normal(30))
    c = np.exp(0.03 * rng.standard_normal(30) + rng.uniform(-0.02, 0.06))
    hist = list(np.exp(0.02 * rng.standard_normal(8)))
    for e in (evidence.of_runs(b, c, float(np.median(c)), []),
              evidence.of_runs(b, c, float(np.median(c)), hist)):
        p = e.p_slower()
        for level in (0.01, 0.001, 0.05):
            h, ci = e.bounds(level), e.interval(level)
            slower = h.ratio > h.bound if h else ci[0] > 1
            assert slower == (p <= level), (p, level)


def test_the_within_run_noise_counts_once():
    """The history's spread of log medians holds a run's within-run noise: a ratio of two runs
    varies by twice it (its degrees of freedom the history's), and the two runs' own within-run
    term is used instead only where it is larger."""
    rng = np.random.default_rng(2)
    b, c = 1 + 0.01 * rng.standard_normal(40), 1 + 0.01 * rng.standard_normal(40)
    centre, within, df = stats.log_ratio([c], [b])
    spread = stats.between_runs([1.0, 1.05, 0.95, 1.02])
    assert spread == (pytest.approx(np.log([1.0, 1.05, 0.95, 1.02]).std(ddof=1)), 3)
    assert stats.log_ratio([c], [b], spread) == pytest.approx((centre, spread[0] * math.sqrt(2),
                                                               3))
    tight = (within / 10, 9)
    assert stats.log_ratio([c], [b], tight) == pytest.approx((centre, within, df))


def test_detectable_is_never_below_the_minimum_effect_and_inf_without_noise_measure():
    rng = np.random.default_rng(1)
    b, c = np.exp(0.001 * rng.standard_normal(50)), np.exp(0.001 * rng.standard_normal(50))
    e = evidence.of_runs(b, c, 1.0, [])
    assert e.detectable(0.01, 0.05) == 0.05
    noisy = evidence.of_runs(b * np.exp(0.2 * rng.standard_normal(50)), c, 1.0, [])
    assert noisy.detectable(0.01, 0.05) > 0.1
    assert evidence.Evidence(None).detectable(0.01, 0.05) == math.inf


def level_shifted_run(rng, rho, shift, n=41, noise=0.02):
    """One run's rounds: AR(1) round noise about a level that moved by `shift` (log sd) since the
    machine's."""
    return np.exp(shift * rng.standard_normal() + noise * ar1(n, rho, rng))


@pytest.mark.parametrize("rho, shift", [(0.6, 0.02), (0.0, 0.0), (0.6, 0.0)])
def test_compares_interval_with_a_history_covers_moving_levels(rho, shift):
    """A/A: baseline, candidate and 10 history runs, each run's level moved by `shift`, rounds
    drifting at lag-1 correlation rho. Nominal 99%; the target is at least 98% (at most 6 of 300
    misses)."""
    rng = np.random.default_rng(7)
    missed = 0
    for _ in range(300):
        hist = [float(np.median(level_shifted_run(rng, rho, shift))) for _ in range(10)]
        b, c = level_shifted_run(rng, rho, shift), level_shifted_run(rng, rho, shift)
        lo, hi = evidence.of_runs(b, c, float(np.median(c)), hist).interval(0.01)
        missed += not lo <= 1 <= hi
    assert missed <= 6


class Run:
    """The parts of a speedup.Speedup that speedup_verdict reads."""

    def __init__(self, cpu, accel):
        self.cpu, self.accel = _Case(cpu), _Case(accel)
        self.speedup = float(np.median(cpu) / np.median(accel))
        self.device, self.case, self.test = "cuda", "train_step", "train_step"


class _Case:
    def __init__(self, data):
        self.data, self.contention = list(data), None


def test_the_speedup_verdict_with_a_history_covers_moving_levels():
    """A/A speedup ratios (four runs) at lag-1 correlation 0.6 with each run's level moved by 2%:
    with the case's earlier speedups as history, the "99%" interval misses 1 in at most 2% of 300
    trials; without, the level shifts are no part of it and it misses far more (the review: 34%)."""
    rng = np.random.default_rng(11)
    with_history = without = 0
    for _ in range(300):
        points = [Run(level_shifted_run(rng, 0.6, 0.02), level_shifted_run(rng, 0.6, 0.02))
                  for _ in range(10)]
        b, c = points[-2], points[-1]
        lo, hi = compare.speedup_verdict(b, c, history=[p.speedup for p in points[:-1]]).ci
        with_history += not lo <= 1 <= hi
        lo, hi = compare.speedup_verdict(b, c).ci
        without += not lo <= 1 <= hi
    assert with_history <= 6 and without >= 30, (with_history, without)


def many_cases(n: int) -> dict:
    return {(f"test_forward[m{i}]", (("model", f"m{i}"),)): None for i in range(n)}


def history_runs(tmp_path, n_cases: int, slow: float):
    """10 history runs, a baseline and a candidate of `n_cases` cases in 2% run-to-run noise; the
    candidate's first case `slow` times slower."""
    rng = np.random.default_rng(3)
    cases = list(many_cases(n_cases))
    runs = []
    for i in range(12):
        level = np.exp(0.02 * rng.standard_normal(n_cases))
        if i == 11:
            level[0] = slow
        data = {case: level[j] * (1 + 0.005 * rng.standard_normal(20))
                for j, case in enumerate(cases)}
        runs.append(records(tmp_path / f"{i:02}.json", data, when=f"2026-11-{i + 1:02}T10:00:00"))
    return runs[:10], runs[10], runs[11]


def test_compare_holds_its_level_across_the_cases_of_a_comparison(tmp_path):
    """An 8% slowdown is a regression alone; among 200 cases it must pass a bound at 0.01 / 200,
    which 2% run-to-run noise over 10 runs puts near 13%: not called."""
    hist, base, cand = history_runs(tmp_path / "one", 1, 1.08)
    (v,), _, _ = compare.compare(base, cand, hist)
    assert v.verdict == verdict.REGRESSION and v.level == pytest.approx(0.01)
    hist, base, cand = history_runs(tmp_path / "many", 200, 1.08)
    verdicts, _, _ = compare.compare(base, cand, hist)
    first = next(v for v in verdicts if v.name == "test_forward[m0]")
    assert first.verdict != verdict.REGRESSION and first.level == pytest.approx(0.01 / 200)
    assert first.history_bound > 1.08 and 0.08 < first.detectable < 0.5
    judged = compare.runs(base, cand, hist)
    assert any(n.startswith("Holm across the 200 case(s) judged") for n in judged.notes)


def test_speedup_series_know_their_history():
    """speedup_falls judges each point with the earlier points as history (a bound for moving
    levels): a steady series has no fall, a 20% fall of the accelerator is one."""
    rng = np.random.default_rng(5)
    points = [Run(level_shifted_run(rng, 0.6, 0.02), level_shifted_run(rng, 0.6, 0.02))
              for _ in range(12)]
    for p in points:
        p.key = ("train_step",)
    assert compare.speedup_falls(points) == []
    fell = Run(points[-1].cpu.data, np.array(points[-1].accel.data) * 1.2)
    fell.key = ("train_step",)
    assert compare.speedup_falls([*points, fell]) == [fell]
