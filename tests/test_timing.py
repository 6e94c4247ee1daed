"""The suite's timer must keep asynchronous device work inside the clock."""

import json
import queue
import threading
import time

from imgbench import timing

JOB_S = 0.005  # one "kernel" on the fake device


class FakeStream:
    """A device queue like a CUDA stream: launch() returns at once, the work runs later in order."""

    def __init__(self):
        self.jobs = queue.Queue()
        threading.Thread(target=self._work, daemon=True).start()

    def _work(self):
        while True:
            seconds = self.jobs.get()
            time.sleep(seconds)
            self.jobs.task_done()

    def launch(self, seconds=JOB_S):
        self.jobs.put(seconds)

    def synchronize(self):
        self.jobs.join()


def median_of_rounds(timer, fn, rounds=10):
    times = []
    for _ in range(rounds):
        start = timer()
        fn()
        times.append(timer() - start)
    return sorted(times)[rounds // 2]


def test_sync_timer_counts_queued_work_that_a_plain_timer_misses():
    stream = FakeStream()
    plain = median_of_rounds(time.perf_counter, stream.launch)
    stream.synchronize()
    synced = median_of_rounds(timing.SyncTimer(stream.synchronize, "fake"), stream.launch)
    assert 0.9 * JOB_S <= synced <= 2 * JOB_S  # all of this round's work, none of another's
    assert synced >= 10 * plain


def test_warm_up_runs_the_calls_and_returns_their_synchronized_durations():
    stream = FakeStream()
    calls = []

    def fn():
        calls.append(1)
        stream.launch()

    durations = timing.warm_up(fn, 3, stream.synchronize)
    assert len(calls) == 3 and len(durations) == 3
    assert min(durations) >= 0.9 * JOB_S
    assert timing.warm_up(fn, 0, stream.synchronize) == [] and len(calls) == 3


def test_one_timer_per_device_named_after_it():
    assert timing.timer_for("cpu") is timing.timer_for("cpu")
    assert timing.timer_for("cpu").__name__ == "synchronized_perf_counter[cpu]"


PROOF_CONFTEST = """
import queue, threading, time
import imgbench.devices, imgbench.timing

pytest_plugins = ["imgbench.plugin"]


class FakeStream:
    def __init__(self):
        self.jobs = queue.Queue()
        threading.Thread(target=self._work, daemon=True).start()

    def _work(self):
        while True:
            time.sleep(self.jobs.get())
            self.jobs.task_done()

    def launch(self):
        self.jobs.put(JOB_S)

    def synchronize(self):
        self.jobs.join()


STREAM = FakeStream()
# The "cpu" device of this run is the fake asynchronous device.
imgbench.devices.synchronizer = lambda name: STREAM.synchronize
imgbench.timing.timer_for.cache_clear()
""".replace("JOB_S", repr(JOB_S))

PROOF_BENCH = """
from conftest import STREAM
from imgbench.workloads import Workload


def test_suite_timer(device, measure):
    measure(Workload(STREAM.launch, images=1))


def test_plain_timer(benchmark):
    benchmark.pedantic(STREAM.launch, rounds=20)
    STREAM.synchronize()
"""


def test_suite_timer_through_pytest_benchmark_sees_asynchronous_work(pytester):
    """End to end: the plugin's timer on a fake async device vs pytest-benchmark's plain timer."""
    pytester.makeconftest(PROOF_CONFTEST)
    pytester.makepyfile(bench_proof=PROOF_BENCH)
    result = pytester.runpytest_subprocess("bench_proof.py", "--device", "cpu", "--benchmark-json=out.json",
                                           "--benchmark-max-time=0.05", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    runs = {b["name"]: b for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    synced = runs["test_suite_timer[cpu]"]["stats"]["median"]
    plain = runs["test_plain_timer"]["stats"]["median"]
    assert 0.9 * JOB_S <= synced <= 2 * JOB_S
    assert synced >= 10 * plain, (synced, plain)
    assert runs["test_suite_timer[cpu]"]["options"]["timer"].endswith("synchronized_perf_counter[cpu]")

