"""Shared memory for DataLoader workers: what they need, what /dev/shm has, and the one line that
says a run will not fit. Standard library only, so the plugin can ask before a case builds
anything."""

from __future__ import annotations

import math
import os

MARGIN = 2  # free space asked for per byte of the estimate: workers overlap batches, freeing lags


def need_bytes(workers: int, batch_size: int, image_shape: tuple[int, ...], prefetch: int = 2,
               dtype_bytes: int = 4) -> int:
    """Bytes the workers keep in shared memory at once.

    An estimate of the steady state: each worker has up to `prefetch` batches ready (DataLoader's
    prefetch_factor, 2 by default), each collated into one shared tensor of `batch_size` images of
    `image_shape` (float32 after the transform). Labels, and the pinned copies the main process
    makes (page-locked host memory, not /dev/shm), are left out; hence MARGIN in `shortfall`."""
    return workers * prefetch * batch_size * math.prod(image_shape) * dtype_bytes


def free_bytes(path: str = "/dev/shm") -> int | None:
    """Bytes an unprivileged process may still write under `path`; None if there is no such
    folder."""
    try:
        st = os.statvfs(path)
    except FileNotFoundError:
        return None
    return st.f_bavail * st.f_frsize


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def shortfall(workers: int, batch_size: int, image_shape: tuple[int, ...], prefetch: int = 2,
              dtype_bytes: int = 4, path: str = "/dev/shm") -> str | None:
    """Why these loader workers would crash for want of shared memory ("Bus error"), in one line;
    None when there are no workers, when `path` has MARGIN times their need, or when there is no
    `path`."""
    if workers == 0:
        return None
    free = free_bytes(path)
    need = need_bytes(workers, batch_size, image_shape, prefetch, dtype_bytes)
    if free is None or free >= MARGIN * need:
        return None
    shape = "x".join(map(str, image_shape))
    return (f"{path} has {_mib(free)} free; {workers} loader workers at batch {batch_size} of "
            f"{shape} need about {_mib(need)} (run with a larger {path}, e.g. "
            f"docker --shm-size={_suggest_gib(need)}g)")


def _suggest_gib(need: int) -> int:
    """Whole GiB holding MARGIN times the need."""
    return max(1, math.ceil(MARGIN * need / 2**30))
