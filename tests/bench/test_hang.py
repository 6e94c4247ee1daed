"""The per-case hang limit (bench/hang.py): --case-timeout where given, else the larger of the
profile's limit and config.HANG_FACTOR times what the run expects of the case (the previous run's
seconds where it holds the case, else the cost model's). The limit's end to end run:
tests/bench/test_plugin.py (a hung case fails in one line and the run goes on)."""

import dataclasses
from types import SimpleNamespace

import pytest

from imgbench.bench import estimate, hang, learned
from imgbench.core import config
from tests.bench.test_learned import CASES, FWD, QUICK, previous


def test_an_explicit_case_timeout_is_the_limit_whatever_the_estimate():
    s = dataclasses.replace(QUICK, case_timeout=2.0)
    assert hang.limit_s(s, expected=1000.0) == (2.0, "--case-timeout")


def test_the_profiles_limit_is_the_floor_and_a_long_case_gets_its_factor():
    assert hang.limit_s(QUICK, expected=10.0) == (
        300, "the quick profile's; --case-timeout sets another")
    limit, why = hang.limit_s(QUICK, expected=210.0)  # the quick reference epoch's cost model
    assert limit == pytest.approx(config.HANG_FACTOR * 210.0) and limit > 338  # what it took
    assert why == f"{config.HANG_FACTOR:g}x its estimate of 210 s; --case-timeout sets another"


def test_the_expected_seconds_are_the_previous_runs_else_the_cost_models(tmp_path):
    took = learned.previous_seconds(previous(tmp_path, seconds=150.0))  # holds the forward only
    forward, step = learned.expected(CASES, QUICK, took)
    assert forward == 150.0
    assert step == pytest.approx(estimate.case_seconds("train_step", "test_train_step", FWD, QUICK))


def test_a_case_takes_its_stashed_expectation_else_asks_the_cost_model():
    stash = {hang.EXPECTED: {"benches/bench_forward.py::test_forward[mlp-cpu-bs32]": 99.0}}

    def item(nodeid):
        return SimpleNamespace(nodeid=nodeid, config=SimpleNamespace(stash=stash),
                               path=SimpleNamespace(stem="bench_forward"),
                               originalname="test_forward")

    assert hang.expected_s(item("benches/bench_forward.py::test_forward[mlp-cpu-bs32]"), QUICK,
                           FWD) == 99.0
    assert hang.expected_s(item("benches/bench_forward.py::test_forward[other]"), QUICK, FWD) == \
        pytest.approx(estimate.case_seconds("forward", "test_forward", FWD, QUICK))
