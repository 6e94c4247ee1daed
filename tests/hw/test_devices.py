"""Device names, availability checks and usable cores (imgbench.devices)."""

import os

import pytest

from imgbench.hw import cgroup, devices
from imgbench.hw.devices import DeviceError


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has N CUDA GPUs (and no MPS, and no faked accelerator)."""
    def set_count(n):
        monkeypatch.delenv(devices.FAKE_ENV, raising=False)
        monkeypatch.setattr(devices, "_gpu_count", lambda: n)
        monkeypatch.setattr(devices, "_mps_available", lambda: False)
    return set_count


def test_cpu_is_always_there(gpus):
    gpus(0)
    assert devices.available() == ["cpu"]
    assert devices.parse("auto") == ["cpu"]
    assert devices.parse("cpu") == ["cpu"]


def test_auto_is_the_cpu_plus_every_gpu(gpus):
    gpus(1)
    assert devices.parse("auto") == ["cpu", "cuda"]
    gpus(2)
    assert devices.parse("auto") == ["cpu", "cuda:0", "cuda:1"]


def test_lists_keep_order_and_drop_repeats(gpus):
    gpus(2)
    assert devices.parse("cuda:1, cpu,cuda:1,auto") == ["cuda:1", "cpu", "cuda:0"]


@pytest.mark.parametrize("spec, message", [
    ("tpu", "unknown device 'tpu' (valid: auto, cpu, cuda, cuda:N, mps)"),
    ("cuda:x", "unknown device 'cuda:x'"),
    ("cuda:01", "unknown device 'cuda:01'"),
    ("CPU", "unknown device 'CPU'"),
    ("cpu,", "empty device name in 'cpu,'"),
    ("cuda", "device 'cuda' is not available on this machine: no CUDA GPU found (available: cpu)"),
    ("mps", "device 'mps' is not available on this machine (available: cpu)"),
])
def test_bad_or_absent_devices_are_named(gpus, spec, message):
    gpus(0)
    with pytest.raises(DeviceError) as e:
        devices.parse(spec)
    assert message in str(e.value)


def test_gpu_index_beyond_the_count_is_named(gpus):
    gpus(1)
    with pytest.raises(DeviceError,
                       match=r"device 'cuda:3' is not available on this machine: 1 CUDA GPU"):
        devices.parse("cuda:3")
    assert devices.parse("cuda:0") == ["cuda:0"]


def test_one_gpu_named_twice_runs_once(gpus):
    gpus(1)
    assert devices.parse("cuda,cuda:0,cpu") == ["cuda", "cpu"]


@pytest.mark.parametrize(("real", "fake", "auto"), [
    (0, "cuda", ["cpu", "cuda"]), (0, "mps", ["cpu", "mps"]),
    (1, "cuda", ["cpu", "cuda"]), (2, "cuda", ["cpu", "cuda:0", "cuda:1"])])
def test_a_faked_accelerator_joins_auto_only(gpus, monkeypatch, real, fake, auto):
    gpus(real)
    monkeypatch.setenv(devices.FAKE_ENV, fake)
    assert devices.parse("auto") == auto
    if not real:  # named explicitly, the fake device is still checked against the real machine
        with pytest.raises(DeviceError, match=f"device '{fake}' is not available"):
            devices.parse(fake)


def test_a_bad_fake_accelerator_is_named(gpus, monkeypatch):
    gpus(0)
    monkeypatch.setenv(devices.FAKE_ENV, "tpu")
    with pytest.raises(DeviceError, match=r"IMGBENCH_FAKE_ACCELERATOR='tpu' is not a fakeable "
                                          r"accelerator \(valid: cuda, mps, or unset\)"):
        devices.parse("auto")


def test_cgroup_quota_caps_usable_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroup, "ROOT", tmp_path)
    monkeypatch.setattr(cgroup, "SELF", tmp_path / "absent")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert devices.usable_cores() == 8  # no cpu.max: the affinity mask
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert devices.usable_cores() == 2  # 1.5 CPUs: two threads can use them
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert devices.usable_cores() == 8
    monkeypatch.setattr(cgroup, "cpus", lambda: 0.5)
    assert devices.usable_cores() == 1
