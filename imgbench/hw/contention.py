"""The contention sentinel: how much of the machine other processes took while a case was timed.

With another CPU-bound process on a 2-core box, multi-threaded cases jump to multiples of the
scheduler tick and every round is hit alike, so the interval is tight and wrong. Here the CPU time
the whole machine spent (Linux `/proc/stat`, steal included) is compared with what our own process
tree spent (`/proc/<pid>/stat` of the root and its descendants, reaped children included): the rest
is foreign. CPU pressure (`/proc/pressure/cpu`, PSI) and the load average are recorded beside it.
Elsewhere (no /proc) nothing is measured and the record says so. No torch here.

Under a cgroup CPU quota (a container on a larger host) /proc/stat and os.cpu_count() are the
host's: other tenants' work would flag every case, and the capacity would be the host's CPUs. There
the cgroup is measured instead (hw.cgroup): busy is its CPU time, capacity its quota, and the record
says "source": "cgroup" (else "machine"), the quota's "cpus", and the share of time "throttled"."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from imgbench.hw import cgroup

PROC = Path("/proc")
# other processes using more than this share of all CPUs: no verdict on the case
FOREIGN_LIMIT = 0.10
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# The machine's and the tree's counters are read at slightly different moments and each rounds to a
# tick: a quiet 0.05 s window on 2 CPUs read 9% foreign from this alone, so flag() allows for it.
JITTER_TICKS = 2
# CPU time the quota held back, per second of the case (cgroup throttled_usec, which the kernel sums
# over the CPUs it stalled). A throttled case runs in bursts of the quota period (100 ms by
# default): its work stops until the next period, so its times jump by whole periods and say more
# about the quota than about the code: no verdict beyond this.
THROTTLE_LIMIT = 0.10


@dataclass(frozen=True)
class Snapshot:
    wall: float               # time.monotonic()
    busy: int | None          # machine CPU ticks not idle, steal included (None: no /proc/stat)
    steal: int | None
    own: int | None           # CPU ticks of our process tree, reaped children included
    psi_some_us: int | None   # /proc/pressure/cpu "some" total (None where PSI is missing)
    cgroup: cgroup.Usage | None = None  # the cgroup under a CPU quota (None: no quota)


def _cpu_line() -> list[int] | None:
    try:
        with open(PROC / "stat") as f:
            first = f.readline().split()
    except OSError:
        return None
    return [int(x) for x in first[1:]] if first and first[0] == "cpu" else None


def _tree_ticks(root: int) -> int | None:
    """utime + stime + cutime + cstime of `root` and every descendant alive now."""
    stats = {}
    try:
        pids = [p.name for p in PROC.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            text = (PROC / pid / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid ...
        stats[int(pid)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


def _psi_some() -> int | None:
    try:
        for line in (PROC / "pressure" / "cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def snapshot(root: int | None = None) -> Snapshot:
    cpu = _cpu_line()
    busy = sum(cpu[i] for i in (0, 1, 2, 5, 6, 7) if i < len(cpu)) if cpu else None
    steal = cpu[7] if cpu and len(cpu) > 7 else None
    return Snapshot(time.monotonic(), busy, steal, _tree_ticks(root or os.getpid()), _psi_some(),
                    cgroup.usage())


def between(a: Snapshot, b: Snapshot) -> dict:
    """What happened on the machine from `a` to `b`: shares of all CPUs' time (foreign_cpu: other
    processes and the hypervisor's steal; steal alone), the share of wall time some task waited for
    a CPU (psi_some), the 1-minute load average at `b`, and what could not be measured here. Under a
    CPU quota foreign_cpu is a share of the quota instead (source "cgroup", module docstring)."""
    seconds = max(b.wall - a.wall, 1e-9)
    capacity = seconds * TICK * (os.cpu_count() or 1)
    out: dict = {"seconds": round(seconds, 3)}
    if not _from_cgroup(a, b, seconds, out) and None not in (a.busy, b.busy, a.own, b.own):
        out["source"] = "machine"
        out["foreign_cpu"] = round(max(0.0, ((b.busy - a.busy) - (b.own - a.own)) / capacity), 4)
    if None not in (a.steal, b.steal):
        out["steal"] = round((b.steal - a.steal) / capacity, 4)
    if None not in (a.psi_some_us, b.psi_some_us):
        out["psi_some"] = round((b.psi_some_us - a.psi_some_us) / (seconds * 1e6), 4)
    # no load average (Windows has no os.getloadavg)
    with contextlib.suppress(OSError, AttributeError):
        out["load1"] = round(os.getloadavg()[0], 2)
    missing = [k for k in ("foreign_cpu", "steal", "psi_some", "load1") if k not in out]
    if missing:
        out["unmeasured"] = missing
    return out


def _from_cgroup(a: Snapshot, b: Snapshot, seconds: float, out: dict) -> bool:
    """The foreign share of the cgroup's CPU quota and its throttled time per second, into `out`;
    False where both ends did not read the same cgroup (and our tree) alike."""
    ca, cb = a.cgroup, b.cgroup
    if ca is None or cb is None or ca.where != cb.where or None in (a.own, b.own):
        return False
    used_s = (cb.usage_us - ca.usage_us) * 1e-6 - (b.own - a.own) / TICK
    out.update(source="cgroup", cpus=round(cb.cpus, 3),
               foreign_cpu=round(max(0.0, used_s / (seconds * cb.cpus)), 4))
    if None not in (ca.throttled_us, cb.throttled_us):
        out["throttled"] = round(max(0, cb.throttled_us - ca.throttled_us) * 1e-6 / seconds, 4)
    return True


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def flag(record: dict | None) -> str | None:
    """Why a case's numbers cannot be judged ("measured under contention: ..."), or None."""
    record = record or {}
    share, seconds = record.get("foreign_cpu"), record.get("seconds")
    if seconds == 0:  # under the record's millisecond: one tick of anyone reads as a whole CPU
        return None
    # a cgroup record's capacity is its quota; older and machine records: this machine's CPUs
    cpus = record["cpus"] if _number(record.get("cpus")) and record["cpus"] > 0 else None
    jitter = JITTER_TICKS / (seconds * TICK * (cpus or os.cpu_count() or 1)) if seconds else 0.0
    if share is not None and share - jitter > FOREIGN_LIMIT:
        of = f"the cgroup's CPU quota ({cpus:g} CPUs)" if cpus else "the CPUs"
        return (f"measured under contention: other processes used {share:.0%} of {of} "
                f"(limit {FOREIGN_LIMIT:.0%})")
    throttled = record.get("throttled")
    if _number(throttled) and throttled > THROTTLE_LIMIT:
        return (f"measured under contention: the cgroup's CPU quota throttled it for "
                f"{throttled:.2f} CPU-s per second (limit {THROTTLE_LIMIT:.2f})")
    return None


def busy(seconds: float = 1.0) -> str | None:
    """A warning when other processes are using the CPUs now (sampled for `seconds`), else None."""
    a = snapshot()
    time.sleep(seconds)
    why = flag(between(a, snapshot()))
    return None if why is None else why.replace("measured under contention", "the machine is busy")
