"""The ddp family's sweep (imgbench.worlds): world sizes, why a world does not run, each world's
launch arguments, and the one-replica reference of scaling efficiency, with the launch stood in for
(the real launches are in test_ddp)."""

from __future__ import annotations

import dataclasses

import pytest

from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.hw import devices
from imgbench.workloads.ddp import worlds
from imgbench.workloads.ddp.worker import DDPError

QUICK = Settings(devices=["cpu"], batch_sizes=[32], models=["mlp"],
                 profile=config.PROFILES["quick"], threads=8,
                 optimizer="sgd", dataset="synthetic", data_root=None)


@pytest.mark.parametrize(("cores", "gpus", "sizes"), [(1, 0, [1]), (2, 0, [1, 2]),
                                                      (6, 0, [1, 2, 4, 6]), (2, 8, [1, 2, 4, 8]),
                                                      (32, 0, [1, 2, 4, 8, 16, 32])])
def test_world_sizes_double_up_to_the_most_replicas_here(monkeypatch, cores, gpus, sizes):
    monkeypatch.setattr(devices, "usable_cores", lambda: cores)
    monkeypatch.setattr(worlds.torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(worlds.torch.cuda, "device_count", lambda: gpus)
    assert worlds.world_sizes() == sizes


def test_the_family_runs_once_per_machine_on_gpus_and_not_on_other_devices():
    assert [worlds.device_reason(d) for d in ("cpu", "cuda", "cuda:0")] == [None, None, None]
    assert worlds.device_reason("cuda:1").startswith("ddp spreads over every GPU from cuda:0")
    assert worlds.device_reason("mps").endswith("not mps")


def test_why_a_world_does_not_run(monkeypatch):
    monkeypatch.setattr(worlds, "unavailable", lambda device: None)
    monkeypatch.setattr(worlds.torch.cuda, "device_count", lambda: 2)
    four = dataclasses.replace(QUICK, threads=4)  # CPU replicas follow --threads, not the cores
    assert worlds.unsupported(4, "mlp", "cpu", 32, four) is None
    assert (worlds.unsupported(8, "mlp", "cpu", 32, four)
            == "world size 8 needs 8 CPU threads, one per replica; this run has 4 (--threads)")
    assert (worlds.unsupported(4, "mlp", "cuda", 32, four)
            == "world size 4 needs 4 GPUs; this machine has 2")
    assert (worlds.unsupported(2, "resnet18", "cpu", 32, QUICK)
            == "the quick profile runs ddp for mlp, kerascnn only")
    assert (worlds.unsupported(4, "mlp", "cpu", 256, QUICK)
            == "batch 256 x 4 replicas > 512 images per epoch")
    assert worlds.unsupported(1, "mlp", "mps", 32, QUICK).endswith("not mps")


@pytest.mark.parametrize(("model", "profile", "size", "images"), [
    ("mlp", "quick", 28, 512), ("kerascnn", "quick", 32, 512), ("resnet18", "quick", 32, 512),
    ("kerascnn", "full", 32, 50_000),
    ("resnet18", "full", 224, 9_964)])  # the epoch family's 1.5 GB cap
def test_launch_follows_the_image_size_rule_and_shares_out_the_threads(model, profile, size,
                                                                       images):
    s = dataclasses.replace(QUICK, profile=config.PROFILES[profile])
    args = worlds.launch_args(2, model, "cpu", 32, s)
    assert args == {"model": model, "device": "cpu", "batch_size": 32, "images": images,
                    "image_size": size, "epochs": s.profile.long_rounds, "optimizer": "sgd",
                    "threads": 4}
    assert worlds.launch_args(16, model, "cpu", 32, s)["threads"] == 1
    assert worlds.launch_args(2, model, "cuda", 32, s)["threads"] == 4  # one rule on every device
    assert worlds.launch_args(1, model, "cuda", 32, s)["threads"] == 8  # the epoch family's threads


def result(world: int, epoch_s=(0.4, 0.5, 0.6), images: int = 512, diff: float = 0.0,
           **args) -> dict:
    return {"world_size": world, "backend": "gloo", "device": args["device"],
            "model": args["model"], "batch_size": args["batch_size"],
            "steps": images // world // args["batch_size"], "images_per_epoch": images,
            "threads_per_rank": args["threads"], "epoch_s": list(epoch_s),
            "nosync_epoch_s": 0.3, "max_param_diff": diff, "replicas_identical": diff == 0.0,
            "conditions": {"threads": args["threads"], "cudnn_benchmark": None, "tf32": None,
                           "flush_denormal": True}}


@pytest.fixture
def launches(monkeypatch):
    """The launch stood in for: each call recorded (its measurement arguments), world 1 at 1 s an
    epoch; an empty session cache."""
    calls = []

    def launch(world, out, timeout, **args):
        calls.append((world, args))
        return result(world, (1.0, 1.0, 1.0) if world == 1 else (0.4, 0.5, 0.6), **args)

    monkeypatch.setattr(worlds, "launch", launch)
    monkeypatch.setattr(worlds, "_ONE_REPLICA", {})
    return calls


def test_a_larger_world_gets_its_reference_when_world_1_did_not_run(launches, tmp_path):
    r = worlds.run(2, "mlp", "cpu", 32, QUICK, tmp_path)
    f = worlds.figures(r, 0.5, QUICK, tmp_path)
    # the reference: one replica, launched after the case's own
    assert [w for w, _ in launches] == [2, 1]
    # all the cores, as world 1's case
    assert launches[1][1] == worlds.launch_args(1, "mlp", "cpu", 32, QUICK)
    assert f["images_per_s"] == 512 / 0.5
    assert f["scaling_efficiency"] == pytest.approx((512 / 0.5) / (2 * 512 / 1.0))
    assert f["comm_share"] == pytest.approx(1 - 0.3 / 0.5)
    assert ({k: f[k] for k in ("threads", "cudnn_benchmark", "tf32", "flush_denormal")}
            == r["conditions"])
    worlds.figures(r, 0.5, QUICK, tmp_path)
    assert len(launches) == 2  # launched once per session


def test_the_world_1_case_is_the_reference_when_it_ran(launches, tmp_path):
    one = worlds.figures(worlds.run(1, "mlp", "cpu", 32, QUICK, tmp_path), 0.8, QUICK, tmp_path)
    assert one["scaling_efficiency"] == 1.0
    two = worlds.figures(worlds.run(2, "mlp", "cpu", 32, QUICK, tmp_path), 0.5, QUICK, tmp_path)
    assert [w for w, _ in launches] == [1, 2]  # no launch of its own
    assert two["scaling_efficiency"] == pytest.approx((512 / 0.5) / (2 * 512 / 0.8))


def test_other_settings_get_a_reference_of_their_own(launches, tmp_path):
    worlds.figures(worlds.run(1, "mlp", "cpu", 32, QUICK, tmp_path), 0.8, QUICK, tmp_path)
    fewer = dataclasses.replace(QUICK, threads=2)
    worlds.figures(worlds.run(2, "mlp", "cpu", 32, fewer, tmp_path), 0.5, fewer, tmp_path)
    assert [(w, a["threads"]) for w, a in launches] == [(1, 8), (2, 1), (1, 2)]


def test_replicas_that_differ_fail_the_case(monkeypatch, tmp_path):
    monkeypatch.setattr(worlds, "launch",
                        lambda world, out, timeout, **args: result(world, diff=1e-3, **args))
    with pytest.raises(DDPError,
                       match=r"replicas differ after the timed epochs \(max \|diff\| 0.001\)"):
        worlds.run(2, "mlp", "cpu", 32, QUICK, tmp_path)


def test_a_launch_is_given_the_case_limit(monkeypatch, tmp_path):
    limits = []

    def launch(world, out, timeout, **args):
        limits.append(timeout)
        return result(world, **args)

    monkeypatch.setattr(worlds, "launch", launch)
    worlds.run(2, "mlp", "cpu", 32, QUICK, tmp_path)
    worlds.run(2, "mlp", "cpu", 32, dataclasses.replace(QUICK, case_timeout=42.0), tmp_path)
    assert limits == [300, 42.0]  # the quick profile's, then --case-timeout's
