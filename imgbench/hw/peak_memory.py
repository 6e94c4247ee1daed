"""Each case's peak memory: the CUDA caching allocator's peak, or on the CPU the growth of the
process's peak resident set size over the case (Linux: VmHWM, reset through
/proc/self/clear_refs)."""

from __future__ import annotations

import torch


class PeakMemory:
    """Peak memory of one case: allocator peak on CUDA, growth of the process's peak RSS on the
    CPU."""

    def __init__(self, device: str):
        self.device = torch.device(device)
        self.base = 0

    def start(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type == "cpu":
            # Without a reset VmHWM is the whole process's peak: no figure beats a wrong one.
            self.base = _rss("VmRSS") if _reset_peak_rss() else None

    def peak_bytes(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
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
