"""The gate measuring itself: the tables from a results file (Wilson intervals, detection per
family, the between-process sd), trials accumulated per machine class, the CPU hog outside our
process tree, a real A/B session on a plain tree with one case slowed, and the command's bad
input."""

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgbench import cli
from imgbench.core.errors import UserError
from imgbench.forensics import gatecheck
from imgbench.forensics.worker import Side
from imgbench.hw import contention
from imgbench.judge import verdict
from tests.helpers import skip_when_busy


def line(case="test_forward[kerascnn-cpu-bs32]", effect=0.0, flagged=False, seed=1, **kw):
    return {"ci": [1.01, 1.05] if flagged else [0.98, 1.02],
            "machine": "m1", "seed": seed, "date": "2026-12-06T12:00:00Z", "case": case,
            "family": "forward", "effect": effect, "flagged": flagged,
            "verdict": verdict.REGRESSION if flagged else verdict.UNCHANGED,
            "aa_job_flagged": flagged and effect == 0, "log_ratio": 0.0, "within_se": 0.004,
            "pairs": 100, "sd": 0.1, "seconds": 30.0, "detectable": 0.045, **kw}


def test_the_tables_count_jobs_trials_and_detection_per_family_with_wilson_intervals():
    lines = ([line(seed=s, flagged=s == 1) for s in range(1, 11)]
             + [line(seed=s, effect=0.05, flagged=s <= 8) for s in range(1, 11)]
             + [line(case="test_loader[x]", seed=s, effect=0.1, flagged=True, family="dataloader",
                     pairs=40, seconds=60.0, gated=False) for s in range(1, 3)])
    text = gatecheck.render(lines, markdown=True)
    assert "| A/A: jobs with any gated case flagged | 1/10 (10%; 2%-40%) | - | - |" in text
    assert "| A/A: gated case trials flagged | 1/10 (10%; 2%-40%) | 100 | 0.50 |" in text
    assert "| A/A: gated intervals not covering 1 | 1/10 (10%; 2%-40%) | - | - |" in text
    assert "| +5% in one forward case: detected | 8/10 (80%; 49%-94%) | 100 | 0.50 |" in text
    assert ("| +10% in one dataloader case (information tier): detected | 2/2 (100%; 34%-100%) "
            "| 40 | 1.00 |") in text
    assert "| test_forward[kerascnn-cpu-bs32] | 10 | 0.100 | >= 4.5% | 0.00% (10) |" in text
    assert text.endswith("22 trial(s) from 10 job(s); 0 measured under contention (no verdict)")


def test_the_between_process_sd_is_the_spread_of_the_jobs_less_their_own_noise():
    lines = [line(seed=s, log_ratio=x, within_se=0.005)
             for s, x in enumerate([0.01, -0.01, 0.02, -0.02])]
    expected = math.sqrt(np.var([0.01, -0.01, 0.02, -0.02], ddof=1) - 0.005**2)
    assert gatecheck.process_sd(lines) == {"test_forward[kerascnn-cpu-bs32]": (
        pytest.approx(expected), 4)}
    assert gatecheck.process_sd(lines[:2]) == {}  # fewer than 3 jobs: no estimate
    # noise alone explains the spread: 0, not a negative variance
    quiet = [line(seed=s, log_ratio=x, within_se=0.05) for s, x in enumerate([0.01, 0, -0.01])]
    assert gatecheck.process_sd(quiet)["test_forward[kerascnn-cpu-bs32]"][0] == 0.0


def test_jobs_of_several_rounds_measure_the_process_sd_times_the_root_of_their_rounds(tmp_path):
    """A job of 4 rounds averages 4 pairs of processes: its estimates spread half as much."""
    xs = [0.01, -0.01, 0.02, -0.02, 0.0]
    lines = [line(seed=s, log_ratio=x, within_se=0.001, rounds=4) for s, x in enumerate(xs)]
    expected = math.sqrt(4 * (np.var(xs, ddof=1) - 0.001**2))
    (sd, jobs), = gatecheck.process_sd(lines).values()
    assert sd == pytest.approx(expected) and jobs == 5
    path = tmp_path / "r.jsonl"
    gatecheck.append(path, lines[:4] + [line(seed=9, machine="m2", log_ratio=0.5, rounds=4)])
    # 4 jobs of m1 (one short of config.AB_PROCESS_MIN_JOBS) and one of another machine: default
    assert gatecheck.process_term(path, "m1", 0.01).measured == {}
    gatecheck.append(path, lines[4:] + [line(seed=10, log_ratio=0.9, hog=True, rounds=4)])
    term = gatecheck.process_term(path, "m1", 0.01)  # the hog's job is not a measure of processes
    assert term.measured == {"test_forward[kerascnn-cpu-bs32]": pytest.approx(expected)}
    path.write_text("{}\nnot json\n")
    with pytest.raises(UserError, match=r"^--process-from '.*' line 2 is not JSON"):
        gatecheck.process_term(path, "m1", 0.01)


def test_trials_accumulate_in_the_results_file_per_machine_class(tmp_path):
    path = tmp_path / "r.jsonl"
    gatecheck.append(path, [line(seed=1)])
    gatecheck.append(path, [line(seed=2, machine="m2")])
    assert [ln["seed"] for ln in gatecheck.load(path)] == [1, 2]
    assert [ln["seed"] for ln in gatecheck.load(path, "m2")] == [2]
    assert gatecheck.load(tmp_path / "none.jsonl") == []
    path.write_text(path.read_text() + "not json\n")
    with pytest.raises(UserError, match=r"line 3 is not JSON \(valid: the lines gate-check"):
        gatecheck.load(path)


@pytest.mark.slow
def test_the_hog_runs_outside_our_process_tree_and_stops_with_the_block():
    with gatecheck.hog(True) as pid:
        time.sleep(0.3)  # let it start
        a = contention.snapshot()
        time.sleep(1.0)
        record = contention.between(a, contention.snapshot())
    # foreign to us: the sentinel counts it (a core's worth, whatever the machine's count of cores)
    assert record["foreign_cpu"] >= 0.5 / (os.cpu_count() or 1)
    time.sleep(0.3)
    stat = Path(f"/proc/{pid}/stat")
    # gone (or a zombie)
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


TREE_BENCH = '''
import time


def test_sleep(benchmark):
    benchmark(time.sleep, 0.002)
'''


@pytest.mark.slow
def test_real_sessions_flag_a_large_injected_slowdown_and_not_the_a_a(tmp_path):
    tree = tmp_path / "tree"
    (tree / "benches").mkdir(parents=True)
    (tree / "benches" / "bench_plain.py").write_text(TREE_BENCH)
    (tree / "pytest.ini").write_text("[pytest]\npython_files = bench_*.py\n")
    side = Side("base", tree, sys.executable), Side("candidate", tree, sys.executable)
    for attempt in range(2):  # the gate's own test: measured again once if the machine was busy
        (tmp_path / f"out{attempt}").mkdir()
        appended = []
        lines = gatecheck.run_jobs(*side, [], tmp_path / f"out{attempt}", jobs=1,
                                   effects=[0.0, 0.5], alpha=0.001, min_effect=0.03, seed=3,
                                   budget_s=0.5, stamp={"machine": "here"}, done=appended.append,
                                   n_rounds=2)
        if not any(ln["verdict"] == verdict.CONTENDED for ln in lines):
            break
    else:
        skip_when_busy("the machine was busy: the gate rightly gave no verdict", gate=True)
    aa, slowed = lines
    assert appended == [lines]  # each job handed over as it ends
    assert (aa["effect"], aa["flagged"], aa["case"], aa["family"]) == (0.0, False, "test_sleep",
                                                                      "plain")
    assert (slowed["effect"], slowed["flagged"], slowed["seed"]) == (0.5, True, 3)
    assert slowed["ratio"] == pytest.approx(1.5, abs=0.1) and aa["machine"] == "here"
    assert aa["rounds"] == slowed["rounds"] == 2  # both rounds' fresh workers, joined


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["gate-check", "--jobs", "0"], "--jobs 0: valid is 1 or more"),
    (["gate-check", "--effects", "0,x"], "--effects 'x' is not a percentage"),
    (["gate-check", "--base", "no-such-ref"], "--base 'no-such-ref' is not a commit of "),
    (["gate-check", "--results", "."], "--results '.' is a folder (give a file to append to)"),
    (["gate-check", "--process-from", "."], "--process-from '.' is a folder (give a gate-check"),
    (["gate-check", "--rounds", "0"], "'0' is not a whole number of rounds (valid: 1 to 100)"),
])
def test_gate_check_bad_input_is_one_line_exit_2(capsys, args, message):
    try:
        code = cli.main(args)
    except SystemExit as e:  # refused by the parser
        code = e.code
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1]
