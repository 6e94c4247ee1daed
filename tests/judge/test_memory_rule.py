"""The memory gate (imgbench.memory and `imgbench compare`'s exit 1): the rule's two thresholds,
improvements, cases without a figure, what is gated, and an allocation injected into a real bench
run."""

import json
import os
import re
import subprocess
import sys

import pytest

from imgbench import cli
from imgbench.judge import memory_rule
from imgbench.judge.verdict import IMPROVEMENT, REGRESSION, UNCHANGED
from imgbench.runs import record
from tests.helpers import (
    CASE,
    FP,
    GPU_CASE,
    ROOT,
    bench_entry,
    can_reset_rss,
    rounds,
    run_file,
    write_json,
)

MIB = memory_rule.MIB


@pytest.mark.parametrize("base_mib, cand_mib, expected", [
    (100, 102, REGRESSION),       # +2%, +2 MiB
    (100, 100.5, UNCHANGED),      # +0.5%, +0.5 MiB
    (1000, 1005, UNCHANGED),      # +5 MiB but +0.5%: the effect is needed too
    (1000, 1011, REGRESSION),     # +11 MiB, +1.1%
    (10, 10.9, UNCHANGED),        # +9% but +0.9 MiB: the floor is needed too
    (10, 11.1, REGRESSION),       # +11%, +1.1 MiB
    (0, 2, REGRESSION),           # from nothing
    (0, 0.5, UNCHANGED),
    (102, 100, IMPROVEMENT),      # the mirror image
    (1005, 1000, UNCHANGED),
    (1011, 1000, IMPROVEMENT),
    (10.9, 10, UNCHANGED),
    (11.1, 10, IMPROVEMENT),
])
def test_growth_beyond_both_the_effect_and_the_floor_is_a_regression(base_mib, cand_mib, expected):
    assert memory_rule.judge(int(base_mib * MIB), int(cand_mib * MIB)) == expected


def test_the_user_sets_both_thresholds():
    assert memory_rule.judge(100 * MIB, 108 * MIB, effect=0.10) == UNCHANGED
    assert memory_rule.judge(100 * MIB, 112 * MIB, effect=0.10) == REGRESSION
    assert memory_rule.judge(100 * MIB, 112 * MIB, floor_mib=16) == UNCHANGED
    assert memory_rule.judge(100 * MIB, 117 * MIB, floor_mib=16) == REGRESSION
    assert memory_rule.judge(117 * MIB, 100 * MIB, effect=0.10, floor_mib=16) == IMPROVEMENT


def peaks_run(path, peaks: dict, fingerprint=FP, when="2026-11-21T10:00:00", center=1.0, absent=()):
    """A run of the cases `peaks` names ({CASE: bytes or None}), each storing its peak; cases in
    `absent` store none at all (a run recorded before the figure was). Round times around `center`
    seconds."""
    benchmarks = [bench_entry(name, dict(params), rounds(center),
                              extra={} if (name, params) in absent else {"peak_memory_bytes": peak})
                  for (name, params), peak in peaks.items()]
    return write_json(path, run_file(benchmarks, fingerprint=fingerprint, when=when))


def by_name(verdicts):
    return {v.name: v for v in verdicts}


def test_a_case_without_a_figure_in_either_run_is_not_measured_never_a_verdict(tmp_path):
    mps = ("test_train_step[kerascnn-mps-bs32]",
           (("model", "kerascnn"), ("device", "mps"), ("batch_size", 32)))
    base = record.load(peaks_run(tmp_path / "b.json", {GPU_CASE: None, mps: None, CASE: 10 * MIB}))
    cand = record.load(peaks_run(tmp_path / "c.json",
                                 {GPU_CASE: 500 * MIB, mps: None, CASE: 10 * MIB},
                                 absent=[CASE]))
    v = by_name(memory_rule.compare(base, cand))
    assert [v[n].verdict for n in (GPU_CASE[0], mps[0], CASE[0])] == [memory_rule.NOT_MEASURED] * 3
    assert memory_rule.counts(list(v.values()))[REGRESSION] == 0
    assert "3 not measured" in memory_rule.describe(list(v.values()))


def history_of_peaks(folder, mib):
    """Earlier runs of GPU_CASE, one per peak (MiB), as compare --history loads them."""
    return [record.load(peaks_run(folder / f"h{i}.json", {GPU_CASE: int(m * MIB)}))
            for i, m in enumerate(mib)]


def test_cuda_is_gated_against_a_history_the_cpu_only_on_request_nothing_across_classes(tmp_path):
    base = record.load(peaks_run(tmp_path / "b.json", {CASE: 100 * MIB, GPU_CASE: 100 * MIB}))
    cand = record.load(peaks_run(tmp_path / "c.json", {CASE: 150 * MIB, GPU_CASE: 300 * MIB}))
    v = by_name(memory_rule.compare(base, cand))
    # no history: the CUDA figure (cuDNN's workspace choice moves it) is shown, not gated
    assert (v[GPU_CASE[0]].verdict, v[CASE[0]].verdict) == (memory_rule.NOT_GATED,) * 2
    assert v[GPU_CASE[0]].why_not_gated == memory_rule.CUDA_SPREAD
    assert v[CASE[0]].change == REGRESSION and v[CASE[0]].growth == 1.5
    two = history_of_peaks(tmp_path, [100, 110])
    assert by_name(memory_rule.compare(base, cand, past=two))[GPU_CASE[0]].verdict == (
        memory_rule.NOT_GATED)  # fewer than config.MEMORY_HISTORY_RUNS runs of the case
    past = history_of_peaks(tmp_path, [100, 110, 105])
    assert by_name(memory_rule.compare(base, cand, past=past))[GPU_CASE[0]].verdict == REGRESSION
    # judged against the history's highest (110 MiB), with the CUDA floor (64 MiB): +60 MiB is not
    near = record.load(peaks_run(tmp_path / "n.json", {GPU_CASE: 170 * MIB}))
    got = memory_rule.compare(base, near, past=past)[0]
    assert (got.verdict, got.floor_mib, got.bound) == (UNCHANGED, 64.0, 110 * MIB)
    assert by_name(memory_rule.compare(base, cand, gate_cpu=True))[CASE[0]].verdict == REGRESSION
    other = record.load(peaks_run(tmp_path / "o.json", {CASE: 150 * MIB, GPU_CASE: 150 * MIB},
                                   fingerprint="Other-16c-NVIDIA_H100-x1"))
    across = memory_rule.compare(base, other, gate_cpu=True)
    assert {v.verdict for v in across} == {memory_rule.NOT_GATED}
    assert "not gated: runs of different machine classes" in memory_rule.describe(across)


def test_the_table_shows_both_peaks_and_the_growth_in_mib(tmp_path):
    base = record.load(peaks_run(tmp_path / "b.json", {GPU_CASE: 200 * MIB, CASE: 0}))
    cand = record.load(peaks_run(tmp_path / "c.json", {GPU_CASE: 100 * MIB, CASE: 16 * MIB}))
    past = history_of_peaks(tmp_path, [200, 200, 200])
    text = memory_rule.describe(memory_rule.compare(base, cand, gate_cpu=True, past=past))
    assert re.search(r"test_train_step\[kerascnn-cuda-bs32\] +200\.0 MiB +100\.0 MiB "
                     r"+-100\.0 MiB \(x0\.500\) +improvement", text), text
    assert re.search(r"test_train_step\[kerascnn-cpu-bs32\] +0\.0 MiB +16\.0 MiB "
                     r"+\+16\.0 MiB +regression", text)
    assert text.splitlines()[-1].startswith(
        "memory: 1 regression, 1 improvement (a peak that grew by more than "
        "1% and 1 MiB is a regression)")
    md = memory_rule.render(memory_rule.compare(base, cand, gate_cpu=True, past=past),
                            markdown=True).splitlines()
    assert md[0] == "| case | baseline peak | candidate peak | growth | memory verdict |"


@pytest.mark.parametrize("cand_peak, center, code", [
    (100 * MIB, 1.0, 0),   # nothing changed
    (200 * MIB, 1.0, 1),   # memory only: a regression too
    (200 * MIB, 1.3, 1),   # time and memory: the time regression decides
    (100 * MIB, 1.3, 1),
])
def test_exit_1_for_time_or_memory(tmp_path, capsys, cand_peak, center, code):
    history = tmp_path / "history"
    for i in range(3):  # the CUDA figure is gated against a history of its peaks
        peaks_run(history / f"{i}.json", {GPU_CASE: 100 * MIB}, when=f"2026-11-0{i + 1}T10:00:00")
    base = peaks_run(tmp_path / "b.json", {GPU_CASE: 100 * MIB})
    cand = peaks_run(tmp_path / "c.json", {GPU_CASE: cand_peak}, center=center)
    assert cli.main(["compare", str(cand), str(base), "--history", str(history)]) == code
    out = capsys.readouterr().out
    assert ("a case's peak memory grew beyond --memory-effect" in out) == (cand_peak > 100 * MIB)
    if cand_peak == 100 * MIB:
        assert "memory: no case's peak moved by more than 1% and 64 MiB (1 unchanged)" in out
    else:
        assert re.search(r"kerascnn-cuda-bs32\] +100\.0 MiB +200\.0 MiB +\+100\.0 MiB "
                         r"\(x2\.000\) +regression", out)
    assert cli.main(["compare", str(cand), str(base), "--history", str(history),
                     "--memory-effect", "150", "--min-effect", "50"]) == 0


@pytest.mark.parametrize("option, value, message", [
    ("--memory-effect", "-1", "argument --memory-effect: '-1' is not a percentage"),
    ("--memory-effect", "1%", "argument --memory-effect: '1%' is not a percentage"),
    ("--memory-floor", "-0.5",
     "argument --memory-floor: '-0.5' is not a size in MiB (valid: a number from 0"),
    ("--memory-floor", "nan", "argument --memory-floor: 'nan' is not a size in MiB"),
    ("--memory-floor", "1MiB", "argument --memory-floor: '1MiB' is not a size in MiB"),
])
def test_bad_memory_options_are_one_line_exit_2(tmp_path, capsys, option, value, message):
    run = peaks_run(tmp_path / "r.json", {CASE: MIB})
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", str(run), str(run), option, value])
    assert e.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_report_lists_the_latest_runs_memory_regressions_beside_its_time_verdicts(tmp_path,
                                                                                       capsys):
    for day in (18, 19, 20):  # the earlier runs: the CUDA figure's history
        peaks_run(tmp_path / "runs" / f"{day}.json", {GPU_CASE: 100 * MIB, CASE: 100 * MIB},
                  when=f"2026-11-{day}T10:00:00")
    peaks_run(tmp_path / "runs" / "21.json", {GPU_CASE: 200 * MIB, CASE: 150 * MIB},
              when="2026-11-21T10:00:00")
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    section = md[md.index("**Memory regressions**"):].split("\n\n")[1]
    assert section.splitlines()[2:] == [
        "| test_train_step[kerascnn-cuda-bs32] | 100.0 MiB | 200.0 MiB | +100.0 MiB "
        "(x2.000) | regression |"]  # the CPU figure is not gated
    assert (md.index("## Latest run against its baseline") < md.index("**Memory regressions**")
            < md.index("## Figures"))
    capsys.readouterr()


# --- an allocation injected into a real bench run, each run its own pytest process ---

ALLOC_BENCH = ("""
import os

import numpy as np

from imgbench.workloads.steps import Workload

HELD = []


def test_alloc(device, measure):
    def fn():
        if not HELD:  # the first (warm-up) call allocates and keeps it: every round then does"""
               """ the same work
            HELD.append(np.ones(int(os.environ["EXTRA_MIB"]) << 20, dtype=np.uint8))"""
               """  # written: every page resident
        return len(HELD)

    measure(Workload(fn, images=1))
""")
ALLOC_CASE = "test_alloc[cpu]"


@pytest.fixture(scope="module")
def alloc_runs(tmp_path_factory):
    """EXTRA_MIB -> the JSON of a pytest process running the bench with that extra buffer
    (16 twice)."""
    folder = tmp_path_factory.mktemp("alloc")
    (folder / "conftest.py").write_text('pytest_plugins = ["imgbench.plugin"]\n')
    (folder / "bench_alloc.py").write_text(ALLOC_BENCH)
    procs = {}
    for label, mib in (("0", 0), ("16", 16), ("16 again", 16)):  # at once: each its own process
        path = folder / f"{label.replace(' ', '_')}.json"
        # a plain checkout too
        path_ = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "EXTRA_MIB": str(mib), "PYTHONPATH": path_}
        procs[label] = path, subprocess.Popen(
            [sys.executable, "-m", "pytest", "bench_alloc.py", "--device", "cpu",
             f"--benchmark-json={path}", "--benchmark-max-time=0.01", "--benchmark-min-rounds=2",
             "-p", "no:cacheprovider", "-q"],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _, proc in procs.values():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    return {label: path for label, (path, _) in procs.items()}


def compare_cli(cand, base, *args):
    # A microsecond workload's time between two processes is noise, not what is tested here: the
    # minimum effect keeps the time gate out of the exit code.
    return subprocess.run([sys.executable, "-m", "imgbench", "compare", str(cand), str(base),
                           "--min-effect", "900", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def peak_of(path) -> int:
    (case,) = json.loads(path.read_text())["benchmarks"]
    assert case["name"] == ALLOC_CASE
    return case["extra_info"]["peak_memory_bytes"]


@pytest.mark.slow
@can_reset_rss
def test_an_injected_allocation_fails_the_memory_gate_with_exit_1(alloc_runs):
    assert peak_of(alloc_runs["0"]) < MIB and 16 * MIB <= peak_of(alloc_runs["16"]) < 17 * MIB
    proc = compare_cli(alloc_runs["16"], alloc_runs["0"], "--memory-cpu")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith(ALLOC_CASE) and "MiB" in x]
    assert re.search(r" \+16\.\d MiB.* regression$", line), line
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@can_reset_rss
def test_the_cpu_figure_is_shown_not_gated_by_default(alloc_runs):
    proc = compare_cli(alloc_runs["16"], alloc_runs["0"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith(ALLOC_CASE) and "MiB" in x]
    assert re.search(r" \+16\.\d MiB.* not gated$", line), line
    assert "not gated: the CPU figure" in proc.stdout


@pytest.mark.slow
@can_reset_rss
def test_two_runs_of_one_allocation_read_alike(alloc_runs):
    # One case per process on this CPU-only machine: the CPU figure is the same run after run.
    assert abs(peak_of(alloc_runs["16 again"]) - peak_of(alloc_runs["16"])) <= MIB
    proc = compare_cli(alloc_runs["16 again"], alloc_runs["16"], "--memory-cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "memory: no case's peak moved by more than 1% and 1 MiB (1 unchanged)" in proc.stdout
