"""The run's duration said before it starts (imgbench.estimate): the cost model's arithmetic, its
FLOP table against torch's flop counter, and the lines a real run prints."""

import dataclasses
import json

import pytest

from imgbench.bench import estimate
from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.workloads import data, epoch, models
from tests.helpers import ROOT

QUICK = Settings(devices=["cpu"], batch_sizes=[32], models=["mlp"],
                 profile=config.PROFILES["quick"], threads=2, optimizer="adam", dataset="synthetic",
                 data_root=None)
FULL = dataclasses.replace(QUICK, profile=config.PROFILES["full"], threads=16)


@pytest.mark.slow
@pytest.mark.parametrize("model, size", sorted(estimate.TRAIN_GFLOP))
def test_the_flop_table_is_what_torch_counts(model, size):
    c = models.spec(model).input_shape[0]
    net = models.build(model, models.spec(model).num_classes, c, size)
    x, y = data.synthetic_batch(2, (c, size, size), models.spec(model).num_classes)
    assert epoch.train_flops_per_image(net, x, y) / 1e9 == pytest.approx(
        estimate.TRAIN_GFLOP[(model, size)], rel=0.01)


def test_a_short_case_is_warm_up_calibration_and_rounds_until_max_time():
    p = QUICK.profile  # 2 warm-up calls, >= 5 rounds, 0.5 s
    assert estimate._short(0.001, QUICK) == pytest.approx(estimate.SETUP_S + 3 * 0.001 + 0.5)
    assert estimate._short(1.0, QUICK) == pytest.approx(
        estimate.SETUP_S + (p.warmup_calls + 1) + p.min_rounds)


def test_an_epoch_case_is_a_warm_up_epoch_and_the_profiles_rounds():
    # kerascnn on 2 CPU threads: 512 images x 0.0227 GFLOP at 80 GFLOP/s, plus 4 steps' fixed cost
    epoch = 512 * 0.0227 / 80 + 4 * estimate.STEP_FLOOR_S["cpu"]
    got = estimate.case_seconds("epoch", "test_epoch", {"model": "kerascnn", "device": "cpu",
                                                        "batch_size": 128, "path": "resident"},
                                QUICK)
    assert got == pytest.approx(estimate.SETUP_S + (1 + 3) * epoch)
    assert estimate.case_seconds("epoch", "test_epoch", {"model": "kerascnn", "device": "cpu",
                                                         "batch_size": 1024, "path": "resident"},
                                 QUICK) == 0.0  # skipped: no step


def test_a_224px_epoch_on_one_gpu_uses_the_capped_epoch_and_the_gpu_rate():
    got = estimate.case_seconds("epoch", "test_epoch", {"model": "resnet50", "device": "cuda",
                                                        "batch_size": 128, "path": "resident"},
                                FULL)
    images = config.epoch_size(FULL.profile, (3, 224, 224))
    epoch = (images // 128) * 128 * 24.30 / 20_000 + (images // 128) * estimate.STEP_FLOOR_S["cuda"]
    assert got == pytest.approx(estimate.SETUP_S + 6 * epoch)


def test_a_runs_estimate_sums_its_families_and_calibrates_each_device_once():
    cases = [("forward", "test_forward", {"model": "mlp", "device": d, "batch_size": 32})
             for d in ("cpu", "cuda")]
    cases.append(("harness", "test_empty_round", {"device": "cpu"}))
    out = estimate.run_seconds(cases, QUICK)
    assert (set(out) == {"forward", "harness", "calibration"}
            and out["calibration"] == 2 * estimate.CALIBRATION_S)
    line = estimate.describe({"epoch": 600.0, "forward": 10.0}, 3)
    assert line.startswith("imgbench: 3 cases, estimated 10.2 min (epoch 10.0 min); a cost model")


BENCH = """
import pytest

def test_train(case, measure):
    measure(case.train_step(), case.info())

def test_never(case, measure):
    pytest.skip("not on this machine")
"""


@pytest.mark.slow
def test_a_run_says_its_estimate_before_and_its_duration_after(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x=BENCH)
    args = ["bench_x.py", "--device", "cpu", "--model", "mlp", "--batch-size", "4",
            "--benchmark-max-time=0.01", "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*args, "--benchmark-json=first.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["imgbench: 2 cases, estimated * min; a cost model with assumed "
                                 "device rates*",
                                 "*imgbench: the cases took * min (estimated * min)*"])
    first = json.loads((pytester.path / "first.json").read_text())
    (case,) = first["benchmarks"]
    assert case["extra_info"]["case_s"] > 0  # setup to teardown, for the next estimate
    (skip,) = first["imgbench"]["skipped"]  # no result, but its seconds (what a skip costs)
    assert skip["name"] == "test_never[mlp-cpu-bs4]" and skip["params"]["model"] == "mlp"
    assert 0 <= skip["case_s"] < 5
    # compared with it (as `imgbench run` compares with the previous run): learned from it
    again = pytester.runpytest_subprocess(*args, "--benchmark-compare=first.json")
    assert again.ret == 0, again.stdout.str()
    again.stdout.fnmatch_lines(["imgbench: 2 cases, estimated * min; 2 case(s) at what they took "
                                "in the previous run first.json"])


# The cost model's call times against the medians stored for the 2-core development box: the
# checkpoint's state bytes over its fitted rates within 1.7x, a train step's FLOPs plus its floor
# within 2.1x (speednet's big convolutions beat the CPU rate ~2x), a forward within 3x (tinyvgg's
# small convolutions run at a third of it).
MEASURED = ROOT / "baselines" / "AMD_EPYC-f25m17-2c" / "quick.json"
WITHIN = {"checkpoint": 1.7, "train_step": 2.1, "forward": 3.0}


def test_the_call_times_are_within_a_stated_factor_of_the_stored_medians():
    doc = json.loads(MEASURED.read_text())
    assert doc["imgbench"]["threads"] == 2
    two = dataclasses.replace(QUICK, threads=2, optimizer="adam")
    seen = {}
    for b in doc["benchmarks"]:
        family, p = b["fullname"].split("::")[0].split("bench_")[-1][:-3], b["params"]
        if family not in WITHIN:
            continue
        got = (estimate.checkpoint_call_s(p["model"], p["op"], "adam") if family == "checkpoint"
               else estimate.call_seconds(family, p["model"], "cpu", p["batch_size"], two))
        ratio = got / b["stats"]["median"]
        assert 1 / WITHIN[family] <= ratio <= WITHIN[family], (b["name"], ratio)
        seen[family] = seen.get(family, 0) + 1
    assert seen == {"checkpoint": 10, "forward": 12, "train_step": 12}


def test_a_checkpoint_case_costs_its_state_bytes_not_a_flat_call():
    # resnet50 + Adam: 25.6 M parameters x 4 bytes x 3 = 307 MB, saved at 1.1 GB/s
    call = estimate.checkpoint_call_s("resnet50", "save", "adam")
    assert call == pytest.approx(estimate.CHECKPOINT_S + 4 * 25_557_032 * 3 / 1.1e9)
    assert estimate.checkpoint_call_s("resnet50", "save", "sgd") < call
    got = estimate.case_seconds("checkpoint", "test_checkpoint",
                                {"model": "resnet50", "device": "cpu", "op": "save"}, QUICK)
    assert got == pytest.approx(estimate._short(call, QUICK)) and got > 2.0


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(estimate.PARAMS))
def test_the_parameter_table_is_what_the_models_hold(model):
    net = models.build(model)
    assert sum(t.numel() for t in net.parameters()) == estimate.PARAMS[model]
