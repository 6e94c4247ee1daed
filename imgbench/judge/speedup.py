"""GPU-over-CPU speedup from stored runs.

speedup = median CPU time / median accelerator time of the same case (test, model, batch size and
every axis equal; only the device differs), taken within one run, or, where a run timed only one
device, from the nearest-in-time run of the same machine class that timed the other. The interval is
compare's (stats.product_interval: each log median with an autocorrelation-aware standard error;
None where a run stored no rounds); a bootstrap of rounds as independent undercovered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from imgbench.core.config import ALPHA
from imgbench.judge import stats
from imgbench.runs.record import Record


@dataclass(frozen=True)
class Speedup:
    case: str                      # the case without its device, e.g.
                                   # "train_step[batch_size=128,model=kerascnn]"
    test: str
    key: tuple                     # Record.device_free_key
    device: str                    # the accelerator
    cpu: Record
    accel: Record
    speedup: float
    ci: tuple[float, float] | None
    same_run: bool                 # False: the CPU time came from the nearest run of the same
                                   # machine

    @property
    def datetime(self) -> str:
        return self.accel.datetime


def label(key: tuple) -> str:
    test, params = key
    return f"{test}[{','.join(f'{k}={v}' for k, v in params)}]"


def is_cpu(record: Record) -> bool:
    return str(record.params.get("device", "cpu")) == "cpu"


def pair(cpu: Record, accel: Record, alpha: float = ALPHA, same_run: bool = True) -> Speedup:
    ci = (stats.product_interval([cpu.data], [accel.data], alpha) if cpu.data and accel.data
          else None)
    return Speedup(label(accel.device_free_key), accel.test, accel.device_free_key,
                   str(accel.params["device"]), cpu, accel, cpu.median / accel.median, ci, same_run)


def within(run: list[Record], alpha: float = ALPHA) -> list[Speedup]:
    """Every accelerator case of one run paired with the same case on the CPU in that run."""
    cpus = {r.device_free_key: r for r in run if is_cpu(r)}
    return [pair(cpus[r.device_free_key], r, alpha) for r in run
            if not is_cpu(r) and r.device_free_key in cpus]


def _when(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def series(runs: list[list[Record]], alpha: float = ALPHA) -> list[Speedup]:
    """Speedups of every run that timed an accelerator, oldest first. A case whose CPU time is not
    in the same run takes it from the run of the same machine class and profile nearest in time that
    has it."""
    cpu_by_machine: dict[tuple, list[Record]] = {}
    for run in runs:
        for r in run:
            if is_cpu(r):
                cpu_by_machine.setdefault((r.fingerprint, r.conditions, r.device_free_key),
                                          []).append(r)
    out = []
    for run in runs:
        local = {r.device_free_key: r for r in run if is_cpu(r)}
        for r in run:
            if is_cpu(r):
                continue
            if r.device_free_key in local:
                out.append(pair(local[r.device_free_key], r, alpha))
                continue
            others = cpu_by_machine.get((r.fingerprint, r.conditions, r.device_free_key))
            if others:
                nearest = min(others, key=lambda c: abs(_when(c.datetime) - _when(r.datetime)))
                out.append(pair(nearest, r, alpha, same_run=False))
    return sorted(out, key=lambda s: (_when(s.datetime), s.datetime, s.case))
