"""Checkpoints of model + optimizer state: written atomically, read back with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn


def save(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> int:
    """Write the checkpoint to a temporary file beside `path`, then rename it: a process that dies
    mid-write never leaves a half-written checkpoint (like torch.save, no fsync: a power cut may).
    Returns the file's size in bytes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def load(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, device) -> int:
    """Restore model and optimizer state in place (tensors straight onto `device`); returns the epoch."""
    state = torch.load(path, map_location=device, weights_only=True)  # no pickled code runs
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])
