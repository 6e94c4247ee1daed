"""The transfer family's timed unit: one epoch of transfer learning with a frozen backbone, in the
three ways to do it (full fine-tuning, the last layer with the backbone run every step, the last
layer on features cached once)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from imgbench.core import config
from imgbench.core.config import SEED, Profile
from imgbench.hw import devices, timing
from imgbench.workloads import data, models
from imgbench.workloads.epoch import empty
from imgbench.workloads.steps import Trainer, Workload

MODES = ("full_finetune", "last_layer", "last_layer_cached")
BACKBONE = "resnet18"  # torchvision's; random weights cost the same as pretrained ones
CLASSES = 10


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """A torchvision ResNet as (backbone to pooled features, final linear layer)."""
    return nn.Sequential(*list(model.children())[:-1], nn.Flatten()), model.fc


def one_epoch(mode: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             optimizer: str, sync: Callable[[], None]) -> Workload:
    """One epoch of transfer learning over (x, y) already on the device.

    full_finetune: every weight trains. last_layer: the backbone is frozen (eval mode, no grad) but
    runs every step. last_layer_cached: the backbone runs once, here, untimed (its time is stored as
    cache_s), and each epoch trains the last layer on the cached features.
    """
    if mode not in MODES:
        raise ValueError(f"unknown transfer mode {mode!r} (valid: {', '.join(MODES)})")
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
            info["cache_s"] = timing.clocked(
                lambda: cached.append(features(backbone, x, batch_size)), sync)
            inputs = cached[0]

    def fn():
        for i in range(steps):
            xb, yb = (inputs[i * batch_size:(i + 1) * batch_size],
                      y[i * batch_size:(i + 1) * batch_size])
            if mode == "last_layer":
                with torch.no_grad():
                    xb = backbone(xb)
            trainer.step(xb, yb, net)

    return Workload(fn, images=steps * batch_size, info=info, long=True)


def features(backbone: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The backbone's output for every image of `x`, computed in batches, without autograd."""
    with torch.no_grad():
        return torch.cat([backbone(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def empty_epoch(batch_size: int, profile: Profile) -> str | None:
    """Why a transfer epoch of the profile would have no step at this batch size, or None."""
    return empty(batch_size, profile.transfer_images, "transfer epoch", profile)


def workload(mode: str, device: str, batch_size: int, optimizer: str, profile: Profile) -> Workload:
    """The transfer family's case: a seeded BACKBONE with a CLASSES-way head, one epoch of the
    profile's transfer_images synthetic images at the profile's size, already on the device."""
    size = config.image_size(models.spec(BACKBONE).input_shape[1], profile)
    n = profile.transfer_images
    torch.manual_seed(SEED)
    model = models.build(BACKBONE, num_classes=CLASSES, image_size=size).to(device)
    x, y = data.synthetic_batch(n, (3, size, size), CLASSES, seed=SEED, device=device)
    w = one_epoch(mode, model, x, y, batch_size, optimizer, devices.synchronizer(device))
    w.info = {"backbone": BACKBONE, "image_size": size, "images_per_epoch": n,
              "device_name": devices.device_name(device), **w.info}
    return w
