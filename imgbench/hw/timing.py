"""Timers that wait for the device, so asynchronous work cannot escape the clock."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import cache


class SyncTimer:
    """A pytest-benchmark timer: synchronise the device, then read perf_counter.

    pytest-benchmark reads its timer only at the start and the end of a round, so a round's
    queued GPU work is inside the measurement, and the previous round's is not.
    """

    def __init__(self, sync: Callable[[], None], label: str):
        self.sync = sync
        # how pytest-benchmark names the timer
        self.__name__ = f"synchronized_perf_counter[{label}]"

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


class Replay:
    """A pytest-benchmark timer for times measured elsewhere (in torchrun workers): each call of
    `play` moves this clock on by the next measured duration, so a round of `benchmark.pedantic(
    replay.play, ...)` reads that duration, plus the microsecond of the call itself."""

    __name__ = "replayed_perf_counter"

    def __init__(self):
        self.shift, self.pending = 0.0, []

    def __call__(self) -> float:
        return time.perf_counter() + self.shift

    def load(self, durations):
        self.pending = [float(d) for d in durations]

    def play(self):
        self.shift += self.pending.pop(0)


@cache
def timer_for(device: str) -> SyncTimer:
    # One object per device: pytest-benchmark caches each timer's precision by identity.
    from imgbench.hw.devices import synchronizer

    return SyncTimer(synchronizer(device), device)


def min_round_s(device: str) -> float | None:
    """The shortest round pytest-benchmark may calibrate to on `device` (its min_time): None on the
    CPU, where a round has no device synchronise to amortise."""
    from imgbench.core.config import ACCELERATOR_MIN_ROUND_S

    return None if device == "cpu" else ACCELERATOR_MIN_ROUND_S


def clocked(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds of one call of `fn`, with the device synchronised before and after: the one
    timed-call helper of the suite (warm-up, calibration peaks, the gate's own trials, ddp
    epochs)."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def warm_up(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> list[float]:
    """Run `fn` `calls` times (lazy init, autotuning, compilation, allocator growth), each
    synchronised; return each call's seconds (the first includes whatever one-off cost the workload
    has)."""
    return [clocked(fn, sync) for _ in range(calls)]


def harness_round_s(device: str, rounds: int = 200) -> float:
    """Median seconds of an empty timed round on `device` (the timer read twice, synchronising each
    time): the fixed cost inside every round of every case."""
    timer = timer_for(device)
    timer()

    def empty() -> float:
        start = timer()
        return timer() - start

    return statistics.median(empty() for _ in range(rounds))


def cross_check(fn: Callable[[], object], device: str, calls: int) -> dict:
    """`fn` timed a second way, outside pytest-benchmark: CUDA events around each call on a GPU (the
    device's own clock), perf_counter around each synchronised call elsewhere. Returns the
    median."""
    import torch

    from imgbench.hw.devices import synchronizer

    sync = synchronizer(device)
    if device.startswith("cuda"):
        def once() -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            sync()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        clock = "cuda_event"
    else:
        def once() -> float:
            return clocked(fn, sync)
        clock = "perf_counter"
    return {"clock": clock, "median_s": statistics.median(once() for _ in range(calls)),
            "calls": calls}
