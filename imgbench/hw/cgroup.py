"""The cgroup v2 CPU quota this process runs under (a container's `--cpus`), and that cgroup's CPU
use: read by devices.usable_cores and the contention sentinel, the one place that reads them.

In a container `/proc/stat` and `os.cpu_count()` are the host's, so a quota of 2 CPUs on a 64-CPU
host is invisible there. The quota is `cpu.max` ("LIMIT PERIOD" in microseconds, or "max PERIOD")
of the process's own cgroup (`/proc/self/cgroup`, line "0::PATH") or of one above it; the smallest
binds. No quota, cgroup v1 only, or files that cannot be read or parsed: None, never an error.
Standard library only (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")        # where cgroup v2 is mounted
SELF = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Usage:
    where: str                 # the cgroup folder whose quota binds
    cpus: float                # the quota in CPUs (limit / period)
    usage_us: int              # cpu.stat usage_usec: CPU time of every process in it
    throttled_us: int | None   # cpu.stat throttled_usec (None where the kernel does not give it)


def _chain() -> list[Path]:
    """Our own cgroup's folder and those above it up to the mount (the mount alone where
    /proc/self/cgroup names no v2 cgroup we can place under it)."""
    try:
        lines = SELF.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    rel = next((line[3:].strip() for line in lines if line.startswith("0::")), "/")
    parts = [p for p in rel.split("/") if p]
    if ".." in parts:  # a cgroup outside our namespace's view: only the mount is ours to read
        parts = []
    return [ROOT.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _limit(folder: Path) -> float | None:
    try:
        limit, period = (folder / "cpu.max").read_text().split()[:2]
        cpus = int(limit) / int(period) if limit != "max" else None
    except (OSError, UnicodeDecodeError, ValueError, ZeroDivisionError):
        return None
    return cpus if cpus is not None and cpus > 0 else None


def quota() -> tuple[Path, float] | None:
    """The cgroup folder whose CPU quota binds this process and that quota in CPUs, or None."""
    found = [(cpus, folder) for folder in _chain() if (cpus := _limit(folder)) is not None]
    if not found:
        return None
    cpus, folder = min(found, key=lambda f: f[0])
    return folder, cpus


def cpus() -> float | None:
    """The CPU quota in CPUs (1.5 for `--cpus 1.5`), or None without one."""
    q = quota()
    return q[1] if q else None


def usage() -> Usage | None:
    """CPU time used and throttled so far in the cgroup whose quota binds us; None without a quota
    or where its cpu.stat cannot be read."""
    q = quota()
    if q is None:
        return None
    folder, quota_cpus = q
    stat = {}
    try:
        for line in (folder / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            stat[key] = int(value)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if "usage_usec" not in stat:
        return None
    return Usage(str(folder), quota_cpus, stat["usage_usec"], stat.get("throttled_usec"))
