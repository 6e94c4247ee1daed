"""The axes a run sweeps and the profiles it runs in; parsing of their command-line values.

Shared by the pytest plugin (usage error, exit 4) and the CLI (exit 2), so both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgbench import models


class AxisError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    name: str
    max_image_size: int | None  # images larger than a model's default are never made
    warmup_calls: int           # untimed calls before pytest-benchmark calibrates
    min_rounds: int             # pytest-benchmark defaults unless given on the command line
    max_time: float
    long_rounds: int            # rounds of epoch-long cases (no calibration call)
    epoch_images: int           # images in one epoch of the epoch family
    loader_images: int          # images in one pass of the dataloader family
    transfer_images: int        # images in one transfer-learning epoch
    conv_scale: int             # spatial size multiplier of the conv family's layers
    summary: str


PROFILES = {
    "quick": Profile("quick", 32, 2, 5, 0.5, 3, 512, 512, 256, 1,
                     "images at most 32x32, 2 warm-up calls, >= 5 rounds in ~0.5 s, 512-image epochs; for CI"),
    "full": Profile("full", None, 10, 10, 2.0, 5, 50_000, 10_000, 5_000, 4,
                    "each model's real input size, 10 warm-up calls, >= 10 rounds in ~2 s, "
                    "50,000-image epochs (CIFAR-10's training set)"),
}
FAMILIES = {  # family -> benches/bench_<family>.py
    "forward": "inference: eval mode, no grad, batch on the device",
    "train_step": "forward, loss, backward, optimizer step, batch on the device",
    "conv": "Conv1d/2d/3d and pooling layers alone, forward and forward+backward, FLOPs and TFLOP/s",
    "h2d": "host<->device copies: pageable vs pinned, blocking vs non_blocking, sizes, dtypes; copy share of a step",
    "dataloader": "images/s of the input pipeline alone: workers, pin_memory, PIL + augmentation vs tensors",
    "epoch": "a full training epoch: DataLoader path vs device-resident path, data-stall share",
    "transfer": "frozen-backbone transfer learning: full fine-tune vs last layer vs last layer on cached features",
    "checkpoint": "saving and restoring model + optimizer state (atomic torch.save, torch.load weights_only)",
    "ddp": "synchronous data-parallel epochs (DDP via torchrun) at world sizes 1, 2, 4...: scaling, communication",
    "harness": "one empty timed round: the synchronising timer's own cost per round",
}
OPTIMIZERS = ("adam", "sgd")
DATASETS = ("synthetic", "cifar10", "mnist")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
MEMORY_FORMATS = ("nchw", "channels_last")
COMPILE = ("off", "on")


@dataclass(frozen=True)
class Settings:
    """Every axis value and run option of one run, checked."""

    devices: list[str]
    batch_sizes: list[int]
    models: list[str]
    profile: Profile
    threads: int
    optimizer: str
    dataset: str
    data_root: str | None
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    memory_formats: list[str] = field(default_factory=lambda: ["nchw"])
    compile: list[str] = field(default_factory=lambda: ["off"])


def settings(opt) -> Settings:
    """Parse and check run options; `opt(name)` returns an option's raw value (None when not given)."""
    from imgbench import devices

    dataset = choice("dataset", opt("dataset"), DATASETS)
    if opt("data_root") is not None and dataset == "synthetic":
        raise AxisError(f"--data-root {opt('data_root')!r} needs a real dataset (valid: --dataset cifar10, "
                        "--dataset mnist)")
    threads = opt("threads")
    return Settings(
        devices=devices.parse(opt("device")),
        batch_sizes=batch_sizes(opt("batch_size")),
        models=model_names(opt("model")),
        profile=profile(opt("profile")),
        threads=devices.usable_cores() if threads is None else positive_int("thread count", threads),
        optimizer=choice("optimizer", opt("optimizer"), OPTIMIZERS),
        dataset=dataset,
        data_root=opt("data_root"),
        precisions=choices("precision", opt("precision"), PRECISIONS),
        memory_formats=choices("memory format", opt("memory_format"), MEMORY_FORMATS),
        compile=choices("compile", opt("compile"), COMPILE),
    )


def choices(what: str, spec: str, valid) -> list[str]:
    out = []
    for value in _items(what, spec, ", ".join(valid)):
        if choice(what, value, valid) not in out:
            out.append(value)
    return out


def choice(what: str, value: str, valid) -> str:
    if value not in valid:
        raise AxisError(f"unknown {what} {value!r} (valid: {', '.join(valid)})")
    return value


def profile(name: str) -> Profile:
    return PROFILES[choice("profile", name, tuple(PROFILES))]


def model_names(spec: str) -> list[str]:
    """A comma list of model names; `all` stands for every registered model."""
    out = []
    for name in _items("model", spec, "all, " + ", ".join(models.names())):
        if name != "all" and name not in models.REGISTRY:
            raise AxisError(f"unknown model {name!r} (valid: all, {', '.join(models.names())})")
        out += [n for n in (models.names() if name == "all" else [name]) if n not in out]
    return out


def positive_int(what: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AxisError(f"{what} {text!r} is not an integer (valid: a positive integer)") from None
    if value < 1:
        raise AxisError(f"{what} {value} is not positive (valid: a positive integer)")
    return value


def batch_sizes(spec: str) -> list[int]:
    out = []
    for text in _items("batch size", spec, "positive integers, e.g. 32,128"):
        value = positive_int("batch size", text)
        if value not in out:
            out.append(value)
    return out


def _items(what: str, spec: str, valid: str) -> list[str]:
    parts = [p.strip() for p in spec.split(",")]
    if not all(parts):
        raise AxisError(f"empty {what} in {spec!r} (valid: {valid})")
    return parts
