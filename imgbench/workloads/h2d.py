"""The h2d family's copies: host <-> device into a buffer allocated once, pageable or pinned host
memory, blocking or not, one CIFAR batch to 256 MiB, uint8 or float32; and why a device has none."""

from __future__ import annotations

import torch

from imgbench.hw import devices
from imgbench.workloads import steps

CIFAR_BATCH = 128 * 3 * 32 * 32  # elements of one uint8 CIFAR-10 batch of 128
# bytes; cifar_batch: CIFAR_BATCH items
SIZES = {"cifar_batch": None, "16MiB": 16 << 20, "256MiB": 256 << 20}
DTYPES = {"uint8": torch.uint8, "float32": torch.float32}


def no_accelerator(device: str) -> str | None:
    """Why there is no host<->device copy to time on `device` (None: there is)."""
    if device != "cpu":
        return None
    if any(d != "cpu" for d in devices.available()):
        return "cpu is the host: no copy to time"
    return "no accelerator on this machine: host<->device copies need cuda or mps"


def unsupported(device: str, memory: str = "pageable") -> str | None:
    """Why this copy cannot run on `device`, or None."""
    if reason := no_accelerator(device):
        return reason
    if memory == "pinned" and not device.startswith("cuda"):
        return f"pinned host memory is a CUDA feature; {device} has none"
    return None


def host_tensor(numel: int, dtype: torch.dtype, pinned: bool) -> torch.Tensor:
    t = torch.empty(numel, dtype=dtype, pin_memory=pinned)
    return t.random_(0, 256) if dtype == torch.uint8 else t.normal_()  # never zeros


def numel(size: str, dtype: torch.dtype) -> int:
    nbytes = SIZES[size]
    return CIFAR_BATCH if nbytes is None else nbytes // dtype.itemsize


def workload(size: str, dtype: str, memory: str, mode: str, direction: str,
             device: str) -> steps.Workload:
    """One copy of `size` (a SIZES name) of `dtype` (a DTYPES name), `h2d` or `d2h`, between a host
    tensor in `memory` (pageable or pinned) and a device buffer, `mode` blocking or non_blocking."""
    dt = DTYPES[dtype]
    n = numel(size, dt)
    host, dev = host_tensor(n, dt, memory == "pinned"), torch.empty(n, dtype=dt, device=device)
    src, dst = (host, dev) if direction == "h2d" else (dev, host)
    w = steps.copy(src, dst, non_blocking=mode == "non_blocking")
    w.info = {"direction": direction, "memory": memory, "dtype": dtype,
              "device_name": devices.device_name(device), **w.info}
    return w

