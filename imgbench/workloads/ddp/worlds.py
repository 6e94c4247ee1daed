"""The ddp family's sweep: which world sizes run, why one does not run on a device, each world's
launch (the run's threads shared out among the replicas on every device, the profile's epochs and
image size, the case limit), and the figures stored beside its epochs, with the conditions the
workers ran under. Scaling efficiency divides by one replica's images/s for the same case, measured
once per session: by the world-1 case, or, where that did not run, by a world-1 launch of its
own."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.hw import devices
from imgbench.workloads import models
from imgbench.workloads.ddp.launch import launch
from imgbench.workloads.ddp.worker import DDPError, unavailable

# a launch costs seconds of process start-up: keep CI short. The light models: the built-in ones
# (mlp, kerascnn) and any registered with cpu_subset=True
QUICK_MODELS = models.cpu_subset
SIZES = (1, 2, 4, 8, 16)
# launch arguments of one replica -> its images/s, for this session
_ONE_REPLICA: dict[tuple, float] = {}


def capacity(device: str, threads: int) -> int:
    """Replicas `device` holds: one per GPU, or on the CPU one per thread the run may use
    (--threads)."""
    return torch.cuda.device_count() if device.startswith("cuda") else threads


def world_sizes() -> list[int]:
    """1, 2, 4 ... up to the most replicas any device here holds, and that most itself."""
    most = max([devices.usable_cores(),
                torch.cuda.device_count() if torch.cuda.is_available() else 0])
    return sorted({w for w in SIZES if w <= most} | {most} - {0})


def device_reason(device: str) -> str | None:
    """Why the family does not run on `device` (None: it does). With several GPUs `auto` gives
    cuda:0, cuda:1 ...: one set of worlds, spread from cuda:0, covers them all."""
    if device.startswith("cuda:") and device != "cuda:0":
        return (f"ddp spreads over every GPU from cuda:0 (one replica per GPU); {device} adds no "
                "other case")
    if device not in ("cpu", "cuda", "cuda:0"):
        return ("ddp runs one replica per GPU (device cuda) or per CPU process (device cpu), "
                f"not {device}")
    return None


def unsupported(world: int, model: str, device: str, batch_size: int,
                settings: Settings) -> str | None:
    """Why this world does not run here, or None."""
    if (reason := device_reason(device) or unavailable(device)) is not None:
        return reason
    if world > (most := capacity(device, settings.threads)):
        return (f"world size {world} needs {world} GPUs; this machine has {most}"
                if device != "cpu" else
                f"world size {world} needs {world} CPU threads, one per replica; this run has "
                f"{most} (--threads)")
    if settings.profile.name == "quick" and model not in QUICK_MODELS():
        return f"the quick profile runs ddp for {', '.join(QUICK_MODELS())} only"
    images = epoch_images(model, settings)
    if batch_size * world > images:
        return f"batch {batch_size} x {world} replicas > {images} images per epoch"
    return None


def epoch_images(model: str, settings: Settings) -> int:
    """Images in one epoch of all replicas together: the epoch family's rule (config.epoch_size)."""
    c, size, _ = models.spec(model).input_shape
    size = config.image_size(size, settings.profile)
    return config.epoch_size(settings.profile, (c, size, size))


def launch_args(world: int, model: str, device: str, batch_size: int, settings: Settings) -> dict:
    """launch's measurement arguments for this world: the profile's epoch and image size, and the
    run's threads shared out among the replicas (on a GPU too: world 1 runs with the epoch family's
    threads)."""
    return {"model": model, "device": device, "batch_size": batch_size,
            "images": epoch_images(model, settings),
            "image_size": config.image_size(models.spec(model).input_shape[1], settings.profile),
            "epochs": settings.profile.long_rounds, "optimizer": settings.optimizer,
            "threads": max(1, settings.threads // world)}


def run(world: int, model: str, device: str, batch_size: int, settings: Settings,
        folder: Path) -> dict:
    """Launch `world` replicas (result JSON in `folder`) and return rank 0's result; DDPError when
    the launch fails, outlasts the case limit (settings.timeout_s), or the replicas' weights differ
    after the timed epochs."""
    r = launch(world, Path(folder) / f"ddp-world{world}.json", timeout=settings.timeout_s,
                   **launch_args(world, model, device, batch_size, settings))
    if not r["replicas_identical"]:
        raise DDPError(f"replicas differ after the timed epochs (max |diff| {r['max_param_diff']})")
    return r


def _key(model: str, device: str, batch_size: int, settings: Settings) -> tuple:
    return tuple(sorted(launch_args(1, model, device, batch_size, settings).items()))


def one_replica(model: str, device: str, batch_size: int, settings: Settings,
                folder: Path) -> float:
    """Images/s of one replica of this case: the world-1 case's when it ran in this session, else a
    world-1 launch's (not a case: nothing stored), cached for the session."""
    key = _key(model, device, batch_size, settings)
    if key not in _ONE_REPLICA:
        r = run(1, model, device, batch_size, settings, folder)
        _ONE_REPLICA[key] = r["images_per_epoch"] / statistics.median(r["epoch_s"])
    return _ONE_REPLICA[key]


def figures(r: dict, median: float, settings: Settings, folder: Path) -> dict:
    """What a ddp case stores beside its replayed epochs (`r`: launch's result; `median`: the median
    epoch in seconds): images/s, scaling efficiency against one replica, the exposed communication
    share, and the workers' conditions under the keys the `conditions` fixture stores for every
    other case."""
    ips = r["images_per_epoch"] / median
    if r["world_size"] == 1:
        _ONE_REPLICA.setdefault(_key(r["model"], r["device"], r["batch_size"], settings), ips)
        single = ips
    else:
        single = one_replica(r["model"], r["device"], r["batch_size"], settings, folder)
    kept = ("backend", "steps", "images_per_epoch", "threads_per_rank", "max_param_diff",
            "replicas_identical", "nosync_epoch_s")
    return {**r["conditions"], **{k: r[k] for k in kept},
            "images": r["images_per_epoch"], "images_per_s": ips, "epoch_s": r["epoch_s"],
            "scaling_efficiency": ips / (r["world_size"] * single),
            "comm_share": max(0.0, 1 - r["nosync_epoch_s"] / median),
            "timing": "epochs timed in the workers (barrier to barrier, slowest rank), replayed"}
