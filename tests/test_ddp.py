"""Data parallelism on the 2-core box: gloo with 2 CPU processes through torchrun."""

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgbench import ddp

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(ddp.unavailable("cpu") is not None, reason=str(ddp.unavailable("cpu")))
SMALL = {"model": "kerascnn", "batch_size": 8, "images": 64, "image_size": 32, "epochs": 1}


def test_two_gloo_replicas_train_in_lockstep(tmp_path):
    r = ddp.launch(2, tmp_path / "r.json", **SMALL)
    assert (r["world_size"], r["backend"], r["steps"], r["images_per_epoch"]) == (2, "gloo", 4, 64)
    assert r["replicas_identical"] and r["max_param_diff"] == 0.0
    assert len(r["epoch_s"]) == 1 and r["epoch_s"][0] > 0 and r["nosync_epoch_s"] > 0


def test_one_replica_matches_plain_training_with_the_same_seed(tmp_path):
    weights = tmp_path / "w.pt"
    ddp.launch(1, tmp_path / "r.json", save_weights=weights, **SMALL)
    got = torch.load(weights, weights_only=True)
    want = ddp.plain_train("kerascnn", 8, 64, 32, 1, "adam", 0)
    assert got.keys() == want.keys()
    start = dict(ddp.build("kerascnn", 32, 0).named_parameters())
    assert any(not torch.equal(want[k], start[k].detach()) for k in want)  # it trained
    for k in want:  # the stated tolerance: none, with the same thread count on both sides
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_a_failed_launch_is_one_line_naming_the_cause(tmp_path):
    with pytest.raises(ddp.DDPError, match=r"torchrun with 2 replicas failed \(exit 1\): .*batch 64 x 2 replicas > "
                                           r"64 images per epoch: no step"):
        ddp.launch(2, tmp_path / "r.json", **{**SMALL, "batch_size": 64})


def test_a_missing_backend_or_distributed_is_a_clear_reason(monkeypatch):
    monkeypatch.setattr(ddp.dist, "is_gloo_available", lambda: False)
    assert ddp.unavailable("cpu") == f"the gloo backend is not available in torch {torch.__version__} (needed for cpu)"
    monkeypatch.setattr(ddp.dist, "is_nccl_available", lambda: False)
    assert "the nccl backend is not available" in ddp.unavailable("cuda")
    monkeypatch.setattr(ddp.dist, "is_available", lambda: False)
    assert ddp.unavailable("cuda") == f"torch.distributed is not available in torch {torch.__version__}"


def test_the_ddp_family_stores_epochs_scaling_and_communication(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benches" / "bench_ddp.py"), "--device", "cpu",
                           "--model", "kerascnn", "--batch-size", "32", "--threads", "2", "-p", "no:cacheprovider",
                           f"--benchmark-json={out}", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = {b["params"]["world_size"]: b for b in json.loads(out.read_text())["benchmarks"]}
    assert sorted(runs) == [1, 2]
    one, two = runs[1], runs[2]
    assert one["name"] == "test_ddp[kerascnn-cpu-bs32-world1]" and one["stats"]["rounds"] == 3
    assert two["extra_info"]["threads_per_rank"] == 1 and one["extra_info"]["threads_per_rank"] == 2
    assert two["extra_info"]["images_per_epoch"] == 512 and two["extra_info"]["replicas_identical"]
    eff = two["extra_info"]["images_per_s"] / (2 * one["extra_info"]["images_per_s"])
    assert two["extra_info"]["scaling_efficiency"] == pytest.approx(eff)
    assert 0 <= two["extra_info"]["comm_share"] < 1 and one["extra_info"]["scaling_efficiency"] == pytest.approx(1)
    for case in (one, two):  # the rounds are the workers' own epoch times, replayed
        assert case["stats"]["data"] == pytest.approx(case["extra_info"]["epoch_s"], abs=1e-4)  # + the call
        assert case["stats"]["median"] == pytest.approx(statistics.median(case["extra_info"]["epoch_s"]), abs=1e-4)


def test_the_family_runs_once_per_machine_on_gpus_and_not_on_other_devices():
    spec = importlib.util.spec_from_file_location("bench_ddp", ROOT / "benches" / "bench_ddp.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert [bench.device_reason(d) for d in ("cpu", "cuda", "cuda:0")] == [None, None, None]
    assert bench.device_reason("cuda:1").startswith("ddp spreads over every GPU from cuda:0")
    assert bench.device_reason("mps").endswith("not mps")


def test_an_epoch_reuses_a_bounded_pool_of_uint8_images():
    ds = ddp.dataset("kerascnn", ddp.POOL + 10, image_size=8, seed=0)
    pool = ds.dataset.tensors[0]
    assert len(ds) == ddp.POOL + 10 and len(pool) == ddp.POOL and pool.dtype == torch.uint8
    (x0, y0), (x1, y1) = ds[3], ds[ddp.POOL + 3]
    assert torch.equal(x0, x1) and y0 == y1 and x0.shape == (3, 8, 8)
    small = ddp.dataset("kerascnn", 64, image_size=8, seed=0)
    assert len(small.dataset.tensors[0]) == 64 and torch.equal(small[5][0], ds[5][0])  # the same seeded images
