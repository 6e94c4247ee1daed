"""pytest plugin: the command-line axes, the `case` and `measure` fixtures, device-synchronising
timers, and the environment recorded in every pytest-benchmark JSON."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass

import pytest
import torch
from pytest_benchmark.utils import SecondsDecimal

import imgbench
from imgbench import axes, data, devices, models, timing
from imgbench.axes import AxisError
from imgbench.data import DatasetError
from imgbench.devices import DeviceError
from imgbench.workloads import Workload

SEED = 0
# pytest-benchmark's own defaults: a value still equal to them was not chosen by the user.
_BENCH_DEFAULT_MIN_ROUNDS, _BENCH_DEFAULT_MAX_TIME = 5, 1.0


@dataclass(frozen=True)
class Settings:
    devices: list[str]
    batch_sizes: list[int]
    models: list[str]
    profile: axes.Profile
    threads: int
    optimizer: str
    dataset: str
    data_root: str | None


SETTINGS = pytest.StashKey[Settings]()
DATASET = pytest.StashKey[object]()


def pytest_addoption(parser):
    g = parser.getgroup("imgbench", "imgbench: image-classifier benchmarks")
    g.addoption("--device", default="auto",
                help=f"comma list of devices to run on ({devices.VALID}); auto: the CPU plus every "
                     "accelerator present. Default: auto")
    g.addoption("--batch-size", default="32,128", help="comma list of batch sizes. Default: 32,128")
    g.addoption("--profile", default="quick",
                help="; ".join(f"{p.name}: {p.summary}" for p in axes.PROFILES.values()) + ". Default: quick")
    g.addoption("--model", default="all", help="comma list of models, or all. Default: all")
    g.addoption("--threads", default=None,
                help="CPU threads for torch (torch.set_num_threads). Default: every core this process may use")
    g.addoption("--optimizer", default="adam", help=f"train-step optimizer ({', '.join(axes.OPTIMIZERS)}). "
                                                    "Default: adam")
    g.addoption("--dataset", default="synthetic",
                help=f"where batches come from ({', '.join(axes.DATASETS)}). Default: synthetic")
    g.addoption("--data-root", default=None, help="folder holding the dataset for --dataset cifar10/mnist")


def settings_from(config) -> Settings:
    opt = config.getoption
    threads = opt("threads")
    dataset = axes.choice("dataset", opt("dataset"), axes.DATASETS)
    return Settings(
        devices=devices.parse(opt("device")),
        batch_sizes=axes.batch_sizes(opt("batch_size")),
        models=axes.model_names(opt("model")),
        profile=axes.profile(opt("profile")),
        threads=devices.usable_cores() if threads is None else axes.positive_int("thread count", threads),
        optimizer=axes.choice("optimizer", opt("optimizer"), axes.OPTIMIZERS),
        dataset=dataset,
        data_root=opt("data_root"),
    )


def pytest_configure(config):
    try:
        s = settings_from(config)
        if s.dataset != "synthetic":
            config.stash[DATASET] = data.real(s.dataset, s.data_root)
    except (AxisError, DeviceError, DatasetError) as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[SETTINGS] = s
    torch.set_num_threads(s.threads)
    if any(d.startswith("cuda") for d in s.devices):
        torch.backends.cudnn.benchmark = True  # autotune convolutions; warm-up pays for it


@pytest.hookimpl(tryfirst=True)  # pytest-benchmark makes its session in its own (trylast) configure
def pytest_sessionstart(session):
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    s = config.stash.get(SETTINGS, None)
    if bs is None or s is None:
        return
    if config.getoption("benchmark_min_rounds") == _BENCH_DEFAULT_MIN_ROUNDS:
        bs.options["min_rounds"] = s.profile.min_rounds
    if float(config.getoption("benchmark_max_time")) == _BENCH_DEFAULT_MAX_TIME:
        bs.options["max_time"] = SecondsDecimal(s.profile.max_time)


def pytest_report_header(config):
    s = config.stash.get(SETTINGS, None)
    if s is None:
        return None
    return (f"imgbench {imgbench.__version__}: devices={','.join(s.devices)} profile={s.profile.name} "
            f"threads={s.threads} torch={torch.__version__} dataset={s.dataset}")


def pytest_generate_tests(metafunc):
    s = metafunc.config.stash[SETTINGS]
    names = metafunc.fixturenames
    # Order fixes the id: kerascnn-cuda-bs128. Params stay plain strings and ints for the JSON.
    if "model" in names:
        metafunc.parametrize("model", s.models, ids=s.models)
    if "device" in names:
        metafunc.parametrize("device", s.devices, ids=s.devices)
    if "batch_size" in names:
        metafunc.parametrize("batch_size", s.batch_sizes, ids=[f"bs{b}" for b in s.batch_sizes])


def pytest_collection_modifyitems(config, items):
    # pytest-benchmark's only per-round hook is its timer: give each case one that waits for its device.
    for item in items:
        device = getattr(getattr(item, "callspec", None), "params", {}).get("device")
        if device is None or "benchmark" not in item.fixturenames:
            continue
        mark = item.get_closest_marker("benchmark")
        kwargs = {**(mark.kwargs if mark else {}), "timer": timing.timer_for(device)}
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except torch.OutOfMemoryError:
        params = getattr(getattr(item, "callspec", None), "params", {})
        device = params.get("device", "the device")
        where = devices.device_name(device) if device.startswith("cuda") else device
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        pytest.skip(f"out of memory at batch {params.get('batch_size', '?')} on {where}")


@dataclass
class Case:
    """One point of the sweep: builds its model and its batch on its device."""

    model: str
    device: str
    batch_size: int
    settings: Settings
    dataset: object = None

    @property
    def shape(self) -> tuple[int, int, int]:
        if self.dataset is not None:
            channels, size = data.REAL[self.settings.dataset][3]
            return channels, size, size
        channels, size, _ = models.spec(self.model).input_shape
        cap = self.settings.profile.max_image_size
        size = min(size, cap) if cap else size
        return channels, size, size

    @property
    def num_classes(self) -> int:
        return 10 if self.dataset is not None else models.spec(self.model).num_classes

    def build_model(self) -> torch.nn.Module:
        torch.manual_seed(SEED)
        c, h, _ = self.shape
        return models.build(self.model, self.num_classes, c, h).to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset is None:
            return data.synthetic_batch(self.batch_size, self.shape, self.num_classes, SEED, self.device)
        n = len(self.dataset)
        items = [self.dataset[i % n] for i in range(self.batch_size)]
        x = torch.stack([x for x, _ in items])
        y = torch.stack([torch.as_tensor(y) for _, y in items])
        return x.to(self.device), y.to(self.device)

    def info(self) -> dict:
        c, h, w = self.shape
        return {"image_size": h, "in_channels": c, "num_classes": self.num_classes,
                "dataset": self.settings.dataset, "profile": self.settings.profile.name,
                "threads": self.settings.threads, "device_name": devices.device_name(self.device)}


@pytest.fixture
def case(request, model, device, batch_size) -> Case:
    cfg = request.config
    return Case(model, device, batch_size, cfg.stash[SETTINGS], cfg.stash.get(DATASET, None))


@pytest.fixture
def measure(benchmark, request):
    """measure(workload): warm up, time with pytest-benchmark, store the work done and images/s."""
    s = request.config.stash[SETTINGS]

    def run(w: Workload, info: dict | None = None):
        device = request.node.callspec.params.get("device", "cpu")
        calls = 0 if benchmark.disabled else s.profile.warmup_calls
        timing.warm_up(w.fn, calls, devices.synchronizer(device))
        benchmark.extra_info.update({**(info or {}), **w.info, "images": w.images, "warmup_calls": calls})
        result = benchmark(w.fn)
        if benchmark.stats is not None and w.images:
            benchmark.extra_info["images_per_s"] = w.images / benchmark.stats.stats.median
        return result

    return run


def pytest_benchmark_update_machine_info(config, machine_info):
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):  # changes every call: would make every comparison warn
        cpu.pop("hz_actual", None)
        cpu.pop("hz_actual_friendly", None)
    s = config.stash.get(SETTINGS, None)
    env = devices.environment(threads=s.threads if s else None)
    machine_info["imgbench"] = env
    machine_info["fingerprint"] = env["fingerprint"]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    s = config.stash.get(SETTINGS, None)
    if s is not None:
        output_json["imgbench"] = {"version": imgbench.__version__, "profile": s.profile.name,
                                   "devices": s.devices, "threads": s.threads, "dataset": s.dataset}


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    # pytest-benchmark names the storage relative to the working directory when the machines differ,
    # which raises for storage elsewhere (imgbench run --storage /elsewhere): warn without it instead.
    try:
        return (yield)
    except ValueError:
        now = json.loads(json.dumps(machine_info, default=str))  # tuples -> lists, as stored
        saved = compared_benchmark.get("machine_info", {})
        keys = sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))
        benchmarksession.logger.warning(f"Benchmark machine_info is different in: {', '.join(keys)} "
                                        f"(storage: {benchmarksession.storage})")
        return None
