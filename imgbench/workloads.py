"""The timed units. Each builder returns a Workload: a no-argument callable plus the work one call does,
so that images/s (and later GB/s, TFLOP/s) follow from the median time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn


@dataclass
class Workload:
    fn: Callable[[], object]
    images: int                      # images processed per call
    info: dict = field(default_factory=dict)  # conditions worth storing with the result


def make_optimizer(name: str, params, lr: float | None = None) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3 if lr is None else lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.05 if lr is None else lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r} (valid: adam, sgd)")


def forward(model: nn.Module, x: torch.Tensor) -> Workload:
    """Inference: eval mode, no autograd graph."""
    model.eval()

    def fn():
        with torch.no_grad():
            return model(x)

    return Workload(fn, images=x.shape[0], info={"mode": "eval", "grad": False})


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: str = "adam") -> Workload:
    """One optimisation step on a batch already on the device: forward, loss, backward, step.

    `y` holds class indices (N,) or one-hot / soft targets (N, classes); cross-entropy takes both.
    The loss stays on the device: reading it would add a host sync that real loops avoid.
    """
    model.train()
    opt = make_optimizer(optimizer, model.parameters())
    loss_fn = nn.CrossEntropyLoss()

    def fn():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return Workload(fn, images=x.shape[0], info={"mode": "train", "optimizer": optimizer})
