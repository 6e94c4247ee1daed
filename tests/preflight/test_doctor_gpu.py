"""doctor's first-day GPU answers, on a machine without one (the GPU's side faked): each line
printed as its check ends, a GPU that nvidia-smi lists and torch does not see, a real one-rank NCCL
communicator."""

import contextlib
import subprocess
import types

from imgbench import cli
from imgbench.hw import devices, environment
from imgbench.preflight import doctor
from imgbench.workloads.ddp import worker


def test_checks_come_one_at_a_time_and_print_as_they_end(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(doctor, "_compile", lambda d, note: ran.append(d) or doctor.Check(
        doctor.OK, f"compile {d}", "stub"))
    monkeypatch.setattr(doctor, "_ddp_import", lambda: doctor.Check(doctor.OK, "ddp workers", "x"))
    monkeypatch.setattr(doctor, "_distributed", lambda: 1 / 0)  # the last check dies
    found = doctor.each("cpu")
    assert next(found).name == "python" and ran == []  # nothing else ran yet
    with contextlib.suppress(ZeroDivisionError):
        cli.main(["doctor", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    # every check before the one that died was printed, aligned
    assert [line[:4].strip() for line in out][-2:] == ["ok", "ok"]
    assert out[-1] == f"ok    {'ddp workers':<{doctor.NAME_WIDTH}}  x" and ran == ["cpu"]


def fake_nvidia_smi(monkeypatch, listing: str):
    monkeypatch.setattr(devices, "_gpu_count", lambda: 0)
    monkeypatch.setattr(doctor.shutil, "which", lambda exe: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(environment, "_driver_version", lambda: "470.57")
    monkeypatch.setattr(doctor.subprocess, "run", lambda cmd, **kw: types.SimpleNamespace(
        stdout=listing, returncode=0))


def test_a_gpu_nvidia_smi_lists_and_torch_does_not_see_fails_naming_both_versions(monkeypatch):
    fake_nvidia_smi(monkeypatch, "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\n"
                                 "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n")
    gpu, nccl = doctor._gpu([], {}, "auto")
    assert gpu.status == doctor.FAIL and gpu.name == "gpu"
    assert gpu.detail.startswith("nvidia-smi lists 2 GPU(s) (driver 470.57) but torch "
                                 f"{doctor.torch.__version__} sees none: it is built for CUDA ")
    assert nccl.status == doctor.SKIP


def test_no_gpu_listed_is_a_skip_as_before(monkeypatch):
    fake_nvidia_smi(monkeypatch, "No devices were found\n")
    gpu, _ = doctor._gpu([], {}, "auto")
    assert (gpu.status, gpu.detail) == (doctor.SKIP, "no CUDA GPU found")


def fake_nccl(monkeypatch, code: int, output: str) -> list:
    monkeypatch.setattr(worker, "unavailable", lambda device: None)
    monkeypatch.setattr(doctor.torch.cuda, "nccl",
                        types.SimpleNamespace(version=lambda: (2, 21, 5)))
    calls = []
    monkeypatch.setattr(doctor, "_run", lambda cmd, timeout, cwd, env: calls.append(cmd) or (
        code, output))
    return calls


def test_nccl_is_checked_by_a_real_one_rank_communicator(monkeypatch):
    calls = fake_nccl(monkeypatch, 0, "")
    check = doctor._nccl()
    assert check.status == doctor.OK and "one-rank communicator all-reduced" in check.detail
    (cmd,) = calls
    assert cmd[1:3] == ["-c", doctor.NCCL_SNIPPET] and 0 < int(cmd[3]) < 65536
    assert "init_process_group(\"nccl\"" in doctor.NCCL_SNIPPET
    assert "dist.all_reduce(x)" in doctor.NCCL_SNIPPET


def test_a_communicator_that_fails_names_its_cause(monkeypatch):
    fake_nccl(monkeypatch, 1, "Traceback (most recent call last):\n  ...\n"
                              "torch.distributed.DistBackendError: NCCL error: unhandled system "
                              "error\n")
    check = doctor._nccl()
    assert check.status == doctor.FAIL
    assert check.detail.startswith("NCCL 2.21.5: a one-rank communicator failed: ")
    assert "NCCL error: unhandled system error" in check.detail


def test_the_nccl_snippet_is_valid_python():
    compile(doctor.NCCL_SNIPPET, "<nccl>", "exec")
    assert subprocess  # the module the fakes replace is the one doctor calls
