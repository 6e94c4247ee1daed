"""The per-case limit past which a case has hung: it fails with one line naming it and the run goes
on. A fixed limit is a property of one machine: on a 2-core AMD EPYC without AVX-512 the quick
reference epoch took 338 s with a cold compile cache (2026-12-06), past the quick profile's 300 s,
while the machine it was set on ran it in under a minute. So, unless --case-timeout names the limit,
a case may run config.HANG_FACTOR times what the run expects of it (the previous run's seconds
where learned, else the cost model's), and never less than the profile's limit."""

from __future__ import annotations

import signal
import threading

import pytest

from imgbench.bench import estimate
from imgbench.core import config
from imgbench.core.options import Settings

EXPECTED = pytest.StashKey[dict]()  # node id -> the seconds the run's estimate expects of it


class CaseTimeout(BaseException):
    """A case ran past its limit. A BaseException, so that no `except Exception` in a workload or a
    library swallows it on its way out of the case."""


def limit_s(s: Settings, expected: float) -> tuple[float, str]:
    """The case's limit in seconds, and where it came from (for the line that names a hung case)."""
    if s.case_timeout is not None:
        return s.case_timeout, "--case-timeout"
    scaled, other = config.HANG_FACTOR * expected, "--case-timeout sets another"
    if scaled <= s.profile.case_timeout_s:
        return s.profile.case_timeout_s, f"the {s.profile.name} profile's; {other}"
    return scaled, f"{config.HANG_FACTOR:g}x its estimate of {expected:.0f} s; {other}"


def expected_s(item, s: Settings, params: dict) -> float:
    """What the run's estimate expects of this case (stashed at collection), else the cost
    model's."""
    known = item.config.stash.get(EXPECTED, {})
    if item.nodeid in known:
        return known[item.nodeid]
    return estimate.case_seconds(item.path.stem.removeprefix("bench_"), item.originalname, params,
                                 s)


def run_limited(item, limit: float, why: str):
    """A generator for a pytest_runtest_protocol wrapper: the case (setup, call and teardown) under
    `limit` seconds. SIGALRM reaches Python code (loops, waits, sleeps, a torchrun launch); a case
    stuck inside one C call (a kernel that never returns) is not interruptible from Python and must
    be stopped from outside, as .ci/gpu-check does with `timeout` around each family."""
    if (not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        return (yield)

    def expired(signum, frame):
        raise CaseTimeout(f"{item.nodeid} did not end within the case limit of {limit:g} s "
                          f"({why}); stopped as hung")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
