"""The gate measuring itself: tallies with Wilson intervals, the table, the CPU hog outside our
process tree, real A/B sessions on a plain tree with a slowdown injected, and the command's bad
input."""

import os
import sys
import time
from pathlib import Path

import pytest

from imgbench import cli
from imgbench.forensics import gatecheck
from imgbench.forensics.worker import Side
from imgbench.hw import contention
from tests.helpers import skip_when_busy


def test_tallies_count_trials_and_jobs_with_wilson_intervals():
    t = gatecheck.Tally(0.05, trials=20, flagged=19, jobs=2, jobs_flagged=2)
    k, n, lo, hi = t.rate()
    assert ((k, n) == (19, 20) and lo == pytest.approx(0.7639, abs=1e-3)
            and hi == pytest.approx(0.9911, abs=1e-3))
    assert t.rate(job=True)[:2] == (2, 2)


def test_render_lists_every_effect_and_case():
    m = gatecheck.Measured({0.0: gatecheck.Tally(0.0, 10, 0, 0, 2, 0),
                            0.05: gatecheck.Tally(0.05, 10, 9, 1, 2, 2)},
                           {"test_forward[kerascnn-cpu-bs32]":
                                gatecheck.CaseLog([0.1, 0.2], [40, 80], [10.0, 20.0])},
                           [100.0, 120.0], [5, 6])
    text = gatecheck.render(m, markdown=True)
    assert "| none (A/A) | 0/2 (0%; 0%-66%) | 0/10 (0%; 0%-28%) | 0/10 |" in text
    assert "| +5% | 2/2 (100%; 34%-100%) | 9/10 (90%; 60%-98%) | 1/10 |" in text
    assert "| test_forward[kerascnn-cpu-bs32] | 0.150 | 60 | 15.0 |" in text
    assert text.endswith("2 job(s), 110 s each on average; seeds 5-6")


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
        m = gatecheck.run_jobs(*side, [], tmp_path / f"out{attempt}", jobs=1, effects=[0.0, 0.5],
                               alpha=0.001, min_effect=0.03, seed=3, budget_s=0.5)
        if not m.tallies[0.5].contended:
            break
    else:
        skip_when_busy("the machine was busy: the gate rightly gave no verdict", gate=True)
    assert m.tallies[0.5].flagged == 1 and m.tallies[0.5].trials == 1
    assert m.tallies[0.0].flagged == 0 and m.tallies[0.0].jobs == 1
    assert list(m.cases) == ["test_sleep"] and len(m.cases["test_sleep"].pairs) == 2
    assert m.seeds == [3]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["gate-check", "--jobs", "0"], "--jobs 0: valid is 1 or more"),
    (["gate-check", "--effects", "0,x"], "--effects 'x' is not a percentage"),
    (["gate-check", "--base", "no-such-ref"], "--base 'no-such-ref' is not a commit of "),
])
def test_gate_check_bad_input_is_one_line_exit_2(capsys, args, message):
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1]
