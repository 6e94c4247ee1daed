"""The timed units. Each builder returns a Workload: a no-argument callable plus the work one call
does (images, bytes, FLOPs), so that images/s, GB/s and TFLOP/s follow from the median time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Workload:
    fn: Callable[[], object]
    images: int = 0   # images processed per call
    bytes: int = 0    # bytes moved per call (copies, loaders, checkpoints)
    flops: int = 0    # floating-point operations per call (torch.utils.flop_counter)
    info: dict = field(default_factory=dict)  # conditions worth storing with the result
    long: bool = False  # epoch-long calls: the profile's fixed rounds, no calibration call
    # figures the calls gathered, skipping the first n (warm-up)
    after: Callable[[int], dict] | None = None


def make_optimizer(name: str, params, lr: float | None = None,
                   fused: bool = False) -> torch.optim.Optimizer:
    """Adam or SGD (momentum 0.9, Nesterov). `fused` (CUDA): one kernel per step, and GradScaler
    unscales inside it instead of reading found_inf on the host every step."""
    extra = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3 if lr is None else lr, **extra)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.05 if lr is None else lr, momentum=0.9, nesterov=True,
                               **extra)
    raise ValueError(f"unknown optimizer {name!r} (valid: adam, sgd)")


def autocast(precision: str, device_type: str):
    """The autocast context for bf16 / fp16; fp32 and tf32 run without one (TF32 is a backend
    flag)."""
    if precision in AUTOCAST:
        return torch.autocast(device_type, dtype=AUTOCAST[precision])
    return contextlib.nullcontext()


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by torch's flop counter (matmuls and convolutions, forward and
    backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def forward(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> Workload:
    """Inference: eval mode, no autograd graph."""
    model.eval()

    def fn():
        with torch.no_grad(), autocast(precision, x.device.type):
            return model(x)

    return Workload(fn, images=x.shape[0], info={"mode": "eval", "grad": False})


class Trainer:
    """One optimisation step: forward, loss, backward, step; autocast and loss scaling per
    precision.

    Targets may be class indices (N,) or one-hot / soft targets (N, classes): cross-entropy takes
    both. The loss stays on the device: reading it would add a host sync that real loops avoid.
    """

    def __init__(self, model: nn.Module, optimizer: str = "adam", precision: str = "fp32",
                 device_type: str = "cpu", params=None):
        self.model, self.precision, self.device_type = model, precision, device_type
        self.opt = make_optimizer(optimizer, model.parameters() if params is None else params,
                                  fused=device_type == "cuda")
        self.loss_fn = nn.CrossEntropyLoss()
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")

    def step(self, x: torch.Tensor, y: torch.Tensor,
             model: nn.Module | None = None) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.precision, self.device_type):
            loss = self.loss_fn((model or self.model)(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: str = "adam",
               precision: str = "fp32") -> Workload:
    """One optimisation step on a batch already on the device."""
    model.train()
    trainer = Trainer(model, optimizer, precision, x.device.type)
    return Workload(lambda: trainer.step(x, y), images=x.shape[0],
                    info={"mode": "train", "optimizer": optimizer})


def layer_pass(layer: nn.Module, x: torch.Tensor, backward: bool) -> Workload:
    """One layer's forward, or forward + backward (input and weight gradients), on a batch on the
    device."""
    x = x.detach().requires_grad_(backward)
    grad = None

    def fn():
        nonlocal grad
        if not backward:
            with torch.no_grad():
                return layer(x)
        # as a real step does: write the gradients, don't accumulate
        layer.zero_grad(set_to_none=True)
        x.grad = None
        out = layer(x)
        if grad is None:
            grad = torch.randn_like(out)
        out.backward(grad)
        return out

    fn()  # shapes the output gradient once, outside any timing
    return Workload(fn, images=x.shape[0], info={"pass": "fwd_bwd" if backward else "fwd"})


def copy(src: torch.Tensor, dst: torch.Tensor, non_blocking: bool) -> Workload:
    """A copy into a buffer allocated once (host <-> device): pure transfer, no allocation in the
    loop."""
    nbytes = src.numel() * src.element_size()
    return Workload(lambda: dst.copy_(src, non_blocking=non_blocking), bytes=nbytes,
                    info={"bytes": nbytes, "non_blocking": non_blocking})
