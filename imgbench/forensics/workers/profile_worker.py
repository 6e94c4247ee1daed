"""The explain worker: a pytest plugin that `imgbench explain` loads into each side's own tree,
beside the A/B worker (`abworker`, copied in as imgbench_abworker), so that each version builds its
case its own way and the coordinator profiles its timed call with torch.profiler instead of timing
it.

The A/B worker's hooks do the rest as they do for `imgbench ab`: they send the collected cases, run
only the one named back, and at its `benchmark(...)` / `benchmark.pedantic(...)` call (after the
bench's own warm-up) hand its timed function and timer (which synchronises the device) to
`state.serve`, here `_serve`: it says "ready" and on command runs warm-up calls, or one block of
calls under the profiler: the block's wall time per call and, per operator, its calls and self time
(self CPU time; on a CUDA case the device time of the kernels each operator launched itself), and on
request the block's Chrome trace. It serves until the coordinator closes the connection; the case is
not timed. Standard library, pytest and torch only, so that it runs trees that predate it."""

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
    ends), and per operator [calls, self microseconds] over the block (_ops)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=False) as prof:
        start = timer()
        for _ in range(steps):
            call()
        wall = timer() - start
    if trace:
        prof.export_chrome_trace(trace)
    return wall / steps, _ops(prof.key_averages(), cuda)


# the device time of kernels that no operator launched (e.g. from a compiled graph's own launcher)
UNOWNED = "(kernels outside any operator)"


def _device_us(e) -> float:
    us = getattr(e, "self_device_time_total", None)
    return float(e.self_cuda_time_total if us is None else us)  # torch before 2.4 named it for CUDA


def _ops(events, cuda: bool) -> dict:
    """Per CPU-side operator (aten::conv2d, ...): [calls, self CPU microseconds]; on CUDA its self
    device microseconds instead: the kernels it launched itself (not its children's), so the sum
    over operators is the kernels' time once. CUDA cases are keyed by operator, not kernel: cuDNN
    picks a kernel per process and version (sm90_xmma_fprop_...), so kernel names do not line up
    between the two sides. Kernel time no operator owns is one line of its own (UNOWNED)."""
    ops, kernels_us = {}, 0.0
    for e in events:
        if e.device_type != DeviceType.CPU:  # a kernel or copy on the device: its operator has it
            if not getattr(e, "is_user_annotation", False):  # a record_function span, no work
                kernels_us += _device_us(e)
        elif not cuda:
            ops[e.key] = [e.count, float(e.self_cpu_time_total)]
        elif us := _device_us(e):  # an operator that launched nothing has no device time
            ops[e.key] = [e.count, us]
    unowned = kernels_us - sum(us for _, us in ops.values()) if cuda else 0.0
    if unowned >= 1.0:  # a microsecond over the block: beyond the floats' rounding
        ops[UNOWNED] = [0, unowned]
    return ops


state.serve = _serve
