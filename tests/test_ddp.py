"""Data parallelism on the 2-core box (imgbench.ddp and the ddp family): gloo with 2 CPU processes
through torchrun."""

import json
import statistics
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from imgbench import ddp

pytestmark = pytest.mark.skipif(ddp.unavailable("cpu") is not None, reason=str(ddp.unavailable("cpu")))
SMALL = {"model": "kerascnn", "batch_size": 8, "images": 64, "image_size": 32, "epochs": 1}


def test_two_gloo_replicas_train_in_lockstep(tmp_path):
    r = ddp.launch(2, tmp_path / "r.json", **SMALL)
    assert (r["world_size"], r["backend"], r["steps"], r["images_per_epoch"]) == (2, "gloo", 4, 64)
    assert r["replicas_identical"] and r["max_param_diff"] == 0.0
    assert len(r["epoch_s"]) == 1 and isinstance(r["nosync_epoch_s"], float)


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


def test_a_world_alone_stores_its_scaling_against_one_replica(tmp_path):
    """Only world 2 selected: its one-replica reference is launched for it (worlds.one_replica)."""
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benches" / "bench_ddp.py"), "--device", "cpu",
                           "--model", "mlp", "--batch-size", "64", "--threads", "2", "-k", "world2",
                           "-p", "no:cacheprovider", f"--benchmark-json={out}", "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [two] = json.loads(out.read_text())["benchmarks"]
    info, stats = two["extra_info"], two["stats"]
    assert two["name"] == "test_ddp[mlp-cpu-bs64-world2]" and stats["rounds"] == 3
    assert info["threads_per_rank"] == 1 and info["images_per_epoch"] == 512 and info["replicas_identical"]
    assert isinstance(info["scaling_efficiency"], float) and info["scaling_efficiency"] > 0
    assert info["images_per_s"] == pytest.approx(512 / stats["median"])
    assert info["comm_share"] == pytest.approx(max(0.0, 1 - info["nosync_epoch_s"] / stats["median"]))
    # the rounds are the workers' own epoch times, replayed (+ the microsecond of the call)
    assert stats["data"] == pytest.approx(info["epoch_s"], abs=1e-4)
    assert stats["median"] == pytest.approx(statistics.median(info["epoch_s"]), abs=1e-4)


def test_an_epoch_reuses_a_bounded_pool_of_uint8_images():
    ds = ddp.dataset("kerascnn", ddp.POOL + 10, image_size=8, seed=0)
    pool = ds.dataset.tensors[0]
    assert len(ds) == ddp.POOL + 10 and len(pool) == ddp.POOL and pool.dtype == torch.uint8
    (x0, y0), (x1, y1) = ds[3], ds[ddp.POOL + 3]
    assert torch.equal(x0, x1) and y0 == y1 and x0.shape == (3, 8, 8)
    small = ddp.dataset("kerascnn", 64, image_size=8, seed=0)
    assert len(small.dataset.tensors[0]) == 64 and torch.equal(small[5][0], ds[5][0])  # the same seeded images
