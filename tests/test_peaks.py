"""Hardware peaks (imgbench.peaks): calibration matmul and convolution rates, their per-run cache, and the
peak-memory probe of one case."""

from __future__ import annotations

import math
import os

import pytest
import torch

from imgbench import peaks

CLEAR_REFS = "/proc/self/clear_refs"
can_reset_rss = pytest.mark.skipif(not os.access(CLEAR_REFS, os.W_OK),
                                   reason=f"{CLEAR_REFS} is not writable: the peak RSS cannot be reset here")
MB = 1e6


def test_matmul_tflops_cpu():
    rate = peaks.matmul_tflops("cpu", "fp32", budget_s=0.05)
    assert rate > 0 and math.isfinite(rate)
    assert rate < 1000  # a CPU is no exaflop machine: the FLOP count or the timing went wrong


def test_conv_tflops_cpu():
    rate = peaks.conv_tflops("cpu", "fp32", budget_s=0.05)
    assert rate > 0 and math.isfinite(rate)
    assert rate < 1000


def test_best_takes_fastest_after_warmup(monkeypatch):
    calls, syncs = [], []
    times = iter([0.0, 5.0, 10.0, 12.0, 20.0, 21.0])  # three timed calls: 5 s, 2 s, 1 s
    monkeypatch.setattr(peaks.time, "perf_counter", lambda: next(times))
    best = peaks._best(lambda: calls.append(1), lambda: syncs.append(1), budget_s=0.0)
    assert best == 1.0
    assert len(calls) == 4 and len(syncs) == 4  # warm-up plus min_reps, each synchronised


def test_tf32_flag_restored():
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = cuda.allow_tf32, cudnn.allow_tf32
    with peaks.tf32(not saved[0]):
        assert cuda.allow_tf32 is (not saved[0]) and cudnn.allow_tf32 is (not saved[0])
    assert (cuda.allow_tf32, cudnn.allow_tf32) == saved
    with pytest.raises(KeyError), peaks.tf32(True):
        raise KeyError
    assert (cuda.allow_tf32, cudnn.allow_tf32) == saved


class Fake:
    """Stand-ins for the measurements, counting their calls."""

    def __init__(self, monkeypatch, matmul=1.0, conv=2.0, conv_error=None):
        self.calls: list[tuple] = []

        def matmul_tflops(device, precision, budget_s=0.3):
            self.calls.append(("matmul", device, precision))
            return matmul

        def conv_tflops(device, precision, budget_s=0.3):
            self.calls.append(("conv", device, precision))
            if conv_error:
                raise conv_error
            return conv

        def copy_gbps(device, budget_s=0.3):
            self.calls.append(("copy", device))
            return 123.0

        monkeypatch.setattr(peaks, "matmul_tflops", matmul_tflops)
        monkeypatch.setattr(peaks, "conv_tflops", conv_tflops)
        monkeypatch.setattr(peaks, "copy_gbps", copy_gbps)


def test_peaks_measure_once_and_take_the_faster(monkeypatch):
    fake = Fake(monkeypatch, matmul=1.0, conv=2.0)
    p = peaks.Peaks()
    assert p.tflops("cpu", "fp32") == 2.0
    assert fake.calls == [("matmul", "cpu", "fp32"), ("conv", "cpu", "fp32")]
    assert p.tflops("cpu", "fp32") == 2.0
    assert len(fake.calls) == 2  # cached
    p.tflops("cpu", "bf16")  # another precision is another measurement
    assert fake.calls[2:] == [("matmul", "cpu", "bf16"), ("conv", "cpu", "bf16")]
    assert p.measured == {"cpu": {"matmul_tflops": {"fp32": 1.0, "bf16": 1.0},
                                  "conv_tflops": {"fp32": 2.0, "bf16": 2.0}}}
    assert "copy_gbps" not in p.measured["cpu"]


def test_peaks_matmul_faster_than_conv(monkeypatch):
    Fake(monkeypatch, matmul=3.0, conv=2.0)
    assert peaks.Peaks().tflops("cpu", "fp32") == 3.0


def test_peaks_conv_without_kernel_falls_back_to_matmul(monkeypatch):
    fake = Fake(monkeypatch, matmul=1.5, conv_error=RuntimeError("no kernel for this dtype"))
    p = peaks.Peaks()
    assert p.tflops("cpu", "fp16") == 1.5
    assert p.measured["cpu"]["conv_tflops"] == {"fp16": None}
    assert p.tflops("cpu", "fp16") == 1.5
    assert len(fake.calls) == 2  # the failure is cached too


def test_peaks_other_errors_propagate(monkeypatch):
    Fake(monkeypatch, conv_error=MemoryError())
    with pytest.raises(MemoryError):
        peaks.Peaks().tflops("cpu", "fp32")


def test_peaks_copy_bandwidth_once_per_accelerator(monkeypatch):
    fake = Fake(monkeypatch)
    p = peaks.Peaks()
    p.tflops("cuda", "fp32")
    p.tflops("cuda", "bf16")
    p.tflops("cpu", "fp32")
    assert [c for c in fake.calls if c[0] == "copy"] == [("copy", "cuda")]
    assert p.measured["cuda"]["copy_gbps"] == 123.0
    assert "copy_gbps" not in p.measured["cpu"]


FRESH_PROCESS = """
import torch
from imgbench import peaks
MB = 1 << 20
probe = peaks.PeakMemory("cpu")
probe.start()
t = torch.ones(50_000_000)  # 200 MB, every page written
assert t[-1] == 1
first = probe.peak_bytes()
del t
probe.start()
small = torch.ones(1000)
assert small.sum() == 1000
print(first // MB, probe.peak_bytes() // MB)
"""


@can_reset_rss
def test_peak_memory_cpu_sees_an_allocation_and_restarts():
    # A fresh process: memory an earlier test freed but the allocator kept resident would not
    # raise the RSS again (a documented limit of measuring the CPU side by RSS growth).
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = map(int, out.stdout.split())
    assert 150 <= first < 1000
    assert second < 50


@pytest.mark.parametrize("device", ["meta"])
def test_peak_memory_other_devices_none(device):
    probe = peaks.PeakMemory(device)
    probe.start()
    assert probe.peak_bytes() is None


def test_peak_memory_cpu_without_reset_reports_none(monkeypatch):
    """Where the peak RSS cannot be reset (clear_refs not writable), VmHWM still holds the highest RSS of the
    whole process: subtracting the current RSS from it is no measurement of this case."""
    real_open = open

    def no_clear_refs(path, *args, **kwargs):
        if str(path) == CLEAR_REFS:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    t = torch.ones(50_000_000)  # an earlier case's 200 MB, freed before this case starts
    assert t[-1] == 1
    del t
    monkeypatch.setattr(peaks, "open", no_clear_refs, raising=False)
    probe = peaks.PeakMemory("cpu")
    probe.start()
    small = torch.ones(1000)
    assert small.sum() == 1000
    peak = probe.peak_bytes()
    assert peak is None or peak < 50 * MB, f"{peak / MB:.0f} MB reported for a 4 kB case"
