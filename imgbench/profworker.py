"""The explain worker: a pytest plugin that `imgbench explain` loads into each side's own tree (copied beside
the run, as `abworker` is), so that each version builds its case its own way and the coordinator profiles
its timed call with torch.profiler instead of timing it.

In the worker process it:
1. sends the coordinator the collected cases (node id, test id) and runs only the one named back;
2. at that case's `benchmark(...)` / `benchmark.pedantic(...)` call (after the bench's own warm-up) takes
   the timed function and the case's timer (which synchronises the device), says "ready", and on command
   runs warm-up calls, or one block of calls under the profiler: the block's wall time per call and, per
   operator, its calls and self time (self CPU time; on a CUDA case the kernels' self device time), and
   on request the block's Chrome trace;
3. serves until the coordinator closes the connection; the case is not timed.
Standard library, pytest and torch only, so that it runs trees that predate it."""

from __future__ import annotations

import gc
import os
from multiprocessing.connection import Client

import pytest
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

ADDRESS, KEY = "IMGBENCH_AB_ADDRESS", "IMGBENCH_AB_KEY"  # as abworker: the same Worker starts both


class _State:
    conn = None
    item = None
    served = False
    ended = ""


S = _State()


def _link():
    if S.conn is None:
        S.conn = Client(os.environ[ADDRESS], authkey=bytes.fromhex(os.environ[KEY]))
    return S.conn


@pytest.hookimpl(trylast=True)  # after -k and the tree's own plugin have deselected what they exclude
def pytest_collection_modifyitems(config, items):
    conn = _link()
    conn.send(("cases", [(i.nodeid, i.name) for i in items]))
    wanted = set(conn.recv())
    rest = [i for i in items if i.nodeid not in wanted]
    if rest:
        config.hook.pytest_deselected(items=rest)
    items[:] = [i for i in items if i.nodeid in wanted]


def pytest_configure(config):
    from pytest_benchmark.fixture import BenchmarkFixture

    BenchmarkFixture.__call__ = _called
    BenchmarkFixture.pedantic = _pedantic


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    S.item, S.served, S.ended = item, False, ""
    try:
        return (yield)
    finally:
        if not S.served:
            _link().send(("ended", item.nodeid, S.ended or "ended before its benchmark call"))


def pytest_runtest_logreport(report):
    if not (report.failed or report.skipped) or S.ended:
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        S.ended = report.longrepr[2]  # "Skipped: <reason>"
    else:
        last = str(report.longreprtext).strip().splitlines()[-1:] or [report.outcome]
        S.ended = f"failed: {last[0]}"


def _called(self, function_to_benchmark, *args, **kwargs):
    self._mode = "benchmark(...)"  # used: pytest-benchmark would warn otherwise
    return _serve(self._timer, lambda: function_to_benchmark(*args, **kwargs))


def _pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1, warmup_rounds=0,
              iterations=1):
    kwargs = kwargs or {}
    self._mode = "benchmark.pedantic(...)"
    if getattr(target, "__self__", None) is self._timer:  # replayed: the work ran in other processes
        S.ended = "its work runs in other processes (replayed through its timer), which the profiler does not see"
        pytest.skip(S.ended)

    def call():
        a, k = args, kwargs
        if setup is not None:
            a, k = setup() or (args, kwargs)
        out = target(*a, **k)
        if teardown is not None:
            teardown(*a, **k)
        return out
    return _serve(self._timer, call)


def _serve(timer, call):
    """Serve commands until the coordinator closes the connection (it stops this process then)."""
    conn, item = _link(), S.item
    S.served = True
    cuda = str(getattr(getattr(item, "callspec", None), "params", {}).get("device", "cpu")).startswith("cuda")
    conn.send(("ready", item.nodeid, cuda))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return None
        gc.disable()  # as pytest-benchmark's disable_gc: a collection would land in whichever call it hits
        try:
            if msg[0] == "warmup":
                conn.send(("times", [_timed(timer, call) for _ in range(msg[1])]))
            else:
                conn.send(("block", *_block(timer, call, msg[1], cuda, msg[2])))
        except Exception as e:
            conn.send(("error", item.nodeid, f"{type(e).__name__}: {e}".splitlines()[0]))
        finally:
            gc.enable()


def _timed(timer, call) -> float:
    start = timer()
    call()
    return timer() - start


def _block(timer, call, steps: int, cuda: bool, trace: str | None) -> tuple[float, dict]:
    """`steps` calls under the profiler: wall seconds per call (the device synchronised at both ends), and
    per operator [calls, self microseconds] over the block: CPU operators, or on CUDA the device's kernels
    (a CPU operator's self device time is its kernels' again: counting both would count them twice)."""
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
