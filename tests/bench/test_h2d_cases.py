"""The h2d family: skipped with the reason on a machine without an accelerator; its copy and
copy-in-the-step code paths exercised on the CPU with the accelerator check lifted."""

import json
import shutil

import pytest

from tests.helpers import ROOT, pretend_devices

BENCH = ROOT / "benches" / "bench_h2d.py"


@pytest.fixture
def bench_folder(pytester):
    shutil.copy(BENCH, pytester.path / "bench_h2d.py")
    return pytester


@pytest.mark.slow
def test_without_an_accelerator_every_case_is_skipped_saying_so(bench_folder, monkeypatch):
    pretend_devices(monkeypatch)
    bench_folder.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    result = bench_folder.runpytest("bench_h2d.py", "--model", "mlp", "--batch-size", "4", "-rs",
                                    "-p", "no:cacheprovider")
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    assert outcomes["skipped"] == 3 * 2 * 2 * 2 * 2 + 2 and "passed" not in outcomes
    result.stdout.fnmatch_lines(["*no accelerator on this machine: host<->device copies need cuda "
                                 "or mps*"])


@pytest.mark.slow
def test_copy_paths_on_the_cpu(bench_folder):
    bench_folder.makeconftest("""
import pytest
from imgbench.workloads import h2d
pytest_plugins = ["imgbench.plugin"]

@pytest.fixture(autouse=True)
def cpu_stands_in_for_a_device(monkeypatch):
    monkeypatch.setattr(h2d, "no_accelerator", lambda device: None)
""")
    out = bench_folder.path / "out.json"
    result = bench_folder.runpytest("bench_h2d.py", "--device", "cpu", "--model", "mlp",
                                    "--batch-size", "4", "-k", "not 256MiB",
                                    f"--benchmark-json={out}", "--benchmark-max-time=0.001",
                                    "--benchmark-min-rounds=1", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    runs = {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}
    copy = runs["test_copy[cpu-16MiB-float32-pageable-non_blocking-h2d]"]
    info = copy["extra_info"]
    assert info["bytes"] == 16 << 20 and info["non_blocking"] is True
    assert info["gb_per_s"] == pytest.approx(info["bytes"] / copy["stats"]["median"] / 1e9)
    assert (info["direction"], info["memory"], info["dtype"]) == ("h2d", "pageable", "float32")
    batch = runs["test_copy[cpu-cifar_batch-uint8-pageable-blocking-d2h]"]["extra_info"]
    assert batch["bytes"] == 128 * 3 * 32 * 32
    assert not any("pinned" in name for name in runs)  # pinned memory is skipped off CUDA
    copied = runs["test_train_step_copy[mlp-cpu-bs4-copied]"]["extra_info"]
    assert copied["batch"] == "copied" and copied["copy_bytes"] == 4 * 28 * 28 + 4 * 8
    assert runs["test_train_step_copy[mlp-cpu-bs4-on_device]"]["extra_info"]["images"] == 4
