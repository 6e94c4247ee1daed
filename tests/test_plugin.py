"""The pytest plugin: options, bad input, ids, stored params, extra_info and machine_info."""

import json

import numpy as np
import pytest
import torch

from imgbench import axes, plugin

BENCH = """
from imgbench import workloads


def test_train(case, measure):
    x, y = case.batch()
    measure(workloads.train_step(case.build_model(), x, y, case.settings.optimizer), case.info())
"""
FAST = ["--benchmark-max-time=0.01", "--benchmark-min-rounds=2", "-p", "no:cacheprovider"]


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bench_dir(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x=BENCH)
    return pytester


def run_json(pytester, *args):
    result = pytester.runpytest("bench_x.py", "--benchmark-json=out.json", *FAST, *args)
    assert result.ret == 0, result.stdout.str()
    return json.loads((pytester.path / "out.json").read_text())


def write_cifar_bin(root, n=4):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        records.tofile(folder / name)


@pytest.mark.parametrize("args, expected", [
    (["--model", "foo"], "unknown model 'foo' (valid: all, kerascnn, mlp, resnet18, resnet50, tinyvgg)"),
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
])
def test_bad_input_is_one_line_and_a_usage_error(bench_dir, args, expected):
    result = bench_dir.runpytest("bench_x.py", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_absent_gpu_is_named(bench_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = bench_dir.runpytest("bench_x.py", "--device", "cpu,cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: device 'cuda' is not available on this machine: no CUDA GPU found "
                                 "(available: cpu)"])


def test_data_root_without_the_dataset_names_it(bench_dir, tmp_path):
    result = bench_dir.runpytest("bench_x.py", "--dataset", "cifar10", "--data-root", str(tmp_path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: cifar10: no dataset under '{tmp_path}'*cifar-10-batches-bin*"])


def test_ids_are_readable_and_stable(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--collect-only", "-q", "--model", "mlp,kerascnn",
                                 "--device", "cpu", "--batch-size", "4,8")
    assert result.ret == 0
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [f"bench_x.py::test_train[{m}-cpu-bs{b}]" for m in ("mlp", "kerascnn") for b in (4, 8)]


def test_default_axes_run_every_model_at_32_and_128(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--collect-only", "-q", "--device", "cpu")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert len(ids) == len(axes.model_names("all")) * 2
    assert "bench_x.py::test_train[resnet50-cpu-bs128]" in ids


def test_json_carries_params_extra_info_and_environment(bench_dir):
    out = run_json(bench_dir, "--model", "mlp", "--device", "cpu", "--batch-size", "4", "--threads", "1")
    (b,) = out["benchmarks"]
    assert b["name"] == "test_train[mlp-cpu-bs4]"
    assert b["params"] == {"model": "mlp", "device": "cpu", "batch_size": 4}
    info = b["extra_info"]
    assert info["images"] == 4
    assert info["images_per_s"] == pytest.approx(4 / b["stats"]["median"])
    assert info["threads"] == 1 and info["profile"] == "quick" and info["dataset"] == "synthetic"
    assert info["optimizer"] == "adam" and info["image_size"] == 28 and info["in_channels"] == 1
    assert info["device_name"] and info["warmup_calls"] == axes.PROFILES["quick"].warmup_calls
    assert b["options"]["timer"].endswith("synchronized_perf_counter[cpu]")
    assert len(b["stats"]["data"]) == b["stats"]["rounds"]  # --benchmark-json keeps every round
    m = out["machine_info"]
    assert "hz_actual" not in m["cpu"] and "hz_actual_friendly" not in m["cpu"]
    env = m["imgbench"]
    assert m["fingerprint"] == env["fingerprint"] and env["fingerprint"].endswith(f"-{env['cpu']['cores']}c")
    assert env["threads"] == 1 and env["torch"] == torch.__version__
    for key in ("torchvision", "cuda", "cudnn", "gpus", "gpu_count", "driver", "flags"):
        assert key in env
    assert set(env["flags"]) >= {"tf32_matmul", "tf32_cudnn", "cudnn_benchmark"}
    assert out["imgbench"] == {"version": out["imgbench"]["version"], "profile": "quick", "devices": ["cpu"],
                               "threads": 1, "dataset": "synthetic"}


def test_threads_default_to_every_usable_core(bench_dir):
    from imgbench.devices import usable_cores

    out = run_json(bench_dir, "--model", "mlp", "--device", "cpu", "--batch-size", "2")
    assert out["benchmarks"][0]["extra_info"]["threads"] == usable_cores()
    assert torch.get_num_threads() == usable_cores()


def test_quick_profile_caps_image_size_and_full_uses_the_real_one():
    def shape(profile, model):
        s = plugin.Settings(["cpu"], [2], [model], axes.PROFILES[profile], 1, "adam", "synthetic", None)
        return plugin.Case(model, "cpu", 2, s).shape

    assert shape("quick", "resnet18") == (3, 32, 32)
    assert shape("full", "resnet18") == (3, 224, 224)
    assert shape("quick", "mlp") == (1, 28, 28)
    assert shape("full", "tinyvgg") == (3, 64, 64)


def test_profile_sets_rounds_unless_the_user_does(bench_dir):
    args = ["--model", "mlp", "--device", "cpu", "--batch-size", "2", "--benchmark-json=out.json",
            "--benchmark-max-time=0.001", "-p", "no:cacheprovider"]
    assert bench_dir.runpytest("bench_x.py", "--profile", "full", *args).ret == 0
    b = json.loads((bench_dir.path / "out.json").read_text())["benchmarks"][0]
    assert b["options"]["min_rounds"] == axes.PROFILES["full"].min_rounds
    assert b["stats"]["rounds"] >= axes.PROFILES["full"].min_rounds
    assert b["extra_info"]["warmup_calls"] == axes.PROFILES["full"].warmup_calls
    assert bench_dir.runpytest("bench_x.py", "--profile", "full", "--benchmark-min-rounds=3", *args).ret == 0
    b = json.loads((bench_dir.path / "out.json").read_text())["benchmarks"][0]
    assert b["options"]["min_rounds"] == 3


def test_sgd_optimizer_is_recorded(bench_dir):
    out = run_json(bench_dir, "--model", "mlp", "--device", "cpu", "--batch-size", "2", "--optimizer", "sgd")
    assert out["benchmarks"][0]["extra_info"]["optimizer"] == "sgd"


def test_real_dataset_batches_come_from_the_data_root(bench_dir, tmp_path):
    write_cifar_bin(tmp_path / "data")
    out = run_json(bench_dir, "--model", "kerascnn", "--device", "cpu", "--batch-size", "8",
                   "--dataset", "cifar10", "--data-root", str(tmp_path / "data"))
    info = out["benchmarks"][0]["extra_info"]
    assert (info["dataset"], info["image_size"], info["in_channels"], info["num_classes"]) == ("cifar10", 32, 3, 10)


OOM_BENCH = """
import torch
from imgbench.workloads import Workload


def test_oom(device, batch_size, measure):
    def fn():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    measure(Workload(fn, images=batch_size))


def test_after(device):
    pass
"""


def test_out_of_memory_is_a_skip_naming_batch_and_device_and_the_run_goes_on(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_oom=OOM_BENCH)
    result = pytester.runpytest("bench_oom.py", "--device", "cpu", "--batch-size", "4096", "-rs",
                                "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*out of memory at batch 4096 on cpu*"])


def test_benchmark_disable_runs_each_case_once_without_warm_up(bench_dir):
    result = bench_dir.runpytest("bench_x.py", "--model", "mlp", "--device", "cpu", "--batch-size", "2",
                                 "--benchmark-disable", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.assert_outcomes(passed=1)
