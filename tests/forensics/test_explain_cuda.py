"""explain on a CUDA case: the profile worker keys the table by the CPU-side operator that launched
the kernels, with its self device time, so that cuDNN's per-process choice of kernel does not break
the pairing of the two sides and no kernel counts twice. No GPU here: the profiler's events are
stand-ins shaped as torch's key_averages() gives them."""

import importlib.util
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.autograd import DeviceType

from imgbench import cli
from imgbench.forensics import explain
from imgbench.forensics.workers import ab_worker
from tests.forensics.test_explain import profile

WORKER = Path(explain.__file__).parent / "workers" / "profile_worker.py"


@pytest.fixture
def worker(monkeypatch):
    """The profile worker as explain loads it (beside its A/B worker), leaving this process's A/B
    worker state as it was."""
    monkeypatch.setitem(sys.modules, "imgbench_abworker", ab_worker)
    monkeypatch.setattr(ab_worker.state, "serve", ab_worker.state.serve)
    spec = importlib.util.spec_from_file_location("imgbench_profworker_under_test", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Event:
    key: str
    count: int
    device_type: DeviceType
    self_cpu_time_total: float
    self_device_time_total: float
    is_user_annotation: bool = False


def cpu(key, count, cpu_us, device_us=0.0):
    return Event(key, count, DeviceType.CPU, cpu_us, device_us)


def kernel(key, count, us, annotation=False):
    return Event(key, count, DeviceType.CUDA, 0.0, us, annotation)


# A conv step on CUDA: aten::conv2d -> ... -> aten::cudnn_convolution launches the conv kernel
# (900 us) and aten::add_ its bias kernel (100 us); aten::copy_ a copy (50 us). Parents have no self
# device time; the launch calls are CPU events with none either.
EVENTS = [
    cpu("aten::conv2d", 10, 40.0), cpu("aten::convolution", 10, 30.0),
    cpu("aten::cudnn_convolution", 10, 200.0, 900.0), cpu("aten::add_", 10, 20.0, 100.0),
    cpu("aten::copy_", 2, 15.0, 50.0), cpu("cudaLaunchKernel", 22, 80.0),
    kernel("sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nhwckrsc_nchw", 10, 900.0),
    kernel("void at::native::elementwise_kernel<128, 4>", 10, 100.0),
    kernel("Memcpy HtoD (Pageable -> Device)", 2, 50.0),
    kernel("## forward ##", 1, 1050.0, annotation=True),  # a record_function's span on the device
]


def test_a_cuda_table_is_keyed_by_operator_with_its_kernels_device_time(worker):
    ops = worker._ops(EVENTS, cuda=True)
    assert ops == {"aten::cudnn_convolution": [10, 900.0], "aten::add_": [10, 100.0],
                   "aten::copy_": [2, 50.0]}
    # every kernel once: the operators' sum is the kernels' time (1050 us), not twice it
    assert sum(us for _, us in ops.values()) == 1050.0


def test_the_kernel_names_cudnn_picks_do_not_change_the_table(worker):
    other = [kernel("sm80_xmma_fprop_implicit_gemm_indexed_f32", 10, 900.0) if e.key.startswith(
        "sm90") else e for e in EVENTS]
    assert worker._ops(other, cuda=True) == worker._ops(EVENTS, cuda=True)


def test_kernel_time_no_operator_launched_is_a_line_of_its_own(worker):
    events = [*EVENTS, kernel("triton_poi_fused_relu_0", 10, 30.0)]
    ops = worker._ops(events, cuda=True)
    assert ops[worker.UNOWNED] == [0, 30.0] and sum(us for _, us in ops.values()) == 1080.0


def test_older_torch_names_the_device_time_for_cuda(worker):
    @dataclass
    class Old:
        key: str
        count: int
        device_type: DeviceType
        self_cpu_time_total: float
        self_cuda_time_total: float

    events = [Old("aten::mm", 4, DeviceType.CPU, 10.0, 400.0),
              Old("ampere_sgemm_128x64_nn", 4, DeviceType.CUDA, 0.0, 400.0)]
    assert worker._ops(events, cuda=True) == {"aten::mm": [4, 400.0]}


def test_a_cpu_table_is_unchanged_self_cpu_time_of_every_cpu_operator(worker):
    assert worker._ops(EVENTS, cuda=False) == {
        "aten::conv2d": [10, 40.0], "aten::convolution": [10, 30.0],
        "aten::cudnn_convolution": [10, 200.0], "aten::add_": [10, 20.0],
        "aten::copy_": [2, 15.0], "cudaLaunchKernel": [22, 80.0]}


def test_a_block_profiles_cuda_activity_and_returns_the_operator_table(worker, monkeypatch):
    seen = []

    class Prof:
        def key_averages(self):
            return EVENTS

    @contextmanager
    def fake_profile(activities, record_shapes):
        seen.append(activities)
        yield Prof()

    monkeypatch.setattr(worker, "profile", fake_profile)
    clock = iter([1.0, 1.5])
    per_call, ops = worker._block(lambda: next(clock), lambda: None, 5, True, None)
    assert per_call == pytest.approx(0.1) and ops["aten::cudnn_convolution"] == [10, 900.0]
    assert seen == [[worker.ProfilerActivity.CPU, worker.ProfilerActivity.CUDA]]


def test_a_real_cpu_block_is_keyed_by_aten_operator(worker):
    x = torch.ones(64, 64)
    per_call, ops = worker._block(time.perf_counter, lambda: x @ x + 1, 3, False, None)
    assert per_call > 0 and ops["aten::mm"][0] == 3 and ops["aten::mm"][1] > 0
    assert not any(k.startswith("cuda") for k in ops)


def test_an_old_kernel_keyed_cuda_table_is_not_paired_with_an_operator_table(tmp_path, capsys):
    new = profile("candidate", [1000.0], {"aten::conv2d": [900.0]}, device="cuda")
    explain.save(new, tmp_path / "candidate.ops.json")
    raw = json.loads((tmp_path / "candidate.ops.json").read_text())
    old = {**raw, "format_version": 1, "side": "base", "ops": [{"sm90_xmma_fprop": [10, 9000.0]}]}
    (tmp_path / "base.ops.json").write_text(json.dumps(old))
    assert explain.load(tmp_path / "base.ops.json").device == "cuda-kernels"
    assert explain.load(tmp_path / "candidate.ops.json").device == "cuda"
    assert cli.main(["explain", "--profiles", str(tmp_path / "base.ops.json"),
                     str(tmp_path / "candidate.ops.json")]) == cli.EXIT_BAD_INPUT
    assert ("one CUDA table is keyed by kernel (an older imgbench explain wrote it) and the other "
            "by operator: profile both sides again") in capsys.readouterr().err
    # two new CUDA tables diff, titled with what the number is
    explain.save(profile("base", [1000.0], {"aten::conv2d": [800.0]}, device="cuda"),
                 tmp_path / "base.ops.json")
    assert cli.main(["explain", "--profiles", str(tmp_path / "base.ops.json"),
                     str(tmp_path / "candidate.ops.json")]) == 0
    assert ("self CUDA time (the kernels each operator launched itself) per step"
            in capsys.readouterr().out)
