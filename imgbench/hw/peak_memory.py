"""Each case's peak memory: the growth over the case of the CUDA caching allocator's peak, or on
the CPU of the process's peak resident set size (Linux: VmHWM, reset through
/proc/self/clear_refs)."""

from __future__ import annotations

import gc

import torch


class PeakMemory:
    """Peak memory of one case, as growth over what the process held when the case started: on
    CUDA the allocator's peak less its allocation then (what earlier cases left, cuBLAS workspaces
    and tensors of a failed case not yet collected, is not the case's), after a collection; on the
    CPU the growth of the process's peak RSS."""

    def __init__(self, device: str):
        self.device = torch.device(device)
        self.base = 0

    def start(self):
        if self.device.type == "cuda":
            gc.collect()  # an earlier case's tensors still held by a reference cycle
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type == "cpu":
            # Without a reset VmHWM is the whole process's peak: no figure beats a wrong one.
            self.base = _rss("VmRSS") if _reset_peak_rss() else None

    def peak_bytes(self) -> int | None:
        if self.device.type == "cuda":
            return max(0, torch.cuda.max_memory_allocated(self.device) - self.base)
        if self.device.type == "cpu":
            peak = _rss("VmHWM")
            return None if peak is None or self.base is None else max(0, peak - self.base)
        return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 resets the process's peak resident set size (VmHWM) to its current size."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _rss(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
