"""imgbench doctor: one line per check, exit 4 on any FAIL, exit 2 on a bad --device; each failure
names its cause in one line. One real torch.compile per session (the module fixture); elsewhere a
stub."""

import os
import re
import subprocess
import sys

import pytest

from imgbench import cli
from imgbench.core import config
from imgbench.hw import devices, shm
from imgbench.preflight import doctor
from imgbench.workloads.ddp import launch
from tests.helpers import ROOT, needs_cpp

LINE = re.compile(r"(ok|FAIL|skip|info) +(\S.*?)  +(\S.*)")
NAMES = ["python", "torch", "torchvision", "pytest-benchmark", "/dev/shm", "gpu", "nccl",
         "compile cpu", "ddp workers", "distributed"]
no_gpu = pytest.mark.skipif(devices._gpu_count() > 0, reason="a GPU is present")


@pytest.fixture(scope="module")
def real_cpu():
    """`imgbench doctor --device cpu` as a user runs it: the module's one real compile."""
    proc = subprocess.run([sys.executable, "-m", "imgbench", "doctor", "--device", "cpu"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, lines(proc.stdout)


def lines(out: str) -> dict[str, tuple[str, str]]:
    """name -> (status, detail); fails on a line that is not a check."""
    found = {}
    for line in out.splitlines():
        m = LINE.fullmatch(line)
        assert m, f"not a check line: {line!r}"
        found[m.group(2).strip()] = (m.group(1), m.group(3))
    return found


@pytest.fixture
def stub_compile(monkeypatch):
    """A compile check that runs a child but compiles nothing: the real one is the fixture's."""
    monkeypatch.setattr(doctor, "COMPILE_SNIPPET", "pass")


def doctor_cli(capsys, *args) -> tuple[int, dict[str, tuple[str, str]], str]:
    code = cli.main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, lines(out), err


@pytest.mark.slow
@needs_cpp
def test_real_doctor_on_the_cpu_passes_with_one_line_per_check(real_cpu):
    code, found = real_cpu
    assert list(found) == NAMES
    assert found["compile cpu"][0] == "ok" and "matched eager" in found["compile cpu"][1]
    assert found["ddp workers"][0] == found["distributed"][0] == "ok"
    assert found["gpu"][0] == found["nccl"][0] == "skip"  # --device cpu: the GPU is not checked
    assert found["torch"] == ("info", f"{doctor.torch.__version__} "
                                      f"(CUDA {doctor.torch.version.cuda or 'none'})")
    # /dev/shm depends on the box: FAIL exactly when the loader would not fit, and then the only
    # FAIL
    short = shm.shortfall(config.epoch_workers(devices.usable_cores()), 128, (3, 224, 224))
    assert found["/dev/shm"][0] == ("FAIL" if short else "ok")
    assert [n for n, (s, _) in found.items() if s == "FAIL"] == (["/dev/shm"] if short else [])
    assert code == (cli.FAILED if short else 0)


@pytest.mark.slow
@no_gpu
def test_asking_for_a_missing_gpu_fails_its_check_as_run_words_it(capsys):
    """A device name this machine lacks is a failed check (exit 4) that doctor exists to report, the
    other checks still run; the line is the one `imgbench run --device cuda` stops with."""
    with pytest.raises(devices.DeviceError) as run_says:
        devices.check("cuda")
    code, found, err = doctor_cli(capsys, "--device", "cuda")
    assert code == cli.FAILED and "1 check(s) failed" in err
    assert found["cuda"] == ("FAIL", str(run_says.value))
    assert "no CUDA GPU found" in found["cuda"][1]
    assert found["nccl"][0] == found["compile cuda"][0] == "skip"
    assert "gpu" not in found and "compile cpu" not in found


@pytest.mark.parametrize("spec, message", [("tpu", "unknown device 'tpu' "
                                                   "(valid: auto, cpu, cuda, cuda:N, mps)"),
                                           ("cpu,", "empty device name in 'cpu,'"),
                                           ("cuda:01", "unknown device 'cuda:01'")])
def test_a_bad_device_is_one_line_and_exit_2(capsys, spec, message):
    assert cli.main(["doctor", "--device", spec]) == cli.EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert (out == "" and err.startswith(f"imgbench doctor: error: {message}")
            and len(err.strip().splitlines()) == 1)


@pytest.mark.slow
def test_a_small_shm_fails_naming_the_sizes(capsys, monkeypatch, stub_compile):
    monkeypatch.setattr(shm, "free_bytes", lambda path="/dev/shm": 64 * 2**20)
    # the GPU box: config.EPOCH_WORKERS workers
    monkeypatch.setattr(devices, "usable_cores", lambda: 16)
    code, found, _ = doctor_cli(capsys, "--device", "cpu")
    assert code == cli.FAILED
    assert found["/dev/shm"] == ("FAIL", "/dev/shm has 64 MiB free; 4 loader workers at batch 128 "
                                         "of 3x224x224 need about 588 MiB (run with a larger "
                                         "/dev/shm, e.g. docker --shm-size=2g); the epoch and "
                                         "dataloader cases that need it will be skipped with this "
                                         "reason")
    assert [n for n, (s, _) in found.items() if s == "FAIL"] == ["/dev/shm"]


INDUCTOR_FAILURE = (r"""
import sys
sys.stderr.write('''Traceback (most recent call last):
  File "<string>", line 5, in <module>
torch._inductor.exc.InductorError: CppCompileError: C++ compile error

Command:
g++ /tmp/x/cabc.cpp -I/usr/include/python3.12 -shared -fPIC -O3 -o /tmp/x/cabc.so

Output:
/tmp/x/cabc.cpp:1:10: fatal error: Python.h: No such file or directory
    1 | #include <Python.h>
compilation terminated.

Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace (please do this especially if you're """
                    r"""reporting a bug to PyTorch).
''')
sys.exit(1)
""")


@pytest.mark.slow
def test_a_broken_compile_fails_with_the_compilers_line(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "COMPILE_SNIPPET", INDUCTOR_FAILURE)
    code, found, _ = doctor_cli(capsys, "--device", "cpu")
    assert code == cli.FAILED
    assert found["compile cpu"] == ("FAIL", "fatal error: Python.h: No such file or directory "
                                            "(install Python's C headers, "
                                            "e.g. the python3-dev package)")


@pytest.mark.slow
@pytest.mark.parametrize("snippet, detail", [
    ("raise RuntimeError('no working C++ compiler found')",
     "RuntimeError: no working C++ compiler found"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
     "killed by Segmentation fault: no output"),
    ("import time; print('waiting', flush=True); time.sleep(60)",
     "did not finish in 1 s: waiting"),
])
def test_a_compile_that_raises_crashes_or_hangs_fails_one_check(monkeypatch, snippet, detail):
    monkeypatch.setattr(doctor, "COMPILE_SNIPPET", snippet)
    monkeypatch.setattr(doctor, "COMPILE_TIMEOUT_S", 1)
    assert doctor._compile("cpu") == doctor.Check(doctor.FAIL, "compile cpu", detail)


def test_workers_that_cannot_import_fail(capsys, monkeypatch, stub_compile, tmp_path):
    """This venv imports its editable install from anywhere, so a package first on the workers'
    PYTHONPATH stands in for a checkout the launcher's environment does not reach: it fails as that
    import would."""
    (tmp_path / "imgbench").mkdir()
    (tmp_path / "imgbench" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'imgbench'\", name='imgbench')\n")
    monkeypatch.setattr(launch, "worker_env",
                        lambda threads: {**os.environ, "PYTHONPATH": str(tmp_path)})
    code, found, _ = doctor_cli(capsys, "--device", "cpu")
    assert code == cli.FAILED
    assert found["ddp workers"] == ("FAIL", "import imgbench.ddp fails where torchrun starts it: "
                                            "ModuleNotFoundError: No module named 'imgbench'")


def test_pytest_92_needs_pytest_benchmark_531(monkeypatch):
    versions = {"pytest": "9.2.0", "pytest-benchmark": "5.3.0"}
    monkeypatch.setattr(doctor.importlib.metadata, "version", versions.get)
    assert doctor._pytest_benchmark() == doctor.Check(
        doctor.FAIL, "pytest-benchmark",
        "5.3.0, pytest 9.2.0: pytest 9.2 needs pytest-benchmark >= 5.3.1")
    versions["pytest"] = "9.1.3"
    assert doctor._pytest_benchmark().status == doctor.INFO


def test_the_cause_is_the_last_exception_else_the_last_line():
    chained = ("Traceback ...\nValueError: first\n\nDuring handling...\nRuntimeError: second\n"
               "see the docs\n")
    assert doctor.cause(chained) == "RuntimeError: second"
    assert doctor.cause("just this\n\n") == "just this"
    assert (doctor.cause("RuntimeError: CUDA error: out of memory\n")
            == "RuntimeError: CUDA error: out of memory")
    assert (doctor.cause("g++: error: unrecognized option\nInductorError: failed\n")
            == "error: unrecognized option")
    assert doctor.cause("") == "no output"


def test_help_names_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["doctor", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert ("usage: imgbench doctor" in out and "Exit 4 when a check failed" in out
            and "--device" in out)
