"""The epoch family's timed unit: a full training pass over a dataset, one call an epoch, each call
recording where its time went on the host (waiting for data, copying it, the rest)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from imgbench.core.config import Profile
from imgbench.workloads.steps import Trainer, Workload, count_flops


class EpochClock:
    """Per-epoch host time: waiting for the next batch (data stall), copying it to the device,
    total."""

    def __init__(self):
        self.epochs: list[tuple[float, float, float]] = []

    def shares(self, skip: int = 0) -> dict:
        """Shares of the epochs after the first `skip` (warm-up), summed over those epochs."""
        epochs = self.epochs[skip:]
        if not epochs:
            return {}
        wait, copy, total = (sum(e[i] for e in epochs) for i in range(3))
        return {"data_stall_share": wait / total, "copy_share": copy / total,
                "epochs_recorded": len(epochs)}


def epoch(loader: Iterable, trainer: Trainer, device: torch.device, sync: Callable[[], None],
          images: int, flops_per_image: int = 0, info: dict | None = None,
          memory_format: torch.memory_format = torch.contiguous_format,
          threads: int | None = None) -> Workload:
    """One pass over `loader`: fetch, copy to the device (non_blocking; pinned memory makes it
    async), train step. Ends with the device synchronised, as an epoch does before evaluating or
    logging. `threads`: the intra-op threads it trains with (restored after), where its loader's
    workers take the other cores."""
    clock = EpochClock()

    def fn():
        if threads is None:
            return one_pass()
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return one_pass()
        finally:
            torch.set_num_threads(previous)

    def one_pass():
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
    """FLOPs of one training step's forward and backward, per image (the optimizer's are not
    counted)."""
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
