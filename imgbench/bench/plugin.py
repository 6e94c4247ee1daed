"""pytest plugin: the options, the sweep (parametrisation and ids), device-synchronising timers, an
out-of-memory case as a skip, the environment recorded in every pytest-benchmark JSON, and the
machine's contention around every case (`contention`). The fixtures live in `fixtures`; the options
in `options`; the run file's imgbench block in `runfile`."""

from __future__ import annotations

import gc
import itertools
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from pytest_benchmark.utils import SecondsDecimal

import imgbench
from imgbench.bench import hang, learned, table
from imgbench.bench.fixtures import (  # noqa: F401 (fixtures)
    STATE,
    RunState,
    case,
    conditions,
    measure,
    params,
    settings,
)
from imgbench.bench.project import pytest_collect_file  # noqa: F401 (a project's benches)
from imgbench.bench.settings import from_options
from imgbench.core import options
from imgbench.core.config import WORKER_COUNTS, worker_counts
from imgbench.core.errors import UserError
from imgbench.hw import calibration, contention, devices, environment, timing
from imgbench.runs import runfile, storage
from imgbench.workloads import datasets, models


def pytest_addoption(parser):
    options.add_options(parser.getgroup("imgbench",
                                        "imgbench: image-classifier benchmarks").addoption)


MARKERS = {
    "gate(**params)": "the test's cases with these params are in the gate set (--cases gate), "
                      "the cases `imgbench ab` gates pull requests on",
    "host": "work of the CPU alone (no device axis): runs only when the CPU is among --device",
    "accelerator": "work that serves an accelerator (pinned memory): runs only when one is among "
                   "--device",
    "cpu_heavy": "left out on the CPU under --device auto --profile full "
                 "(config.CPU_SUBSET_MODELS)",
}
LEFT_OUT = pytest.StashKey[dict]()  # why cases were left out of the run -> how many
ESTIMATE = pytest.StashKey[tuple]()  # (estimated seconds, when the cases started)


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        s = from_options(config.getoption)
        dataset = datasets.load(s.dataset, s.data_root) if s.dataset != "synthetic" else None
    except UserError as e:
        raise pytest.UsageError(str(e)) from None
    long_rounds = (config.getoption("benchmark_min_rounds")
                   if _given(config, "--benchmark-min-rounds") else s.profile.long_rounds)
    config.stash[STATE] = RunState(s, dataset, calibration.Peaks(), long_rounds)
    _first_run_without_baseline(config)


def _first_run_without_baseline(config):
    """`--benchmark-compare` with nothing stored yet: say so and run without comparing
    (pytest-benchmark would warn, or stop with a usage error under --benchmark-compare-fail). Runs
    before its configure."""
    compare = config.getoption("benchmark_compare", None)
    if not compare:
        return
    where = str(config.getoption("benchmark_storage"))
    if not where.startswith("file://") and "://" in where:
        return  # another storage backend: leave it to pytest-benchmark
    folder = storage.platform_folder(Path(where.removeprefix("file://")))
    if (Path(str(compare)).is_file()
            or storage.stored_runs(folder, None if compare is True else str(compare))):
        return
    config.option.benchmark_compare = False
    config.option.benchmark_compare_fail = None
    sys.stderr.write(f"imgbench: no stored run to compare with in {folder} (first run?): "
                     "running without comparing or gating; save this run (--benchmark-autosave) "
                     "to make it the baseline\n")


# pytest-benchmark makes its session in its own (trylast) configure
@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    state = config.stash.get(STATE, None)
    if state is not None:
        state.flags = environment.flags()  # the one moment the record reads them: before any case
    if bs is None or state is None:
        return
    if not _given(config, "--benchmark-min-rounds"):
        bs.options["min_rounds"] = state.settings.profile.min_rounds
    if not _given(config, "--benchmark-max-time"):
        bs.options["max_time"] = SecondsDecimal(state.settings.profile.max_time)


def _given(config, flag: str) -> bool:
    """Whether the user set `flag` (command line, PYTEST_ADDOPTS or ini addopts): pytest-benchmark's
    defaults cannot be told apart from the same value given, so the profile's apply only when not
    given."""
    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
            *config.getini("addopts")]
    return any(a == flag or a.startswith(flag + "=") for a in map(str, args))


def pytest_report_header(config):
    state = config.stash.get(STATE, None)
    if state is None:
        return None
    s = state.settings
    return (f"imgbench {imgbench.__version__}: devices={','.join(s.devices)} "
            f"profile={s.profile.name} threads={s.threads} torch={torch.__version__} "
            f"dataset={s.dataset}")


def _is_bench(path) -> bool:
    # The plugin loads in every pytest run of the environment: leave other projects' tests alone.
    return path is not None and path.name.startswith("bench_")


def pytest_generate_tests(metafunc):
    if not _is_bench(metafunc.definition.path):
        return
    values = metafunc.config.stash[STATE].settings.axis_values()
    names = [a for a in options.CASE_AXES if a in metafunc.fixturenames]
    if not names:
        return
    combos = list(itertools.product(*(values[a] for a in names)))
    if "reference" in metafunc.fixturenames:  # the reference epoch: what its device resolves to
        from imgbench.workloads import cases

        at = names.index("device")
        combos = [(*c, cases.reference_config(c[at])) for c in combos]
        names = [*names, "reference"]
    # One call fixes the id order: kerascnn-cuda-bs128[-bf16][-channels_last][-compiled].
    # Params stay plain strings and ints for the JSON.
    metafunc.parametrize(names, combos, ids=[_case_id(names, c) for c in combos])


def _case_id(names, combo) -> str:
    parts = []
    for name, value in zip(names, combo, strict=True):
        if value == options.DEFAULTS.get(name):
            continue
        parts.append(f"bs{value}" if name == "batch_size"
                     else "compiled" if name == "compile" else str(value))
    return "-".join(parts)


def in_gate_set(item) -> bool:
    """Whether a case is in the gate set: its test carries @pytest.mark.gate(**params) and its
    params include those values (a marker with no params takes every case of the test)."""
    p = params(item)
    return any(all(str(p.get(k)) == str(v) for k, v in m.kwargs.items())
               for m in item.iter_markers("gate"))


def left_out(item, s: options.Settings) -> str | None:
    """Why a case is not for this run's devices (said once per reason after collection), or None."""
    marks = {m.name for m in item.iter_markers()}
    if "host" in marks and "cpu" not in s.devices:
        return "CPU-only cases: the CPU is not among --device"
    if "accelerator" in marks and all(d == "cpu" for d in s.devices):
        return "cases that serve an accelerator: none among --device"
    p, light = params(item), models.cpu_subset()  # registered models marked cpu_subset too
    if s.cpu_subset and p.get("device") == "cpu" and (
            "cpu_heavy" in marks or p.get("model", light[0]) not in light):
        return ("CPU cases beyond the CPU subset of --device auto --profile full "
                f"({', '.join(light)}; no reference epoch, transfer or ddp): "
                "run them with --device cpu")
    return None


def pytest_report_collectionfinish(config, start_path, items):
    lines = [f"imgbench: {n} left out: {why}" for why, n in config.stash.get(LEFT_OUT, {}).items()]
    state = config.stash.get(STATE, None)
    bench_items = [i for i in items if _is_bench(i.path)]
    benches = [(i.path.stem.removeprefix("bench_"), i.originalname, params(i))
               for i in bench_items]
    if state is not None and benches:
        # `imgbench run` compares with the previous saved run of this machine class, by its path:
        # learn from it (a bare --benchmark-compare, pytest-benchmark's latest, is not looked up)
        previous = getattr(config.option, "benchmark_compare", None)
        previous = previous if isinstance(previous, str) and Path(previous).is_file() else None
        took = learned.previous_seconds(previous)
        config.stash[hang.EXPECTED] = dict(zip([i.nodeid for i in bench_items],
                                               learned.expected(benches, state.settings, took),
                                               strict=True))
        per_family, learned_n = learned.run_seconds(benches, state.settings, took)
        config.stash[ESTIMATE] = (sum(per_family.values()), time.monotonic())
        lines.append(learned.describe(per_family, len(benches), learned_n, previous))
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if (est := config.stash.get(ESTIMATE, None)) is not None and not config.option.collectonly:
        took = time.monotonic() - est[1]
        terminalreporter.write_line(f"imgbench: the cases took {took / 60:.1f} min "
                                    f"(estimated {est[0] / 60:.1f} min)")


def pytest_collection_modifyitems(config, items):
    state = config.stash.get(STATE, None)
    workers = set(worker_counts(state.settings.threads) if state else WORKER_COUNTS)
    kept, dropped = [], []
    for item in items:
        if not _is_bench(item.path):
            kept.append(item)
            continue
        p = params(item)
        if "workers" in p and p["workers"] not in workers:
            dropped.append(item)  # more DataLoader workers than the run's threads
            continue
        if state and (why := left_out(item, state.settings)):
            dropped.append(item)
            config.stash.setdefault(LEFT_OUT, {}).setdefault(why, 0)
            config.stash[LEFT_OUT][why] += 1
            continue
        if state and state.settings.cases == "gate" and not in_gate_set(item):
            dropped.append(item)
            continue
        kept.append(item)
        if "benchmark" not in item.fixturenames:
            continue
        # pytest-benchmark's only per-round hook is its timer:
        # give each case one that waits for its device.
        mark = item.get_closest_marker("benchmark")
        # No garbage collection inside timed rounds: it would land in whichever round it hits.
        kwargs = {"disable_gc": True, **(mark.kwargs if mark else {})}
        # a bench may bring its own (see bench_ddp)
        if p.get("device") is not None and "timer" not in kwargs:
            kwargs["timer"] = timing.timer_for(p["device"])
            if (shortest := timing.min_round_s(p["device"])) is not None:
                # iterations per round, so the sync is amortised
                kwargs.setdefault("min_time", shortest)
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Every bench case under its limit (bench/hang.py)."""
    state = item.config.stash.get(STATE, None)
    if state is None or not _is_bench(item.path):
        return (yield)
    limit, why = hang.limit_s(state.settings, hang.expected_s(item, state.settings, params(item)))
    return (yield from hang.run_limited(item, limit, why))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(hang.CaseTimeout):
        report.longrepr = str(call.excinfo.value)  # one line, no traceback
    if report.failed and (state := item.config.stash.get(STATE, None)) is not None:
        state.failed.add(item.nodeid)
    if _is_bench(item.path):  # its seconds, for the next run's estimate
        learned.record(item, report, params(item))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # Other processes' share of the CPUs while the case ran, into its extra_info: pytest-benchmark
    # reads that dict when it writes the JSON at the session's end, so a value set after the call
    # lands.
    before = contention.snapshot() if _is_bench(item.path) else None
    try:
        return (yield)
    except torch.OutOfMemoryError as e:
        reason = _too_big(item, "out of memory")
        # the skip below keeps this error, and so the frames' tensors
        traceback.clear_frames(e.__traceback__)
    except Exception as e:
        if not isinstance(e, RuntimeError | ValueError) and not _compile_failure(item, e):
            raise
        # BatchNorm says ValueError; cuBLAS / cuDNN OOM, RuntimeError
        text = str(e)
        if _compile_failure(item, e):
            # e.g. Triton not finding libcuda.so.1: the case cannot run here, and says why
            reason = (f"torch.compile failed on {params(item).get('device', 'cpu')}: "
                      f"{type(e).__name__}: {(text.strip().splitlines() or [''])[0][:200]}")
        elif "Expected more than 1 value per channel" in text:
            reason = _too_big(item, "too few values per channel for BatchNorm training")
        elif "out of memory" in text or "ALLOC_FAILED" in text:
            reason = _too_big(item, "out of memory")
        else:
            raise
        traceback.clear_frames(e.__traceback__)
    finally:
        if (before is not None
                and (bench := getattr(item, "funcargs", {}).get("benchmark")) is not None):
            bench.extra_info["contention"] = contention.between(before, contention.snapshot())
    gc.collect()
    device = params(item).get("device", "cpu")
    if device.startswith("cuda"):
        with torch.cuda.device(torch.device(device)):
            torch.cuda.empty_cache()
    pytest.skip(reason)


def _compile_failure(item, e: BaseException) -> bool:
    """Whether `e` is torch.compile failing (dynamo or inductor raised it) in a compiled case."""
    p = params(item)
    compiles = p.get("compile") == "on" or str(p.get("reference", "")).endswith("-compiled")
    return compiles and type(e).__module__.startswith(("torch._dynamo", "torch._inductor"))


def _too_big(item, what: str) -> str:
    p = params(item)
    device = p.get("device", "cpu")
    where = devices.device_name(device) if device.startswith("cuda") else device
    return f"{what} at batch {p.get('batch_size', '?')} on {where}"


def pytest_benchmark_update_machine_info(config, machine_info):
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):  # changes every call: would make every comparison warn
        cpu.pop("hz_actual", None)
        cpu.pop("hz_actual_friendly", None)
    state = config.stash.get(STATE, None)
    env = environment.environment(threads=state.settings.threads if state else None,
                                  numeric=state.flags if state else None)
    machine_info.update(runfile.machine_info(env))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    state = config.stash.get(STATE, None)
    if state is not None:
        output_json["imgbench"] = runfile.block(imgbench.__version__, state.settings,
                                                state.peaks.measured)
        # pytest-benchmark writes a case that raised after its timing returned (a check on the
        # result, a teardown): a failed case is no result; its name is kept apart
        timed = output_json.get("benchmarks", [])
        output_json["benchmarks"] = [b for b in timed if b.get("fullname") not in state.failed]
        if failed := sorted(b.get("name") for b in timed if b.get("fullname") in state.failed):
            output_json["imgbench"]["failed"] = failed
        if skipped := learned.skipped(config):
            output_json["imgbench"]["skipped"] = skipped


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_group_stats(config, benchmarks, group_by):
    return table.group(benchmarks) if group_by == table.GROUP else None


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info,
                                          compared_benchmark):
    # pytest-benchmark names the storage relative to the working directory when the machines differ,
    # which raises for storage elsewhere (imgbench run --storage /elsewhere): warn without it
    # instead.
    try:
        return (yield)
    except ValueError:
        now = json.loads(json.dumps(machine_info, default=str))  # tuples -> lists, as stored
        saved = compared_benchmark.get("machine_info", {})
        keys = sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))
        benchmarksession.logger.warning("Benchmark machine_info is different in: "
                                        f"{', '.join(keys)} (storage: {benchmarksession.storage})")
        return None
