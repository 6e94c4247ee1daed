"""`imgbench doctor`: what would break a run on this machine, found in a minute before a run spends
many.

One Check per line: versions, /dev/shm for the loader workers, a real torch.compile per device, the
GPU and NCCL, and whether ddp workers import from a plain checkout. Anything that crashes or hangs
(a compiler, a child interpreter) runs in a subprocess with a timeout, so it fails one check, not
doctor."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from imgbench.core import config
from imgbench.hw import devices, shm

OK, FAIL, SKIP, INFO = "ok", "FAIL", "skip", "info"
COMPILE_TIMEOUT_S = 300  # a first compile takes ~20 s on a 2-core CPU; far beyond that it has hung
IMPORT_TIMEOUT_S = 120
# the full profile's largest loader case: batch 128, ResNet size
LOADER_BATCH, LOADER_IMAGE = 128, (3, 224, 224)
# a valid name, whether or not this machine has it
_ACCELERATOR = re.compile(r"mps|cuda(?::(?:0|[1-9]\d*))?")

# A real compile: fullgraph, so that a graph break cannot fall back to eager unnoticed.
COMPILE_SNIPPET = """\
import sys
import torch
x = torch.linspace(-3, 3, 64, device=sys.argv[1])
f = torch.compile(lambda t: torch.sin(t) + 1, fullgraph=True)
torch.testing.assert_close(f(x), torch.sin(x) + 1)
"""


@dataclass(frozen=True)
class Check:
    status: str  # OK, FAIL (a run would break), SKIP (not checked, and why), INFO (a fact)
    name: str
    detail: str


def each(device_spec: str = "auto", note=lambda message: None) -> Iterator[Check]:
    """Every check for the devices `device_spec` names, each as soon as it has finished (a doctor
    cut short by a time limit has said what it found so far); raises DeviceError (bad input) for a
    name no machine has, before any check, and fails a check for a device this machine lacks.
    `note` hears of the slow steps."""
    used, missing = _devices(device_spec)
    yield from _versions()
    yield _shm()
    yield from (Check(FAIL, name, why) for name, why in missing.items())
    yield from _gpu(used, missing, device_spec)
    yield from (_compile(d, note) for d in used)
    yield from (Check(SKIP, f"compile {d}", "device not available") for d in missing)
    yield _ddp_import()
    yield _distributed()


def checks(device_spec: str = "auto", note=lambda message: None) -> list[Check]:
    return list(each(device_spec, note))


NAME_WIDTH = 16  # the longest check name ("pytest-benchmark"): lines align before all are known


def line(c: Check) -> str:
    return f"{c.status:<4}  {c.name:<{NAME_WIDTH}}  {c.detail}"


def render(found: list[Check]) -> str:
    return "\n".join(map(line, found))


def failed(found: list[Check]) -> bool:
    return any(c.status == FAIL for c in found)


def _devices(spec: str) -> tuple[list[str], dict[str, str]]:
    """The devices to check, and the well-formed names this machine lacks (a failed check, not bad
    input)."""
    parts = [p.strip() for p in spec.split(",")]
    missing = {}
    for part in filter(_ACCELERATOR.fullmatch, parts):
        try:
            devices.check(part)
        except devices.DeviceError as e:
            missing[part] = str(e)
    present = [p for p in parts if p not in missing]
    return (devices.parse(",".join(present)) if present else []), missing


def _release(version: str) -> tuple[int, ...]:
    """'5.3.1.dev0' -> (5, 3, 1): the numeric release, enough for a minimum-version rule."""
    return tuple(int(n) for n in re.match(r"\d+(?:\.\d+)*", version).group(0).split("."))


def _versions() -> list[Check]:
    out = [Check(INFO, "python", f"{platform.python_version()} ({sys.executable})"),
           Check(INFO, "torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})")]
    try:
        import torchvision
    except Exception as e:
        # e.g. a CPU-only torch beside a CUDA torchvision: a missing libc10_cuda.so
        out.append(Check(FAIL, "torchvision", f"does not import: {str(e).splitlines()[0]}"))
    else:
        out.append(Check(INFO, "torchvision", torchvision.__version__))
    return [*out, _pytest_benchmark()]


def _pytest_benchmark() -> Check:
    name = "pytest-benchmark"
    try:
        bench, pytest = (importlib.metadata.version(p) for p in ("pytest-benchmark", "pytest"))
    except importlib.metadata.PackageNotFoundError as e:
        return Check(FAIL, name, f"{e.name} is not installed (the benches run under pytest with "
                                 "pytest-benchmark)")
    detail = f"{bench}, pytest {pytest}"
    if _release(pytest) >= (9, 2) and _release(bench) < (5, 3, 1):
        return Check(FAIL, name, f"{detail}: pytest 9.2 needs pytest-benchmark >= 5.3.1")
    return Check(INFO, name, detail)


def _shm() -> Check:
    workers = config.epoch_workers(devices.usable_cores())
    shape = "x".join(map(str, LOADER_IMAGE))
    if why := shm.shortfall(workers, LOADER_BATCH, LOADER_IMAGE):
        return Check(FAIL, "/dev/shm", f"{why}; the epoch and dataloader cases that need it will "
                                       "be skipped with this reason")
    free = shm.free_bytes()
    if free is None:
        return Check(SKIP, "/dev/shm", "no /dev/shm on this machine: not checked")
    need = shm.need_bytes(workers, LOADER_BATCH, LOADER_IMAGE)
    return Check(OK, "/dev/shm", f"{free / 2**30:,.1f} GiB free; {workers} loader workers at batch "
                                 f"{LOADER_BATCH} of {shape} need about {need / 2**20:,.0f} MiB")


def _gpu(used: list[str], missing: dict[str, str], spec: str) -> Iterator[Check]:
    gpus = [d for d in used if d.startswith("cuda")]
    if gpus:
        yield _gpu_summary()
        yield from (_gpu_device(d) for d in gpus)
        yield _nccl()
        return
    why = "no CUDA GPU found" if not devices._gpu_count() else f"not used (--device {spec})"
    if not devices._gpu_count() and (unseen := _unseen_gpus()):
        # auto would quietly run the CPU only, under a GPU-less fingerprint
        yield Check(FAIL, "gpu", unseen)
    elif not any(d.startswith("cuda") for d in missing):  # else its FAIL line names the GPU
        yield Check(SKIP, "gpu", why)
    yield Check(SKIP, "nccl", why)


def _unseen_gpus() -> str | None:
    """Why torch sees no GPU where nvidia-smi lists some (a driver too old for torch's CUDA, a
    CPU-only torch); None where nvidia-smi lists none or is missing."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        listed = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    n = sum(line.startswith("GPU ") for line in listed.splitlines())
    if not n:
        return None
    from imgbench.hw import environment

    return (f"nvidia-smi lists {n} GPU(s) (driver {environment._driver_version() or 'unknown'}) "
            f"but torch {torch.__version__} sees none: it is built for CUDA "
            f"{torch.version.cuda or 'none (a CPU-only build)'}; a driver older than that CUDA "
            "needs, or a CPU-only torch, leaves --device auto on the CPU only")


def _gpu_summary() -> Check:
    from imgbench.hw import environment

    n = devices._gpu_count()
    names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return Check(INFO, "gpu", f"{n} x {', '.join(names)}; "
                              f"driver {environment._driver_version() or 'unknown'}; "
                              f"torch's CUDA {torch.version.cuda}, cuDNN {cudnn or 'none'}")


def _gpu_device(device: str) -> Check:
    """Free memory, and a small kernel that runs and synchronises with the right answer."""
    try:
        free, total = torch.cuda.mem_get_info(torch.device(device))
        total_sum = torch.full((1 << 20,), 2.0, device=device).sum()  # 2^21: exact in float32
        torch.cuda.synchronize(device)
        right = total_sum.item() == 2.0 * (1 << 20)
    except Exception as e:  # a driver or kernel error: the GPU cannot run the suite
        return Check(FAIL, device, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
    memory = (f"{torch.cuda.get_device_name(device)}: {free / 2**30:,.1f} of "
              f"{total / 2**30:,.1f} GiB free")
    if not right:
        return Check(FAIL, device, f"{memory}; a reduction kernel gave a wrong sum")
    return Check(OK, device, f"{memory}; a kernel ran and synchronised")


# A real communicator of one rank: NCCL is loaded lazily, and only creating one (and a collective on
# it) finds a missing libnccl, a bad network interface or a driver it cannot use.
NCCL_SNIPPET = """\
import sys
import torch
import torch.distributed as dist
dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{sys.argv[1]}", rank=0,
                        world_size=1)
x = torch.ones(4, device="cuda:0")
dist.all_reduce(x)
torch.cuda.synchronize()
assert x.sum().item() == 4, x
dist.destroy_process_group()
"""
NCCL_TIMEOUT_S = 120


def _nccl() -> Check:
    from imgbench.workloads.ddp.worker import unavailable

    if why := unavailable("cuda"):
        return Check(FAIL, "nccl", why)
    version = ".".join(map(str, torch.cuda.nccl.version()))
    with tempfile.TemporaryDirectory(prefix="imgbench-doctor-") as tmp:
        code, out = _run([sys.executable, "-c", NCCL_SNIPPET, str(_free_port())], NCCL_TIMEOUT_S,
                         tmp, dict(os.environ))
    if code != 0:
        return Check(FAIL, "nccl", f"NCCL {version}: a one-rank communicator failed: "
                                   f"{_failure(code, out, NCCL_TIMEOUT_S)}")
    return Check(OK, "nccl", f"NCCL {version}: a one-rank communicator all-reduced on cuda:0, for "
                             "the ddp family's GPU replicas")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compile(device: str, note=lambda message: None) -> Check:
    """torch.compile of a tiny function on `device`, with fresh caches so that the compiler really
    runs."""
    name = f"compile {device}"
    note(f"compiling a small function on {device} (a real torch.compile: tens of seconds)")
    with tempfile.TemporaryDirectory(prefix="imgbench-doctor-") as tmp:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tmp, "TRITON_CACHE_DIR": tmp}
        start = time.perf_counter()
        code, out = _run([sys.executable, "-c", COMPILE_SNIPPET, device], COMPILE_TIMEOUT_S,
                         tmp, env)
    if code == 0:
        return Check(OK, name, "torch.compile compiled and matched eager in "
                               f"{time.perf_counter() - start:.0f} s")
    return Check(FAIL, name, _failure(code, out, COMPILE_TIMEOUT_S))


def _ddp_import() -> Check:
    """`python -m imgbench.ddp` as torchrun starts it: the launcher's environment, another working
    folder."""
    from imgbench.workloads.ddp.launch import worker_env

    name = "ddp workers"
    with tempfile.TemporaryDirectory(prefix="imgbench-doctor-") as tmp:
        code, out = _run([sys.executable, "-c", "import imgbench.ddp"], IMPORT_TIMEOUT_S, tmp,
                         worker_env(1))
    if code == 0:
        return Check(OK, name, "import imgbench.ddp in the launcher's environment from a foreign "
                               "working folder")
    why = _failure(code, out, IMPORT_TIMEOUT_S)
    return Check(FAIL, name, f"import imgbench.ddp fails where torchrun starts it: {why}")


def _distributed() -> Check:
    from imgbench.workloads.ddp.worker import unavailable

    if why := unavailable("cpu"):
        return Check(FAIL, "distributed", why)
    return Check(OK, "distributed", "torch.distributed with the gloo backend, for the ddp family's "
                                    "CPU replicas")


def _run(cmd: list[str], timeout: float, cwd: str, env: dict) -> tuple[int | None, str]:
    """Exit status (None: killed at the timeout) and output of `cmd`. Its own process group, killed
    afterwards, so that a hang or Ctrl-C also ends the processes it started (inductor's compile
    workers)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if code is None:
        out, _ = proc.communicate()
    return code, out


# gcc/clang: "x.c:1:10: fatal error: Python.h: ...", "g++: error: ...";
# not "RuntimeError: CUDA error: ..."
_COMPILER_ERROR = re.compile(r"^\S+?:(?:\d+:\d+:)? ((?:fatal )?error: .+)")
_EXCEPTION = re.compile(r"^[\w.]*(?:Error|Exception): .+")


def cause(output: str) -> str:
    """The line of a failed child's output that says why: a compiler's error, else the last
    exception, else the last line. Tracebacks and torch's advice on verbose logging are noise
    here."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if m := _COMPILER_ERROR.match(line):
            hint = (" (install Python's C headers, e.g. the python3-dev package)"
                    if "Python.h" in line else "")
            return m.group(1) + hint
    exceptions = [line for line in lines if _EXCEPTION.match(line)]
    return exceptions[-1] if exceptions else lines[-1] if lines else "no output"


def _failure(code: int | None, output: str, timeout: float) -> str:
    if code is None:
        return f"did not finish in {timeout:.0f} s: {cause(output)}"
    if code < 0:
        return f"killed by {signal.strsignal(-code) or f'signal {-code}'}: {cause(output)}"
    return cause(output)

