"""Dataset registry: the real datasets a run's batches can come from (--dataset NAME, read from
--data-root), by name. CIFAR-10 and MNIST are built in; a project adds its own with
`imgbench.register_dataset` from its conftest.py (docs/own-model.md). Every dataset is held in
memory as uint8 images and normalised per channel on access, augmented where the bench asks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from imgbench.core.errors import UserError
from imgbench.workloads import data, registry
from imgbench.workloads.data import DatasetError

Reader = Callable[..., tuple]  # reader(root, train=) -> (uint8 images (N, C, H, W), labels (N,))


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    read: Reader
    image_shape: tuple[int, int, int]  # channels, height, width of every image
    num_classes: int
    mean: tuple[float, ...] | None  # per channel, of pixels scaled to [0, 1]; None: measured
    std: tuple[float, ...] | None
    summary: str


REGISTRY: dict[str, DatasetSpec] = {}
_ORIGINS: dict[str, str] = {}  # name -> the file that registered it with register_dataset


def _builtin(name: str, reader, shape, mean, std, summary: str) -> None:
    def read(root, train=True):
        if root is None:
            raise DatasetError(f"{name}: no data root given (pass the folder that holds the "
                               "dataset: --data-root)")
        ds = reader(root, train=train)
        return ds.images, ds.labels
    REGISTRY[name] = DatasetSpec(name, read, shape, 10, mean, std, summary)


_builtin("cifar10", data.cifar10, (3, 32, 32), data.CIFAR10_MEAN, data.CIFAR10_STD,
         "CIFAR-10 from --data-root (binary or python version), never downloaded")
_builtin("mnist", data.mnist, (1, 28, 28), data.MNIST_MEAN, data.MNIST_STD,
         "MNIST from --data-root/MNIST/raw, never downloaded")


def register_dataset(name: str, reader: Reader | None = None, *,
                     image_shape: tuple[int, int, int], num_classes: int = 10,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     summary: str = ""):
    """The public way to add a dataset (imgbench.register_dataset): `reader(root, train=True)`
    returns (images, labels), uint8 images of `image_shape` (C, H, W; square) stacked as (N, C, H,
    W) and integer labels in [0, num_classes), as tensors or numpy arrays; `root` is --data-root
    (None when not given). `mean` and `std`: per channel, of pixels scaled to [0, 1]; left out,
    measured on the images read. Without `reader`, a decorator."""
    call = f"register_dataset({name!r})"
    registry.check_name(call, name, "synthetic")
    shape = _check(call, image_shape, num_classes, mean, std)
    if reader is None:
        return lambda fn: register_dataset(name, fn, image_shape=image_shape,
                                           num_classes=num_classes, mean=mean, std=std,
                                           summary=summary)
    if not callable(reader):
        raise UserError(f"{call}: the reader {reader!r} is not callable")
    origin = registry.caller()
    spec = DatasetSpec(name, reader, shape, num_classes,
                       None if mean is None else tuple(map(float, mean)),
                       None if std is None else tuple(map(float, std)),
                       summary or f"{name} (registered in {Path(origin).name})")
    registry.place(REGISTRY, _ORIGINS, "dataset", name, spec, origin)
    return reader


def _check(call, image_shape, num_classes, mean, std) -> tuple[int, int, int]:
    def bad(what: str):
        raise UserError(f"{call}: {what}")
    shape = tuple(image_shape) if isinstance(image_shape, tuple | list) else ()
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
        bad(f"image_shape {image_shape!r} must be (channels, height, width), positive ints")
    if shape[1] != shape[2]:
        bad(f"image_shape {image_shape!r}: images must be square (a model is built for one "
            "image size)")
    if not isinstance(num_classes, int) or num_classes < 1:
        bad(f"num_classes {num_classes!r} must be an int >= 1")
    for what, values, low in (("mean", mean, 0.0), ("std", std, 1e-12)):
        if values is not None and not (
                isinstance(values, Sequence) and len(values) == shape[0]
                and all(isinstance(v, int | float) and v >= low for v in values)):
            bad(f"{what} {values!r} must be {shape[0]} number(s), one per channel"
                + (", each > 0" if what == "std" else ", each >= 0") + ", or None to measure it")
    return shape


def names() -> list[str]:
    return sorted(REGISTRY)


def spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r} (valid: {', '.join(names())})") from None


def load(name: str, root: str | Path | None, train: bool = True,
         augment: bool = False) -> data.TensorImages:
    """A dataset by name, read whole, checked against its registration, normalised (and augmented
    if asked); the loaded images carry the mean and std used (.mean, .std)."""
    s = spec(name)
    images, labels, mean, std = _read_normalised(s, None if root is None else str(root), train)
    size = s.image_shape[1]
    t = data.train_transform(size, mean, std) if augment else data.eval_transform(mean, std)
    return data.TensorImages(images, labels, t, mean, std)


# `imgbench run` checks the dataset before pytest starts, then its plugin loads it in the same
# process: read once (a failed read is not kept). Keyed by the registration, not only the name.
@lru_cache(maxsize=1)
def _read_normalised(s: DatasetSpec, root: str | None, train: bool) -> tuple:
    """The dataset's images, labels and the mean and std that normalise them."""
    images, labels = _read(s, root, train)
    mean, std = s.mean, s.std
    if mean is None or std is None:
        found = measured(images)
        mean, std = mean or found[0], std or found[1]
    return images, labels, mean, std


def _read(s: DatasetSpec, root: str | None, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        got = s.read(root, train=train)
    except UserError:
        raise
    except Exception as e:  # a project's reader: one line, not its traceback
        raise DatasetError(f"dataset {s.name!r}: its reader failed: {type(e).__name__}: {e}"
                           ) from None
    if not (isinstance(got, tuple | list) and len(got) == 2):
        raise DatasetError(f"dataset {s.name!r}: its reader returned {type(got).__name__}, not "
                           "(images, labels)")
    images, labels = (torch.as_tensor(v) for v in got)
    where = f"dataset {s.name!r}: the reader's"
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != s.image_shape:
        raise DatasetError(f"{where} images are {images.dtype} {tuple(images.shape)}; registered: "
                           f"uint8 (N, {', '.join(map(str, s.image_shape))})")
    if labels.dim() != 1 or len(labels) != len(images) or len(images) == 0:
        raise DatasetError(f"{where} labels have shape {tuple(labels.shape)} for {len(images)} "
                           "images; expected one label per image, and at least one image")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DatasetError(f"{where} labels are {labels.dtype}; expected integers")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= s.num_classes:
        raise DatasetError(f"{where} labels run from {lo} to {hi}; num_classes={s.num_classes} "
                           f"allows 0 to {s.num_classes - 1}")
    return images.contiguous(), labels.to(torch.int64)


def measured(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], summed in chunks (a whole
    dataset in float64 would take eight times its memory)."""
    c = images.shape[1]
    total, squares, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        squares += x.square().sum(1)
        n += x.shape[1]
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(0).sqrt().clamp_min(1e-6)  # a constant channel
    return tuple(mean.tolist()), tuple(std.tolist())
