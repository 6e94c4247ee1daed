"""The one table of run and axis options. The pytest plugin and the `imgbench` CLI both build their
options from it (as pytest-benchmark's plugin and CLI share `add_global_options`); options given are
turned back into pytest arguments here. Run settings are parsed into `Settings` by bench.settings,
which checks model and device names against the registry and this machine. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imgbench.core import config
from imgbench.core.config import Profile
from imgbench.core.errors import UserError


class AxisError(UserError):
    pass


CASE_SETS = ("all", "gate")


@dataclass(frozen=True)
class Option:
    name: str                 # the flag without its dashes: --batch-size
    default: str | None
    help: str
    valid: str = ""           # what values are valid, for `imgbench list`
    unset: str = "none"       # what an option without a default means

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def help_text(self) -> str:
        return f"{self.help}. Default: {self.default}" if self.default is not None else self.help


OPTIONS = (
    Option("device", "auto", f"comma list of devices to run on ({config.DEVICES}); auto: the CPU "
           "plus every accelerator present", config.DEVICES),
    Option("model", "all", "comma list of models, or all",
           "all, or registered model names (imgbench list)"),
    Option("batch-size", "32,128", "comma list of batch sizes", "comma list of positive integers"),
    Option("profile", "quick",
           "; ".join(f"{p.name}: {p.summary}" for p in config.PROFILES.values()),
           ", ".join(config.PROFILES)),
    Option("threads", None, "CPU threads for torch (torch.set_num_threads). Default: every core "
           "this process may use", "a positive integer", "every core this process may use"),
    Option("optimizer", "adam", f"train-step optimizer ({', '.join(config.OPTIMIZERS)})",
           ", ".join(config.OPTIMIZERS)),
    Option("dataset", "synthetic", f"where batches come from ({', '.join(config.DATASETS)}, or "
           "a dataset the project registers: imgbench.register_dataset)",
           f"{', '.join(config.DATASETS)} (cifar10/mnist need --data-root), or a registered one"),
    Option("data-root", None, "folder holding the dataset: cifar10's or mnist's, or the one handed "
           "to a registered dataset's reader", "a folder"),
    Option("precision", "fp32", "comma list of fp32, tf32 (CUDA, TF32 matmuls and convolutions), "
           "bf16 (autocast), fp16 (autocast + GradScaler)", ", ".join(config.PRECISIONS)),
    Option("memory-format", "nchw", "comma list of nchw, channels_last",
           ", ".join(config.MEMORY_FORMATS)),
    Option("compile", "off", "comma list of off, on (torch.compile; compile time stored apart, "
           "never timed)", ", ".join(config.COMPILE)),
    Option("case-timeout", None, "seconds after which a case that has not ended fails as hung (one "
           "line naming it) and the run goes on. Default: the larger of the profile's (quick 300, "
           f"full 1800) and {config.HANG_FACTOR:g}x what the run expects of the case",
           "a positive number of seconds",
           f"the profile's limit, or {config.HANG_FACTOR:g}x the case's estimate"),
    Option("cross-check", "off", "on: after timing, also time cases of >= 1 ms with CUDA events "
           "(perf_counter on the CPU) and store that median beside the suite's (extra_info "
           "cross_check)", "off, on"),
    Option("cases", "all", "all, or gate: only the gate set, the cases a bench marks with "
           "@pytest.mark.gate(**params)", ", ".join(CASE_SETS)),
)
BY_DEST = {o.dest: o for o in OPTIONS}
# Axes of the `case` fixture, in test-id order. A value equal to its option's default stays out of
# the id, so kerascnn-cuda-bs128 keeps its id when bf16 cases (kerascnn-cuda-bs128-bf16) join the
# sweep.
CASE_AXES = ("model", "device", "batch_size", "precision", "memory_format", "compile")
DEFAULTS = {o.dest: o.default for o in OPTIONS}


def add_options(addoption: Callable[..., object]):
    """Declare every option with `addoption`: a pytest option group's, or an argparse parser's
    add_argument."""
    for o in OPTIONS:
        addoption(o.flag, dest=o.dest, default=o.default, help=o.help_text)


def pytest_args(values: dict) -> list[str]:
    """Options given (None: not given) back as pytest arguments, e.g. ['--device', 'cpu', ...]."""
    out = []
    for o in OPTIONS:
        if values.get(o.dest) is not None:
            out += [o.flag, str(values[o.dest])]
    return out


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
    cases: str = "all"                # "gate": only the gate set
    case_timeout: float | None = None  # seconds; None: the profile's
    cross_check: bool = False          # time cases of >= 1 ms a second way too
                                       # (fixtures.cross_check)
    cpu_subset: bool = False           # --device auto --profile full with an accelerator:
                                       # config.CPU_SUBSET

    @property
    def timeout_s(self) -> float:
        """--case-timeout, else the profile's limit: a ddp launch's limit, and the floor of a
        case's (bench/hang.py)."""
        return self.case_timeout if self.case_timeout is not None else self.profile.case_timeout_s

    def axis_values(self) -> dict[str, list]:
        """The values each case axis sweeps, by fixture name."""
        return {"model": self.models, "device": self.devices, "batch_size": self.batch_sizes,
                "precision": self.precisions, "memory_format": self.memory_formats,
                "compile": self.compile}


def choices(what: str, spec: str, valid) -> list[str]:
    out = []
    for value in items(what, spec, ", ".join(valid)):
        if choice(what, value, valid) not in out:
            out.append(value)
    return out


def choice(what: str, value: str, valid) -> str:
    if value not in valid:
        raise AxisError(f"unknown {what} {value!r} (valid: {', '.join(valid)})")
    return value


def profile(name: str) -> Profile:
    return config.PROFILES[choice("profile", name, tuple(config.PROFILES))]


def positive_int(what: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AxisError(f"{what} {text!r} is not an integer (valid: a positive integer)") from None
    if value < 1:
        raise AxisError(f"{what} {value} is not positive (valid: a positive integer)")
    return value


def positive_seconds(what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AxisError(f"{what} {text!r} is not a number "
                        "(valid: a positive number of seconds)") from None
    if not value > 0 or value == float("inf"):
        raise AxisError(f"{what} {text} is not a positive finite number "
                        "(valid: a positive number of seconds)")
    return value


def batch_sizes(spec: str) -> list[int]:
    out = []
    for text in items("batch size", spec, "positive integers, e.g. 32,128"):
        value = positive_int("batch size", text)
        if value not in out:
            out.append(value)
    return out


def items(what: str, spec: str, valid: str) -> list[str]:
    parts = [p.strip() for p in spec.split(",")]
    if not all(parts):
        raise AxisError(f"empty {what} in {spec!r} (valid: {valid})")
    return parts
