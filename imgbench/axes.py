"""The axes a run sweeps and the profiles it runs in; parsing of their command-line values.

Shared by the pytest plugin (usage error, exit 4) and the CLI (exit 2), so both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    summary: str


PROFILES = {
    "quick": Profile("quick", 32, 2, 5, 0.5, "images at most 32x32, 2 warm-up calls, >= 5 rounds in ~0.5 s; for CI"),
    "full": Profile("full", None, 10, 10, 2.0, "each model's real input size, 10 warm-up calls, >= 10 rounds in ~2 s"),
}
FAMILIES = {  # family -> benches/bench_<family>.py
    "forward": "inference: eval mode, no grad, batch on the device",
    "train_step": "forward, loss, backward, optimizer step, batch on the device",
    "harness": "one empty timed round: the synchronising timer's own cost per round",
}
OPTIMIZERS = ("adam", "sgd")
DATASETS = ("synthetic", "cifar10", "mnist")


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
