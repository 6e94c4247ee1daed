"""The environment recorded with every run (hardware, versions, numeric flags) and the machine class
(fingerprint) that says which stored runs may be compared with each other."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

import torch

from imgbench.hw import devices, machine_class


def _driver_version() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def fingerprint(env: dict) -> str:
    """Machine class (machine_class.fingerprint): CPU model, family and model ids, cores; each GPU
    model and count."""
    cpu = env["cpu"]
    return machine_class.fingerprint(cpu["brand"], cpu["cores"], cpu.get("ids"),
                                     [g["name"] for g in env["gpus"]])


def _read(getter):
    """A flag as torch reports it; once a process has mixed torch's legacy and new TF32 APIs, the
    legacy getters raise (torch >= 2.9): recorded as such instead of failing the run."""
    try:
        return getter()
    except RuntimeError:
        return "unreadable (legacy and new TF32 APIs mixed)"


def flags() -> dict:
    """The numeric flags as they are now. A run reads them once, before its first case (the
    plugin's session start): a case that sets and restores a flag through the legacy API leaves
    the new API's reading changed ("none" becomes "ieee"), so read at the end they would depend on
    which cases ran. Benchmark cases set their own and record them in extra_info."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    return {
        "tf32_matmul": _read(lambda: matmul.allow_tf32),
        "tf32_cudnn": _read(lambda: cudnn.allow_tf32),
        "cudnn_benchmark": cudnn.benchmark,
        "float32_matmul_precision": _read(torch.get_float32_matmul_precision),
        "fp32_precision_matmul": _read(lambda: getattr(matmul, "fp32_precision", None)),
        "fp32_precision_cudnn": _read(lambda: getattr(cudnn, "fp32_precision", None)),
    }


def environment(threads: int | None = None, numeric: dict | None = None) -> dict:
    """Everything a number depends on besides the code: hardware, versions, numeric flags
    (`numeric`: as read at a run's start; now, if not given)."""
    import torchvision

    gpus = []
    for i in range(devices._gpu_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 2),
                     "capability": f"{p.major}.{p.minor}",
                     "multiprocessors": p.multi_processor_count})
    cudnn = torch.backends.cudnn
    env = {
        # ids recorded even when empty (no /proc/cpuinfo): a reader then knows not to add
        # pytest-benchmark's
        "cpu": {"brand": devices.cpu_brand(), "ids": machine_class.cpu_ids(),
                "cores": devices.usable_cores(), "logical_cpus": os.cpu_count(),
                "machine": platform.machine()},
        "threads": torch.get_num_threads() if threads is None else threads,
        "interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver": _driver_version() if gpus else None,  # None where nvidia-smi is missing
        "mps": devices._mps_available(),
        "flags": flags() if numeric is None else numeric,
    }
    env["fingerprint"] = fingerprint(env)
    return env


def describe(env: dict) -> str:
    """The environment as lines of text, for `imgbench env`."""
    cpu = env["cpu"]
    ids = f", family {cpu['ids']['family']} model {cpu['ids']['model']}" if cpu.get("ids") else ""
    lines = [
        f"fingerprint  {env['fingerprint']}",
        f"cpu          {cpu['brand']}{ids} ({cpu['cores']} usable cores, "
        f"{cpu['logical_cpus']} logical)",
        f"threads      {env['threads']} (interop {env['interop_threads']})",
        f"python       {env['python']}",
        f"torch        {env['torch']} (CUDA {env['cuda'] or '-'}, cuDNN {env['cudnn'] or '-'})",
        f"torchvision  {env['torchvision']}",
    ]
    for g in env["gpus"]:
        lines.append(f"gpu {g['index']}        {g['name']}, {g['memory_gib']} GiB, "
                     f"sm {g['capability']}")
    lines.append(f"driver       {env['driver'] or 'unknown'}" if env["gpus"]
                 else "gpu          none")
    lines.append("flags        " + ", ".join(f"{k}={v}" for k, v in env["flags"].items()))
    lines.append(f"devices      {', '.join(devices.available())}")
    return "\n".join(lines)
