"""The suite's timers must keep asynchronous device work inside the clock. A fake device on a fake
clock stands in for a GPU: its work takes known seconds, so every duration is exact."""

import json

import pytest

from imgbench.hw import devices, timing

JOB_S = 0.005  # one "kernel" on the fake device


class FakeDevice:
    """A device queue like a CUDA stream, on its own clock: launch() returns at once and queues
    work; synchronize() waits for the queued work, moving the clock on by its seconds. Nothing else
    moves it."""

    def __init__(self):
        self.now, self.queued = 0.0, 0.0

    def perf_counter(self):
        return self.now

    def launch(self, seconds=JOB_S):
        self.queued += seconds

    def synchronize(self):
        self.now, self.queued = self.now + self.queued, 0.0


@pytest.fixture
def device(monkeypatch):
    d = FakeDevice()
    monkeypatch.setattr(timing.time, "perf_counter", d.perf_counter)
    return d


def durations_of_rounds(timer, fn, rounds=5):
    out = []
    for _ in range(rounds):
        start = timer()
        fn()
        out.append(timer() - start)
    return out


def test_sync_timer_counts_queued_work_that_a_plain_timer_misses(device):
    assert durations_of_rounds(device.perf_counter, device.launch) == [0.0] * 5
    device.launch(1.0)  # work queued before the first round is none of its business
    synced = durations_of_rounds(timing.SyncTimer(device.synchronize, "fake"), device.launch)
    assert synced == pytest.approx([JOB_S] * 5)  # all of each round's work, none of another's


def test_clocked_times_one_call_with_the_device_synchronised_before_and_after(device):
    device.launch(1.0)  # earlier work, still queued

    def fn():
        device.launch(0.25)
        device.launch(0.5)

    assert timing.clocked(fn, device.synchronize) == 0.75
    assert device.queued == 0.0


def test_warm_up_runs_the_calls_and_returns_their_synchronized_durations(device):
    calls = []

    def fn():
        calls.append(1)
        device.launch(JOB_S * len(calls))  # the first call is the cheapest here, to tell them apart

    assert timing.warm_up(fn, 3, device.synchronize) == pytest.approx([JOB_S, 2 * JOB_S, 3 * JOB_S])
    assert timing.warm_up(fn, 0, device.synchronize) == [] and len(calls) == 3


@pytest.fixture
def fresh_timers():
    """timer_for caches its timers: start and end each test without any made by another."""
    timing.timer_for.cache_clear()
    yield
    timing.timer_for.cache_clear()


def test_a_devices_timer_synchronises_that_device_before_reading_the_clock(monkeypatch,
                                                                           fresh_timers):
    log = []
    monkeypatch.setattr(devices, "synchronizer", lambda name: lambda: log.append(("sync", name)))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: log.append("clock") or 42.0)
    timer = timing.timer_for("cuda:1")
    # how pytest-benchmark names it in the JSON
    assert timer.__name__ == "synchronized_perf_counter[cuda:1]"
    assert timer() == 42.0 and log == [("sync", "cuda:1"), "clock"]


def test_replay_moves_its_clock_on_by_each_measured_duration(monkeypatch):
    monkeypatch.setattr(timing.time, "perf_counter", lambda: 100.0)
    replay = timing.Replay()
    replay.load(["0.5", 0.25])  # as read back from the workers' JSON
    start = replay()
    replay.play()
    assert replay() - start == 0.5
    replay.play()
    assert replay() - start == 0.75
    with pytest.raises(IndexError):
        replay.play()  # more rounds than durations measured


PROOF_CONFTEST = """
import types
import imgbench.hw.devices, imgbench.hw.timing

pytest_plugins = ["imgbench.plugin"]
TICK = 1e-7  # every read moves the clock a little: pytest-benchmark measures the timer's precision


class FakeDevice:
    def __init__(self):
        self.now, self.queued = 0.0, 0.0

    def perf_counter(self):
        self.now += TICK
        return self.now

    def launch(self):
        self.queued += JOB_S

    def synchronize(self):
        self.now, self.queued = self.now + self.queued, 0.0


DEVICE = FakeDevice()
# The "cpu" device of this run is the fake asynchronous device, on its own clock.
imgbench.hw.devices.synchronizer = lambda name: DEVICE.synchronize
imgbench.hw.timing.time = types.SimpleNamespace(perf_counter=DEVICE.perf_counter)
imgbench.hw.timing.timer_for.cache_clear()
""".replace("JOB_S", repr(JOB_S))

PROOF_BENCH = """
import pytest
from conftest import DEVICE
from imgbench.workloads.steps import Workload


def test_suite_timer(device, measure):
    measure(Workload(DEVICE.launch, images=1))


@pytest.mark.benchmark(timer=DEVICE.perf_counter)
def test_plain_timer(benchmark):
    benchmark.pedantic(DEVICE.launch, rounds=20)
    DEVICE.synchronize()
"""


@pytest.mark.slow
def test_suite_timer_through_pytest_benchmark_sees_asynchronous_work(pytester):
    """End to end: the plugin's timer on a fake async device vs a plain timer on the same clock."""
    pytester.makeconftest(PROOF_CONFTEST)
    pytester.makepyfile(bench_proof=PROOF_BENCH)
    result = pytester.runpytest_subprocess("bench_proof.py", "--device", "cpu",
                                           "--benchmark-json=out.json", "--benchmark-max-time=0.05",
                                           "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    runs = {b["name"]: b
            for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    synced = runs["test_suite_timer[cpu]"]["stats"]
    plain = runs["test_plain_timer"]["stats"]
    assert synced["median"] == pytest.approx(JOB_S, abs=1e-6) and synced["rounds"] >= 5
    # the same work, queued and never waited for
    assert plain["median"] == pytest.approx(0, abs=1e-6)
    assert runs["test_suite_timer[cpu]"]["options"]["timer"].endswith(
        "synchronized_perf_counter[cpu]")


AMORTISED_CONFTEST = """
import os, types
import imgbench.hw.devices, imgbench.hw.timing

pytest_plugins = ["imgbench.plugin"]
KERNEL_S, SYNC_S = 20e-6, 10e-6  # a 20 us kernel; every synchronise costs 10 us of fixed \
harness time


class FakeDevice:
    def __init__(self):
        self.now, self.queued = 0.0, 0.0

    def perf_counter(self):
        self.now += 1e-9
        return self.now

    def launch(self):
        self.queued += KERNEL_S

    def synchronize(self):
        self.now, self.queued = self.now + self.queued + SYNC_S, 0.0


DEVICE = FakeDevice()
# The "cpu" device of this run is a fake accelerator: asynchronous, with a fixed cost per round.
imgbench.hw.devices.synchronizer = lambda name: DEVICE.synchronize
imgbench.hw.timing.time = types.SimpleNamespace(perf_counter=DEVICE.perf_counter)
imgbench.hw.timing.timer_for.cache_clear()
if os.environ.get("AMORTISE") == "off":
    imgbench.hw.timing.min_round_s = lambda device: None
else:
    imgbench.hw.timing.min_round_s = lambda device: imgbench.core.config.ACCELERATOR_MIN_ROUND_S
"""

AMORTISED_BENCH = """
from conftest import DEVICE
from imgbench.workloads.steps import Workload


def test_kernel(device, measure):
    measure(Workload(DEVICE.launch, images=1))
"""


@pytest.mark.slow
@pytest.mark.parametrize("amortise", ["on", "off"])
def test_a_20us_kernel_on_an_accelerator_is_reported_within_5_percent(pytester, monkeypatch,
                                                                      amortise):
    """A round ends with a synchronise costing a fixed 10 us here. With the accelerator's minimum
    round time pytest-benchmark runs enough iterations per round that the 20 us kernel reads within
    5%; without it (pytest-benchmark's own calibration: 10x its timer's precision) it reads 10% or
    more slow. The empty round's cost is stored with the run."""
    monkeypatch.setenv("AMORTISE", amortise)
    pytester.makeconftest(AMORTISED_CONFTEST)
    pytester.makepyfile(bench_amortised=AMORTISED_BENCH)
    result = pytester.runpytest_subprocess("bench_amortised.py", "--device", "cpu",
                                           "--benchmark-json=out.json", "--benchmark-max-time=0.05",
                                           "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "out.json").read_text())
    (case,) = doc["benchmarks"]
    median = case["stats"]["median"]
    if amortise == "on":
        assert median == pytest.approx(20e-6, rel=0.05) and case["stats"]["iterations"] >= 50
        assert float(case["options"]["min_time"]) == 2e-3
    else:
        assert median > 20e-6 * 1.05
    assert doc["imgbench"]["peaks"]["cpu"]["harness_round_s"] == pytest.approx(10e-6, rel=0.01)
