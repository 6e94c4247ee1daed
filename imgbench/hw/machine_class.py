"""The machine class (fingerprint): which stored runs may be compared on absolute times. It names
the CPU model, its vendor family and model ids (a masked name such as "AMD EPYC" covers every EPYC
generation; the ids do not), the usable cores, and each GPU model with its count. Safe as a folder
name, e.g. AMD_EPYC-f25m17-2c or Intel_R_Xeon_R_Platinum_8375C-f6m106-16c-NVIDIA_H100_80GB_HBM3-x2.
No torch here: runs recorded before the ids were part of it get them from pytest-benchmark's own CPU
record (machine_info.cpu, py-cpuinfo's family and model)."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def cpu_ids(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """{"family": int, "model": int} of the first CPU, from /proc/cpuinfo; {} where it has none
    (macOS, arm)."""
    ids = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("cpu family", "model") and value.strip().isdigit():
                    ids.setdefault("family" if key == "cpu family" else "model", int(value))
                if not line.strip() and ids:
                    break  # the first CPU's block ends
    except OSError:
        pass
    return ids if len(ids) == 2 else {}


def fingerprint(brand: str, cores: int, ids: dict | None = None, gpu_names: list[str] = ()) -> str:
    fp = slug(brand)
    if ids and "family" in ids and "model" in ids:
        fp += f"-f{ids['family']}m{ids['model']}"
    fp += f"-{cores}c"
    for name in dict.fromkeys(gpu_names):
        fp += f"-{slug(name)}-x{list(gpu_names).count(name)}"
    return fp


def of_run(machine_info: dict) -> str | None:
    """The machine class of a stored run. A run recorded before the CPU ids were part of it gets
    them from pytest-benchmark's machine_info.cpu when that has them, so old and new runs of one
    machine still match; otherwise its stored fingerprint stands."""
    stored = machine_info.get("fingerprint")
    env = machine_info.get("imgbench")
    cpu = env.get("cpu") if isinstance(env, dict) else None
    if not isinstance(cpu, dict) or "ids" in cpu or not isinstance(stored, str):
        return stored  # recorded with its ids (none, on a machine that shows none): as stored
    bench_cpu = machine_info.get("cpu") if isinstance(machine_info.get("cpu"), dict) else {}
    ids = {k: bench_cpu.get(k) for k in ("family", "model")}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ids.values()):
        return stored
    try:
        gpus = [g["name"] for g in env.get("gpus", [])]
        old = fingerprint(cpu["brand"], cpu["cores"], None, gpus)
    except (KeyError, TypeError):
        return stored
    return fingerprint(cpu["brand"], cpu["cores"], ids, gpus) if old == stored else stored
