"""pytest plugin: the command-line axes, the `case`, `conditions` and `measure` fixtures,
device-synchronising timers, and the environment recorded in every pytest-benchmark JSON."""

from __future__ import annotations

import gc
import itertools
import json
import os
import shlex
import sys
import traceback
from pathlib import Path

import pytest
import torch
from pytest_benchmark.utils import SecondsDecimal

import imgbench
from imgbench import axes, cases, data, devices, peaks, timing
from imgbench.axes import AxisError, Settings
from imgbench.data import DatasetError
from imgbench.devices import DeviceError
from imgbench.workloads import Workload

SETTINGS = pytest.StashKey[Settings]()
DATASET = pytest.StashKey[object]()
PEAKS = pytest.StashKey[peaks.Peaks]()
# Axes of the `case` fixture, in id order; a value equal to the default stays out of the id, so
# kerascnn-cuda-bs128 keeps its id when bf16 cases (kerascnn-cuda-bs128-bf16) join the sweep.
CASE_AXES = ("model", "device", "batch_size", "precision", "memory_format", "compile")
DEFAULT_ID = {"precision": "fp32", "memory_format": "nchw", "compile": "off"}


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
    g.addoption("--precision", default="fp32",
                help="comma list of fp32, tf32 (CUDA, TF32 matmuls and convolutions), bf16 (autocast), fp16 "
                     "(autocast + GradScaler). Default: fp32")
    g.addoption("--memory-format", default="nchw", help="comma list of nchw, channels_last. Default: nchw")
    g.addoption("--compile", default="off",
                help="comma list of off, on (torch.compile; compile time stored apart, never timed). Default: off")


def settings_from(config) -> Settings:
    return axes.settings(config.getoption)


def pytest_configure(config):
    try:
        s = settings_from(config)
        if s.dataset != "synthetic":
            config.stash[DATASET] = data.real(s.dataset, s.data_root)
    except (AxisError, DeviceError, DatasetError) as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[SETTINGS] = s
    config.stash[PEAKS] = peaks.Peaks()
    _first_run_without_baseline(config)


def _first_run_without_baseline(config):
    """`--benchmark-compare` with nothing stored yet: say so and run without comparing (pytest-benchmark
    would warn, or stop with a usage error under --benchmark-compare-fail). Runs before its configure."""
    compare = config.getoption("benchmark_compare", None)
    if not compare:
        return
    from pytest_benchmark.utils import get_machine_id

    storage = str(config.getoption("benchmark_storage"))
    if not storage.startswith("file://") and "://" in storage:
        return  # another storage backend: leave it to pytest-benchmark
    folder = Path(storage.removeprefix("file://")) / get_machine_id()
    pattern = "[0-9][0-9][0-9][0-9]_*.json" if compare is True else f"{str(compare).rstrip('*')}*.json"
    if Path(str(compare)).is_file() or any(folder.glob(pattern)):
        return
    config.option.benchmark_compare = False
    config.option.benchmark_compare_fail = None
    sys.stderr.write(f"imgbench: no stored run to compare with in {folder} (first run?): running without "
                     "comparing or gating; save this run (--benchmark-autosave) to make it the baseline\n")


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
    values = {"model": s.models, "device": s.devices, "batch_size": s.batch_sizes, "precision": s.precisions,
              "memory_format": s.memory_formats, "compile": s.compile}
    names = [a for a in CASE_AXES if a in metafunc.fixturenames]
    if not names:
        return
    combos = list(itertools.product(*(values[a] for a in names)))
    # One call fixes the id order: kerascnn-cuda-bs128[-bf16][-channels_last][-compiled].
    # Params stay plain strings and ints for the JSON.
    metafunc.parametrize(names, combos, ids=[_case_id(names, c) for c in combos])


def _case_id(names, combo) -> str:
    parts = []
    for name, value in zip(names, combo, strict=True):
        if value == DEFAULT_ID.get(name):
            continue
        parts.append(f"bs{value}" if name == "batch_size" else "compiled" if name == "compile" else str(value))
    return "-".join(parts)


def pytest_collection_modifyitems(config, items):
    # pytest-benchmark's only per-round hook is its timer: give each case one that waits for its device.
    for item in items:
        if "benchmark" not in item.fixturenames or not _is_bench(item.path):
            continue
        device = _params(item).get("device")
        mark = item.get_closest_marker("benchmark")
        # No garbage collection inside timed rounds: it would land in whichever round it hits.
        kwargs = {"disable_gc": True, **(mark.kwargs if mark else {})}
        if device is not None and "timer" not in kwargs:  # a bench may bring its own (see bench_ddp)
            kwargs["timer"] = timing.timer_for(device)
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except torch.OutOfMemoryError as e:
        reason = _too_big(item, "out of memory")
        traceback.clear_frames(e.__traceback__)  # the skip below keeps this error, and so the frames' tensors
    except (RuntimeError, ValueError) as e:  # BatchNorm says ValueError; cuBLAS / cuDNN OOM, RuntimeError
        text = str(e)
        if "Expected more than 1 value per channel" in text:
            reason = _too_big(item, "too few values per channel for BatchNorm training")
        elif "out of memory" in text or "ALLOC_FAILED" in text:
            reason = _too_big(item, "out of memory")
        else:
            raise
        traceback.clear_frames(e.__traceback__)
    gc.collect()
    device = _params(item).get("device", "cpu")
    if device.startswith("cuda"):
        with torch.cuda.device(torch.device(device)):
            torch.cuda.empty_cache()
    pytest.skip(reason)


def _too_big(item, what: str) -> str:
    params = _params(item)
    device = params.get("device", "cpu")
    where = devices.device_name(device) if device.startswith("cuda") else device
    return f"{what} at batch {params.get('batch_size', '?')} on {where}"


@pytest.fixture
def conditions(request) -> dict:
    """The numeric conditions a case runs under: set for the case, recorded, restored after it.

    Threads as chosen; on CUDA, cuDNN autotuning on and TF32 on only for the tf32 precision (fp32
    means fp32, whatever torch's defaults); on the CPU, denormals flushed, since a fixed batch trains towards tiny
    gradients whose denormal optimizer state would slow later rounds.
    """
    s = request.config.stash[SETTINGS]
    params = _params(request.node)
    device, tf32 = params.get("device", "cpu"), params.get("precision") == "tf32"
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (torch.get_num_threads(), cudnn.benchmark, cuda.allow_tf32, cudnn.allow_tf32)
    torch.set_num_threads(s.threads)
    on_cuda = device.startswith("cuda")
    if on_cuda:
        cudnn.benchmark, cuda.allow_tf32, cudnn.allow_tf32 = True, tf32, tf32
    flushed = torch.set_flush_denormal(True) if device == "cpu" else False
    yield {"threads": s.threads, "cudnn_benchmark": cudnn.benchmark if on_cuda else None,
           "tf32": tf32 if on_cuda else None, "flush_denormal": flushed}
    torch.set_num_threads(saved[0])
    cudnn.benchmark, cuda.allow_tf32, cudnn.allow_tf32 = saved[1:]
    if flushed:
        torch.set_flush_denormal(False)


@pytest.fixture
def settings(request) -> Settings:
    """This run's axes and options."""
    return request.config.stash[SETTINGS]


def _params(node) -> dict:
    return getattr(getattr(node, "callspec", None), "params", {})


@pytest.fixture
def case(request, conditions, model, device, batch_size, precision, memory_format, compile) -> cases.Case:
    """The sweep point of this test; a combination its device cannot run is skipped with the reason."""
    reason = cases.unsupported(device, precision, compile)
    if reason:
        pytest.skip(reason)
    cfg = request.config
    return cases.Case(model, device, batch_size, cfg.stash[SETTINGS], cfg.stash.get(DATASET, None),
                      precision, memory_format, compile)


@pytest.fixture
def measure(benchmark, request, conditions):
    """measure(workload, info): warm up, time with pytest-benchmark, store the work done per call and
    the rates that follow from the median (images/s, GB/s, TFLOP/s and % of the measured peak)."""
    s = request.config.stash[SETTINGS]
    params = _params(request.node)
    device = params.get("device", "cpu")

    def run(w: Workload, info: dict | None = None):
        sync = devices.synchronizer(device)
        compiled = (info or {}).get("compile", params.get("compile")) == "on"
        calls = 0 if benchmark.disabled else max(s.profile.warmup_calls, 2 if compiled else 0)
        if w.long:
            calls = min(calls, 1)  # one warm-up epoch: worker start-up, autotuning, allocator growth
        memory = peaks.PeakMemory(device)
        memory.start()
        durations = timing.warm_up(w.fn, calls, sync)
        extra = {**(info or {}), **w.info, **conditions, "images": w.images, "warmup_calls": calls}
        if durations:
            extra["first_call_s"] = durations[0]
        benchmark.extra_info.update(extra)
        if w.long and not benchmark.disabled:
            rounds = s.profile.long_rounds if not _given(request.config, "--benchmark-min-rounds") else \
                request.config.getoption("benchmark_min_rounds")
            result = benchmark.pedantic(w.fn, rounds=rounds, iterations=1)
        else:
            result = benchmark(w.fn)
        if benchmark.stats is None:
            return result
        median = benchmark.stats.stats.median
        rates = {"peak_memory_bytes": memory.peak_bytes()}  # before any calibration below allocates
        if w.images:
            rates["images_per_s"] = w.images / median
        if w.bytes:
            rates["bytes"], rates["gb_per_s"] = w.bytes, w.bytes / median / 1e9
        if w.flops:
            precision = (info or {}).get("precision", params.get("precision", "fp32"))
            peak = request.config.stash[PEAKS].tflops(device, precision)
            tflops = w.flops / median / 1e12
            rates.update(flops=w.flops, tflop_per_s=tflops, peak_tflop_per_s=peak, pct_of_peak=100 * tflops / peak)
        if compiled and durations:
            rates["compile_s"] = max(0.0, durations[0] - median)  # the first call's excess: compilation
        if w.after:
            rates.update(w.after(calls))
        benchmark.extra_info.update(rates)
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
                                   "devices": s.devices, "threads": s.threads, "dataset": s.dataset,
                                   "optimizer": s.optimizer,
                                   "precisions": s.precisions, "memory_formats": s.memory_formats,
                                   "compile": s.compile,
                                   # measured, so not machine_info: it would differ in every comparison
                                   "peaks": config.stash[PEAKS].measured}


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
