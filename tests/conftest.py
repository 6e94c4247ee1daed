"""What every test gets: a cache of stored runs of its own, torch's process-wide settings put back
after each test, SIGINT at its default in this process (so the children tests start can be
interrupted, also when the suite runs as a background job, which starts with SIGINT ignored), and
`--shuffle SEED` to run the modules, and the tests within each, in a random order, so that no
test's verdict may depend on the tests before it."""

from __future__ import annotations

import random
import signal
import sys

import pytest
import torch

# The first optimizer step imports torch._dynamo (and torch._inductor with it). Imported inside an
# in-process pytester run, they are unloaded at its end and imported again by the next, which
# registers torch._inductor's test operators twice and fails that run: a test file run alone hit
# this wherever no earlier test had imported them.
import torch._dynamo  # noqa: F401

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # inherited by every child until it is reset
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--shuffle", type=int, metavar="SEED",
                     help="run the tests in the order this seed draws")


def pytest_collection_modifyitems(config, items):
    """The modules in a random order, and the tests in a random order within each: a module's
    shared fixtures (a real run of the benches, a real allocation) are then set up once, as in
    file order, instead of once per stretch of its tests."""
    if (seed := config.getoption("shuffle")) is None:
        return
    rng = random.Random(seed)
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    order = list(modules.values())
    rng.shuffle(order)
    for group in order:
        rng.shuffle(group)
    items[:] = [item for group in order for item in group]


def pytest_report_header(config):
    seed = config.getoption("shuffle")
    return None if seed is None else f"tests shuffled with seed {seed}"


@pytest.fixture(autouse=True, scope="session")
def _cache_of_stored_runs(tmp_path_factory):
    """The cache of stored runs (imgbench.runs.cache) of every test, and of the commands they start,
    in the session's temporary folder: never the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _forget_bench_modules():
    """Bench files an in-process pytest run imported as top-level modules (bench_h2d, ...)
    forgotten after each test: else a later in-process run of another folder's copy of the same
    file stops with pytest's "import file mismatch" (seen with --shuffle)."""
    yield
    for name in [n for n in sys.modules if n.startswith("bench_")]:
        del sys.modules[name]


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
