"""GPU-over-CPU speedups from stored runs (imgbench.speedup): the same case on the CPU and an
accelerator, within a run or from the nearest run of the same machine class and profile."""

import pytest

from imgbench.judge import speedup
from imgbench.runs import record
from tests.helpers import (
    CASE,
    GPU_CASE,
    cpu_runs_of_two_profiles_then_a_gpu_run,
    records,
    rounds,
    write_run,
)


def test_speedups_pair_the_same_case_across_devices_within_a_run(tmp_path):
    run = records(tmp_path / "r.json", {CASE: rounds(0.020), GPU_CASE: rounds(0.001)})
    (s,) = speedup.within(run)
    assert (s.device == "cuda" and s.case == "train_step[batch_size=32,model=kerascnn]"
            and s.same_run)
    assert s.speedup == pytest.approx(20, rel=0.02)
    assert s.ci[0] < s.speedup < s.ci[1] and s.ci[1] / s.ci[0] < 1.1


def test_speedup_series_takes_the_cpu_time_from_the_nearest_run_of_the_same_machine(tmp_path):
    cpu_old = write_run(tmp_path / "1.json", {CASE: rounds(0.030)}, when="2026-11-01T00:00:00")
    cpu_new = write_run(tmp_path / "2.json", {CASE: rounds(0.020)}, when="2026-11-20T00:00:00")
    other = write_run(tmp_path / "3.json", {CASE: rounds(0.005)}, fingerprint="Xeon-16c",
                      when="2026-11-21T00:00:00")
    gpu = write_run(tmp_path / "4.json", {GPU_CASE: rounds(0.001)}, when="2026-11-21T00:00:00")
    (s,) = speedup.series([record.load(p) for p in (cpu_old, cpu_new, other, gpu)])
    assert not s.same_run and s.cpu.path == str(cpu_new)  # nearest in time, same machine class only
    assert s.speedup == pytest.approx(20, rel=0.02)


def test_speedup_series_stays_within_one_profile(tmp_path):
    (s,) = speedup.series(cpu_runs_of_two_profiles_then_a_gpu_run(tmp_path))
    # not the nearer full-profile run
    assert (s.cpu.path, s.same_run) == (str(tmp_path / "1.json"), False)
    assert s.speedup == pytest.approx(10, rel=0.02)
