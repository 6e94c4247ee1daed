"""Model registry: name -> builder(num_classes, in_channels, image_size), plus its default input.

Every model returns logits; losses take logits (cross-entropy's log-softmax is the stable one).
Nothing is downloaded: torchvision models are built with weights=None. A project adds its own with
`imgbench.register_model` (register_model below), from its conftest.py (docs/own-model.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from imgbench.core import config
from imgbench.core.errors import UserError
from imgbench.workloads import registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # channels, height, width the model was designed for
    num_classes: int
    min_image_size: int
    summary: str
    # training GFLOP (forward + backward) per image at input_shape, if declared; else the estimate
    # counts it (bench/estimate.py)
    gflop_per_image: float | None = None
    # light enough for the CPU subset of --device auto --profile full and for quick ddp
    cpu_subset: bool = False


REGISTRY: dict[str, ModelSpec] = {}
_ORIGINS: dict[str, str] = {}  # name -> the file that registered it with register_model


class UnknownModelError(UserError):
    pass


def register(name: str, input_shape: tuple[int, int, int], summary: str, num_classes: int = 10,
             min_image_size: int = 1, gflop_per_image: float | None = None,
             cpu_subset: bool | None = None, origin: str | None = None):
    """Register the decorated builder under `name` (registry.place: a name taken already is
    refused, unless `origin`, the project file registering it, registered it before)."""
    subset = name in config.CPU_SUBSET_MODELS if cpu_subset is None else cpu_subset

    def wrap(fn):
        registry.place(REGISTRY, _ORIGINS, "model", name,
                       ModelSpec(name, fn, tuple(input_shape), num_classes, min_image_size,
                                 summary, gflop_per_image, subset), origin)
        return fn
    return wrap


def register_model(name: str, builder: Callable[..., nn.Module] | None = None, *,
                   input_shape: tuple[int, int, int], num_classes: int = 10, summary: str = "",
                   min_image_size: int = 1, gflop_per_image: float | None = None,
                   cpu_subset: bool = False):
    """The public way to add a model (imgbench.register_model): `builder(num_classes=,
    in_channels=, image_size=)` returns an nn.Module giving logits; `input_shape` (C, H, W) is the
    input it was designed for (the quick profile caps H and W at 32). `gflop_per_image`: training
    GFLOP per image at input_shape for the run's estimate (left out: counted by torch's flop
    counter when first needed). `cpu_subset`: keep its CPU cases under --device auto --profile
    full, and run it in quick-profile ddp. Without `builder`, a decorator."""
    _check(name, input_shape, num_classes, min_image_size, gflop_per_image)
    if builder is None:
        return lambda fn: register_model(name, fn, input_shape=input_shape,
                                         num_classes=num_classes, summary=summary,
                                         min_image_size=min_image_size,
                                         gflop_per_image=gflop_per_image, cpu_subset=cpu_subset)
    if not callable(builder):
        raise UserError(f"register_model({name!r}): the builder {builder!r} is not callable")
    origin = registry.caller()
    register(name, input_shape, summary or f"{name} (registered in {Path(origin).name})",
             num_classes, min_image_size, gflop_per_image, bool(cpu_subset), origin)(builder)
    return builder


def _check(name, input_shape, num_classes, min_image_size, gflop_per_image):
    def bad(what: str):
        raise UserError(f"register_model({name!r}): {what}")
    registry.check_name(f"register_model({name!r})", name, "all")
    shape = tuple(input_shape) if isinstance(input_shape, tuple | list) else ()
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
        bad(f"input_shape {input_shape!r} must be (channels, height, width), positive ints")
    if not isinstance(num_classes, int) or num_classes < 1:
        bad(f"num_classes {num_classes!r} must be an int >= 1")
    if not isinstance(min_image_size, int) or min_image_size < 1:
        bad(f"min_image_size {min_image_size!r} must be an int >= 1")
    if gflop_per_image is not None and not (isinstance(gflop_per_image, int | float)
                                            and gflop_per_image > 0):
        bad(f"gflop_per_image {gflop_per_image!r} must be a number > 0, or None to count it")


def cpu_subset() -> list[str]:
    """The models of the CPU subset (--device auto --profile full) and of quick-profile ddp: the
    built-in light ones (config.CPU_SUBSET_MODELS) and the registered ones marked so."""
    return [n for n, s in REGISTRY.items() if s.cpu_subset]


def names() -> list[str]:
    return sorted(REGISTRY)


def spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r} (valid: {', '.join(names())})") from None


def build(name: str, num_classes: int | None = None, in_channels: int | None = None,
          image_size: int | None = None) -> nn.Module:
    """Build a registered model; arguments left out take the model's defaults."""
    s = spec(name)
    channels, size, _ = s.input_shape
    image_size = size if image_size is None else image_size
    if image_size < s.min_image_size:
        raise ValueError(f"model {name!r} needs images of at least "
                         f"{s.min_image_size}x{s.min_image_size}, got {image_size}x{image_size}")
    num_classes = s.num_classes if num_classes is None else num_classes
    in_channels = channels if in_channels is None else in_channels
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"model {name!r} needs num_classes and in_channels >= 1, "
                         f"got {num_classes} and {in_channels}")
    return s.build(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def _valid_conv(size: int) -> int:
    return size - 2  # 3x3 kernel, no padding (Keras' "valid")


@register("mlp", (1, 28, 28), "flatten -> 2 x (dense 512 + ReLU) -> logits (MNIST-size input)")
def mlp(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
        hidden: int = 512) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@register("kerascnn", (3, 32, 32),
          "the small Keras CIFAR-10 CNN: conv32-pool-conv64-pool-dense64-logits",
          min_image_size=10)
def kerascnn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    size = _valid_conv(_valid_conv(image_size) // 2) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * size * size, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )


@register("tinyvgg", (3, 64, 64), "CNN Explainer's TinyVGG: 2 x (conv10-conv10-pool) -> logits",
          min_image_size=16)
def tinyvgg(num_classes: int = 10, in_channels: int = 3, image_size: int = 64,
            width: int = 10) -> nn.Module:
    size = _valid_conv(_valid_conv(_valid_conv(_valid_conv(image_size)) // 2)) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3), nn.ReLU(),
        nn.Conv2d(width, width, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3), nn.ReLU(),
        nn.Conv2d(width, width, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(width * size * size, num_classes),
    )


def _torchvision_resnet(name: str, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision  # here, not at import: it takes as long to import as torch itself

    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


@register("resnet18", (3, 224, 224), "torchvision ResNet-18, no weights", num_classes=1000)
def resnet18(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return _torchvision_resnet("resnet18", num_classes, in_channels)


@register("resnet50", (3, 224, 224), "torchvision ResNet-50, no weights", num_classes=1000)
def resnet50(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return _torchvision_resnet("resnet50", num_classes, in_channels)


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]


@register("speednet", (3, 32, 32),
          "fast CIFAR-10 ResNet-style net after the public speed records, ~2.0 M params",
          min_image_size=9)
def speednet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
             widths: tuple[int, int, int] = (64, 256, 256)) -> nn.Module:
    """airbench-style: a 2x2 stem conv, then three blocks of conv-pool-bn-gelu-conv-bn-gelu,
    max-pool, linear.

    The stem takes 32 to 31 and every block halves the resolution (31 -> 15 -> 7 -> 3); the head
    pools whatever is left, so any input of at least 9x9 works.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 24, 2, padding=0, bias=False), nn.GELU()]
    c_in = 24
    for w in widths:
        layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w),
                   nn.GELU(), *_conv_bn(w, w)]
        c_in = w
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes, bias=False)]
    return nn.Sequential(*layers)
