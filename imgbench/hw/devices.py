"""Device names -> torch devices: parsing and checking them, availability, synchronisation,
names.

IMGBENCH_FAKE_ACCELERATOR=cuda (or mps), for the test suite only: `available()`, and so
`--device auto`, lists that accelerator too, as on a GPU machine. Nothing else is faked (an explicit
`--device cuda` is still checked against the real GPUs, and a case run on the fake device fails), so
that a test which leaves the device at auto, or assumes no accelerator, fails on a machine without
one instead of only on a GPU machine."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Callable

import torch

from imgbench.core.config import DEVICES as VALID
from imgbench.core.errors import UserError
from imgbench.hw import cgroup


class DeviceError(UserError):
    pass


def usable_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = cgroup.cpus()
    return max(1, min(n, math.ceil(quota))) if quota else n


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


FAKE_ENV = "IMGBENCH_FAKE_ACCELERATOR"
FAKEABLE = ("cuda", "mps")


def _fake() -> str | None:
    """The accelerator IMGBENCH_FAKE_ACCELERATOR names (see the module docstring), or None."""
    name = os.environ.get(FAKE_ENV, "").strip()
    if name and name not in FAKEABLE:
        raise DeviceError(f"{FAKE_ENV}={name!r} is not a fakeable accelerator "
                          f"(valid: {', '.join(FAKEABLE)}, or unset)")
    return name or None


def available() -> list[str]:
    """The CPU plus every accelerator present: `cuda` for one GPU, `cuda:0`... for several."""
    found = ["cpu"]
    n = _gpu_count()
    found += ["cuda"] if n == 1 else [f"cuda:{i}" for i in range(n)]
    if _mps_available():
        found.append("mps")
    if (fake := _fake()) and not any(d.startswith(fake) for d in found):
        found.append(fake)
    return found


def check(name: str) -> str:
    """Return `name` if this machine can run it; otherwise raise DeviceError naming it."""
    have = ", ".join(available())
    if name == "cpu":
        return name
    if name == "mps":
        if not _mps_available():
            raise DeviceError(f"device 'mps' is not available on this machine (available: {have})")
        return name
    m = re.fullmatch(r"cuda(?::(0|[1-9]\d*))?", name)
    if not m:
        raise DeviceError(f"unknown device {name!r} (valid: {VALID})")
    n = _gpu_count()
    if n == 0:
        raise DeviceError(f"device {name!r} is not available on this machine: no CUDA GPU found "
                          f"(available: {have})")
    if m.group(1) is not None and int(m.group(1)) >= n:
        raise DeviceError(f"device {name!r} is not available on this machine: {n} CUDA GPU(s) "
                          f"(available: {have})")
    return name


def parse(spec: str) -> list[str]:
    """A comma list of device names, or `auto`, -> checked device names in order, one per device."""
    out: list[str] = []
    seen: set[tuple[str, int]] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise DeviceError(f"empty device name in {spec!r} (valid: {VALID})")
        for name in available() if part == "auto" else [check(part)]:
            key = _identity(name)
            if key not in seen:  # `cuda` and `cuda:0` are one GPU on a one-GPU machine
                seen.add(key)
                out.append(name)
    return out


def _identity(name: str) -> tuple[str, int]:
    d = torch.device(name)
    return d.type, (d.index if d.index is not None else 0)


def synchronizer(name: str) -> Callable[[], None]:
    """A function that waits until all work queued on the device has finished."""
    device = torch.device(name)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None  # eager CPU ops have finished when they return


def cpu_brand() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(name: str) -> str:
    device = torch.device(name)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_brand()
