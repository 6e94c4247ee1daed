"""End to end: every benchmark family runs in the quick profile and its pytest-benchmark JSON
carries the documented params and extra_info."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

CASE_PARAMS = {"model", "device", "batch_size", "precision", "memory_format", "compile"}
CASE_EXTRA = {"images", "images_per_s", "device_name", "threads", "profile", "image_size",
              "in_channels", "num_classes", "dataset", "warmup_calls", "precision", "memory_format",
              "compile", "peak_memory_bytes", "flush_denormal"}
# A slice of each family that keeps this test short (ddp: tests/workloads/test_ddp.py); .ci/run
# runs the whole quick matrix.
SELECT = ("not reference and not pil and not tensor_augment and not workers2 and not test_ddp and "
          "(not test_conv or conv2d_k3_64to128- or maxpool)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benches", "--profile", "quick", "--device", "cpu",
         "--model", "mlp", "--batch-size", "16", "-k", SELECT, f"--benchmark-json={out}",
         "--benchmark-max-time=0.001", "--benchmark-min-rounds=1", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}


def families(run):
    return {name.split("[")[0] for name in run}


@pytest.mark.slow
def test_every_family_ran(run):
    # test_copy needs a GPU; test_ddp runs through pytest in tests/workloads/test_ddp.py
    assert families(run) == {"test_empty_round", "test_forward", "test_train_step", "test_conv",
                             "test_loader", "test_epoch", "test_transfer", "test_checkpoint"}


@pytest.mark.slow
def test_model_cases_carry_params_and_rates(run):
    for name in ("test_forward[mlp-cpu-bs16]", "test_train_step[mlp-cpu-bs16]",
                 "test_epoch[mlp-cpu-bs16-loader]", "test_epoch[mlp-cpu-bs16-resident]"):
        b = run[name]
        assert set(b["params"]) >= CASE_PARAMS and b["params"]["batch_size"] == 16, b["params"]
        info = b["extra_info"]
        assert set(info) >= CASE_EXTRA, CASE_EXTRA - set(info)
        assert info["images_per_s"] == pytest.approx(info["images"] / b["stats"]["median"])
        assert info["tflop_per_s"] == pytest.approx(info["flops"] / b["stats"]["median"] / 1e12)
        assert info["pct_of_peak"] == pytest.approx(100 * info["tflop_per_s"]
                                                    / info["peak_tflop_per_s"])
    assert (run["test_forward[mlp-cpu-bs16]"]["extra_info"]["flops"]
            == 2 * 16 * (784 * 512 + 512 * 512 + 512 * 10))
    assert (run["test_forward[mlp-cpu-bs16]"]["extra_info"]["mode"],
            run["test_train_step[mlp-cpu-bs16]"]["extra_info"]["optimizer"]) == ("eval", "adam")


@pytest.mark.slow
def test_epochs_store_data_stall_and_steps(run):
    for path in ("loader", "resident"):
        info = run[f"test_epoch[mlp-cpu-bs16-{path}]"]["extra_info"]
        assert {"data_stall_share", "copy_share"} <= info.keys()
        assert info["steps"] == 512 // 16 and info["images"] == 512 and info["path"] == path
        assert info["epochs_recorded"] == run[f"test_epoch[mlp-cpu-bs16-{path}]"]["stats"]["rounds"]


@pytest.mark.slow
def test_conv_pool_loader_transfer_checkpoint_store_their_work(run):
    conv = run["test_conv[cpu-bs16-conv2d_k3_64to128-fwd-nchw]"]["extra_info"]
    # 2 x multiply-adds, batch 16, 16x16 output
    assert conv["flops"] == 2 * 16 * 128 * 16 * 16 * 64 * 9
    assert conv["input_shape"] == [16, 64, 16, 16]
    pool = run["test_conv[cpu-bs16-maxpool2d_k2_64-fwd-nchw]"]
    assert pool["extra_info"]["bytes"] == 16 * 64 * 16 * 16 * 4 * 5 // 4
    assert pool["extra_info"]["gb_per_s"] == pytest.approx(pool["extra_info"]["bytes"]
                                                           / pool["stats"]["median"] / 1e9)
    assert run["test_loader[bs16-tensor-workers0-pin_off]"]["options"]["disable_gc"] is True
    loader = run["test_loader[bs16-tensor-workers0-pin_off]"]["extra_info"]
    assert loader["images"] == 512 and loader["num_workers"] == 0
    cached = run["test_transfer[cpu-bs16-last_layer_cached]"]["extra_info"]
    assert cached["images"] == 256 and cached["image_size"] == 32 and "cache_s" in cached
    # only the cached mode caches
    assert "cache_s" not in run["test_transfer[cpu-bs16-last_layer]"]["extra_info"]
    saved = run["test_checkpoint[mlp-cpu-save]"]["extra_info"]
    assert saved["bytes"] > 4 * (784 * 512 + 512 * 512) * 3  # weights plus Adam's two moments


@pytest.mark.slow
def test_a_transfer_batch_larger_than_its_epoch_is_skipped_with_the_reason():
    proc = subprocess.run([sys.executable, "-m", "pytest", "benches/bench_transfer.py", "--profile",
                           "quick", "--device", "cpu", "--batch-size", "512", "-rs", "-p",
                           "no:cacheprovider", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "SKIPPED [3] " in proc.stdout and "3 skipped" in proc.stdout
    assert "batch 512 > 256 images per transfer epoch in the quick profile" in proc.stdout
