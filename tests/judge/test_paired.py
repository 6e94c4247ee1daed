"""The paired policy: the estimate and its two variance terms, Holm's levels, the interval at the
level Holm used, the detectable slowdown, pairs sized by precision, and the whole decision of ab
(first set, later sets while a case is open, Holm) simulated under an iid null and under a
per-process shift."""

import math

import numpy as np
import pytest

from imgbench.core import config
from imgbench.forensics import ab, policy
from imgbench.judge import paired, stats, verdict


def test_the_estimate_is_the_hodges_lehmann_centre_with_the_process_term_in_quadrature():
    d = list(np.random.default_rng(0).normal(0.02, 0.1, 80))
    centre, lo, hi = stats.hodges_lehmann(d, 0.05)
    within = paired.estimate(d, 0.0)
    assert within.centre == centre and within.pairs == 80
    assert within.se == pytest.approx((hi - lo) / (2 * 1.959964))
    assert within.df == pytest.approx(79)
    both = paired.estimate(d, 0.03)
    assert both.se == pytest.approx(math.hypot(within.se, 0.03))
    # Welch-Satterthwaite: the known process term adds degrees of freedom
    assert both.df == pytest.approx(79 * (both.se / within.se) ** 4)


def test_too_few_pairs_for_an_interval_give_no_standard_error_and_no_call():
    e = paired.estimate([0.1, 0.2, 0.3], 0.01)
    assert e.se == math.inf and e.p_slower == 1.0 and e.p_faster == 1.0


def test_p_values_and_the_interval_are_one_t_distribution():
    e = paired.Estimate(centre=0.03, se=0.01, df=1e6, pairs=100)
    assert e.p_slower == pytest.approx(1 - 0.998650, abs=1e-5)  # z = 3
    assert e.p_faster == pytest.approx(0.998650, abs=1e-5)
    lo, hi = e.interval(0.05)
    assert (math.log(lo), math.log(hi)) == (pytest.approx(0.03 - 0.0195996, abs=1e-6),
                                            pytest.approx(0.03 + 0.0195996, abs=1e-6))


def test_the_detectable_slowdown_is_the_level_quantile_plus_the_power_quantile():
    e = paired.Estimate(0.0, 0.01, 1e6, 200)
    # one-sided 0.001: z 3.090; power 0.9: z 1.2816
    assert e.detectable(0.001) == pytest.approx(math.expm1(0.04372), abs=1e-4)
    assert paired.Estimate(0.0, math.inf, 1.0, 3).detectable(0.001) == math.inf


def test_the_test_and_interval_are_the_more_cautious_of_the_t_and_the_exact_signed_rank():
    d = [0.05] * 7 + [-0.01]  # 8 pairs: the exact test's smallest p is 2/256 whatever they read
    e = paired.estimate(d, 0.0)
    assert e.p_slower == pytest.approx(stats.signed_rank_greater(d))  # the t test would be bolder
    assert 1 - stats.t_cdf(e.centre / e.se, e.df) < e.p_slower
    lo, hi = e.interval(0.01)
    _, exact_lo, exact_hi = stats.hodges_lehmann(d, 0.01)
    assert (math.log(lo), math.log(hi)) == (pytest.approx(min(exact_lo, e.centre - stats.t_quantile(
        0.995, e.df) * e.se)), pytest.approx(max(exact_hi, e.centre + stats.t_quantile(
            0.995, e.df) * e.se)))


def test_holm_steps_down_and_stops_at_the_first_miss():
    # Bonferroni would keep the second (0.009 > 0.01 / 2); Holm rejects it at 0.01 / 1
    assert paired.holm([0.004, 0.009], 0.01) == [(True, 0.005), (True, 0.01)]
    # a rule that went on past the first miss would reject 0.009 at 0.01 / 1
    assert paired.holm([0.006, 0.009], 0.01) == [(False, 0.005), (False, 0.005)]
    assert paired.holm([0.5, 0.001, 0.004], 0.03) == [
        (False, 0.03), (True, 0.01), (True, 0.015)]
    assert [r for r, _ in paired.holm([0.001, 0.02, 0.004, 0.5], 0.01)] == [
        True, False, False, False]


def estimates(monkeypatch, by_name):
    """policy.decide with the estimates given per case (centre, se), at a normal df."""
    monkeypatch.setattr(paired, "estimate", lambda d, sd, sizes=(): paired.Estimate(
        *by_name[round(d[0], 6)], 1e6, len(d)))


def trial(key, contention=None):
    return ab.Trial(f"test_{key}[x]", [key], [1.0], [1.0], 1, 1.0, contention or {})


def test_the_interval_shown_is_at_the_level_holm_held_the_case_to(monkeypatch):
    # z = 3.2 and 2.5: the first rejected at 0.01/2, the second then held to 0.01/1
    estimates(monkeypatch, {1: (0.032, 0.01), 2: (0.025, 0.01)})
    first, second = policy.decide([trial(1), trial(2)], alpha=0.01, min_effect=0.0)
    assert first.verdict == second.verdict == verdict.REGRESSION
    for v, centre, level in ((first, 0.032, 0.005), (second, 0.025, 0.01)):
        z = stats.t_quantile(1 - level, 1e6)  # one bound of the two-sided interval at 2 level
        assert v.ci == (pytest.approx(math.exp(centre - z * 0.01)),
                        pytest.approx(math.exp(centre + z * 0.01)))
    # the lower bound is above 1 exactly when Holm rejected
    assert first.ci[0] > 1 and second.ci[0] > 1


def test_a_contended_case_enters_holm_with_p_1(monkeypatch):
    # z = 2.5 (p 0.0062) passes 0.01/1 but not 0.01/2: with the contended case at p = 1 it is held
    # to 0.01/2. Were the contended case's own tiny p used, it would step Holm down to 0.01/1.
    estimates(monkeypatch, {1: (0.5, 0.01), 2: (0.025, 0.01)})
    busy, other = policy.decide([trial(1, {"foreign_cpu": 0.9, "seconds": 10.0}), trial(2)],
                            alpha=0.01, min_effect=0.0)
    assert busy.verdict == verdict.CONTENDED
    assert other.verdict != verdict.REGRESSION
    (alone,) = policy.decide([trial(2)], alpha=0.01, min_effect=0.0)
    assert alone.verdict == verdict.REGRESSION


def test_each_verdict_says_what_it_could_have_detected(monkeypatch):
    estimates(monkeypatch, {1: (0.0, 0.01), 2: (0.0, 0.001)})
    noisy, clear = policy.decide([trial(1), trial(2)], alpha=0.01, min_effect=0.03)
    level = 0.01 / 2  # a regression of one case is tested at Holm's first level
    assert noisy.detectable == pytest.approx(paired.Estimate(0.0, 0.01, 1e6, 1).detectable(level))
    table = verdict.render([noisy, clear])
    assert f">= {noisy.detectable:.1%} (above the minimum effect)" in table
    assert f">= {clear.detectable:.1%}\n" in table + "\n" and "could detect" in table


class SimulatedPairing(ab.Pairing):
    """A pair of worker processes with a lifetime bias `shift` (log) and iid noise per pair; a pair
    costs 1 s, of the simulation's time (the job cap is never reached)."""

    def __init__(self, name, shift, sd, rng):
        self.m, self.calls, self.pair_s = ab.Matched(name, name, f"bench_x.py::{name}"), 1, 1.0
        self.shift, self.sd, self.rng, self.cand_median = shift, sd, rng, 1.0

    def add_pairs(self, t, pairs, extra=0.0, until=None):
        d = self.rng.normal(self.shift, self.sd, pairs)
        t.d += list(d)
        t.base += [1.0] * pairs
        t.cand += list(np.exp(d))


def false_alarm_rate(jobs, cases, process_sd_true, process_sd_used, seed):
    """Jobs of ab's whole decision (a first set of 40 pairs, later sets while a case is still open,
    up to 160 pairs; Holm; the minimum effect at 0, so that only the test decides): the share of
    jobs with any case called a regression."""
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(jobs):
        sizing = policy.Sizing(80.0, cases, cases, 0.05, 0.0, process_sd_used, start=0.0)
        trials = [sizing.trial(SimulatedPairing(f"test_{i}", rng.normal(0, process_sd_true)
                                                if process_sd_true else 0.0, 0.1, rng))
                  for i in range(cases)]
        calls = policy.decide(trials, alpha=0.05, min_effect=0.0, process=process_sd_used)
        flagged += any(v.verdict == verdict.REGRESSION for v in calls)
    return flagged / jobs


@pytest.fixture
def at_most_160_pairs(monkeypatch):
    monkeypatch.setattr(ab, "MAX_TOTAL_PAIRS", 160)
    monkeypatch.setattr(ab.time, "monotonic", lambda: 0.0)  # simulated pairs take no time
    monkeypatch.setattr(ab.contention, "snapshot", lambda: None)  # nor share the machine
    monkeypatch.setattr(ab.contention, "between", lambda a, b: {})


@pytest.mark.parametrize("process_sd", [0.0, 0.02])
def test_the_job_false_alarm_rate_stays_at_alpha_when_the_process_term_is_known(
        process_sd, at_most_160_pairs):
    jobs = 300
    rate = false_alarm_rate(jobs, 5, process_sd, process_sd, seed=1)
    # alpha 0.05, plus 2.5 binomial sds of 300 jobs
    assert rate <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / jobs)


def test_without_the_process_term_a_per_process_shift_raises_false_alarms_far_above_alpha(
        at_most_160_pairs):
    assert false_alarm_rate(300, 5, 0.02, 0.0, seed=1) > 3 * 0.05


def test_a_case_goes_on_while_it_could_still_be_a_regression(at_most_160_pairs):
    rng = np.random.default_rng(0)
    sizing = policy.Sizing(80.0, 4, 3, 0.01, 0.03, 0.01, start=0.0)
    clear = sizing.trial(SimulatedPairing("test_a", -0.10, 0.1, rng))  # faster: closed at once
    noisy = sizing.trial(SimulatedPairing("test_b", 0.0, 0.3, rng))    # open to the pair limit
    quiet = sizing.trial(SimulatedPairing("test_c", 0.0, 0.01, rng))   # at the process floor
    assert (len(clear.d), len(noisy.d), len(quiet.d)) == (40, 160, 40)
    info = sizing.trial(SimulatedPairing("test_d", 0.0, 0.3, rng), extend=False)
    assert len(info.d) == 40


def test_a_trial_may_take_twice_its_share_of_what_is_left_never_the_first_sets_to_come(
        monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(ab.time, "monotonic", lambda: clock[0])
    sizing = policy.Sizing(20.0, 10, 10, 0.01, 0.03, 0.01, start=100.0)
    assert sizing.allowance() == 100.0 + 2 * 200.0 / 10  # twice its share of the 200 s cap
    sizing.done, clock[0] = 9, 190.0  # the last trial: what is left of the cap, no more
    assert sizing.allowance() == 300.0
    sizing.done, clock[0] = 5, 280.0  # late: the first sets of the 4 after it come first
    assert sizing.allowance() == 300.0 - 4 * 10.0


def test_the_process_term_is_the_default_raised_by_a_measured_figure_and_shrunk_by_rounds():
    term = paired.ProcessTerm(0.01, {"test_a[x]": 0.02, "test_b[x]": 0.004})
    assert term.sd("test_a[x]") == 0.02
    assert term.sd("test_b[x]") == 0.01  # a figure below the default does not lower it
    assert term.sd("test_c[x]") == 0.01
    assert paired.term(0.03).sd("any") == 0.03 and paired.term(term) is term


def test_rounds_count_alike_whatever_their_pairs_and_share_the_process_term():
    rng = np.random.default_rng(0)
    rounds = [rng.normal(shift, 0.05, n) for shift, n in ((0.04, 120), (0.0, 20), (0.0, 20),
                                                          (0.0, 20))]
    d = [float(x) for r in rounds for x in r]
    e = paired.estimate(d, 0.02, (120, 20, 20, 20))
    parts = [stats.hodges_lehmann(list(r), 0.05) for r in rounds]
    # the mean of the rounds' centres: the first round's 120 pairs do not outweigh the others
    assert e.centre == pytest.approx(np.mean([c for c, _, _ in parts]))
    within = math.sqrt(sum(((hi - lo) / (2 * 1.959964)) ** 2 for _, lo, hi in parts)) / 4
    assert e.within == pytest.approx(within)
    assert e.se == pytest.approx(math.hypot(within, 0.02 / 2))  # 0.02 / sqrt(4 rounds)
    one = ab.Trial("test_a[x]", d, [1.0] * 180, list(np.exp(d)), 1, 1.0, nodeid="b.py::test_a")
    four = ab.Trial(**{**one.__dict__, "sizes": (120, 20, 20, 20)})
    (v1,) = policy.decide([one], 0.01, 0.03, paired.ProcessTerm(0.02))
    (v4,) = policy.decide([four], 0.01, 0.03, paired.ProcessTerm(0.02))
    assert v1.detectable == pytest.approx(paired.estimate(d, 0.02).detectable(0.01))
    assert v4.detectable == pytest.approx(e.detectable(0.01))
    assert four.groups()[1] == tuple(d[120:140]) and one.join(four).rounds == 5


def rounds_false_alarm_rate(jobs, cases, rounds, process_sd_true, process_sd_used, seed,
                            name="test_{}"):
    """As false_alarm_rate, each case's pairs from `rounds` pairs of processes, each with its own
    shift (fresh workers per round), joined into one trial per case (named by `name`)."""
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(jobs):
        # a first set of 12 pairs per round (up to 160, by at_most_160_pairs)
        sizing = policy.Sizing(24.0, cases * rounds, cases, 0.05, 0.0, process_sd_used,
                               rounds=rounds, start=0.0)
        trials = {}
        for _ in range(rounds):
            for i in range(cases):
                case = name.format(i)
                before = trials[case].groups() if case in trials else ()
                t = sizing.trial(SimulatedPairing(case, rng.normal(0, process_sd_true), 0.02, rng),
                                 before=before)
                trials[case] = trials[case].join(t) if case in trials else t
        calls = policy.decide(list(trials.values()), alpha=0.05, min_effect=0.0,
                              process=process_sd_used)
        flagged += any(v.verdict == verdict.REGRESSION for v in calls)
    return flagged / jobs


def test_with_rounds_of_fresh_processes_the_job_false_alarm_rate_stays_at_alpha(
        at_most_160_pairs):
    jobs = 300
    rate = rounds_false_alarm_rate(jobs, 5, 4, 0.02, 0.02, seed=2)
    assert rate <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / jobs)
    # the fresh processes are what allow the smaller term: one pair of processes per case,
    # decided as if its bias were averaged over four (0.02 / sqrt(4)), fails the level
    assert rounds_false_alarm_rate(jobs, 5, 1, 0.02, 0.01, seed=2) > 2 * 0.05


def test_a_case_on_an_accelerator_gets_the_accelerator_term_which_a_measured_figure_raises():
    term = paired.ProcessTerm(0.01, {"test_conv[cuda-bs32-x]": 0.05}, accelerator=0.03)
    assert term.sd("test_forward[kerascnn-cuda-bs32]") == 0.03
    assert term.sd("test_forward[kerascnn-mps-bs32]") == 0.03
    assert term.sd("test_forward[kerascnn-cpu-bs32]") == 0.01
    assert term.sd("test_conv[cuda-bs32-x]") == 0.05
    # a plain sd, as --process-sd gives it, holds for every case
    assert paired.term(0.02).sd("test_forward[kerascnn-cuda-bs32]") == 0.02


def test_kernels_autotuned_per_process_keep_the_false_alarms_at_alpha_with_the_accelerator_term(
        at_most_160_pairs):
    """Each round's fresh pair of processes on an accelerator picks its own kernels
    (cudnn.benchmark) and keeps a bias of 3% sd: the accelerator's default term holds the level,
    the CPU's does not."""
    jobs, cuda = 300, "test_conv[cuda-bs32-{}]"
    limit = 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / jobs)
    gpu = paired.ProcessTerm(config.AB_PROCESS_SD, accelerator=config.AB_PROCESS_SD_ACCELERATOR)
    assert rounds_false_alarm_rate(jobs, 5, 4, 0.03, gpu, seed=2, name=cuda) <= limit
    assert rounds_false_alarm_rate(jobs, 5, 4, 0.03, paired.ProcessTerm(config.AB_PROCESS_SD),
                                   seed=2, name=cuda) > 2 * 0.05
