"""The h2d family's copies (imgbench.copies): why a device has no copy to time, the sizes, and the
copy workload, run here with the CPU standing in for a device."""

from __future__ import annotations

import pytest
import torch

from imgbench.hw import devices
from imgbench.workloads import h2d


@pytest.mark.parametrize(("found", "reason"), [
    (["cpu"], "no accelerator on this machine: host<->device copies need cuda or mps"),
    (["cpu", "cuda"], "cpu is the host: no copy to time")])
def test_the_cpu_has_no_copy_to_time(monkeypatch, found, reason):
    monkeypatch.setattr(devices, "available", lambda: found)
    assert h2d.no_accelerator("cpu") == h2d.unsupported("cpu") == reason
    assert h2d.no_accelerator("cuda") is None


def test_pinned_memory_is_for_cuda():
    assert h2d.unsupported("cuda", "pinned") is None
    assert h2d.unsupported("mps", "pinned") == "pinned host memory is a CUDA feature; mps has none"
    assert h2d.unsupported("mps", "pageable") is None


def test_sizes_are_bytes_or_one_cifar_batch():
    assert (h2d.numel("cifar_batch", torch.float32) == h2d.numel("cifar_batch", torch.uint8)
            == 128 * 3 * 32 * 32)
    assert (h2d.numel("16MiB", torch.float32) == 4 << 20
            and h2d.numel("16MiB", torch.uint8) == 16 << 20)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_host_tensors_are_never_zeros(dtype):
    t = h2d.host_tensor(1000, dtype, pinned=False)
    assert t.dtype == dtype and t.count_nonzero() > 900


@pytest.mark.parametrize("direction", ["h2d", "d2h"])
def test_a_copy_is_between_the_host_tensor_and_a_buffer(direction):
    w = h2d.workload("cifar_batch", "uint8", "pageable", "blocking", direction, "cpu")
    assert w.bytes == 128 * 3 * 32 * 32
    assert {k: w.info[k] for k in ("direction", "memory", "dtype", "bytes", "non_blocking")} == {
        "direction": direction, "memory": "pageable", "dtype": "uint8", "bytes": w.bytes,
        "non_blocking": False}
    out = w.fn()  # the destination
    assert out.numel() == w.bytes and out.dtype == torch.uint8
    # into the same buffer every call: no allocation timed
    assert w.fn().data_ptr() == out.data_ptr()
