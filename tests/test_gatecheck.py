"""The gate's self-measurement: pytest-benchmark's own check, the three methods on a fake clock whose
truth is known, the table, and the command's bad input."""

import numpy as np
import pytest

from imgbench import cli, gatecheck


class FakeClock:
    """perf_counter stand-in: a call of the workload advances it by ~1 s (1% noise); every read
    advances it by 0.1 ms so the injected spin ends."""

    def __init__(self, seed=0):
        self.now, self.rng = 0.0, np.random.default_rng(seed)

    def perf_counter(self):
        self.now += 1e-4
        return self.now

    def work(self):
        self.now += 1.0 + 0.01 * self.rng.standard_normal()


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(gatecheck.time, "perf_counter", c.perf_counter)
    return c


def test_pytest_benchmarks_own_median_5_percent_check():
    assert gatecheck.native_fails([1.0] * 5, [1.06] * 5)
    assert not gatecheck.native_fails([1.0] * 5, [1.04] * 5)
    assert not gatecheck.native_fails([1.0] * 5, [0.5] * 5)


def test_spin_holds_the_clock_for_the_injected_time(clock):
    (t,) = gatecheck.rounds(clock.work, lambda: None, 1, extra=0.25)
    assert t == pytest.approx(1.25, abs=0.05)


def test_the_injected_time_is_not_hidden_behind_queued_device_work(clock):
    done_at = []

    def launch():  # an accelerator call: returns at once, its work ends 1 s later
        done_at.append(clock.now + 1.0)

    def sync():
        clock.now = max([clock.now, *done_at])

    (t,) = gatecheck.rounds(launch, sync, 1, extra=0.25)
    assert t == pytest.approx(1.25, abs=0.05)


def test_every_method_catches_a_large_slowdown_and_none_cries_wolf_on_a_steady_clock(clock):
    tallies = gatecheck.measure(clock.work, lambda: None, [0.0, 0.2], trials=3, pairs=5, rounds_per_sample=3)
    by = {(t.method, t.effect): t for t in tallies}
    assert {m for m, _ in by} == set(gatecheck.METHODS)
    for m in gatecheck.METHODS:
        assert (by[m, 0.0].flagged, by[m, 0.0].trials) == (0, 3)
        assert (by[m, 0.2].flagged, by[m, 0.2].trials) == (3, 3)


def test_a_slowdown_below_the_minimum_effect_is_not_flagged_by_ab_or_compare(clock):
    tallies = gatecheck.measure(clock.work, lambda: None, [0.02], trials=2, pairs=5, rounds_per_sample=3,
                                min_effect=0.05)
    flagged = {t.method: t.flagged for t in tallies}
    assert flagged["ab"] == 0 and flagged["compare"] == 0 and flagged["pytest-benchmark median:5%"] == 0


def test_table_lists_each_method_with_counts_and_rates():
    tallies = [gatecheck.Tally(m, e, flagged=f, trials=100) for m in gatecheck.METHODS
               for e, f in ((0.0, 1), (0.1, 95))]
    md = gatecheck.render(tallies, markdown=True).splitlines()
    assert md[0] == "| method | A/A false alarms | 10% slowdown caught |"
    assert md[2] == "| ab | 1/100 (1%) | 95/100 (95%) |"
    assert len(md) == 2 + len(gatecheck.METHODS)


@pytest.mark.parametrize("args, message", [
    (["--effects", "0,x"], "--effects 'x' is not a percentage"),
    (["--pairs", "2"], "--pairs 2: valid is 3 or more"),
    (["--batch-size", "32,64"], "gate-check times one case"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--device", "cuda:7"], "cuda:7"),
])
def test_gate_check_bad_input_is_one_line_exit_2(capsys, args, message):
    assert cli.main(["gate-check", *args]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_gate_check_runs_a_real_case(capsys):
    code = cli.main(["gate-check", "--model", "mlp", "--family", "forward", "--batch-size", "4", "--trials", "1",
                     "--pairs", "3", "--rounds", "1", "--effects", "0,50", "--markdown"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| method | A/A false alarms | 50% slowdown caught |" in out
    assert "| pytest-benchmark median:5% | " in out
