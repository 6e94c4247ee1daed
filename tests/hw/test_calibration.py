"""Hardware peaks (imgbench.peaks): calibration matmul and convolution rates, their per-run cache,
and the peak-memory probe of one case."""

from __future__ import annotations

import pytest
import torch

from imgbench.hw import calibration, peak_memory, timing
from tests.helpers import CLEAR_REFS, can_reset_rss


class Clock:
    """perf_counter stand-in that reads the times it is given, and the log of what happened in
    order."""

    def __init__(self, times):
        self.times, self.log = iter(times), []

    def perf_counter(self):
        self.log.append("clock")
        return next(self.times)


def test_best_takes_fastest_after_warmup(monkeypatch):
    clock = Clock([0.0, 5.0, 10.0, 12.0, 20.0, 21.0])  # three timed calls: 5 s, 2 s, 1 s
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    best = calibration._best(lambda: clock.log.append("call"), lambda: clock.log.append("sync"),
                             budget_s=0.0)
    assert best == 1.0
    # one untimed warm-up call, then min_reps calls each between a synchronised start and end
    assert clock.log == ["call", *["sync", "clock", "call", "sync", "clock"] * 3]


def test_best_keeps_timing_until_the_budget_is_spent(monkeypatch):
    clock = Clock([float(t) for t in range(20)])  # every timed call: 1 s
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    assert calibration._best(lambda: None, lambda: None, budget_s=4.5) == 1.0
    assert clock.log == ["clock"] * 2 * 5  # 5 calls: the fifth brings the time spent past 4.5 s


def one_call(seconds, seen):
    """A stand-in for _best: calls the calibration once (its result kept) and says it took
    `seconds`."""
    def best(fn, sync, budget_s, min_reps=3):
        seen.append((fn(), torch.backends.cuda.matmul.allow_tf32))
        return seconds
    return best


@pytest.mark.parametrize("precision, dtype, tf32", [("fp32", torch.float32, False),
                                                    ("tf32", torch.float32, True),
                                                    ("bf16", torch.bfloat16, False)])
def test_matmul_rate_is_the_flops_of_the_product_it_timed(monkeypatch, precision, dtype, tf32):
    seen = []
    monkeypatch.setattr(calibration, "_best", one_call(0.5, seen))
    rate = calibration.matmul_tflops("cpu", precision)
    ((out, tf32_on),) = seen
    n = calibration.MATMUL_N["cpu"]
    # random data, not zeros
    assert out.shape == (n, n) and out.dtype == dtype and out.abs().sum() > 0
    assert tf32_on is tf32
    assert rate == pytest.approx(2 * n**3 / 0.5 / 1e12)


def test_conv_rate_is_the_flops_of_the_convolution_it_timed(monkeypatch):
    seen = []
    monkeypatch.setattr(calibration, "_best", one_call(0.25, seen))
    rate = calibration.conv_tflops("cpu", "fp32")
    ((out, _),) = seen
    # a 3x3 convolution keeping channels and size (padding 1), without autograd
    n, c, h, w = out.shape
    assert not out.requires_grad
    assert rate == pytest.approx(2 * n * c * c * 9 * h * w / 0.25 / 1e12)


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

        monkeypatch.setattr(calibration, "matmul_tflops", matmul_tflops)
        monkeypatch.setattr(calibration, "conv_tflops", conv_tflops)
        monkeypatch.setattr(calibration, "copy_gbps", copy_gbps)


def test_peaks_measure_once_and_take_the_faster(monkeypatch):
    fake = Fake(monkeypatch, matmul=1.0, conv=2.0)
    p = calibration.Peaks()
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
    assert calibration.Peaks().tflops("cpu", "fp32") == 3.0


def test_peaks_conv_without_kernel_falls_back_to_matmul(monkeypatch):
    fake = Fake(monkeypatch, matmul=1.5, conv_error=RuntimeError("no kernel for this dtype"))
    p = calibration.Peaks()
    assert p.tflops("cpu", "fp16") == 1.5
    assert p.measured["cpu"]["conv_tflops"] == {"fp16": None}
    assert p.tflops("cpu", "fp16") == 1.5
    assert len(fake.calls) == 2  # the failure is cached too


def test_peaks_other_errors_propagate(monkeypatch):
    Fake(monkeypatch, conv_error=MemoryError())
    with pytest.raises(MemoryError):
        calibration.Peaks().tflops("cpu", "fp32")


def test_peaks_copy_bandwidth_once_per_accelerator(monkeypatch):
    fake = Fake(monkeypatch)
    p = calibration.Peaks()
    p.tflops("cuda", "fp32")
    p.tflops("cuda", "bf16")
    p.tflops("cpu", "fp32")
    assert [c for c in fake.calls if c[0] == "copy"] == [("copy", "cuda")]
    assert p.measured["cuda"]["copy_gbps"] == 123.0
    assert "copy_gbps" not in p.measured["cpu"]


FRESH_PROCESS = """
import torch
from imgbench.hw import peak_memory
MB = 1 << 20
probe = peak_memory.PeakMemory("cpu")
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


@pytest.mark.slow
@can_reset_rss
def test_peak_memory_cpu_sees_an_allocation_and_restarts():
    # A fresh process: memory an earlier test freed but the allocator kept resident would not
    # raise the RSS again (a documented limit of measuring the CPU side by RSS growth).
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = map(int, out.stdout.split())
    assert 150 <= first < 1000
    assert second < 50


@pytest.mark.parametrize("device", ["meta"])
def test_peak_memory_other_devices_none(device):
    probe = peak_memory.PeakMemory(device)
    probe.start()
    assert probe.peak_bytes() is None


def test_peak_memory_cpu_without_reset_reports_none(monkeypatch):
    """Where the peak RSS cannot be reset (clear_refs not writable), VmHWM still holds the highest
    RSS of the whole process: subtracting the current RSS from it is no measurement of this case."""
    real_open = open

    def no_clear_refs(path, *args, **kwargs):
        if str(path) == CLEAR_REFS:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    t = torch.ones(50_000_000)  # an earlier case's 200 MB, freed before this case starts
    assert t[-1] == 1
    del t
    monkeypatch.setattr(peak_memory, "open", no_clear_refs, raising=False)
    probe = peak_memory.PeakMemory("cpu")
    probe.start()
    small = torch.ones(1000)
    assert small.sum() == 1000
    assert probe.peak_bytes() is None


def test_peak_memory_cuda_is_the_growth_over_what_the_process_held_after_a_collection(
        monkeypatch):
    """On a fake CUDA device: 300 MiB held when the case starts (an earlier case's workspaces and
    uncollected tensors), a peak of 380 MiB during it: the case's figure is 80 MiB, read after a
    collection."""
    mib, calls = 1 << 20, []
    monkeypatch.setattr(peak_memory.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(torch.cuda, "memory_allocated",
                        lambda device: calls.append("allocated") or 300 * mib)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 380 * mib)
    probe = peak_memory.PeakMemory("cuda")
    probe.start()
    assert calls == ["collect", "allocated", "reset"]
    assert probe.peak_bytes() == 80 * mib
