"""The pytest plugin: options, bad input, ids, stored params, extra_info and machine_info."""

import json

import pytest
import torch

from imgbench.bench.settings import model_names
from imgbench.core import config, options
from imgbench.hw import devices
from imgbench.runs import runfile
from imgbench.workloads import cases, models
from tests.helpers import ROOT, needs_cpp, pretend_devices, write_cifar_bin

BENCH = """
def test_train(case, measure):
    measure(case.train_step(), case.info())
"""
FAST = ["--benchmark-max-time=0.01", "--benchmark-min-rounds=2", "-p", "no:cacheprovider"]


@pytest.fixture
def bench_dir(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x=BENCH)
    return pytester


def run_json(pytester, *args):
    result = pytester.runpytest("bench_x.py", "--benchmark-json=out.json", *FAST, *args)
    assert result.ret == 0, result.stdout.str()
    return json.loads((pytester.path / "out.json").read_text())


@pytest.mark.parametrize("args, expected", [
    (["--model", "foo"], f"unknown model 'foo' (valid: all, {', '.join(models.names())})"),
    (["--model", "mlp,,kerascnn"], "empty model in 'mlp,,kerascnn'"),
    (["--device", "tpu"], "unknown device 'tpu' (valid: auto, cpu, cuda, cuda:N, mps)"),
    (["--profile", "slow"], "unknown profile 'slow' (valid: quick, full)"),
    (["--batch-size", "0"], "batch size 0 is not positive (valid: a positive integer)"),
    (["--batch-size", "-8"], "batch size -8 is not positive"),
    (["--batch-size", "32,abc"], "batch size 'abc' is not an integer"),
    (["--batch-size", "1.5"], "batch size '1.5' is not an integer"),
    (["--threads", "0"], "thread count 0 is not positive"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs' (valid: adam, sgd)"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet' (valid: synthetic, cifar10, mnist)"),
    (["--dataset", "cifar10"], "cifar10: no data root given"),
    (["--data-root", "/data"],
     "--data-root '/data' needs a real dataset (valid: --dataset cifar10, --dataset mnist)"),
    (["--device", "cuda:01"], "unknown device 'cuda:01'"),
])
def test_bad_input_is_one_line_and_a_usage_error(bench_dir, args, expected):
    result = bench_dir.runpytest("bench_x.py", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_absent_gpu_is_named(bench_dir, monkeypatch):
    pretend_devices(monkeypatch)
    result = bench_dir.runpytest("bench_x.py", "--device", "cpu,cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: device 'cuda' is not available on this machine: "
                                 "no CUDA GPU found (available: cpu)"])


def test_data_root_without_the_dataset_names_it(bench_dir, tmp_path):
    result = bench_dir.runpytest("bench_x.py", "--dataset", "cifar10", "--data-root", str(tmp_path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: cifar10: no dataset under '{tmp_path}'"
                                 "*cifar-10-batches-bin*"])


def test_ids_are_readable_and_stable(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--collect-only", "-q", "--model", "mlp,kerascnn",
                                 "--device", "cpu", "--batch-size", "4,8")
    assert result.ret == 0
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [f"bench_x.py::test_train[{m}-cpu-bs{b}]" for m in ("mlp", "kerascnn")
                   for b in (4, 8)]


def test_default_axes_run_every_model_at_32_and_128(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--collect-only", "-q", "--device", "cpu")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert len(ids) == len(model_names("all")) * 2
    assert "bench_x.py::test_train[resnet50-cpu-bs128]" in ids


@pytest.mark.slow
def test_json_carries_params_extra_info_and_environment(bench_dir):
    out = run_json(bench_dir, "--model", "mlp", "--device", "cpu", "--batch-size", "4",
                   "--threads", "1")
    (b,) = out["benchmarks"]
    assert b["name"] == "test_train[mlp-cpu-bs4]"
    assert b["params"] == {"model": "mlp", "device": "cpu", "batch_size": 4, "precision": "fp32",
                           "memory_format": "nchw", "compile": "off"}
    info = b["extra_info"]
    assert info["images"] == 4
    assert info["images_per_s"] == pytest.approx(4 / b["stats"]["median"])
    assert info["threads"] == 1 and info["profile"] == "quick" and info["dataset"] == "synthetic"
    assert (info["flush_denormal"] is True and info["tf32"] is None
            and info["cudnn_benchmark"] is None)
    assert info["optimizer"] == "adam" and info["image_size"] == 28 and info["in_channels"] == 1
    assert info["device_name"] and info["warmup_calls"] == config.PROFILES["quick"].warmup_calls
    assert b["options"]["timer"].endswith("synchronized_perf_counter[cpu]")
    assert len(b["stats"]["data"]) == b["stats"]["rounds"]  # --benchmark-json keeps every round
    m = out["machine_info"]
    assert "hz_actual" not in m["cpu"] and "hz_actual_friendly" not in m["cpu"]
    env = m["imgbench"]
    assert (m["fingerprint"] == env["fingerprint"]
            and env["fingerprint"].endswith(f"-{env['cpu']['cores']}c"))
    assert env["threads"] == 1 and env["torch"] == torch.__version__
    for key in ("torchvision", "cuda", "cudnn", "gpus", "gpu_count", "driver", "flags"):
        assert key in env
    assert set(env["flags"]) >= {"tf32_matmul", "tf32_cudnn", "cudnn_benchmark"}
    assert out["imgbench"] == {"schema": runfile.SCHEMA, "version": out["imgbench"]["version"],
                               "profile": "quick", "devices": ["cpu"],
                               "threads": 1, "dataset": "synthetic", "optimizer": "adam",
                               "precisions": ["fp32"], "memory_formats": ["nchw"],
                               "compile": ["off"], "peaks": out["imgbench"]["peaks"]}
    assert out["imgbench"]["peaks"]["cpu"]["matmul_tflops"]["fp32"] > 0
    assert "peaks" not in env  # measured values in machine_info would make every comparison warn


@pytest.mark.slow
def test_threads_default_to_every_usable_core_and_are_restored_after(bench_dir):
    torch.set_num_threads(1)
    out = run_json(bench_dir, "--model", "mlp", "--device", "cpu", "--batch-size", "2")
    assert out["benchmarks"][0]["extra_info"]["threads"] == devices.usable_cores()
    assert out["machine_info"]["imgbench"]["threads"] == devices.usable_cores()
    assert torch.get_num_threads() == 1


def test_gpu_devices_give_gpu_ids(bench_dir, monkeypatch):
    pretend_devices(monkeypatch, gpus=2)
    result = bench_dir.runpytest("bench_x.py", "--collect-only", "-q", "--model", "mlp",
                                 "--device", "auto", "--batch-size", "4")
    assert result.ret == 0, result.stdout.str()
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [f"bench_x.py::test_train[mlp-{d}-bs4]" for d in ("cpu", "cuda:0", "cuda:1")]


def test_other_projects_tests_are_left_alone(pytester):
    pytester.makeconftest('''
import pytest
pytest_plugins = ["imgbench.plugin"]

@pytest.fixture
def device():
    return "their-own"
''')
    pytester.makepyfile(test_theirs="def test_a(device, model=1):\n"
                                    "    assert device == 'their-own'\n")
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)


WARM_BENCH = """
import time
from imgbench.workloads.steps import Workload

CALLS = []


def test_warm(device, measure):
    def fn():
        CALLS.append(1)
        if len(CALLS) <= 2:  # cold: lazy init, autotuning
            time.sleep(0.05)
    measure(Workload(fn, images=1))
"""


def test_warm_up_keeps_cold_calls_out_of_the_rounds(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_warm=WARM_BENCH)
    result = pytester.runpytest("bench_warm.py", "--device", "cpu", "--benchmark-json=out.json",
                                "--benchmark-max-time=0.01", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    stats = json.loads((pytester.path / "out.json").read_text())["benchmarks"][0]["stats"]
    assert stats["max"] < 0.05


CROSS_BENCH = """
import time
import pytest
from imgbench.workloads.steps import Workload


@pytest.mark.parametrize("ms", [3, 0])
def test_sleep(ms, device, measure):
    measure(Workload(lambda: time.sleep(ms / 1e3) if ms else None, images=1))
"""


@pytest.mark.parametrize("flag", [[], ["--cross-check", "on"]])
def test_cross_check_times_cases_of_a_millisecond_or_more_a_second_way(pytester, flag):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_cross=CROSS_BENCH)
    result = pytester.runpytest("bench_cross.py", "--device", "cpu", "--benchmark-json=out.json",
                                "--benchmark-max-time=0.02", "-p", "no:cacheprovider", *flag)
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "out.json").read_text())
    cases = {b["params"]["ms"]: b["extra_info"] for b in doc["benchmarks"]}
    assert "cross_check" not in cases[0]  # under a millisecond: nothing to cross-check
    if not flag:
        assert "cross_check" not in cases[3]
        return
    check = cases[3]["cross_check"]
    assert (check["clock"] == "perf_counter" and 3 <= check["calls"] <= 20
            and check["median_s"] >= 3e-3)


def test_quick_profile_caps_image_size_and_full_uses_the_real_one():
    def shape(profile, model):
        s = options.Settings(["cpu"], [2], [model], config.PROFILES[profile], 1, "adam",
                             "synthetic", None)
        return cases.Case(model, "cpu", 2, s).shape

    assert shape("quick", "resnet18") == (3, 32, 32)
    assert shape("full", "resnet18") == (3, 224, 224)
    assert shape("quick", "mlp") == (1, 28, 28)
    assert shape("full", "tinyvgg") == (3, 64, 64)


@pytest.mark.slow
def test_profile_sets_rounds_unless_the_user_does(bench_dir):
    args = ["--model", "mlp", "--device", "cpu", "--batch-size", "2", "--benchmark-json=out.json",
            "--benchmark-max-time=0.001", "-p", "no:cacheprovider"]
    assert bench_dir.runpytest("bench_x.py", "--profile", "full", *args).ret == 0
    b = json.loads((bench_dir.path / "out.json").read_text())["benchmarks"][0]
    assert b["options"]["min_rounds"] == config.PROFILES["full"].min_rounds
    assert b["stats"]["rounds"] >= config.PROFILES["full"].min_rounds
    assert b["extra_info"]["warmup_calls"] == config.PROFILES["full"].warmup_calls
    for given in (3, 5):  # 5 is pytest-benchmark's default: still the user's choice when given
        assert bench_dir.runpytest("bench_x.py", "--profile", "full",
                                   f"--benchmark-min-rounds={given}", *args).ret == 0
        b = json.loads((bench_dir.path / "out.json").read_text())["benchmarks"][0]
        assert b["options"]["min_rounds"] == given


@pytest.mark.slow
def test_sgd_optimizer_is_recorded(bench_dir):
    out = run_json(bench_dir, "--model", "mlp", "--device", "cpu", "--batch-size", "2",
                   "--optimizer", "sgd")
    assert out["benchmarks"][0]["extra_info"]["optimizer"] == "sgd"


@pytest.mark.slow
def test_real_dataset_batches_come_from_the_data_root(bench_dir, tmp_path):
    write_cifar_bin(tmp_path / "data", counts=(4,) * 5, test_count=4)
    out = run_json(bench_dir, "--model", "kerascnn", "--device", "cpu", "--batch-size", "8",
                   "--dataset", "cifar10", "--data-root", str(tmp_path / "data"))
    info = out["benchmarks"][0]["extra_info"]
    assert ((info["dataset"], info["image_size"], info["in_channels"], info["num_classes"])
            == ("cifar10", 32, 3, 10))


OOM_BENCH = """
import weakref

import torch
from imgbench.workloads.steps import Workload


def test_oom(device, batch_size, measure, held):
    big = torch.ones(1000)
    held.append(weakref.ref(big))

    def fn():
        big.add_(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    measure(Workload(fn, images=batch_size))


def test_after(device, held):
    assert held[0]() is None, "the failed case's tensors outlived it"
"""


def test_out_of_memory_is_a_skip_naming_batch_and_device_and_memory_is_freed(pytester):
    held = []

    class Held:
        @pytest.fixture
        def held(self):
            return held

    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_oom=OOM_BENCH)
    result = pytester.runpytest("bench_oom.py", "--device", "cpu", "--batch-size", "4096", "-rs",
                                "-p", "no:cacheprovider", plugins=[Held()])
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*out of memory at batch 4096 on cpu*"])


@pytest.mark.parametrize("message", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "DefaultCPUAllocator: out of memory",
])
def test_library_out_of_memory_errors_are_skips_too(pytester, message):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_lib=f"""
def test_lib(device, batch_size):
    raise RuntimeError({message!r})
""")
    result = pytester.runpytest("bench_lib.py", "--device", "cpu", "--batch-size", "8", "-rs",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*out of memory at batch 8 on cpu*"])


def test_other_runtime_errors_still_fail(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_lib="def test_lib(device):\n"
                                  "    raise RuntimeError('shape mismatch')\n")
    result = pytester.runpytest("bench_lib.py", "--device", "cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


def test_batchnorm_training_on_one_value_per_channel_is_a_skip(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--model", "resnet18", "--device", "cpu",
                                 "--batch-size", "1", "-rs", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*too few values per channel for BatchNorm training at batch 1 "
                                 "on cpu*"])


def test_benchmark_disable_runs_each_case_once_without_warm_up(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--model", "mlp", "--device", "cpu",
                                 "--batch-size", "2", "--benchmark-disable",
                                 "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(passed=1)


AXES_BENCH = """
def test_train(case, measure):
    measure(case.train_step(), case.info())
"""


def test_axes_extend_ids_only_beyond_their_defaults(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_axes=AXES_BENCH)
    result = pytester.runpytest("bench_axes.py", "--collect-only", "-q", "--model", "mlp",
                                "--device", "cpu", "--batch-size", "4", "--precision", "fp32,bf16",
                                "--memory-format", "nchw,channels_last", "--compile", "off,on")
    assert result.ret == 0, result.stdout.str()
    ids = [line.split("[")[1].rstrip("]") for line in result.stdout.lines if "::" in line]
    assert ids == ["mlp-cpu-bs4", "mlp-cpu-bs4-compiled", "mlp-cpu-bs4-channels_last",
                   "mlp-cpu-bs4-channels_last-compiled", "mlp-cpu-bs4-bf16",
                   "mlp-cpu-bs4-bf16-compiled", "mlp-cpu-bs4-bf16-channels_last",
                   "mlp-cpu-bs4-bf16-channels_last-compiled"]


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp8"], "unknown precision 'fp8' (valid: fp32, tf32, bf16, fp16)"),
    (["--memory-format", "nhwc"], "unknown memory format 'nhwc' (valid: nchw, channels_last)"),
    (["--compile", "yes"], "unknown compile 'yes' (valid: off, on)"),
])
def test_bad_axis_values(bench_dir, args, message):
    result = bench_dir.runpytest("bench_x.py", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


@pytest.mark.slow
def test_precisions_run_or_skip_with_the_reason(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_axes=AXES_BENCH)
    out = pytester.path / "out.json"
    result = pytester.runpytest("bench_axes.py", "--model", "kerascnn", "--device", "cpu",
                                "--batch-size", "4", "--precision", "fp32,tf32,bf16",
                                "--memory-format", "channels_last", "-rs",
                                f"--benchmark-json={out}", *FAST)
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*tf32 is a mode of NVIDIA GPUs; cpu has none*"])
    runs = {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}
    bf16 = runs["test_train[kerascnn-cpu-bs4-bf16-channels_last]"]
    assert (bf16["params"]["precision"] == "bf16"
            and bf16["params"]["memory_format"] == "channels_last")
    assert bf16["extra_info"]["precision"] == "bf16"
    peaks = json.loads(out.read_text())["imgbench"]["peaks"]["cpu"]
    assert set(peaks["matmul_tflops"]) == {"fp32", "bf16"}
    assert bf16["extra_info"]["peak_tflop_per_s"] == pytest.approx(
        max(peaks["matmul_tflops"]["bf16"], peaks["conv_tflops"]["bf16"] or 0))


COMPILE_IN_THE_FIRST_CALL = """
import time

import pytest
import torch

pytest_plugins = ["imgbench.plugin"]


class Compiled(torch.nn.Module):  # what torch.compile returns: a module whose first call compiles
    def __init__(self, inner):
        super().__init__()
        self.inner, self.compiled = inner, False

    def forward(self, *args):
        if not self.compiled:
            self.compiled = True
            time.sleep(0.3)
        return self.inner(*args)


@pytest.fixture(autouse=True)
def stand_in_compiler(monkeypatch):  # a real compile is 20 s here: doctor's test runs one
    monkeypatch.setattr(torch, "compile", lambda model, **kw: Compiled(model))
"""


@pytest.mark.slow
@needs_cpp  # the case is skipped without one, even with the compiler stood in for
def test_compile_time_is_stored_apart_from_the_rounds(pytester):
    """A compiled case's compile (its first call: 0.3 s more here) lands in compile_s, never in a
    round."""
    pytester.makeconftest(COMPILE_IN_THE_FIRST_CALL)
    pytester.makepyfile(bench_axes=AXES_BENCH)
    out = pytester.path / "out.json"
    result = pytester.runpytest_subprocess("bench_axes.py", "--model", "mlp", "--device", "cpu",
                                           "--batch-size", "4", "--compile", "on",
                                           f"--benchmark-json={out}", *FAST)
    assert result.ret == 0, result.stdout.str()
    (b,) = json.loads(out.read_text())["benchmarks"]
    info = b["extra_info"]
    assert info["compile"] == "on" and info["warmup_calls"] >= 2
    # the first call's excess over a timed one: at least the 0.3 s it slept (a busy machine adds to
    # it; an upper bound on time made this test fail under load)
    assert 0.25 <= info["compile_s"] <= info["first_call_s"]
    # in the first call, in no round
    assert info["first_call_s"] >= 0.3 and max(b["stats"]["data"]) < 0.1


@pytest.mark.slow
def test_first_compare_without_a_baseline_says_so_and_runs(bench_dir):
    args = ["bench_x.py", "--model", "mlp", "--device", "cpu", "--batch-size", "2",
            "--benchmark-storage=store", *FAST]
    first = bench_dir.runpytest(*args, "--benchmark-autosave", "--benchmark-compare",
                                "--benchmark-compare-fail=median:10%")
    assert first.ret == 0, first.stdout.str() + first.stderr.str()
    first.stderr.fnmatch_lines(["imgbench: no stored run to compare with in *store* (first run?)*"])
    assert len(list((bench_dir.path / "store").glob("*/0001_*.json"))) == 1
    second = bench_dir.runpytest(*args, "--benchmark-compare",
                                 "--benchmark-compare-fail=median:1000%")
    assert second.ret == 0
    assert "no stored run to compare with" not in second.stderr.str()
    second.stdout.fnmatch_lines(["*0001*"])  # the comparison table names the stored run


@pytest.mark.slow
def test_the_gate_set_covers_every_family_that_runs_on_the_cpu(pytester):
    """`--cases gate` keeps the cases their test marks with @pytest.mark.gate(**params), and the
    real benches' gate set holds a case of every CPU family (both epoch data paths, save and
    load)."""
    benches = ROOT / "benches"
    result = pytester.runpytest_subprocess(str(benches), "--cases", "gate", "--device", "cpu",
                                           "--collect-only", "-q", "-p", "no:randomly")
    ids = sorted(line.split("::", 1)[1] for line in result.outlines if "::" in line)
    assert ids == sorted([
        "test_checkpoint[kerascnn-cpu-save]", "test_checkpoint[kerascnn-cpu-load]",
        "test_conv[cpu-bs32-conv2d_k3_64to128-fwd_bwd-nchw]",
        "test_loader[bs128-tensor_augment-workers0-pin_off]",
        "test_ddp[kerascnn-cpu-bs128-world1]",
        "test_epoch[kerascnn-cpu-bs128-loader]", "test_epoch[kerascnn-cpu-bs128-resident]",
        "test_forward[kerascnn-cpu-bs32]", "test_train_step[kerascnn-cpu-bs32]",
        "test_transfer[cpu-bs128-last_layer]"])
    families = {i.split("[")[0] for i in ids}
    assert families == {"test_checkpoint", "test_conv", "test_loader", "test_ddp", "test_epoch",
                        "test_forward", "test_train_step", "test_transfer"}


def test_a_gate_marker_selects_by_its_params(pytester):
    pytester.makepyfile(bench_marks="""
import pytest

@pytest.mark.gate(x=2)
@pytest.mark.parametrize("x", [1, 2, 3])
def test_some(x):
    pass

def test_unmarked():
    pass
""")
    pytester.makeini("[pytest]\npython_files = bench_*.py\n")
    result = pytester.runpytest("--cases", "gate", "--collect-only", "-q", "-p", "no:randomly")
    assert [line for line in result.outlines if "::" in line] == ["bench_marks.py::test_some[2]"]


HANG_BENCH = """
import time
from imgbench.workloads.steps import Workload


def test_hangs(device, measure):
    measure(Workload(lambda: time.sleep(3600), images=1))


def test_after(device, measure):
    measure(Workload(lambda: None, images=1))
"""


@pytest.mark.slow
def test_a_hung_case_fails_with_one_line_after_the_limit_and_the_run_goes_on(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_hang=HANG_BENCH)
    result = pytester.runpytest_subprocess("bench_hang.py", "--device", "cpu",
                                           "--case-timeout", "2", "--benchmark-json=out.json",
                                           "--benchmark-max-time=0.01", "-p", "no:cacheprovider",
                                           timeout=120)
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    line = ("bench_hang.py::test_hangs[cpu] did not end within the case limit of 2 s "
            "(--case-timeout); stopped as hung")
    assert line in out and "Traceback" not in out and "time.sleep" not in out
    names = [b["name"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]]
    assert names == ["test_after[cpu]"]


def test_a_bad_case_timeout_is_one_line(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--case-timeout", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*case timeout 'soon' is not a number (valid: a positive number "
                                 "of seconds)*"])


def collected(pytester, *args) -> tuple[list[str], str]:
    """The ids a real run would collect from the repository's benches, and pytest's output."""

    files = [str(ROOT / "benches" / f)
             for f in ("bench_dataloader.py", "bench_epoch.py", "bench_transfer.py")]
    result = pytester.runpytest(*files, "--collect-only", "-q", "-p", "no:cacheprovider",
                                "--threads", "2", *args)
    assert result.ret == 0, result.stdout.str()
    return ([line.split("::", 1)[1] for line in result.stdout.lines if "::" in line],
            result.stdout.str())


def test_cpu_only_cases_run_only_with_the_cpu_and_pinned_ones_only_with_an_accelerator(
        pytester, monkeypatch):
    pretend_devices(monkeypatch, gpus=1)
    loaders = lambda ids: [i for i in ids if i.startswith("test_loader")]  # noqa: E731
    on_gpu, out = collected(pytester, "--device", "cuda", "--batch-size", "32")
    assert loaders(on_gpu) and all("pin_on" in i for i in loaders(on_gpu))
    assert "imgbench: 9 left out: CPU-only cases: the CPU is not among --device" in out
    on_cpu, out = collected(pytester, "--device", "cpu", "--batch-size", "32")
    assert loaders(on_cpu) and all("pin_off" in i for i in loaders(on_cpu))
    assert "imgbench: 9 left out: cases that serve an accelerator: none among --device" in out
    both, _ = collected(pytester, "--device", "cpu,cuda", "--batch-size", "32")
    assert sorted(loaders(both)) == sorted(loaders(on_gpu) + loaders(on_cpu))


def test_auto_full_runs_the_documented_cpu_subset(pytester, monkeypatch):
    pretend_devices(monkeypatch, gpus=1)
    ids, out = collected(pytester, "--device", "auto", "--profile", "full", "--batch-size", "128")
    cpu = {i for i in ids if "-cpu-" in i or i.endswith("-cpu]") or "[cpu" in i}
    gpu = {i for i in ids if "cuda" in i}
    assert ({i.split("[")[1].split("-")[0] for i in cpu if i.startswith("test_epoch")}
            == {"kerascnn", "mlp"})
    assert not any(i.startswith(("test_reference_epoch", "test_transfer")) for i in cpu)
    assert ({i.split("[")[1].split("-")[0] for i in gpu if i.startswith("test_epoch")}
            == set(models.names()))
    assert (any(i.startswith("test_reference_epoch") for i in gpu)
            and any(i.startswith("test_transfer") for i in gpu))
    assert "CPU cases beyond the CPU subset of --device auto --profile full (mlp, kerascnn" in out
    explicit, _ = collected(pytester, "--device", "cpu,cuda", "--profile", "full",
                            "--batch-size", "128")
    assert len(explicit) > len(ids)  # asked for by name, the CPU runs everything
    quick, _ = collected(pytester, "--device", "auto", "--batch-size", "128")
    # the quick profile is not cut
    assert any(i.startswith("test_epoch[resnet50-cpu") for i in quick)


@pytest.mark.slow
def test_two_runs_record_the_same_machine_info_whatever_their_cases_did(bench_dir):
    """torch's flags are read once, before the first case: a run whose case calibrates the peak
    (TF32 set and restored through torch's legacy API, which turns the new API's "none" into
    "ieee") records what a run of a plain case records. Each run is its own process, as two runs
    are."""
    bench_dir.makepyfile(bench_plain="import time\n\n\ndef test_plain(benchmark):\n"
                                     "    benchmark(time.sleep, 0.001)\n")
    infos = []
    for name in ("bench_x.py", "bench_plain.py"):
        result = bench_dir.runpytest_subprocess(name, "--device", "cpu",
                                                f"--benchmark-json={name}.json", *FAST)
        assert result.ret == 0, result.stdout.str()
        infos.append(json.loads((bench_dir.path / f"{name}.json").read_text())["machine_info"])
    assert infos[0]["imgbench"]["flags"]["fp32_precision_matmul"] in (None, "none")
    assert infos[0] == infos[1]


def test_a_flag_torch_refuses_to_report_is_recorded_as_such(monkeypatch):
    def refuses():
        raise RuntimeError("mix of the legacy and new APIs")
    monkeypatch.setattr(torch, "get_float32_matmul_precision", refuses)
    from imgbench.hw import environment
    assert environment.flags()["float32_matmul_precision"] == (
        "unreadable (legacy and new TF32 APIs mixed)")
