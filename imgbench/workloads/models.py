"""Model registry: name -> builder(num_classes, in_channels, image_size), plus its default input.

Every model returns logits; losses take logits (cross-entropy's log-softmax is the stable one).
Nothing is downloaded: torchvision models are built with weights=None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from imgbench.core.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # channels, height, width the model was designed for
    num_classes: int
    min_image_size: int
    summary: str


REGISTRY: dict[str, ModelSpec] = {}


class UnknownModelError(UserError):
    pass


def register(name: str, input_shape: tuple[int, int, int], summary: str, num_classes: int = 10,
             min_image_size: int = 1):
    """Register the decorated builder under `name`; a name taken already is refused, as
    torchvision's register_model refuses it (a second model would silently replace the first)."""
    if name in REGISTRY:
        raise ValueError(f"model {name!r} is already registered ({REGISTRY[name].summary})")

    def wrap(fn):
        REGISTRY[name] = ModelSpec(name, fn, input_shape, num_classes, min_image_size, summary)
        return fn
    return wrap


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
