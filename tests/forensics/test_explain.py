"""imgbench explain: the difference of two operator tables (sorting, shares, the noise rule), saved
tables read back and bad ones refused, the choice of the one case, and end to end on a generated git
repository whose second commit adds a convolution to the model (top line), and an A/A (no line above
the noise)."""

import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from imgbench import cli
from imgbench.forensics import explain
from tests.helpers import (
    ON_THE_PLUGIN,
    commit,
    run_git,
    running,
    stop_with,
    stray_processes,
)


def profile(side, step_us, ops_us, steps=10, device="cpu"):
    """A side's blocks: step_us per block, ops_us {operator: [microseconds per step per block]};
    1 call per step."""
    blocks = [{k: [steps, us[i] * steps] for k, us in ops_us.items()} for i in range(len(step_us))]
    return explain.Profile(side, "test_m[cpu]", side, device, steps, [t / 1e6 for t in step_us],
                           blocks)


def jitter(center, n=8, sd=1.0, seed=0):
    return list(center + np.random.default_rng(seed).normal(0, sd, n))


@pytest.fixture
def pair():
    """Candidate: convolution +500 us per step, a new add of 100 us, pooling -50 us,
    ReLU unchanged."""
    base = profile("base", jitter(2000, seed=1), {
        "aten::conv": jitter(1000, seed=2), "aten::relu": jitter(200, seed=3),
        "aten::pool": jitter(300, seed=4)})
    cand = profile("candidate", jitter(2550, seed=5), {
        "aten::conv": jitter(1500, seed=6), "aten::relu": jitter(200, seed=7),
        "aten::add": jitter(100, seed=8), "aten::pool": jitter(250, seed=9)})
    return base, cand


def test_lines_are_sorted_by_added_time_with_their_share_of_the_change(pair):
    d = explain.diff(*pair)
    assert [x.name for x in d.lines] == ["aten::conv", "aten::add", "aten::relu", "aten::pool"]
    assert [x.name for x in d.lines if x.above] == ["aten::conv", "aten::add", "aten::pool"]
    conv = d.lines[0]
    assert conv.added_s == pytest.approx(500e-6, abs=5e-6) and conv.calls == (1, 1)
    assert d.step.added_s == pytest.approx(550e-6, abs=5e-6)
    assert d.share(conv) == pytest.approx(500 / 550, abs=0.02)
    assert d.share(d.lines[-1]) == pytest.approx(-50 / 550, abs=0.02)
    assert d.lines[1].calls == (0, 1)  # the new operator: no calls in the base


def test_the_plain_and_markdown_tables(pair):
    text = explain.render(explain.diff(*pair))
    lines = text.splitlines()
    assert lines[0].startswith(
        "test_m[cpu]: self CPU time per step, base base vs candidate candidate; 8 pair(s)")
    assert lines[1].split() == ["operator", "base", "candidate", "added", "share", "calls/step",
                                "noise"]
    row = lines[2].split()
    assert (row[0], row[5][:4], row[6], row[7], row[8]) == ("aten::conv", "+500", "us", "+91%", "1")
    assert lines[3].startswith("aten::add ") and "0 -> 1" in lines[3]
    assert "aten::relu" not in text
    assert "3 operator(s) above their noise, 1 within it" in text
    md = explain.render(explain.diff(*pair), markdown=True,
                        notes=["cut at --max-seconds 60: 5 of 8 pairs"])
    assert md.startswith("**imgbench explain** test_m[cpu]")
    assert "\n| `aten::conv` | " in md and "\n| `aten::add` | - | " in md
    assert md.splitlines()[-1] == "- cut at --max-seconds 60: 5 of 8 pairs"


def test_the_noise_rule():
    """Z standard errors of the median from the pairs' robust spread, at least FLOOR of the step
    time."""
    d = np.array([10, 12, 8, 11, 9, 10, 13, 7]) * 1e-6
    spread = 1.4826 * np.median(np.abs(d - np.median(d)))
    assert explain.noise(d, 1e-4) == pytest.approx(explain.Z * 1.2533 * spread / np.sqrt(8))
    assert explain.noise(np.full(8, 5e-6), 1e-4) == pytest.approx(explain.FLOOR * 1e-4)
    outlier = d.copy()
    outlier[0] = 1e-3  # one pair hit by a regime switch does not widen it
    assert explain.noise(outlier, 1e-4) < 1.5 * explain.noise(d, 1e-4)


def test_a_change_inside_its_spread_is_no_line_and_an_unchanged_step_has_no_shares():
    base = profile("base", jitter(2000, sd=20, seed=1),
                   {"aten::conv": jitter(1000, sd=200, seed=2)})
    cand = profile("candidate", jitter(2000, sd=20, seed=3),
                   {"aten::conv": jitter(1100, sd=200, seed=4)})
    d = explain.diff(base, cand)
    assert not d.lines[0].above and not d.step.above and d.share(d.lines[0]) is None
    assert "no operator changed beyond its noise (1 compared)" in explain.render(d)
    assert "no change beyond the noise, so no shares" in explain.render(d)


def test_saved_tables_diff_again_with_profiles(pair, tmp_path, capsys):
    for p in pair:
        explain.save(p, tmp_path / f"{p.side}.ops.json")
    assert explain.load(tmp_path / "base.ops.json") == pair[0]
    code = cli.main(["explain", "--profiles", str(tmp_path / "base.ops.json"),
                     str(tmp_path / "candidate.ops.json")])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[2].startswith("aten::conv ")
    cli.main(["explain", "--markdown", "--profiles", str(tmp_path / "base.ops.json"),
              str(tmp_path / "candidate.ops.json")])
    assert "| `aten::add` |" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("not json", "not an operator table written by imgbench explain"),
    (json.dumps({"benchmarks": []}), "not an operator table written by imgbench explain"),
    (json.dumps({"format": explain.FORMAT, "format_version": 1, "side": "base"}),
     "not an operator table"),
    (json.dumps({"format": explain.FORMAT, "format_version": 99}),
     "written by a newer imgbench (table version 99"),
])
def test_files_that_are_not_profiles_are_one_line(pair, tmp_path, capsys, content, message):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    explain.save(pair[0], good)
    if content is not None:
        bad.write_text(content)
    assert cli.main(["explain", "--profiles", str(good), str(bad)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"imgbench explain: error: {bad}: ")
    assert message in err[0]


def test_tables_of_unequal_length_are_paired_block_by_block_as_far_as_both_go(pair):
    base, cand = pair
    # a run cut short
    cut = explain.Profile(**{**vars(cand), "step_s": cand.step_s[:2], "ops": cand.ops[:2]})
    d = explain.diff(base, cut)
    assert d.pairs == 2 and d.lines[0].added_s == pytest.approx(np.median(
        np.subtract(cand.per_step("aten::conv", 2), base.per_step("aten::conv", 2))))
    assert "only 2 pair(s) of blocks: the noise is barely estimated" in explain.render(d)


def test_profiles_of_two_devices_are_refused(pair):
    with pytest.raises(explain.ExplainError,
                       match="the base was profiled on cpu and the candidate on cuda"):
        explain.diff(pair[0], profile("candidate", [1.0], {"k": [1.0]}, device="cuda"))


@pytest.mark.parametrize("args, message", [
    (["explain"], "explain needs CASE and --base GIT_REF (or --profiles BASE CANDIDATE)"),
    (["explain", "test_m[cpu]"], "explain needs CASE and --base GIT_REF"),
    (["explain", "test_m[cpu]", "--base", "HEAD", "--profiles", "a", "b"], "not both"),
    (["explain", "test_m[cpu]", "--base", "no-such-ref", "--device", "cpu"],
     "--base 'no-such-ref' is not a commit of "),
])
def test_bad_input(capsys, monkeypatch, tmp_path, args, message):
    monkeypatch.setattr("imgbench.bench.runner.warn_if_busy", lambda: None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []  # no output folder made for a run that did not start


def test_without_warm_up_calls_a_block_is_sized_from_the_profiled_call(tmp_path):
    class Side:  # a worker as _Run asks it: each answer is a profiled call of 10 ms
        def __init__(self, name):
            self.side, self.asked = type("S", (), {"name": name})(), []

        def send(self, *msg):
            self.asked.append(msg)

        def recv(self, timeout=None):
            return ("block", 0.010, {})
    r = explain._Run("test_m[cpu]", [Side("base"), Side("candidate")], tmp_path)
    r.warm_up(0)
    assert r.steps == round(explain.BLOCK_S / 0.010)
    assert [w.asked for w in r.workers] == [[("block", 1, None)]] * 2


def test_bad_numbers_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", "x", "--base", "HEAD", "--pairs", "0"])
    assert e.value.code == cli.EXIT_BAD_INPUT
    assert "argument --pairs: '0' is not a whole number of pairs" in capsys.readouterr().err


def test_the_one_case_is_chosen_exactly_or_refused():
    listed = ["benches/bench_m.py::test_m[cpu]", "benches/bench_m.py::test_m[cpu-bs4]"]
    assert explain.select("test_m[cpu]", listed, "base") == "benches/bench_m.py::test_m[cpu]"
    assert explain.select("benches/bench_m.py::test_m[cpu-bs4]", listed, "base") == listed[1]
    assert explain.select("bs4", listed[1:], "base") == listed[1]
    with pytest.raises(explain.ExplainError,
                       match=r"'test_m' matches 2 cases of the candidate: test_m\[cpu\], "
                             r"test_m\[cpu-bs4\] \(name one\)"):
        explain.select("test_m", listed, "candidate")
    with pytest.raises(explain.ExplainError, match="the base has no case matching 'test_x'"):
        explain.select("test_x", [], "base")


BENCH = '''
import torch
from torch import nn

from imgbench.workloads.steps import forward


def test_m(device, measure):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).to(device)
    measure(forward(model, torch.randn(16, 3, 32, 32, device=device)))
'''
# The candidate's convolution costs ten times the base's: the top line even when other processes
# share the CPUs (measured with another job on both cores: its added time was 2-5 times its noise;
# an A/A's lines at most 0.8).
EXTRA = "        nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(),\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A bench project on the installed imgbench: the model, then the model with one convolution
    more."""
    repo = tmp_path_factory.mktemp("explain") / "repo"
    commit(repo, {**ON_THE_PLUGIN, "benches/bench_m.py": BENCH}, "base")
    slower = BENCH.replace("        nn.AdaptiveAvgPool2d", EXTRA + "        nn.AdaptiveAvgPool2d")
    assert slower != BENCH
    commit(repo, {"benches/bench_m.py": slower}, "one convolution more")
    return repo


def explain_in(repo, base, out, *more):
    proc = subprocess.run([sys.executable, "-m", "imgbench", "explain", "test_m[cpu]",
                           "--base", base, "--benches", "benches", "--device", "cpu",
                           "--out", str(out), *more],
                          cwd=repo, capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_end_to_end_the_added_convolution_is_the_top_line(repo, tmp_path):
    # ten times the base's convolution: 16 say it
    out = explain_in(repo, "HEAD~1", tmp_path, "--pairs", "16")
    lines = out.splitlines()
    assert lines[0].startswith("test_m[cpu]: self CPU time per step, base HEAD~1 (")
    top = lines[2].split()
    assert "conv" in top[0], out
    # its calls and its share of the change
    assert "1 -> 2" in lines[2] and int(top[7].rstrip("%")) > 50, out
    for side in ("base", "candidate"):
        trace = json.loads((tmp_path / f"{side}.trace.json").read_text())
        assert any("conv" in e.get("name", "") for e in trace["traceEvents"])
        assert explain.load(tmp_path / f"{side}.ops.json").trace == f"{side}.trace.json"
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"],
                               capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the base checkout was removed


@pytest.mark.slow
def test_end_to_end_a_version_against_itself_has_no_line_above_the_noise(repo, tmp_path):
    out = explain_in(repo, "HEAD", tmp_path, "--markdown")
    assert "- no operator changed beyond its noise" in out, out
    assert "| operator |" not in out


@pytest.mark.slow
def test_end_to_end_cut_at_the_time_limit_says_so(repo, tmp_path):
    lines = explain_in(repo, "HEAD", tmp_path, "--max-seconds", "1").splitlines()
    assert lines[0] == "test_m[cpu]: not profiled"
    assert lines[1].startswith("cut at --max-seconds 1: nothing profiled after ")
    assert not (tmp_path / "base.ops.json").exists()


@pytest.mark.slow
def test_sigterm_stops_explain_with_no_checkout_or_worker_left(repo):
    with running([sys.executable, "-m", "imgbench", "explain", "test_m[cpu]", "--base", "HEAD~1",
                  "--benches", "benches", "--device", "cpu", "--pairs", "500"],
                 cwd=repo, text=True) as proc:
        for line in proc.stderr:  # the workers hold the case and the base is checked out
            if "warming up" in line:
                break
        # the base's checkout, mid-run
        assert len(run_git(repo, "worktree", "list").strip().splitlines()) == 2
        code, err = stop_with(proc, signal.SIGTERM)
    assert code == cli.EXIT_INTERRUPTED, err
    assert "imgbench explain: interrupted" in err and "Traceback" not in err
    assert len(run_git(repo, "worktree", "list").strip().splitlines()) == 1
    assert stray_processes(explain.PLUGIN) == []


PLAIN = '''
import time

import pytest


class Replay:  # a timer driven by its target, as a bench that times elsewhere and replays
    def __call__(self):
        return time.perf_counter()

    def play(self):
        pass


R = Replay()


@pytest.mark.benchmark(timer=R)
def test_replayed(benchmark):
    benchmark.pedantic(R.play, rounds=3, iterations=1)
'''


@pytest.mark.slow
def test_a_case_replayed_from_other_processes_is_one_line_and_exit_2(tmp_path):
    """A tree that knows nothing of imgbench (plain pytest-benchmark) runs; a replayed case cannot
    be profiled."""
    repo = tmp_path / "plain"
    commit(repo, {"pytest.ini": ON_THE_PLUGIN["pytest.ini"], "benches/bench_plain.py": PLAIN},
           "plain")
    proc = subprocess.run([sys.executable, "-m", "imgbench", "explain", "test_replayed",
                           "--base", "HEAD", "--benches", "benches",
                           "--out", str(tmp_path / "out")],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == cli.EXIT_BAD_INPUT, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "imgbench explain: error: the base did not reach the benchmark call of test_replayed: "
        "its work runs in other processes (replayed through its timer), "
        "which the profiler does not see")
