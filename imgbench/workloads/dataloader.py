"""The dataloader family's workload: one pass of a DataLoader over a source, no model, so that its
images/s are the input pipeline's alone. Workers persist across passes: their start-up is
warm-up."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from imgbench.hw import shm
from imgbench.workloads import data
from imgbench.workloads.steps import Workload

SOURCES = ("pil", "tensor_augment", "tensor")
# CIFAR-10's, in every profile: the family measures the cost per item, not a model's input
IMAGE_SIZE = 32


def dataset(source: str, n: int, image_size: int = IMAGE_SIZE) -> Dataset:
    """`pil`: PNG bytes decoded with PIL and augmented per item; `tensor_augment`: uint8 tensors
    augmented per item; `tensor`: ready float tensors, nothing to do per item."""
    augment = data.train_transform(image_size, data.CIFAR10_MEAN, data.CIFAR10_STD)
    shape = (3, image_size, image_size)
    if source == "pil":
        return data.EncodedImages(n, image_size, transform=augment)
    if source == "tensor_augment":
        return data.TensorImages(*data.synthetic_uint8(n, shape), augment)
    if source == "tensor":
        return data.SyntheticImages(n, shape)
    raise ValueError(f"unknown source {source!r} (valid: {', '.join(SOURCES)})")


def one_pass(loader) -> None:
    for _ in loader:
        pass


def unsupported(pin_memory: bool, workers: int = 0, batch_size: int = 1) -> str | None:
    """Why this machine cannot run the case (no GPU to pin for; too little /dev/shm for the
    workers), or None."""
    if pin_memory and not torch.cuda.is_available():
        return "pin_memory needs a CUDA GPU; this machine has none"
    return shm.shortfall(workers, batch_size, (3, IMAGE_SIZE, IMAGE_SIZE))


def workload(source: str, workers: int, pin_memory: bool, batch_size: int, images: int) -> Workload:
    """One pass over `images` images of `source` in whole batches, through `workers` persistent
    workers."""
    loader = data.loader(dataset(source, images), batch_size, num_workers=workers,
                         pin_memory=pin_memory, persistent_workers=workers > 0, drop_last=True)
    n = (images // batch_size) * batch_size
    return Workload(lambda: one_pass(loader), images=n,
                    info={"source": source, "num_workers": workers, "pin_memory": pin_memory,
                          "image_size": IMAGE_SIZE, "images_per_pass": n})
