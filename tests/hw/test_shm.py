"""Shared memory for loader workers: the estimate, the free space, and the one line when it does not
fit."""

import pytest

from imgbench.hw import shm

MIB = 2**20
# workers x prefetch x batch x pixels x float32: 588 MiB
NEED_4X128 = 4 * 2 * 128 * 3 * 224 * 224 * 4


def test_need_bytes_counts_each_workers_prefetched_float32_batches():
    assert shm.need_bytes(4, 128, (3, 224, 224)) == NEED_4X128
    assert shm.need_bytes(4, 128, (3, 224, 224), prefetch=4) == 2 * NEED_4X128
    assert shm.need_bytes(4, 128, (3, 224, 224), dtype_bytes=1) == NEED_4X128 // 4
    assert shm.need_bytes(0, 128, (3, 224, 224)) == 0


def test_free_bytes_of_a_folder_and_of_none(tmp_path):
    assert shm.free_bytes(str(tmp_path)) > 0
    assert shm.free_bytes(str(tmp_path / "absent")) is None


def test_a_small_shm_gives_one_line_with_the_sizes(monkeypatch):
    monkeypatch.setattr(shm, "free_bytes", lambda path: 64 * MIB)
    assert shm.shortfall(4, 128, (3, 224, 224)) == (
        "/dev/shm has 64 MiB free; 4 loader workers at batch 128 of 3x224x224 need about 588 MiB "
        "(run with a larger /dev/shm, e.g. docker --shm-size=2g)")


@pytest.mark.parametrize("free, short", [(2 * NEED_4X128, False), (2 * NEED_4X128 - 1, True)])
def test_room_means_twice_the_estimate(monkeypatch, free, short):
    monkeypatch.setattr(shm, "free_bytes", lambda path: free)
    assert (shm.shortfall(4, 128, (3, 224, 224)) is not None) is short


def test_no_workers_or_no_shm_folder_is_no_shortfall(monkeypatch, tmp_path):
    monkeypatch.setattr(shm, "free_bytes", lambda path: 0)
    assert shm.shortfall(0, 128, (3, 224, 224)) is None
    monkeypatch.undo()
    assert shm.shortfall(4, 128, (3, 224, 224), path=str(tmp_path / "absent")) is None


def test_the_suggested_size_holds_the_margin(monkeypatch):
    monkeypatch.setattr(shm, "free_bytes", lambda path: MIB)
    # 16 x 2 x 256 x 588 KiB = 4.6 GiB: twice that is 9.2
    line = shm.shortfall(16, 256, (3, 224, 224))
    assert "need about 4,704 MiB" in line and line.endswith("docker --shm-size=10g)")
