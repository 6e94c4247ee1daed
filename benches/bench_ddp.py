"""Synchronous data-parallel epochs: DistributedDataParallel through torchrun, one replica per GPU
(NCCL) or per CPU process (gloo; the cores shared out), world sizes 1, 2, 4 ... up to the devices
present. The images of an epoch are split across the replicas (the profile's epoch size), each
replica at the case's batch size. Epochs are timed in the workers, barrier to barrier, up to the
slowest rank, and replayed into pytest-benchmark; images/s, scaling efficiency against one replica
and the exposed gradient-communication share are stored beside them. Every replica's weights are
checked identical after the timed epochs."""

import pytest
import torch

from imgbench import ddp, devices, models, timing

REPLAY = timing.Replay()
pytestmark = pytest.mark.benchmark(timer=REPLAY)
QUICK_MODELS = ("mlp", "kerascnn")  # a launch costs seconds of process start-up: keep CI short


def capacity(device: str) -> int:
    return torch.cuda.device_count() if device.startswith("cuda") else devices.usable_cores()


def world_sizes() -> list[int]:
    most = max([devices.usable_cores(), torch.cuda.device_count() if torch.cuda.is_available() else 0])
    return sorted({w for w in (1, 2, 4, 8, 16) if w <= most} | {most} - {0})


def device_reason(device: str) -> str | None:
    """Why the family does not run on `device` (None: it does). With several GPUs `auto` gives
    cuda:0, cuda:1 ...: one set of worlds, spread from cuda:0, covers them all."""
    if device.startswith("cuda:") and device != "cuda:0":
        return f"ddp spreads over every GPU from cuda:0 (one replica per GPU); {device} adds no other case"
    if device not in ("cpu", "cuda", "cuda:0"):
        return f"ddp runs one replica per GPU (device cuda) or per CPU process (device cpu), not {device}"
    return None


ONE_REPLICA: dict[tuple, float] = {}  # images/s at world size 1, for the efficiency of larger worlds


@pytest.mark.parametrize("world_size", world_sizes(), ids=lambda w: f"world{w}")
def test_ddp(world_size, model, device, batch_size, settings, benchmark, tmp_path):
    if (reason := device_reason(device) or ddp.unavailable(device)) is not None:
        pytest.skip(reason)
    if world_size > capacity(device):
        pytest.skip(f"world size {world_size} needs {world_size} {'GPUs' if device == 'cuda' else 'cores'}; "
                    f"this machine has {capacity(device)}")
    if settings.profile.name == "quick" and model not in QUICK_MODELS:
        pytest.skip(f"the quick profile runs ddp for {', '.join(QUICK_MODELS)} only")
    images = settings.profile.epoch_images
    if batch_size * world_size > images:
        pytest.skip(f"batch {batch_size} x {world_size} replicas > {images} images per epoch")
    threads = max(1, settings.threads // world_size) if device == "cpu" else 1
    default = models.spec(model).input_shape[1]
    size = min(default, settings.profile.max_image_size or default)
    try:
        r = ddp.launch(world_size, tmp_path / "ddp.json", model=model, device=device, batch_size=batch_size,
                       images=images, image_size=size, epochs=settings.profile.long_rounds,
                       optimizer=settings.optimizer, threads=threads)
    except ddp.DDPError as e:
        pytest.fail(str(e), pytrace=False)
    assert r["replicas_identical"], f"replicas differ after the timed epochs (max |diff| {r['max_param_diff']})"
    REPLAY.load(r["epoch_s"])
    benchmark.pedantic(REPLAY.play, rounds=len(r["epoch_s"]), iterations=1)
    if benchmark.stats is None:  # --benchmark-disable
        return
    median = benchmark.stats.stats.median
    ips = r["images_per_epoch"] / median
    if world_size == 1:
        ONE_REPLICA[(model, device, batch_size)] = ips
    single = ONE_REPLICA.get((model, device, batch_size))
    benchmark.extra_info.update({
        **{k: r[k] for k in ("backend", "steps", "images_per_epoch", "threads_per_rank", "max_param_diff",
                             "replicas_identical", "nosync_epoch_s")},
        "images": r["images_per_epoch"], "images_per_s": ips, "epoch_s": r["epoch_s"],
        "scaling_efficiency": ips / (world_size * single) if single else None,
        "comm_share": max(0.0, 1 - r["nosync_epoch_s"] / median),
        "timing": "epochs timed in the workers (barrier to barrier, slowest rank), replayed"})
