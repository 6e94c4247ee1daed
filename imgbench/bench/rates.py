"""Rates from a median: what a workload did per call (images, bytes, FLOPs) over the median time of
a call, and how far that is from the device's measured peak."""

from __future__ import annotations

from imgbench.workloads.steps import Workload


def rates(w: Workload, median: float, peak_tflops: float | None = None) -> dict:
    """images/s, GB/s, TFLOP/s and % of peak, each where the workload counts what it needs."""
    out = {}
    if w.images:
        out["images_per_s"] = w.images / median
    if w.bytes:
        out["bytes"], out["gb_per_s"] = w.bytes, w.bytes / median / 1e9
    if w.flops:
        tflops = w.flops / median / 1e12
        out.update(flops=w.flops, tflop_per_s=tflops, peak_tflop_per_s=peak_tflops,
                   pct_of_peak=100 * tflops / peak_tflops if peak_tflops else None)
    return out


def compile_seconds(first_call: float, median: float) -> float:
    """The first call's excess over a timed one: the time torch.compile took."""
    return max(0.0, first_call - median)
