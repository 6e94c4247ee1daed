"""What the hardware can do, measured here: a calibration matmul and convolution per device and
precision, a large device-to-device copy on accelerators, and the harness's empty round. Results say
how far they are from these limits."""

from __future__ import annotations

import torch

from imgbench.hw import timing
from imgbench.hw.conditions import tf32
from imgbench.hw.devices import synchronizer

MATMUL_N = {"cpu": 1024, "default": 8192}  # big enough to fill the device, small enough to be quick
COPY_BYTES = 1 << 30
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
          "fp16": torch.float16}


def _best(fn, sync, budget_s: float, min_reps: int = 3) -> float:
    """Fastest of repeated synchronised calls (a peak, not a typical time), after one warm-up
    call."""
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or spent < budget_s:
        dt = timing.clocked(fn, sync)
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def matmul_tflops(device: str, precision: str, budget_s: float = 0.3) -> float:
    """Peak dense matmul rate in TFLOP/s for this device and precision (random data, never
    zeros)."""
    dev = torch.device(device)
    n = MATMUL_N.get(dev.type, MATMUL_N["default"])
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=DTYPES[precision], generator=g)
    b = torch.randn(n, n, device=dev, dtype=DTYPES[precision], generator=g)
    with tf32(precision == "tf32"):
        seconds = _best(lambda: a @ b, synchronizer(device), budget_s)
    return 2 * n**3 / seconds / 1e12


def conv_tflops(device: str, precision: str, budget_s: float = 0.3) -> float:
    """Peak rate of a large 3x3 convolution (256 -> 256 channels), in TFLOP/s.

    Convolution libraries (oneDNN, cuDNN) can beat the BLAS matmul of the same build, e.g. oneDNN
    vs MKL on AMD CPUs: a peak below what real layers reach would make every percentage wrong.
    """
    dev = torch.device(device)
    n, c, hw = (16, 256, 16) if dev.type == "cpu" else (256, 256, 32)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, c, hw, hw, device=dev, dtype=DTYPES[precision], generator=g)
    w = torch.randn(c, c, 3, 3, device=dev, dtype=DTYPES[precision], generator=g)
    with tf32(precision == "tf32"), torch.no_grad():
        seconds = _best(lambda: torch.nn.functional.conv2d(x, w, padding=1), synchronizer(device),
                        budget_s)
    return 2 * n * c * c * 9 * hw * hw / seconds / 1e12


def copy_gbps(device: str, budget_s: float = 0.3) -> float:
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device).random_(0, 256)
    dst = torch.empty_like(src)
    seconds = _best(lambda: dst.copy_(src), synchronizer(device), budget_s)
    return 2 * COPY_BYTES / seconds / 1e9


class Peaks:
    """Peak figures measured once per run and device (and precision), on first use."""

    def __init__(self):
        self.measured: dict[str, dict] = {}

    def tflops(self, device: str, precision: str) -> float:
        """The device's peak for this precision: the faster of the calibration matmul and conv."""
        entry = self.measured.setdefault(device, {})
        matmul, conv = entry.setdefault("matmul_tflops", {}), entry.setdefault("conv_tflops", {})
        if precision not in matmul:
            matmul[precision] = matmul_tflops(device, precision)
            try:
                conv[precision] = conv_tflops(device, precision)
            except RuntimeError:  # no kernel for this dtype on this device: the matmul stands alone
                conv[precision] = None
            if device != "cpu" and "copy_gbps" not in entry:
                entry["copy_gbps"] = copy_gbps(device)
        return max(matmul[precision], conv[precision] or 0.0)

    def harness(self, device: str) -> float:
        """Seconds of an empty timed round on the device (timing.harness_round_s), stored with the
        run."""
        entry = self.measured.setdefault(device, {})
        if "harness_round_s" not in entry:
            entry["harness_round_s"] = timing.harness_round_s(device)
        return entry["harness_round_s"]
