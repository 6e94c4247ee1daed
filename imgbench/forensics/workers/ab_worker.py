"""The A/B worker: a pytest plugin that `imgbench ab` loads into each side's own tree, so that each
version's benches build their cases their own way, and the coordinator times them burst by burst.

It is copied beside the run under its own module name and uses only the standard library and pytest,
so it runs trees that predate it (bisection needs that). In the worker process it:
1. sends the coordinator the collected cases (node id, test function, params) and runs only those
   the coordinator names back, in its order;
2. at each case's `benchmark(...)` / `benchmark.pedantic(...)` call takes the timed function and the
   case's own timer (which synchronises the device) instead of pytest-benchmark's rounds, says
   "ready", and serves bursts on command: n timed calls, each optionally followed (after the timer's
   device sync) by `extra` seconds of busy work inside the clock -- the injected slowdown of
   `imgbench gate-check`; then "next" lets the test go on to its end;
3. says when a named case ended without reaching its benchmark call (skipped, failed).

A case timed elsewhere and replayed through its timer (`benchmark.pedantic(timer.play)`, the ddp
family) is served by running the test body again for each call: its sample is what it replays."""

from __future__ import annotations

import gc
import json
import os
import signal
import statistics
import time
from multiprocessing.connection import Client

import pytest

ADDRESS, KEY = "IMGBENCH_AB_ADDRESS", "IMGBENCH_AB_KEY"
GPU_SHARE = "IMGBENCH_AB_GPU_SHARE"  # set by the coordinator (forensics/worker.py says why)


class WorkerState:
    """This worker process's state, one per process: the coordinator's connection and the case
    now."""

    conn = None
    item = None        # the item running now
    served = False     # whether it reached its benchmark call
    ended = ""         # why it ended otherwise
    replaying = None   # inside a rerun of a replayed case's body: the list its durations go to
    extra = 0.0        # the injected slowdown of the burst being served
    serve = None       # what serves a case at its benchmark call: _serve, or the explain worker's


state = WorkerState()


class Channel:
    """The coordinator's connection, carrying JSON: plain data, which the coordinator only reads
    (a pickle from this process, where the bench's own code runs, could make it run anything)."""

    def __init__(self, conn):
        self.conn = conn

    def send(self, msg):
        self.conn.send_bytes(json.dumps(msg).encode())

    def recv(self):
        return json.loads(self.conn.recv_bytes())


def link():
    if state.conn is None:
        state.conn = Channel(Client(os.environ[ADDRESS], authkey=bytes.fromhex(os.environ[KEY])))
    return state.conn


def _case(item) -> tuple[str, str, dict]:
    spec = getattr(item, "callspec", None)
    params = {k: v if isinstance(v, (int, str)) else repr(v)
              for k, v in (spec.params if spec else {}).items()}
    return item.nodeid, getattr(item, "originalname", item.name), params


# after the tree's own plugin has deselected what its options exclude
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    conn = link()
    conn.send(("cases", [_case(i) for i in items]))
    wanted = conn.recv()
    by_id = {i.nodeid: i for i in items}
    keep = [by_id[n] for n in wanted]
    rest = [i for i in items if i.nodeid not in set(wanted)]
    if rest:
        config.hook.pytest_deselected(items=rest)
    items[:] = keep


def pytest_configure(config):
    from pytest_benchmark.fixture import BenchmarkFixture

    BenchmarkFixture.__call__ = _called
    BenchmarkFixture.pedantic = _pedantic
    if share := os.environ.get(GPU_SHARE):
        share_gpus(float(share))


def share_gpus(share: float, torch=None):
    """At most `share` of every visible GPU's memory for this process (the other worker of the pair
    has the rest); nothing where torch sees no CUDA GPU. torch is imported here only: the plugin
    runs trees that predate it, all of which have torch."""
    if torch is None:
        import torch
    if not torch.cuda.is_available():
        return
    for i in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(share, i)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    state.item, state.served, state.ended = item, False, ""
    try:
        return (yield)
    finally:
        if not state.served:
            link().send(("ended", item.nodeid, state.ended or "ended before its benchmark call"))
        state.item = None


def pytest_runtest_logreport(report):
    if not (report.failed or report.skipped) or state.ended:
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        state.ended = report.longrepr[2]  # "Skipped: <reason>"
    else:
        last = str(report.longreprtext).strip().splitlines()[-1:] or [report.outcome]
        state.ended = f"failed: {last[0]}"


def _called(self, function_to_benchmark, *args, **kwargs):
    self._mode = "benchmark(...)"  # used: pytest-benchmark would warn otherwise
    return state.serve(self._timer, lambda: function_to_benchmark(*args, **kwargs))


def _pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1,
              warmup_rounds=0, iterations=1):
    kwargs = kwargs or {}
    self._mode = "benchmark.pedantic(...)"
    # replayed: the work happened before this call
    if getattr(target, "__self__", None) is self._timer:
        durations = [timed(self._timer, target, state.extra) for _ in range(rounds)]
        if state.replaying is not None:
            state.replaying.extend(durations)
            return None
        return state.serve(self._timer, None)

    def call():
        a, k = args, kwargs
        if setup is not None:
            a, k = setup() or (args, kwargs)
        out = target(*a, **k)
        if teardown is not None:
            teardown(*a, **k)
        return out
    return state.serve(self._timer, call)


def _spin(seconds: float):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def timed(timer, fn, extra: float) -> float:
    start = timer()
    fn()
    if extra:
        timer()  # the device's work is done: the slowdown comes after it, inside the clock
        _spin(extra)
    return timer() - start


def _serve(timer, call):
    """Serve bursts of `call` (None: rerun the replayed test body) until the coordinator says next.
    A burst that raises is reported, and the error raised in the test once the coordinator lets
    go. The tree's per-case limit (an interval timer, where its plugin set one) applies per burst,
    not to the case's whole A/B: paused while the coordinator decides, restarted for each burst
    and for the test's end. A burst past it is a failed case, and the A/B goes on."""
    conn, item = link(), state.item
    if state.served:
        raise RuntimeError("the benchmark fixture was used twice in one test: the A/B times one "
                           "call per case")
    state.served = True
    limit = _pause()
    conn.send(("ready", item.nodeid))
    failed = None
    while True:
        msg = conn.recv()
        if msg[0] == "next":
            _arm(limit)
            if failed is not None:
                raise failed
            return None
        _, calls, extra = msg
        # as pytest-benchmark's disable_gc: a collection would land in whichever call it hits
        gc.disable()
        try:
            _arm(limit)
            times = _burst(timer, call, item, calls, extra)
            _pause()
            conn.send(("times", times, call is None))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # the plugin's case limit is a BaseException
            _pause()
            failed = e
            conn.send(("error", item.nodeid, f"{type(e).__name__}: {e}".splitlines()[0]))
        finally:
            gc.enable()


def _pause() -> float:
    """Stop the interval timer; the seconds it had left (0: none was set)."""
    return signal.setitimer(signal.ITIMER_REAL, 0)[0] if hasattr(signal, "setitimer") else 0.0


def _arm(seconds: float):
    if seconds:
        signal.setitimer(signal.ITIMER_REAL, seconds)


state.serve = _serve


def _burst(timer, call, item, calls: int, extra: float) -> list[float]:
    if call is not None:
        return [timed(timer, call, extra) for _ in range(calls)]
    out = []
    try:
        for _ in range(calls):  # one value per rerun: the median epoch it replayed
            # the body's own pedantic call fills it (see _pedantic)
            state.replaying, state.extra = [], extra
            item.runtest()
            out.append(statistics.median(state.replaying))
    finally:
        state.replaying, state.extra = None, 0.0
    return out


def pytest_sessionfinish(session):
    if state.conn is not None:
        state.conn.send(("finished",))
