"""The numeric conditions a case runs under (imgbench.conditions): set around it, recorded, restored
after, an error inside included."""

import pytest
import torch

from imgbench.hw import conditions

CUDA, CUDNN = torch.backends.cuda.matmul, torch.backends.cudnn
DENORMAL = 1e-40  # below float32's smallest normal number (1.2e-38)


def flags():
    return CUDA.allow_tf32, CUDNN.allow_tf32, CUDNN.benchmark, torch.get_num_threads()


def flushes_denormals() -> bool:
    return (torch.tensor([DENORMAL]) * 1.0).item() == 0.0


def test_tf32_flag_restored():
    saved = CUDA.allow_tf32, CUDNN.allow_tf32
    with conditions.tf32(not saved[0]):
        assert CUDA.allow_tf32 is (not saved[0]) and CUDNN.allow_tf32 is (not saved[0])
    assert (CUDA.allow_tf32, CUDNN.allow_tf32) == saved
    with pytest.raises(KeyError), conditions.tf32(True):
        raise KeyError
    assert (CUDA.allow_tf32, CUDNN.allow_tf32) == saved


@pytest.fixture
def cuda_flags():
    """set(tf32, benchmark): torch's CUDA flags as a test wants them at its start; restored after
    it."""
    saved = CUDA.allow_tf32, CUDNN.allow_tf32, CUDNN.benchmark

    def put(tf32, benchmark):
        CUDA.allow_tf32 = CUDNN.allow_tf32 = tf32
        CUDNN.benchmark = benchmark

    yield put
    CUDA.allow_tf32, CUDNN.allow_tf32, CUDNN.benchmark = saved


@pytest.mark.parametrize("precision, tf32", [("tf32", True), ("fp32", False), ("bf16", False)])
def test_cuda_cases_autotune_and_take_tf32_only_from_their_precision(cuda_flags, precision, tf32):
    cuda_flags(tf32=not tf32, benchmark=False)  # whatever torch's defaults, the precision decides
    before = flags()
    with conditions.applied("cuda:0", precision, threads=1) as record:
        assert flags() == (tf32, tf32, True, 1)
    assert record == {"threads": 1, "cudnn_benchmark": True, "tf32": tf32, "flush_denormal": False}
    assert flags() == before


def test_cpu_cases_set_threads_and_flush_denormals_and_restore_both():
    before = flags()
    threads = 1 if before[3] != 1 else 2
    assert not flushes_denormals()
    with conditions.applied("cpu", "fp32", threads) as record:
        assert torch.get_num_threads() == threads
        # False only where the CPU cannot flush
        assert flushes_denormals() is record["flush_denormal"]
        assert flags()[:3] == before[:3]  # no CUDA flag touched on the CPU
    assert (record["threads"] == threads and record["cudnn_benchmark"] is None
            and record["tf32"] is None)
    assert flags() == before and not flushes_denormals()


def test_conditions_are_restored_after_an_error_in_the_case():
    before = flags()
    with pytest.raises(RuntimeError, match="inside"), conditions.applied("cuda", "tf32", threads=1):
        raise RuntimeError("inside")
    assert flags() == before
    with pytest.raises(RuntimeError, match="inside"), conditions.applied("cpu", "fp32", threads=1):
        raise RuntimeError("inside")
    assert flags() == before and not flushes_denormals()
