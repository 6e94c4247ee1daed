"""Fixtures every test gets: a cache of stored runs of its own, and torch's process-wide settings put
back after each test, so that no test's verdict depends on the tests before it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _cache_of_stored_runs(tmp_path_factory):
    """The cache of stored runs (imgbench.runs.cache) of every test, and of the commands they start, in the
    session's temporary folder: never the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


THREADS = torch.get_num_threads()  # as torch set them at import: every usable core


@pytest.fixture(autouse=True)
def _torch_settings():
    """Threads, flushed denormals and the cuDNN / TF32 flags as they were before the test."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
    yield
    torch.set_num_threads(THREADS)
    torch.set_flush_denormal(False)  # torch has no getter: off is its default
    cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved
