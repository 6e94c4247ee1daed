"""The estimate learned from the previous run (bench/learned.py): a case it holds at what it took
there, the rest by the cost model, and the line saying which."""

import json

import pytest

from imgbench.bench import estimate, learned
from imgbench.core import config
from imgbench.core.options import Settings
from tests.helpers import bench_entry, run_file, write_json

QUICK = Settings(devices=["cpu"], batch_sizes=[32], models=["mlp"],
                 profile=config.PROFILES["quick"], threads=2, optimizer="adam", dataset="synthetic",
                 data_root=None)
FWD = {"model": "mlp", "device": "cpu", "batch_size": 32}
CASES = [("forward", "test_forward", FWD),
         ("train_step", "test_train_step", FWD)]


def previous(tmp_path, seconds=12.5):
    cases = [bench_entry("test_forward[mlp-cpu-bs32]", FWD, [0.01] * 5,
                         extra={"case_s": seconds})]
    return write_json(tmp_path / "0001_quick.json", run_file(cases))


def test_a_case_the_previous_run_skipped_is_estimated_at_what_its_skip_took(tmp_path):
    skipped = {"skipped": [{"name": "test_train_step[mlp-cpu-bs32]", "params": FWD, "case_s": 0.01},
                           {"name": "test_odd", "case_s": True}, "not a case"]}
    path = write_json(tmp_path / "1.json", run_file([], meta=skipped))
    took = learned.previous_seconds(path)
    assert list(took.values()) == [0.01]  # the malformed entries are left out
    per_family, n = learned.run_seconds(CASES, QUICK, took)
    assert n == 1 and per_family["train_step"] == pytest.approx(0.01)


def test_a_case_the_previous_run_holds_is_estimated_at_what_it_took(tmp_path):
    path = previous(tmp_path)
    took = learned.previous_seconds(path)
    assert list(took.values()) == [12.5]
    per_family, n = learned.run_seconds(CASES, QUICK, took)
    assert n == 1 and "calibration" not in per_family
    assert per_family["forward"] == pytest.approx(12.5)
    assert per_family["train_step"] == pytest.approx(
        estimate.case_seconds("train_step", "test_train_step", FWD, QUICK))
    line = learned.describe(per_family, 2, n, str(path))
    assert line.endswith("; 1 case(s) at what they took in the previous run 0001_quick.json, "
                         "1 by the cost model (imgbench/bench/estimate.py)")
    assert line.startswith("imgbench: 2 cases, estimated ")


def test_without_a_usable_previous_run_the_cost_model_alone(tmp_path):
    garbled = tmp_path / "bad.json"
    garbled.write_text("{not json")
    old = write_json(tmp_path / "old.json", run_file([bench_entry(
        "test_forward[mlp-cpu-bs32]", FWD, [0.01] * 5)]))  # no case_s: predates it
    for path in (None, tmp_path / "missing.json", garbled, old):
        assert learned.previous_seconds(path) == {}
    per_family, n = learned.run_seconds(CASES, QUICK, {})
    assert n == 0 and per_family == estimate.run_seconds(CASES, QUICK)
    assert learned.describe(per_family, 2, 0, None) == estimate.describe(per_family, 2)
    assert json.loads(old.read_text())["benchmarks"][0]["extra_info"] == {}
