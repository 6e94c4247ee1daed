"""The numeric conditions a timed case runs under, set in one place: CPU threads, cuDNN autotuning,
TF32 by precision, flushed denormals. Set around a case, recorded with it, restored after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and convolutions on or off, restored after."""
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = cuda.allow_tf32, cudnn.allow_tf32
    cuda.allow_tf32 = cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        cuda.allow_tf32, cudnn.allow_tf32 = saved


@contextlib.contextmanager
def applied(device: str, precision: str, threads: int) -> Iterator[dict]:
    """Threads as chosen; on CUDA, cuDNN autotuning on and TF32 on only for the tf32 precision (fp32
    means fp32, whatever torch's defaults); on the CPU, denormals flushed, since a fixed batch
    trains towards tiny gradients whose denormal optimizer state would slow later rounds. Yields the
    record."""
    on_cuda, want_tf32 = device.startswith("cuda"), precision == "tf32"
    cudnn = torch.backends.cudnn
    saved_threads, saved_benchmark = torch.get_num_threads(), cudnn.benchmark
    torch.set_num_threads(threads)
    flushed = torch.set_flush_denormal(True) if device == "cpu" else False
    try:
        with tf32(want_tf32) if on_cuda else contextlib.nullcontext():
            if on_cuda:
                cudnn.benchmark = True
            yield {"threads": threads, "cudnn_benchmark": True if on_cuda else None,
                   "tf32": want_tf32 if on_cuda else None, "flush_denormal": flushed}
    finally:
        torch.set_num_threads(saved_threads)
        cudnn.benchmark = saved_benchmark
        if flushed:
            torch.set_flush_denormal(False)
