"""The recorded environment and the machine class (imgbench.environment): what a number depends on,
the fingerprint naming which stored runs compare, and the text of `imgbench env`."""

import re
from types import SimpleNamespace

import pytest
import torch

from imgbench.hw import devices, environment, machine_class
from tests.helpers import pretend_devices


def test_environment_records_what_numbers_depend_on():
    env = environment.environment(threads=3)
    assert env["threads"] == 3
    assert env["cpu"]["cores"] == devices.usable_cores() >= 1
    assert env["cpu"]["brand"] == devices.cpu_brand()
    assert env["gpu_count"] == len(env["gpus"])
    assert env["torch"] == torch.__version__
    ids = (f"-f{env['cpu']['ids']['family']}m{env['cpu']['ids']['model']}" if env["cpu"]["ids"]
           else "")
    fp = re.fullmatch(rf"[\w.]+{ids}-{env['cpu']['cores']}c((?:-[\w.]+-x\d+)*)", env["fingerprint"])
    assert fp, env["fingerprint"]
    assert sum(int(n) for n in re.findall(r"-x(\d+)", fp.group(1))) == env["gpu_count"]


def test_fingerprint_names_cpu_cores_and_gpus():
    env = {"cpu": {"brand": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cores": 16},
           "gpus": [{"name": "NVIDIA H100 80GB HBM3"}] * 2}
    assert environment.fingerprint(env) == ("Intel_R_Xeon_R_Platinum_8375C_CPU_2.90GHz-16c-"
                                            "NVIDIA_H100_80GB_HBM3-x2")
    a100, h100 = {"name": "NVIDIA A100-SXM4-40GB"}, {"name": "NVIDIA H100 80GB HBM3"}
    env["gpus"] = [a100, h100, a100]
    assert environment.fingerprint(env).endswith("-16c-NVIDIA_A100_SXM4_40GB-x2-"
                                                 "NVIDIA_H100_80GB_HBM3-x1")
    env["gpus"] = []
    assert environment.fingerprint(env) == "Intel_R_Xeon_R_Platinum_8375C_CPU_2.90GHz-16c"


def test_the_machine_class_tells_cpu_generations_apart_behind_a_masked_name(tmp_path):
    """A cloud VM may show only "AMD EPYC": family and model ids say which generation it is."""
    milan, genoa = {"family": 25, "model": 1}, {"family": 25, "model": 17}
    assert machine_class.fingerprint("AMD EPYC", 2, milan) == "AMD_EPYC-f25m1-2c"
    assert (machine_class.fingerprint("AMD EPYC", 2, milan)
            != machine_class.fingerprint("AMD EPYC", 2, genoa))
    # no ids to read: the name alone
    assert machine_class.fingerprint("Apple M2", 8, {}) == "Apple_M2-8c"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 17\nmodel name\t: AMD EPYC\n\n"
                       "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 99\n")
    assert machine_class.cpu_ids(str(cpuinfo)) == genoa
    assert machine_class.cpu_ids(str(tmp_path / "none")) == {}


def test_runs_recorded_before_the_ids_get_them_from_pytest_benchmarks_cpu_record():
    old = {"fingerprint": "AMD_EPYC-2c", "cpu": {"family": 25, "model": 17},
           "imgbench": {"cpu": {"brand": "AMD EPYC", "cores": 2}, "gpus": []}}
    assert machine_class.of_run(old) == "AMD_EPYC-f25m17-2c"
    assert machine_class.of_run({**old, "cpu": {}}) == "AMD_EPYC-2c"  # nothing to add: as stored
    new = {**old, "fingerprint": "AMD_EPYC-f25m17-2c",
           "imgbench": {"cpu": {"brand": "AMD EPYC", "ids": {"family": 25, "model": 17},
                                "cores": 2}, "gpus": []}}
    assert machine_class.of_run(new) == "AMD_EPYC-f25m17-2c"
    # a machine whose /proc shows no ids (macOS) records none: its runs keep their class, whatever
    # py-cpuinfo says
    mac = {"fingerprint": "Intel_Core_i7-8c", "cpu": {"family": 6, "model": 158},
           "imgbench": {"cpu": {"brand": "Intel Core i7", "ids": {}, "cores": 8}, "gpus": []}}
    assert machine_class.of_run(mac) == "Intel_Core_i7-8c"
    gpu = {"fingerprint": "Xeon-16c-NVIDIA_H100-x1", "cpu": {"family": 6, "model": 143},
           "imgbench": {"cpu": {"brand": "Xeon", "cores": 16}, "gpus": [{"name": "NVIDIA H100"}]}}
    assert machine_class.of_run(gpu) == "Xeon-f6m143-16c-NVIDIA_H100-x1"


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretend this machine has two H100s (driver 570.86) and no MPS."""
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, major=9, minor=0,
                            multi_processor_count=132)
    pretend_devices(monkeypatch, gpus=2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(environment, "_driver_version", lambda: "570.86")


def test_gpus_are_recorded_and_named_in_the_machine_class(two_gpus):
    env = environment.environment(threads=2)
    assert env["gpus"] == [{"index": i, "name": "NVIDIA H100 80GB HBM3", "memory_gib": 80.0,
                            "capability": "9.0", "multiprocessors": 132} for i in (0, 1)]
    assert (env["gpu_count"], env["driver"]) == (2, "570.86")
    assert env["fingerprint"].endswith(f"-{devices.usable_cores()}c-NVIDIA_H100_80GB_HBM3-x2")


def test_describe_lists_the_environment_line_by_line(two_gpus):
    env = environment.environment(threads=2)
    lines = environment.describe(env).splitlines()
    assert lines[0] == f"fingerprint  {env['fingerprint']}"
    assert f"threads      2 (interop {env['interop_threads']})" in lines
    assert f"torchvision  {env['torchvision']}" in lines
    assert [line for line in lines if line.startswith("gpu ")] == [
        f"gpu {i}        NVIDIA H100 80GB HBM3, 80.0 GiB, sm 9.0" for i in (0, 1)]
    assert "driver       570.86" in lines
    assert lines[-1] == "devices      cpu, cuda:0, cuda:1"
    flags = next(line for line in lines if line.startswith("flags        "))
    assert f"tf32_matmul={env['flags']['tf32_matmul']}" in flags and "cudnn_benchmark=" in flags


def test_describe_without_gpus_says_none(monkeypatch):
    pretend_devices(monkeypatch)
    lines = environment.describe(environment.environment(threads=1)).splitlines()
    assert ("gpu          none" in lines
            and not any(re.match(r"gpu \d|driver", line) for line in lines))
    assert lines[-1] == "devices      cpu"
