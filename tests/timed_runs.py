"""Timed cases for the analysis tests (results, stats, verdict, compare, speedup): rounds around a known
center, written as run files with conftest's builders. Not a test module (pytest collects test_*.py)."""

from __future__ import annotations

import numpy as np

from conftest import bench_entry, run_file, write_json
from imgbench import results

FP = "AMD_EPYC-2c"
# (test id, params as pairs): hashable, so a run is written from {case: round times}
CASE = ("test_train_step[kerascnn-cpu-bs32]", (("model", "kerascnn"), ("device", "cpu"), ("batch_size", 32)))
GPU_CASE = ("test_train_step[kerascnn-cuda-bs32]", (("model", "kerascnn"), ("device", "cuda"), ("batch_size", 32)))


def rounds(center, n=30, spread=0.01, seed=0):
    """n round times around `center`, `spread` relative standard deviation."""
    return center * (1 + spread * np.random.default_rng(seed).standard_normal(n))


def write_run(path, cases, fingerprint=FP, when="2026-11-21T10:00:00", bench=None, meta=None):
    """cases: {(name, params as pairs): round times}; bench: the bench file's family; meta: the run's
    imgbench block (profile, dataset, optimizer...)."""
    benchmarks = [bench_entry(name, dict(params), data, bench) for (name, params), data in cases.items()]
    return write_json(path, run_file(benchmarks, fingerprint=fingerprint, when=when, meta=meta))


def records(path, cases, **kw) -> list[results.Record]:
    """write_run, read back."""
    return results.load(write_run(path, cases, **kw))


def cpu_runs_of_two_profiles_then_a_gpu_run(folder):
    """A quick CPU run, a full CPU run nearer in time (224x224 images: 20x slower), then a quick GPU run:
    1.json, 2.json, 3.json."""
    quick, full = {"profile": "quick"}, {"profile": "full"}
    return [records(folder / "1.json", {CASE: rounds(1.0)}, when="2026-11-01T00:00:00", meta=quick),
            records(folder / "2.json", {CASE: rounds(20.0)}, when="2026-11-21T09:00:00", meta=full),
            records(folder / "3.json", {GPU_CASE: rounds(0.1)}, when="2026-11-21T10:00:00", meta=quick)]
