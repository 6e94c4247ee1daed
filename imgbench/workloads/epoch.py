"""Epoch-long timed units: a full training pass over a dataset, and the three ways to do transfer
learning. One call is one epoch; each call also records where its time went on the host."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from imgbench.core import config
from imgbench.hw import devices, timing
from imgbench.workloads import data, models
from imgbench.core.config import SEED, Profile
from imgbench.workloads.steps import Trainer, Workload, count_flops


class EpochClock:
    """Per-epoch host time: waiting for the next batch (data stall), copying it to the device, total."""

    def __init__(self):
        self.epochs: list[tuple[float, float, float]] = []

    def shares(self, skip: int = 0) -> dict:
        """Shares of the epochs after the first `skip` (warm-up), summed over those epochs."""
        epochs = self.epochs[skip:]
        if not epochs:
            return {}
        wait, copy, total = (sum(e[i] for e in epochs) for i in range(3))
        return {"data_stall_share": wait / total, "copy_share": copy / total, "epochs_recorded": len(epochs)}


def epoch(loader: Iterable, trainer: Trainer, device: torch.device, sync: Callable[[], None], images: int,
          flops_per_image: int = 0, info: dict | None = None,
          memory_format: torch.memory_format = torch.contiguous_format) -> Workload:
    """One pass over `loader`: fetch, copy to the device (non_blocking; pinned memory makes it async),
    train step. Ends with the device synchronised, as an epoch does before evaluating or logging."""
    clock = EpochClock()

    def fn():
        wait = copy = 0.0
        start = time.perf_counter()
        batches = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            t1 = time.perf_counter()
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            t2 = time.perf_counter()
            wait, copy = wait + t1 - t0, copy + t2 - t1
            trainer.step(x, y)
        sync()
        clock.epochs.append((wait, copy, time.perf_counter() - start))

    return Workload(fn, images=images, flops=flops_per_image * images, info=dict(info or {}),
                    after=clock.shares, long=True)


def train_flops_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one training step's forward and backward, per image (the optimizer's are not counted)."""
    def step():
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops // x.shape[0]


def empty(batch_size: int, images: int, what: str, profile: Profile) -> str | None:
    """Why an epoch of `images` would have no step at this batch size, or None."""
    if batch_size > images:
        return f"batch {batch_size} > {images} images per {what} in the {profile.name} profile"
    return None


TRANSFER_MODES = ("full_finetune", "last_layer", "last_layer_cached")
BACKBONE = "resnet18"  # torchvision's; random weights cost the same as pretrained ones
TRANSFER_CLASSES = 10


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """A torchvision ResNet as (backbone to pooled features, final linear layer)."""
    return nn.Sequential(*list(model.children())[:-1], nn.Flatten()), model.fc


def transfer(mode: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             optimizer: str, sync: Callable[[], None]) -> Workload:
    """One epoch of transfer learning over (x, y) already on the device.

    full_finetune: every weight trains. last_layer: the backbone is frozen (eval mode, no grad) but
    runs every step. last_layer_cached: the backbone runs once, here, untimed (its time is stored as
    cache_s), and each epoch trains the last layer on the cached features.
    """
    if mode not in TRANSFER_MODES:
        raise ValueError(f"unknown transfer mode {mode!r} (valid: {', '.join(TRANSFER_MODES)})")
    backbone, head = split_head(model)
    device_type = x.device.type
    steps = len(x) // batch_size
    info = {"mode": mode, "steps": steps}
    if mode == "full_finetune":
        model.train()
        trainer = Trainer(model, optimizer, device_type=device_type)
        inputs, net = x, model
    else:
        backbone.eval().requires_grad_(False)
        trainer = Trainer(head, optimizer, device_type=device_type)
        inputs, net = x, head
        if mode == "last_layer_cached":
            cached = []
            info["cache_s"] = timing.clocked(lambda: cached.append(features(backbone, x, batch_size)), sync)
            inputs = cached[0]

    def fn():
        for i in range(steps):
            xb, yb = inputs[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size]
            if mode == "last_layer":
                with torch.no_grad():
                    xb = backbone(xb)
            trainer.step(xb, yb, net)

    return Workload(fn, images=steps * batch_size, info=info, long=True)


def features(backbone: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The backbone's output for every image of `x`, computed in batches, without autograd."""
    with torch.no_grad():
        return torch.cat([backbone(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def transfer_empty(batch_size: int, profile: Profile) -> str | None:
    """Why a transfer epoch of the profile would have no step at this batch size, or None."""
    return empty(batch_size, profile.transfer_images, "transfer epoch", profile)


def transfer_epoch(mode: str, device: str, batch_size: int, optimizer: str, profile: Profile) -> Workload:
    """The transfer family's case: a seeded BACKBONE with a TRANSFER_CLASSES-way head, one epoch of the
    profile's transfer_images synthetic images at the profile's size, already on the device."""
    size = config.image_size(models.spec(BACKBONE).input_shape[1], profile)
    n = profile.transfer_images
    torch.manual_seed(SEED)
    model = models.build(BACKBONE, num_classes=TRANSFER_CLASSES, image_size=size).to(device)
    x, y = data.synthetic_batch(n, (3, size, size), TRANSFER_CLASSES, seed=SEED, device=device)
    w = transfer(mode, model, x, y, batch_size, optimizer, devices.synchronizer(device))
    w.info = {"backbone": BACKBONE, "image_size": size, "images_per_epoch": n,
              "device_name": devices.device_name(device), **w.info}
    return w
