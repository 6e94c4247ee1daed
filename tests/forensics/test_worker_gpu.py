"""The A/B's accelerator path, on a machine without one: each timed call of a burst synchronises the
device at both ends, the two workers of a pair split each GPU's memory, and only a run whose devices
may include an accelerator asks them to."""

import stat
import time

import pytest

from imgbench.forensics import worker
from imgbench.forensics.workers import ab_worker
from imgbench.hw import timing


class Device:
    """A stand-in accelerator: work queued by a call is done only at the next synchronise."""

    def __init__(self):
        self.queued, self.done, self.syncs = 0, 0, 0

    def launch(self):
        self.queued += 1

    def sync(self):
        self.syncs += 1
        time.sleep(0.002 * (self.queued - self.done))  # the queued work finishes now
        self.done = self.queued


def test_each_timed_call_of_a_burst_waits_for_the_device_at_both_ends():
    gpu = Device()
    timer = timing.SyncTimer(gpu.sync, "fake")
    times = ab_worker._burst(timer, gpu.launch, None, 5, 0.0)
    assert gpu.syncs == 10 and gpu.done == 5
    # the queued work (2 ms a call) is inside each call's time, not left for the next
    assert all(t >= 0.002 for t in times)


def test_an_injected_slowdown_comes_after_the_devices_work_inside_the_clock():
    gpu = Device()
    (t,) = ab_worker._burst(timing.SyncTimer(gpu.sync, "fake"), gpu.launch, None, 1, 0.01)
    assert gpu.syncs == 3 and t >= 0.012


class FakeCuda:
    def __init__(self, gpus):
        self.gpus, self.fractions = gpus, []

    def is_available(self):
        return self.gpus > 0

    def device_count(self):
        return self.gpus

    def set_per_process_memory_fraction(self, share, i):
        self.fractions.append((i, share))


class FakeTorch:
    def __init__(self, gpus):
        self.cuda = FakeCuda(gpus)


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_a_worker_holds_at_most_its_share_of_every_gpus_memory(gpus):
    torch = FakeTorch(gpus)
    ab_worker.share_gpus(0.5, torch)
    assert torch.cuda.fractions == [(i, 0.5) for i in range(gpus)]


@pytest.mark.parametrize("args, shared", [
    (["--device", "cpu", "--model", "all"], False),
    (["--device", "cpu,cuda"], True),
    (["--device=cuda:0"], True),
    (["--device", "auto"], True),
    (["--model", "kerascnn"], True),  # the device defaults to auto
])
def test_only_a_run_that_may_use_an_accelerator_splits_its_memory(args, shared):
    assert worker.accelerated(args) is shared


@pytest.mark.parametrize("device, shared", [("cuda", True), ("cpu", False)])
def test_the_coordinator_tells_the_worker_its_share(tmp_path, device, shared):
    """A real Worker started on a stand-in Python that writes its environment and exits."""
    seen = tmp_path / "env.txt"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nenv > {seen}\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "tree").mkdir()
    w = worker.Worker(worker.Side("candidate", tmp_path / "tree", str(python)),
                      ["--device", device], tmp_path)
    address = w.listener.address
    w.proc.wait(timeout=30)
    w.stop()
    lines = seen.read_text().splitlines()
    assert (f"{worker.GPU_SHARE_ENV}={worker.GPU_SHARE}" in lines) is shared
    assert f"IMGBENCH_AB_ADDRESS={address}" in lines
