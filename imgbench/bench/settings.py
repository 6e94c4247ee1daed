"""A run's settings parsed and checked: every option of core.options, model names against the
registry, device names against this machine. The plugin parses its pytest options here, and the
command line parses its own the same way before pytest starts."""

from __future__ import annotations

from collections.abc import Callable

from imgbench.core import config
from imgbench.core.options import (
    CASE_SETS,
    AxisError,
    Settings,
    batch_sizes,
    choice,
    choices,
    items,
    positive_int,
    positive_seconds,
    profile,
)
from imgbench.hw import devices
from imgbench.workloads import datasets, models


def from_options(opt: Callable[[str], str | None]) -> Settings:
    """Parse and check run options; `opt(dest)` returns an option's raw value (None when not
    given)."""
    dataset = choice("dataset", opt("dataset"), ("synthetic", *datasets.names()))
    if opt("data_root") is not None and dataset == "synthetic":
        raise AxisError(f"--data-root {opt('data_root')!r} needs a real dataset (valid: "
                        f"{', '.join(f'--dataset {n}' for n in datasets.names())})")
    threads = opt("threads")
    found, chosen = devices.parse(opt("device")), profile(opt("profile"))
    return Settings(
        devices=found,
        batch_sizes=batch_sizes(opt("batch_size")),
        models=model_names(opt("model")),
        profile=chosen,
        threads=(devices.usable_cores() if threads is None
                 else positive_int("thread count", threads)),
        optimizer=choice("optimizer", opt("optimizer"), config.OPTIMIZERS),
        dataset=dataset,
        data_root=opt("data_root"),
        precisions=choices("precision", opt("precision"), config.PRECISIONS),
        memory_formats=choices("memory format", opt("memory_format"), config.MEMORY_FORMATS),
        compile=choices("compile", opt("compile"), config.COMPILE),
        cases=choice("case set", opt("cases"), CASE_SETS),
        case_timeout=(None if opt("case_timeout") is None
                      else positive_seconds("case timeout", opt("case_timeout"))),
        cross_check=choice("cross-check", opt("cross_check") or "off", ("off", "on")) == "on",
        cpu_subset="auto" in [d.strip() for d in opt("device").split(",")] and chosen.name == "full"
        and any(d != "cpu" for d in found),
    )


def model_names(spec: str) -> list[str]:
    """A comma list of model names; `all` stands for every registered model."""
    out = []
    for name in items("model", spec, "all, " + ", ".join(models.names())):
        if name != "all" and name not in models.REGISTRY:
            raise AxisError(f"unknown model {name!r} (valid: all, {', '.join(models.names())})")
        out += [n for n in (models.names() if name == "all" else [name]) if n not in out]
    return out
