"""The fixtures a bench asks for: `settings` (the run's options), `conditions` (threads, cuDNN, TF32
and denormals set around the case), `case` (the sweep point, its model and data) and `measure` (warm
up, time with pytest-benchmark, store the work done and the rates that follow from the median; with
--cross-check, the same workload timed a second way beside it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from imgbench.bench.rates import compile_seconds, rates
from imgbench.core.config import CROSS_CHECK_BUDGET_S, CROSS_CHECK_MIN_S
from imgbench.core.options import Settings
from imgbench.hw import calibration, devices, peak_memory, timing
from imgbench.hw.conditions import applied
from imgbench.workloads import cases
from imgbench.workloads.steps import Workload


@dataclass
class RunState:
    """What the plugin sets up once per pytest session for the fixtures."""

    settings: Settings
    dataset: object | None       # a real dataset (--dataset cifar10/mnist), else None
    peaks: calibration.Peaks
    long_rounds: int             # rounds of epoch-long cases: the profile's, or
                                 # --benchmark-min-rounds if given
    flags: dict | None = None    # torch's numeric flags at the session's start (the recorded ones)
    failed: set = field(default_factory=set)  # node ids of cases that failed in any phase


STATE = pytest.StashKey[RunState]()


def params(node) -> dict:
    """The case's parameters (model, device, batch size...), as stored in the JSON."""
    return getattr(getattr(node, "callspec", None), "params", {})


@pytest.fixture
def settings(request) -> Settings:
    """This run's axes and options."""
    return request.config.stash[STATE].settings


@pytest.fixture
def conditions(request) -> dict:
    """The numeric conditions a case runs under (conditions.applied): set, recorded, restored
    after."""
    p = params(request.node)
    with applied(p.get("device", "cpu"), p.get("precision", "fp32"),
                         request.config.stash[STATE].settings.threads) as record:
        yield record


@pytest.fixture
def case(request, conditions, model, device, batch_size, precision, memory_format,
         compile) -> cases.Case:
    """The sweep point of this test; a combination its device cannot run is skipped with the
    reason."""
    reason = cases.unsupported(device, precision, compile)
    if reason:
        pytest.skip(reason)
    state = request.config.stash[STATE]
    return cases.Case(model, device, batch_size, state.settings, state.dataset, precision,
                      memory_format, compile)


def cross_check_calls(median: float) -> int:
    """Calls of the cross-check: about CROSS_CHECK_BUDGET_S of them, at least 3 (a median), at
    most 20."""
    return max(3, min(20, int(CROSS_CHECK_BUDGET_S / median)))


@pytest.fixture
def measure(benchmark, request, conditions):
    """measure(workload, info): warm up, time with pytest-benchmark, store the work done per call
    and the rates that follow from the median (images/s, GB/s, TFLOP/s and % of the measured
    peak)."""
    state = request.config.stash[STATE]
    p = params(request.node)
    device = p.get("device", "cpu")

    def run(w: Workload, info: dict | None = None):
        info = info or {}
        compiled = info.get("compile", p.get("compile")) == "on"
        calls = (0 if benchmark.disabled
                 else max(state.settings.profile.warmup_calls, 2 if compiled else 0))
        if w.long:
            # one warm-up epoch: worker start-up, autotuning, allocator growth
            calls = min(calls, 1)
        if not benchmark.disabled:
            # the fixed cost inside each round, once per device, stored with the run
            state.peaks.harness(device)
        memory = peak_memory.PeakMemory(device)
        memory.start()
        durations = timing.warm_up(w.fn, calls, devices.synchronizer(device))
        extra = {**info, **w.info, **conditions, "images": w.images, "warmup_calls": calls}
        if durations:
            extra["first_call_s"] = durations[0]
        benchmark.extra_info.update(extra)
        if w.long and not benchmark.disabled:
            result = benchmark.pedantic(w.fn, rounds=state.long_rounds, iterations=1)
        else:
            result = benchmark(w.fn)
        if benchmark.stats is None:
            return result
        median = benchmark.stats.stats.median
        out = {"peak_memory_bytes": memory.peak_bytes()}  # before any calibration below allocates
        peak = (state.peaks.tflops(device, info.get("precision", p.get("precision", "fp32")))
                if w.flops else None)
        out.update(rates(w, median, peak))
        if compiled and durations:
            out["compile_s"] = compile_seconds(durations[0], median)
        if w.after:
            out.update(w.after(calls))
        if state.settings.cross_check and median >= CROSS_CHECK_MIN_S:
            out["cross_check"] = timing.cross_check(w.fn, device, cross_check_calls(median))
        benchmark.extra_info.update(out)
        return result

    return run
