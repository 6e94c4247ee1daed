"""pytest plugin: the command-line axes, the `case` and `measure` fixtures, device-synchronising
timers, and the environment recorded in every pytest-benchmark JSON."""

from __future__ import annotations

import gc
import json
import os
import shlex
import traceback
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
    if opt("data_root") is not None and dataset == "synthetic":
        raise AxisError(f"--data-root {opt('data_root')!r} needs a real dataset (valid: --dataset cifar10, "
                        "--dataset mnist)")
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


@pytest.hookimpl(tryfirst=True)  # pytest-benchmark makes its session in its own (trylast) configure
def pytest_sessionstart(session):
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    s = config.stash.get(SETTINGS, None)
    if bs is None or s is None:
        return
    if not _given(config, "--benchmark-min-rounds"):
        bs.options["min_rounds"] = s.profile.min_rounds
    if not _given(config, "--benchmark-max-time"):
        bs.options["max_time"] = SecondsDecimal(s.profile.max_time)


def _given(config, flag: str) -> bool:
    """Whether the user set `flag` (command line, PYTEST_ADDOPTS or ini addopts)."""
    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
            *config.getini("addopts")]
    return any(a == flag or a.startswith(flag + "=") for a in map(str, args))


def pytest_report_header(config):
    s = config.stash.get(SETTINGS, None)
    if s is None:
        return None
    return (f"imgbench {imgbench.__version__}: devices={','.join(s.devices)} profile={s.profile.name} "
            f"threads={s.threads} torch={torch.__version__} dataset={s.dataset}")


def _is_bench(path) -> bool:
    # The plugin loads in every pytest run of the environment: leave other projects' tests alone.
    return path is not None and path.name.startswith("bench_")


def pytest_generate_tests(metafunc):
    if not _is_bench(metafunc.definition.path):
        return
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
        if device is None or "benchmark" not in item.fixturenames or not _is_bench(item.path):
            continue
        mark = item.get_closest_marker("benchmark")
        # No garbage collection inside timed rounds: it would land in whichever round it hits.
        kwargs = {"disable_gc": True, **(mark.kwargs if mark else {}), "timer": timing.timer_for(device)}
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except torch.OutOfMemoryError as e:
        reason = _too_big(item, "out of memory")
        traceback.clear_frames(e.__traceback__)  # the skip below keeps this error, and so the frames' tensors
    except ValueError as e:
        if "Expected more than 1 value per channel" not in str(e):
            raise
        reason = _too_big(item, "too few values per channel for BatchNorm training")
        traceback.clear_frames(e.__traceback__)
    gc.collect()
    device = getattr(getattr(item, "callspec", None), "params", {}).get("device", "cpu")
    if device.startswith("cuda"):
        with torch.cuda.device(torch.device(device)):
            torch.cuda.empty_cache()
    pytest.skip(reason)


def _too_big(item, what: str) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    device = params.get("device", "cpu")
    where = devices.device_name(device) if device.startswith("cuda") else device
    return f"{what} at batch {params.get('batch_size', '?')} on {where}"


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
                "device_name": devices.device_name(self.device)}


@pytest.fixture
def conditions(request) -> dict:
    """The numeric conditions a case runs under: set for the case, recorded, restored after it.

    Threads as chosen; on CUDA, cuDNN autotuning on and TF32 off (fp32 means fp32, whatever
    torch's defaults); on the CPU, denormals flushed, since a fixed batch trains towards tiny
    gradients whose denormal optimizer state would slow later rounds.
    """
    s = request.config.stash[SETTINGS]
    device = getattr(getattr(request.node, "callspec", None), "params", {}).get("device", "cpu")
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (torch.get_num_threads(), cudnn.benchmark, cuda.allow_tf32, cudnn.allow_tf32)
    torch.set_num_threads(s.threads)
    on_cuda = device.startswith("cuda")
    if on_cuda:
        cudnn.benchmark, cuda.allow_tf32, cudnn.allow_tf32 = True, False, False
    flushed = torch.set_flush_denormal(True) if device == "cpu" else False
    yield {"threads": s.threads, "cudnn_benchmark": cudnn.benchmark if on_cuda else None,
           "tf32": False if on_cuda else None, "flush_denormal": flushed}
    torch.set_num_threads(saved[0])
    cudnn.benchmark, cuda.allow_tf32, cudnn.allow_tf32 = saved[1:]
    if flushed:
        torch.set_flush_denormal(False)


@pytest.fixture
def case(request, model, device, batch_size, conditions) -> Case:
    cfg = request.config
    return Case(model, device, batch_size, cfg.stash[SETTINGS], cfg.stash.get(DATASET, None))


@pytest.fixture
def measure(benchmark, request, conditions):
    """measure(workload): warm up, time with pytest-benchmark, store the work done and images/s."""
    s = request.config.stash[SETTINGS]

    def run(w: Workload, info: dict | None = None):
        device = getattr(getattr(request.node, "callspec", None), "params", {}).get("device", "cpu")
        calls = 0 if benchmark.disabled else s.profile.warmup_calls
        timing.warm_up(w.fn, calls, devices.synchronizer(device))
        benchmark.extra_info.update({**(info or {}), **w.info, **conditions, "images": w.images,
                                     "warmup_calls": calls})
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
