"""The dataloader family's workload (imgbench.pipeline): what each source does per item, pin_memory
without CUDA, and one pass in whole batches."""

from __future__ import annotations

import pytest
import torch

from imgbench.hw import shm
from imgbench.workloads import data, dataloader


def test_sources_decode_and_augment_or_hand_over_ready_tensors():
    pil, augmented, ready = (dataloader.dataset(s, 4) for s in dataloader.SOURCES)
    assert isinstance(pil, data.EncodedImages) and isinstance(augmented, data.TensorImages)
    for ds in (pil, augmented, ready):
        x, _ = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    torch.manual_seed(0)
    first = augmented[1][0]
    # cropped and flipped anew
    assert any(not torch.equal(first, augmented[1][0]) for _ in range(10))
    assert torch.equal(ready[1][0], ready[1][0])
    with pytest.raises(ValueError,
                       match=r"unknown source 'png' \(valid: pil, tensor_augment, tensor\)"):
        dataloader.dataset("png", 4)


def test_pinned_memory_needs_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dataloader.unsupported(True) == "pin_memory needs a CUDA GPU; this machine has none"
    assert dataloader.unsupported(False) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dataloader.unsupported(True) is None


def test_a_pass_is_whole_batches_of_the_source():
    w = dataloader.workload("tensor", 0, False, 16, 40)
    assert w.images == 32
    assert w.info == {"source": "tensor", "num_workers": 0, "pin_memory": False, "image_size": 32,
                      "images_per_pass": 32}
    assert w.fn() is None


def test_one_pass_reads_every_batch():
    seen = []
    dataloader.one_pass(seen.append(i) or i for i in range(5))
    assert seen == [0, 1, 2, 3, 4]


def test_workers_without_room_in_dev_shm_are_skipped_with_the_sizes(monkeypatch):
    monkeypatch.setattr(shm, "free_bytes", lambda path="/dev/shm": 2**20)
    assert dataloader.unsupported(False, 4, 128) == (
        "/dev/shm has 1 MiB free; 4 loader workers at batch 128 of 3x32x32 need about 12 MiB "
        "(run with a larger /dev/shm, e.g. docker --shm-size=1g)")
    assert dataloader.unsupported(False, 0, 128) is None  # no workers: nothing shared
