"""The A/B job's cost model (bench/ab_estimate.py): its arithmetic, and the GPU job's bound for
a pull request: the GPU gate set, as the benches mark it, within 20 minutes on one H100."""

import dataclasses
import importlib.util

import pytest

from imgbench.bench import ab_estimate, estimate
from imgbench.core import config
from imgbench.core.options import Settings
from tests.helpers import ROOT, pretend_devices

GPU_BOX = Settings(devices=["cuda"], batch_sizes=[32, 128], models=["kerascnn"],
                   profile=config.PROFILES["quick"], threads=16, optimizer="adam",
                   dataset="synthetic", data_root=None)
CUDA = {"device": "cuda"}
MODEL = {"model": "kerascnn", "precision": "fp32", "memory_format": "nchw", "compile": "off"}
# `--cases gate --device cuda`: what `.ci/gpu-job` times for a pull request (the loader is a host
# case, left out when the CPU is not among the devices)
GPU_GATE_SET = [
    ("forward", "test_forward", {**CUDA, **MODEL, "batch_size": 32}),
    ("train_step", "test_train_step", {**CUDA, **MODEL, "batch_size": 32}),
    ("conv", "test_conv", {**CUDA, "batch_size": 32, "layer": "conv2d_k3_64to128",
                           "direction": "fwd_bwd", "layout": "nchw"}),
    ("transfer", "test_transfer", {**CUDA, "batch_size": 128, "mode": "last_layer"}),
    ("epoch", "test_epoch", {**CUDA, **MODEL, "batch_size": 128, "path": "resident"}),
    ("epoch", "test_epoch", {**CUDA, **MODEL, "batch_size": 128, "path": "loader"}),
    ("checkpoint", "test_checkpoint", {**CUDA, "model": "kerascnn", "op": "save"}),
    ("checkpoint", "test_checkpoint", {**CUDA, "model": "kerascnn", "op": "load"}),
    ("h2d", "test_copy", {**CUDA, "size": "16MiB", "dtype": "float32", "memory": "pinned",
                          "mode": "non_blocking", "direction": "h2d"}),
    ("ddp", "test_ddp", {**CUDA, "model": "kerascnn", "batch_size": 128, "world_size": 1}),
]
# Beside the A/B, a pull request's job checks out its base and starts one more process (imgbench
# env): both well under a minute; the bound leaves them one.
JOB_OVERHEAD_S = 60


def gate_marks() -> dict[str, list[dict]]:
    """test function -> the params of its @pytest.mark.gate marks, read from the bench files."""
    out = {}
    for path in sorted((ROOT / "benches").glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(f"_marks_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, fn in vars(module).items():
            marks = [m.kwargs for m in getattr(fn, "pytestmark", []) if m.name == "gate"]
            if name.startswith("test_") and marks:
                out[name] = marks
    # its gated case (pin off) is a host case: left out when the CPU is not among the devices
    del out["test_loader"]
    return out


def matches(params: dict, mark: dict) -> bool:
    return all(str(params.get(k)) == str(v) for k, v in mark.items())


def test_the_listed_gpu_gate_set_is_what_the_benches_mark():
    marks = gate_marks()
    listed = {test for _, test, _ in GPU_GATE_SET}
    assert listed == set(marks)
    for _, test, params in GPU_GATE_SET:
        assert any(matches(params, m) for m in marks[test]), (test, params)


@pytest.fixture
def one_h100(monkeypatch):
    """This machine as the GPU box: a one-replica ddp world runs there (one GPU, NCCL)."""
    pretend_devices(monkeypatch, gpus=1)
    monkeypatch.setattr("imgbench.workloads.ddp.worlds.unsupported", lambda *a: None)


def test_a_pull_requests_gpu_ab_is_estimated_within_20_minutes_on_one_h100(one_h100):
    seconds = ab_estimate.job_seconds(GPU_GATE_SET, GPU_BOX, config.AB_BUDGET_S, config.AB_ROUNDS)
    assert seconds + JOB_OVERHEAD_S <= 20 * 60
    # the pairs are the job's cap, but the ddp case's first set (two launches a pair) can fill the
    # set limit: what the bound has to hold
    assert seconds > config.AB_BUDGET_S * 9 + config.AB_SET_LIMIT_S


def test_a_job_is_start_ups_per_round_set_ups_per_trial_and_each_trials_pairs(one_h100):
    short = [("forward", "test_forward", {**CUDA, **MODEL, "batch_size": 32})]
    case = estimate.case_seconds(*short[0], GPU_BOX)
    start = config.PROCESS_START_S + estimate.CALIBRATION_S
    # 4 rounds of 5 s of pairs each (12 pairs of 0.2 s fit in that)
    assert ab_estimate.job_seconds(short, GPU_BOX, 20, 4) == pytest.approx(4 * (start + case + 5))
    info = [("ddp", "test_ddp", {**CUDA, "model": "kerascnn", "batch_size": 128,
                                 "world_size": 1})]
    launch = estimate.case_seconds(*info[0], GPU_BOX)
    # the information tier: the first round only, its 12 pairs of two launches up to the set limit
    assert ab_estimate.job_seconds(info, GPU_BOX, 20, 4) == pytest.approx(
        4 * start + launch + min(config.AB_SET_LIMIT_S, 12 * 2 * launch))
    cpu_box = dataclasses.replace(GPU_BOX, devices=["cpu"], threads=2)
    assert ab_estimate.pair_seconds("forward", "test_forward", {}, cpu_box) == 0.2
