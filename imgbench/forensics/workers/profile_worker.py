"""The explain worker: a pytest plugin that `imgbench explain` loads into each side's own tree,
beside the A/B worker (`abworker`, copied in as imgbench_abworker), so that each version builds its
case its own way and the coordinator profiles its timed call with torch.profiler instead of timing
it.

The A/B worker's hooks do the rest as they do for `imgbench ab`: they send the collected cases, run
only the one named back, and at its `benchmark(...)` / `benchmark.pedantic(...)` call (after the
bench's own warm-up) hand its timed function and timer (which synchronises the device) to
`state.serve`, here `_serve`: it says "ready" and on command runs warm-up calls, or one block of
calls under the profiler: the block's wall time per call and, per operator, its calls and self time
(self CPU time; on a CUDA case the kernels' self device time), and on request the block's Chrome
trace. It serves until the coordinator closes the connection; the case is not timed. Standard
library, pytest and torch only, so that it runs trees that predate it."""

from __future__ import annotations

import gc

import imgbench_abworker as abworker  # copied beside this file
import pytest
from imgbench_abworker import (  # noqa: F401  registered as this plugin's own hooks
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_logreport,
    pytest_runtest_protocol,
)
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

state = abworker.state


def _serve(timer, call):
    """Serve commands until the coordinator closes the connection (it stops this process then)."""
    # replayed: the work ran in other processes (the A/B worker's hooks say so as "ended")
    if call is None:
        state.ended = ("its work runs in other processes (replayed through its timer), which the "
                       "profiler does not see")
        pytest.skip(state.ended)
    conn, item = abworker.link(), state.item
    state.served = True
    cuda = str(getattr(getattr(item, "callspec", None), "params", {})
               .get("device", "cpu")).startswith("cuda")
    conn.send(("ready", item.nodeid, cuda))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return None
        # as pytest-benchmark's disable_gc: a collection would land in whichever call it hits
        gc.disable()
        try:
            if msg[0] == "warmup":
                conn.send(("times", [abworker.timed(timer, call, 0.0) for _ in range(msg[1])]))
            else:
                conn.send(("block", *_block(timer, call, msg[1], cuda, msg[2])))
        except Exception as e:
            conn.send(("error", item.nodeid, f"{type(e).__name__}: {e}".splitlines()[0]))
        finally:
            gc.enable()


def _block(timer, call, steps: int, cuda: bool, trace: str | None) -> tuple[float, dict]:
    """`steps` calls under the profiler: wall seconds per call (the device synchronised at both
    ends), and per operator [calls, self microseconds] over the block: CPU operators, or on CUDA the
    device's kernels (a CPU operator's self device time is its kernels' again: counting both would
    count them twice)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=False) as prof:
        start = timer()
        for _ in range(steps):
            call()
        wall = timer() - start
    if trace:
        prof.export_chrome_trace(trace)
    ops = {}
    for e in prof.key_averages():
        on_device = e.device_type != DeviceType.CPU
        if on_device == cuda:
            us = getattr(e, "self_device_time_total", None) if on_device else e.self_cpu_time_total
            if us is None:  # torch before 2.4 named it for CUDA
                us = e.self_cuda_time_total
            ops[e.key] = [e.count, float(us)]
    return wall / steps, ops


state.serve = _serve
