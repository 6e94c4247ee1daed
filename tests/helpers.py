"""What the tests share: the repository root, stored runs written as the suite writes them, datasets
laid out on disk as their readers expect, throwaway git repositories of bench projects, and commands
started with their signals at the defaults (a test run as a background job would otherwise pass on
an ignored SIGINT). No torch or torchvision here: every test session loads this file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from imgbench.runs import record

ROOT = Path(__file__).resolve().parent.parent
# CI: an end-to-end test may not skip itself
STRICT = os.environ.get("IMGBENCH_STRICT_TESTS") == "1"


# What some tests need of the machine, said as the reason they skip where it lacks it.
CLEAR_REFS = "/proc/self/clear_refs"
can_reset_rss = pytest.mark.skipif(
    not os.access(CLEAR_REFS, os.W_OK),
    reason=f"{CLEAR_REFS} is not writable: the peak RSS cannot be reset, so the CPU's peak memory "
           "is not measured")
needs_cpp = pytest.mark.skipif(
    not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")),
    reason="no C++ compiler: torch.compile on the CPU needs one")


def pretend_devices(monkeypatch, gpus: int = 0, mps: bool = False) -> None:
    """imgbench.hw.devices sees `gpus` CUDA GPUs and MPS or not, whatever this machine has, and no
    accelerator faked by IMGBENCH_FAKE_ACCELERATOR (named by string: no torch import here)."""
    monkeypatch.setattr("imgbench.hw.devices._gpu_count", lambda: gpus)
    monkeypatch.setattr("imgbench.hw.devices._mps_available", lambda: mps)
    monkeypatch.delenv("IMGBENCH_FAKE_ACCELERATOR", raising=False)


def skip_when_busy(why: str, gate: bool = False):
    """An end-to-end test measured under contention rightly gets no verdict: skipped with `why` (the
    summary shows every skip). A test of the gate itself (`gate`) fails instead in strict mode, so
    that a busy CI machine cannot hide it; such a test measures twice before it calls this."""
    if gate and STRICT:
        pytest.fail(f"strict mode (IMGBENCH_STRICT_TESTS=1): {why}")
    pytest.skip(why)


# --- stored runs ---

def run_file(benchmarks: list[dict], fingerprint: str = "AMD_EPYC-2c",
             when: str = "2026-11-21T10:00:00", commit: str = "abc", meta: dict | None = None,
             machine: dict | None = None, version: str | None = None) -> dict:
    """A pytest-benchmark run as imgbench saves it. meta: the run's imgbench block (profile,
    dataset...)."""
    run = {"machine_info": {"fingerprint": fingerprint, **(machine or {})},
           "commit_info": {"id": commit}, "datetime": when, "benchmarks": benchmarks}
    if meta is not None:
        run["imgbench"] = meta
    if version is not None:
        run["version"] = version
    return run


def bench_entry(name: str, params: dict, data, bench: str | None = None,
                extra: dict | None = None) -> dict:
    """One case of a run, every round's time kept."""
    data = [float(x) for x in data]
    return {"name": name, "params": dict(params), "extra_info": dict(extra or {}),
            **({"fullname": f"benches/bench_{bench}.py::{name}"} if bench else {}),
            "stats": {"median": float(np.median(data)), "min": min(data), "rounds": len(data),
                      "data": data}}


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# --- timed cases for the analysis tests (results, stats, verdict, compare, speedup) ---
FP = "AMD_EPYC-2c"
# (test id, params as pairs): hashable, so a run is written from {case: round times}
CASE = ("test_train_step[kerascnn-cpu-bs32]",
        (("model", "kerascnn"), ("device", "cpu"), ("batch_size", 32)))
GPU_CASE = ("test_train_step[kerascnn-cuda-bs32]",
            (("model", "kerascnn"), ("device", "cuda"), ("batch_size", 32)))


def rounds(center, n=30, spread=0.01, seed=0):
    """n round times around `center`, `spread` relative standard deviation."""
    return center * (1 + spread * np.random.default_rng(seed).standard_normal(n))


def write_run(path, cases, fingerprint=FP, when="2026-11-21T10:00:00", bench=None, meta=None):
    """cases: {(name, params as pairs): round times}; bench: the bench file's family; meta: the
    run's imgbench block (profile, dataset, optimizer...)."""
    benchmarks = [bench_entry(name, dict(params), data, bench)
                  for (name, params), data in cases.items()]
    return write_json(path, run_file(benchmarks, fingerprint=fingerprint, when=when, meta=meta))


def records(path, cases, **kw) -> list[record.Record]:
    """write_run, read back."""
    return record.load(write_run(path, cases, **kw))


def cpu_runs_of_two_profiles_then_a_gpu_run(folder):
    """A quick CPU run, a full CPU run nearer in time (224x224 images: 20x slower), then a quick GPU
    run: 1.json, 2.json, 3.json."""
    quick, full = {"profile": "quick"}, {"profile": "full"}
    return [records(folder / "1.json", {CASE: rounds(1.0)}, when="2026-11-01T00:00:00", meta=quick),
            records(folder / "2.json", {CASE: rounds(20.0)}, when="2026-11-21T09:00:00", meta=full),
            records(folder / "3.json", {GPU_CASE: rounds(0.1)}, when="2026-11-21T10:00:00",
                    meta=quick)]


# --- a synthetic history of two machine classes (plot, report, the cache) ---

GPU_FP, CPU_FP = "Xeon-16c-NVIDIA_H100-x1", "AMD_EPYC-2c"
MODELS, SIZES = ("kerascnn", "resnet18"), (32, 128)


def timed_case(family, params, center, seed, extra=None):
    """A case of 15 rounds around `center` (1% noise), its images per call stored."""
    data = center * (1 + 0.01 * np.random.default_rng(seed).standard_normal(15))
    return bench_entry(f"test_{family}[{'-'.join(str(v) for v in params.values())}]", params, data,
                       extra={"images": params.get("batch_size", 512), **(extra or {})})


def write_history(folder, gpu_runs=24, cpu_runs=20, version="5.3.1"):
    """A synthetic history: `gpu_runs` runs of a GPU machine (CPU and GPU cases; the GPU 1.5x slower
    from run 15 on, so its speedup falls) and `cpu_runs` of a CPU-only machine."""
    for i in range(gpu_runs):
        benches = []
        slow = 1.5 if i >= 15 else 1.0  # the GPU got slower at run 15: the speedup falls
        for family in ("forward", "train_step"):
            for m, model in enumerate(MODELS):
                for bs in SIZES:
                    cpu_t = 1e-4 * bs * (m + 1) * (3 if family == "train_step" else 1)
                    for device, t in (("cpu", cpu_t), ("cuda", cpu_t / (10 + m * 20) * slow)):
                        benches.append(timed_case(family, {"model": model, "device": device,
                                                           "batch_size": bs}, t,
                                                  seed=i * 100 + len(benches)))
        for device, t in (("cpu", 2.0), ("cuda", 0.1 * slow)):
            benches.append(timed_case("epoch", {"model": "kerascnn", "device": device,
                                                "batch_size": 128, "path": "loader"}, t, seed=i,
                                      extra={"data_stall_share": 0.3,
                                             "copy_share": 0.1 if device == "cuda" else 0.0}))
        for w in (1, 2, 4):
            benches.append(timed_case("ddp", {"model": "resnet18", "device": "cuda",
                                              "batch_size": 128, "world_size": w},
                                      1.0 / w / 0.9 ** (w - 1), seed=i * 7 + w,
                                      extra={"images_per_s": 5e4 * w * 0.9 ** (w - 1),
                                             "scaling_efficiency": 0.9 ** (w - 1),
                                             "comm_share": 0.05 * (w - 1), "images": 50000}))
        _write(folder / GPU_FP / f"{i:04}_quick.json", GPU_FP, i, benches, version)
    for i in range(cpu_runs):
        benches = [timed_case("train_step", {"model": model, "device": "cpu", "batch_size": bs},
                              1e-3 * bs, seed=i + bs)
                   for model in MODELS for bs in SIZES]
        _write(folder / CPU_FP / f"{i:04}_quick.json", CPU_FP, i, benches, version)


def _write(path, fp, i, benches, version):
    write_json(path, run_file(benches, fingerprint=fp, when=f"2026-10-{i + 1:02}T12:00:00+00:00",
                              commit=f"{i:07x}abcdef", meta={"profile": "quick"},
                              machine={"imgbench": {"torch": "2.14.1+cu130"}}, version=version))


# --- datasets on disk (CIFAR-10, MNIST, image folders) ---
# Each writer lays the files out as the official release does (names are the release's, not the
# library's constants, so a reader that looks elsewhere fails) and returns what it wrote, to compare
# with what is read.
# No torch or torchvision here: every test session loads this file.

CIFAR_BIN = "cifar-10-batches-bin"
CIFAR_PY = "cifar-10-batches-py"
CIFAR_BIN_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR_PY_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
# a pixel placed at a known (channel, row, col) of the first image of the first file
MARK = (1, 3, 30)
MARK_VALUE = 255


def cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random CIFAR images (uint8, N x 3 x 32 x 32, channel-major) and labels 0-9."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, size=n, dtype=np.uint8))


def mark(images: np.ndarray) -> np.ndarray:
    """Blank the first image but for one pixel at MARK, so a wrong decode order cannot go unseen."""
    images[0] = 0
    images[(0, *MARK)] = MARK_VALUE
    return images


def _cifar_files(names: list[str], counts, seed: int,
                 write) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random images and labels for each file (the first one marked); `write(i, name, images,
    labels)`."""
    written = {}
    for i, (name, n) in enumerate(zip(names, counts, strict=True)):
        images, labels = cifar_arrays(n, seed + i)
        written[name] = (mark(images) if i == 0 else images, labels)
        write(i, name, *written[name])
    return written


def write_cifar_bin(root: Path, counts=(3, 2, 4, 1, 2), test_count: int = 3, seed: int = 0,
                    skip: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin (label byte, then
    channel-major pixels, per record); returns file name -> (images N x 3 x 32 x 32, labels).
    `skip`: names not written."""
    folder = root / CIFAR_BIN
    folder.mkdir(parents=True, exist_ok=True)

    def write(i, name, images, labels):
        if name not in skip:
            records = np.concatenate([labels.reshape(-1, 1), images.reshape(len(images), -1)],
                                     axis=1)
            (folder / name).write_bytes(records.astype(np.uint8).tobytes())

    return _cifar_files([*CIFAR_BIN_TRAIN, "test_batch.bin"], [*counts, test_count], seed * 100,
                        write)


def write_cifar_py(root: Path, counts=(2, 3, 1, 2, 2), test_count: int = 3, seed: int = 0,
                   skip: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/cifar-10-batches-py/ pickles in the official layout (what torchvision reads),
    batches.meta included; returns file name -> (images, labels). The release's MD5s do not match:
    patch the check."""
    import pickle

    folder = root / CIFAR_PY
    folder.mkdir(parents=True, exist_ok=True)

    def write(i, name, images, labels):
        n = len(images)
        entry = {"batch_label": f"batch {i}", "labels": [int(v) for v in labels],
                 "data": images.reshape(n, 3072),
                 "filenames": [f"img_{i}_{j}.png" for j in range(n)]}
        if name not in skip:
            (folder / name).write_bytes(pickle.dumps(entry))

    written = _cifar_files([*CIFAR_PY_TRAIN, "test_batch"], [*counts, test_count], seed * 100 + 50,
                           write)
    if "batches.meta" not in skip:
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES,
                                                            "num_cases_per_batch": 10,
                                                            "num_vis": 3072}))
    return written


def stack(written: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The images and (int64) labels of several written files, in order."""
    return (np.concatenate([written[n][0] for n in names]),
            np.concatenate([written[n][1] for n in names]).astype(np.int64))


def idx_images(images: np.ndarray) -> bytes:
    """MNIST's idx3 file: magic, count, rows, cols (big-endian), then the pixels."""
    import struct

    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    import struct

    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 5, n_test: int = 3, seed: int = 0,
                skip: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; the first training image
    is blank but for pixel (row 4, col 20) = 200. Returns split ("train"/"t10k") -> (images N x 28 x
    28, labels)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        if split == "train":
            images[0] = 0
            images[0, 4, 20] = 200
        written[split] = (images, labels)
        for name, content in ((f"{split}-images-idx3-ubyte", idx_images(images)),
                              (f"{split}-labels-idx1-ubyte", idx_labels(labels))):
            if name not in skip:
                (raw / name).write_bytes(content)
    return written


def write_png_folder(root: Path, per_class: dict[str, int], size: int = 8, seed: int = 0
                     ) -> dict[str, list[np.ndarray]]:
    """Write root/<class>/<j>.png, random RGB images; returns class -> pixel arrays (H x W x 3) in
    order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True)
        written[cls] = [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                        for _ in range(n)]
        for j, pixels in enumerate(written[cls]):
            Image.fromarray(pixels).save(root / cls / f"{j}.png")
    return written


# --- throwaway repositories and commands ---

ON_THE_PLUGIN = {  # a bench project on the installed imgbench
    "conftest.py": 'pytest_plugins = ["imgbench.plugin"]\n',
    "pytest.ini": "[pytest]\npython_files = bench_*.py\n",
}


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    """Write `files` (relative path -> text) into `repo`, a repository from its first commit, and
    commit everything there; returns the commit's hash."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        run_git(repo, "init", "-q")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    run_git(repo, "add", ".")
    run_git(repo, "commit", "-qm", message)
    return run_git(repo, "rev-parse", "HEAD").strip()


def stray_processes(text: str) -> list[int]:
    """Processes whose command line holds `text` (a run's folder, a worker plugin's name): workers
    left running."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit()
                    and text in (proc / "cmdline").read_bytes().decode(errors="replace")):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def default_signals():
    """In a child before it runs: SIGINT and SIGTERM at their defaults, whatever this process
    ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def imgbench(*args, cwd=ROOT, timeout=600, **kw) -> subprocess.CompletedProcess:
    """`python -m imgbench ARGS` run to its end, its output captured."""
    return subprocess.run([sys.executable, "-m", "imgbench", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=default_signals, **kw)


@contextmanager
def running(cmd: list[str], **popen) -> Iterator[subprocess.Popen]:
    """A command started with its output piped and its signals at the defaults, killed at the end if
    it is still running."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_signals, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_with(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Send `sig` to a running command; its exit code and standard error once it ends."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err
