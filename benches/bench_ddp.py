"""Synchronous data-parallel epochs: DistributedDataParallel through torchrun, one replica per GPU
(NCCL) or per CPU process (gloo), the run's threads shared out among the replicas, world sizes 1, 2,
4 ... up to the devices present. The images of an epoch are split across the replicas (the profile's
epoch size), each replica at the case's batch size. Epochs are timed in the workers, under the epoch
family's fp32 conditions, barrier to barrier, up to the slowest rank, and replayed into
pytest-benchmark; images/s, scaling efficiency against one replica (worlds.one_replica), the exposed
gradient-communication share and the workers' conditions are stored beside them. Every replica's
weights are checked identical after the timed epochs. A launch that fails, loses a rank or outlasts
the case limit (--case-timeout) fails its case with one line, leaving no process behind; the run
goes on."""

import pytest

from imgbench.hw import timing
from imgbench.workloads.ddp import worlds
from imgbench.workloads.ddp.worker import DDPError

REPLAY = timing.Replay()
pytestmark = [pytest.mark.benchmark(timer=REPLAY), pytest.mark.cpu_heavy]


@pytest.mark.gate(world_size=1, model="kerascnn", batch_size=128)
@pytest.mark.parametrize("world_size", worlds.world_sizes(), ids=lambda w: f"world{w}")
def test_ddp(world_size, model, device, batch_size, settings, benchmark, tmp_path):
    if reason := worlds.unsupported(world_size, model, device, batch_size, settings):
        pytest.skip(reason)
    try:
        r = worlds.run(world_size, model, device, batch_size, settings, tmp_path)
        REPLAY.load(r["epoch_s"])
        benchmark.pedantic(REPLAY.play, rounds=len(r["epoch_s"]), iterations=1)
        if benchmark.stats is not None:  # None under --benchmark-disable
            benchmark.extra_info.update(worlds.figures(r, benchmark.stats.stats.median, settings,
                                                       tmp_path))
    except DDPError as e:
        pytest.fail(str(e), pytrace=False)
