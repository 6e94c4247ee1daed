"""The statistics (imgbench.stats): ratio of medians with a bootstrap interval, the one-sided Mann-Whitney
test, Student's t quantiles, and the bounds a history's run-to-run spread allows."""

import numpy as np
import pytest

from conftest import rounds
from imgbench import stats


def test_ratio_and_bootstrap_interval():
    base, cand = rounds(1.0), rounds(1.2, seed=1)
    assert stats.ratio_of_medians(base, cand) == pytest.approx(1.2, rel=0.02)
    lo, hi = stats.bootstrap_ratio_ci(base, cand, alpha=0.01)
    assert lo < 1.2 < hi and lo > 1.1 and hi < 1.3


def test_bootstrap_of_a_huge_run_is_thinned_and_chunked():
    x = rounds(1e-5, n=stats.MAX_ROUNDS * 40, spread=0.01)
    (medians,) = stats.bootstrap_medians([x], resamples=stats.CHUNK * 3 + 1)
    assert medians.shape == (stats.CHUNK * 3 + 1,)
    lo, hi = stats.bootstrap_ratio_ci(x, x * 1.02)
    assert lo < 1.02 < hi and hi - lo < 0.01


def test_bootstrap_is_reproducible_by_seed():
    base, cand = rounds(1.0), rounds(1.1, seed=1)
    assert stats.bootstrap_ratio_ci(base, cand, seed=3) == stats.bootstrap_ratio_ci(base, cand, seed=3)
    assert stats.bootstrap_ratio_ci(base, cand, seed=3) != stats.bootstrap_ratio_ci(base, cand, seed=4)


def test_mann_whitney_one_sided():
    base = rounds(1.0, n=12, spread=0.02)
    assert stats.mann_whitney_greater(rounds(1.1, n=12, spread=0.02, seed=1), base) < 0.001
    assert stats.mann_whitney_greater(rounds(0.9, n=12, spread=0.02, seed=1), base) > 0.99
    same = stats.mann_whitney_greater(rounds(1.0, n=12, spread=0.02, seed=1), base)
    assert 0.01 < same < 0.99
    assert stats.mann_whitney_greater([1, 1, 1], [1, 1, 1]) == 1.0  # all tied: no evidence


def test_t_quantiles_match_the_tables():
    assert stats.t_quantile(0.99, 2) == pytest.approx(6.965, abs=1e-3)
    assert stats.t_quantile(0.975, 10) == pytest.approx(2.228, abs=1e-3)
    assert stats.t_quantile(0.95, 1000) == pytest.approx(1.646, abs=1e-3)


def test_history_bound_follows_the_run_to_run_spread():
    assert stats.history_bound([1.0, 1.1]) is None
    tight = stats.history_bound([1.00, 1.01, 0.99, 1.00, 1.01, 0.99])
    loose = stats.history_bound([1.00, 1.20, 0.85, 1.10, 0.90, 1.25])
    assert 1 < tight < 1.1 < loose


def test_history_interval_follows_a_skewed_history():
    m = [1.0, 1.0, 1.0, 1.3, 1.35]  # mostly 1.0, sometimes 30% slower: log-ratios average above 0
    lo, hi = stats.history_interval(m)
    logs = np.log(np.array(m))
    half = stats.t_quantile(0.99, 4) * logs.std(ddof=1) * np.sqrt(1 + 1 / 5)
    assert (lo, hi) == pytest.approx((np.exp(logs.mean() - half), np.exp(logs.mean() + half)))
    assert lo * hi > 1.05 and stats.history_bound(m) == hi
