"""Checkpoints of model + optimizer state: written atomically, read back with weights_only=True; and
the checkpoint family's workload, one save or one load of a model whose optimizer holds state."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from imgbench.core import atomic, config
from imgbench.core.config import SEED, Profile
from imgbench.hw import devices
from imgbench.workloads import models, steps

STORAGE = "page cache, no fsync"  # what a save or load costs here: serialising, not the disk


def save(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> int:
    """Write the checkpoint through files.atomic: a process that dies mid-write never leaves a
    half-written checkpoint (like torch.save, no fsync: a power cut may). Returns the file's size in
    bytes."""
    # A file object, not the temporary path: torch.save would name the archive inside after that
    # path.
    with atomic.written(path) as tmp, open(tmp, "wb") as f:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch}, f)
    return Path(path).stat().st_size


def load(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, device) -> int:
    """Restore model and optimizer state in place (tensors straight onto `device`); returns the
    epoch."""
    state = torch.load(path, map_location=device, weights_only=True)  # no pickled code runs
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def trained(model: str, device: str, optimizer: str,
            image_size: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The seeded model on `device` after one optimizer step, so that the optimizer holds state
    worth saving (Adam's moments, SGD's momentum buffers)."""
    torch.manual_seed(SEED)
    channels = models.spec(model).input_shape[0]
    net = models.build(model, image_size=image_size).to(device)
    opt = steps.make_optimizer(optimizer, net.parameters())
    net(torch.randn(2, channels, image_size, image_size, device=device)).sum().backward()
    opt.step()
    return net, opt


def workload(op: str, path: str | Path, model: str, device: str, optimizer: str,
             profile: Profile) -> steps.Workload:
    """One `save` or `load` of `model` (at the profile's image size) and its optimizer's state at
    `path`."""
    if op not in ("save", "load"):
        raise ValueError(f"unknown checkpoint op {op!r} (valid: save, load)")
    size = config.image_size(models.spec(model).input_shape[1], profile)
    net, opt = trained(model, device, optimizer, size)
    nbytes = save(path, net, opt, epoch=1)
    fn = ((lambda: save(path, net, opt, epoch=1)) if op == "save"
          else (lambda: load(path, net, opt, device)))
    info = {"optimizer": optimizer, "device_name": devices.device_name(device), "op": op,
            "storage": STORAGE}
    return steps.Workload(fn, bytes=nbytes, info=info)
