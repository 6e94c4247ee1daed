"""Bisection: the search over the commits (skips, the range left), a step's verdict, the command
line's arguments and bad input, and end to end on generated repositories of 16 commits whose bench
spins 2 ms until a known commit and 4 ms from it on: found, found past a commit that does not
import, and interrupted (SIGINT, SIGTERM) with no checkout or folder left behind."""

import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgbench import cli
from imgbench.cli import build
from imgbench.forensics import ab, bisect, git, steps, worker
from tests.helpers import (
    ON_THE_PLUGIN,
    commit,
    run_git,
    running,
    skip_when_busy,
    stop_with,
    stray_processes,
)

N = 15  # commits after GOOD: a repository of 16


def walk(culprit: int, skipped: frozenset = frozenset(),
         n: int = N) -> tuple[bisect.Search, list[int]]:
    """The search run against an oracle: commits from `culprit` on are slow, those in `skipped` do
    not run."""
    search, tried = bisect.Search(hi=n), []
    while (i := search.next()) is not None:
        tried.append(i)
        search.record(i, bisect.SKIPPED if i in skipped
                      else bisect.SLOW if i >= culprit else bisect.FAST)
    return search, tried


@pytest.mark.parametrize("culprit", range(1, N + 1))
def test_the_search_finds_every_culprit_in_log2_steps(culprit):
    search, tried = walk(culprit)
    assert search.suspects == [culprit]
    assert len(tried) <= math.ceil(math.log2(N))
    assert len(set(tried)) == len(tried)


def test_a_skipped_commit_is_stepped_around():
    search, tried = walk(10, frozenset({7}))
    assert search.suspects == [10]
    assert tried == [7, 8, 11, 9, 10]  # 7 skipped: 8, as near the middle, instead


def test_a_skipped_commit_beside_the_culprit_leaves_both_named():
    search, tried = walk(10, frozenset({9}))
    assert search.suspects == [9, 10]
    assert 9 in tried and search.next() is None


def test_all_skipped_leaves_the_whole_range():
    search, tried = walk(3, frozenset(range(1, N)))
    assert search.suspects == list(range(1, N + 1)) and sorted(tried) == list(range(1, N))


def reading(case, ratio, found):
    return steps.Reading(case, ratio, (ratio * 0.9, ratio * 1.1), 12, found,
                         "" if found != bisect.UNDECIDED else "too noisy to say in 300 pairs")


COMMIT = git.Commit("a" * 40, "aaaaaaa", "b" * 40, "2026-01-01 00:00:00 +0000", "make it lazy")


def test_a_skipped_commit_beside_the_culprit_is_named_with_it_and_exit_3():
    commits = [git.Commit(f"{i:040x}", f"{i:07x}", f"{i - 1:040x}", "2026-01-01", f"change {i}")
               for i in range(N + 1)]
    search, tried = walk(10, frozenset({9}))
    taken = [steps._step(0, N, commits[N], [reading("a", 2.0, bisect.SLOW)], {}, 0)]
    for k, i in enumerate(tried, 1):
        found = ([reading("a", 2.0 if i >= 10 else 1.0, bisect.SLOW if i >= 10 else bisect.FAST)]
                 if i != 9 else [])
        taken.append(steps._step(k, i, commits[i], found,
                                 {"a": "not collected: ERROR"} if i == 9 else {}, 0))
    out = bisect._conclude(commits, taken, search, {"a": math.sqrt(2.0)})
    assert out.code == bisect.OPEN and out.suspects == [commits[9], commits[10]]
    assert out.summary[0] == ('the first slow commit is one of 2 (skipped commits in between): '
                              '0000009 "change 9" '
                              '(skipped: a: not collected: ERROR), 000000a "change 10" (slow)')


@pytest.mark.parametrize("readings, not_run, expected", [
    # one slow case suffices
    ([reading("a", 2.0, bisect.SLOW)], {"b": "not collected"}, bisect.SLOW),
    ([reading("a", 1.0, bisect.FAST)], {"b": "not collected"}, bisect.SKIPPED),
    ([reading("a", 1.0, bisect.FAST), reading("b", 1.4, bisect.UNDECIDED)], {}, bisect.UNDECIDED),
    ([reading("a", 1.0, bisect.FAST), reading("b", 1.0, bisect.FAST)], {}, bisect.FAST),
])
def test_a_step_is_slow_if_any_case_is_and_fast_only_if_all_are(readings, not_run, expected):
    step = steps._step(3, 7, COMMIT, readings, not_run, 0)
    assert step.verdict == expected
    line = steps.describe(step, N)
    assert (line.startswith('step 3 [7/15] aaaaaaa "make it lazy": a x')
            and f"vs GOOD: {expected}" in line)


def test_the_midpoint_judge_calls_only_an_interval_wholly_on_one_side():
    judge = steps.midpoint_judge(math.sqrt(2.0))
    assert judge(2.0, (1.9, 2.1)) == bisect.SLOW
    assert judge(1.0, (0.95, 1.05)) == bisect.FAST
    assert judge(1.4, (1.2, 1.6)) == bisect.UNDECIDED


class FakePairing:
    """ab.Pairing as _read uses it: each set of pairs appends the next of `sets` (log-ratios)."""

    def __init__(self, sets, pair_s=0.0):
        self.m, self.calls, self.pair_s = ab.Matched("test_x[cpu]", "b", "c"), 1, pair_s
        self.sets, self.asked = list(sets), []

    def add_pairs(self, t, pairs, extra=0.0):
        self.asked.append(pairs)
        t.d += self.sets.pop(0)[:pairs]


def noisy(n, centre, sd=0.3, seed=0):
    return list(np.random.default_rng(seed).normal(centre, sd, n))


@pytest.fixture
def quiet_machine(monkeypatch):
    """The sentinel sees no other process (these pairs are fakes; a busy test machine must not
    flag them)."""
    monkeypatch.setattr(steps.contention, "flag", lambda record: None)


def test_a_step_that_cannot_say_doubles_its_pairs_until_it_can(quiet_machine):
    # slow at x2 in noise the first 12 pairs cannot resolve at this level; 96 can
    p = FakePairing([noisy(n, math.log(2.0), 1.0, seed=n) for n in (12, 12, 24, 48, 96, 108)])
    r, added = steps.read(p, steps.midpoint_judge(math.sqrt(2.0)), 0.01 / 6,
                          budget_s=60, process_sd=0.0)
    assert p.asked[:2] == [12, 12] and r.verdict == bisect.SLOW and r.pairs == sum(p.asked)
    assert r.pairs in steps.LADDER and added == len(p.asked) - 1


def test_a_step_stops_at_its_budget_and_says_so(quiet_machine):
    # a pair costs 1 s: the next set needs 12 s
    p = FakePairing([noisy(300, 0.0, 1.0, seed=1)] * 6, pair_s=1.0)
    r, added = steps.read(p, steps.midpoint_judge(math.sqrt(2.0)), 0.01 / 6,
                          budget_s=5, process_sd=0.0)
    assert p.asked == [12] and added == 0
    assert (r.verdict, r.why) == (bisect.UNDECIDED,
                                  "too noisy to say within --budget 5 s, 12 pairs")


def test_pairs_measured_under_contention_are_dropped(monkeypatch):
    flags = iter(["measured under contention: other processes took 60% of the CPUs", None])
    monkeypatch.setattr(steps.contention, "flag", lambda record: next(flags))
    p = FakePairing([[5.0] * 12, [0.0] * 12])  # the first set (contended) would read x148
    r, _ = steps.read(p, steps.midpoint_judge(math.sqrt(2.0)), 0.01 / 6,
                          budget_s=60, process_sd=0.0)
    assert (p.asked == [12, 12] and r.pairs == 12 and r.ratio == pytest.approx(1.0)
            and r.verdict == bisect.FAST)


def test_step_0_calls_a_slowdown_by_the_minimum_effect():
    judge = steps.first_judge(0.10)
    assert judge(1.5, (1.3, 1.7)) == bisect.SLOW
    assert judge(1.0, (0.97, 1.03)) == bisect.FAST
    assert judge(1.2, (0.9, 1.6)) == bisect.UNDECIDED
    # slower for sure, but not known well enough to divide: the interval reaches below its own
    # midpoint
    assert judge(1.43, (1.06, 1.93)) == bisect.UNDECIDED


def test_an_undecided_step_ends_the_bisection_naming_what_is_left_exit_3():
    commits = [git.Commit(f"{i:040x}", f"{i:07x}", f"{i - 1:040x}", "2026-01-01", f"change {i}")
               for i in range(N + 1)]
    search = bisect.Search(hi=N)
    search.record(8, bisect.SLOW)
    taken = [steps._step(0, N, commits[N], [reading("a", 2.0, bisect.SLOW)], {}, 0),
             steps._step(1, 8, commits[8], [reading("a", 2.0, bisect.SLOW)], {}, 0),
             steps._step(2, 4, commits[4], [reading("a", 1.4, bisect.UNDECIDED)], {}, 5)]
    out = bisect._conclude(commits, taken, search, {"a": math.sqrt(2.0)})
    assert out.code == bisect.OPEN == 3 and out.suspects == commits[1:9]
    assert out.summary[0] == ('undecided at step 2, 0000004 "change 4": '
                              'a: too noisy to say in 300 pairs')
    assert out.summary[1].startswith("the first slow commit is one of 8: 0000001 \"change 1\", ")
    assert "0000004 \"change 4\" (undecided)" in out.summary[1]
    assert out.summary[2] == 'last fast: GOOD 0000000 "change 0"; midpoints: a x1.414'
    assert "5 set(s) of pairs added" in out.summary[3]


def test_step_0_that_cannot_say_is_exit_3_and_no_slowdown_is_exit_1():
    open_ = steps._step(0, N, COMMIT, [reading("a", 1.2, bisect.UNDECIDED)], {}, 0)
    assert bisect._no_slowdown(open_, 0.1).code == bisect.OPEN
    fast = steps._step(0, N, COMMIT, [reading("a", 1.0, bisect.FAST)], {}, 0)
    assert bisect._no_slowdown(fast, 0.1).code == bisect.NO_SLOWDOWN


class FakeWorker:
    def __init__(self, side):
        self.side, self.name, self.log = side, f"{side.name} worker", Path("/nonexistent.log")
        self.proc = type("Proc", (), {"poll": lambda self: 1})()

    def tail(self):
        return "ImportError: cannot import name 'x'"


class FakeTrees:
    folder = Path("/nonexistent")

    def add(self, commit):
        return Path("/nonexistent") / commit.short

    def remove(self, path):
        pass


@pytest.mark.parametrize("whose, verdict, why", [
    ("good", bisect.UNDECIDED,
     "GOOD's worker stopped (exit 1): ImportError: cannot import name 'x'"),
    ("cand", bisect.SKIPPED, "its worker stopped (exit 1): ImportError: cannot import name 'x'"),
])
def test_a_stopped_worker_skips_the_commit_unless_it_is_goods(monkeypatch, whose, verdict, why):
    good = worker.Side("base", Path("/good"), sys.executable)

    def measure(g, cand, *rest):
        raise worker.WorkerStopped(FakeWorker(good if whose == "good" else cand), "while serving")
    monkeypatch.setattr(steps, "ab_step", measure)
    stepper = steps.Stepper([COMMIT] * (N + 1), FakeTrees(), good, Path("."), [], 0.01, 5.0, 0,
                            lambda s: None, 0.01)
    step = stepper(7, {})
    assert (step.verdict, step.why) == (verdict, why)


@pytest.mark.parametrize("argv", [
    ["bisect", "v1", "HEAD", "--device", "cpu", "--budget", "5", "--", "-k", "test_forward"],
    ["bisect", "--device", "cpu", "--budget", "5", "v1", "HEAD", "--", "-k", "test_forward"],
    ["bisect", "v1", "HEAD", "--device", "cpu", "--budget", "5", "-k", "test_forward"],
])
def test_options_stand_before_or_after_the_commits(argv):
    args = build().parse_args(argv)
    assert (args.good, args.bad, args.device, args.budget, args.pytest_args) == (
        "v1", "HEAD", "cpu", 5.0, ["-k", "test_forward"])
    # one policy with ab and gate-check
    assert (args.min_effect, args.alpha, args.process_sd) == (3.0, 0.01, None)  # None: per device


def test_bisect_takes_the_cases_and_the_minimum_effect_that_ab_found(tmp_path):
    from imgbench.cli import forensics
    path = tmp_path / "regressed.txt"
    path.write_text("test_forward[mlp-cpu-bs4]\t1.0810\t5\ntest_conv[x]\t1.0620\t5\n")
    assert forensics.regressions(str(path)) == (["test_forward[mlp-cpu-bs4]", "test_conv[x]"],
                                                0.05)
    path.write_text("")
    with pytest.raises(cli.UserError, match="lists no regressed case: nothing to bisect"):
        forensics.regressions(str(path))
    path.write_text("test_forward[mlp-cpu-bs4]\n")  # a list of ids alone, not ab's file
    with pytest.raises(cli.UserError, match="valid: lines of test id, ratio and minimum effect"):
        forensics.regressions(str(path))


class RecordingStepper:
    """A stepper that records the judges each step was given and reads every case fast."""

    def __init__(self):
        self.commits, self.steps, self.judges = [COMMIT] * (N + 1), [], []

    def __call__(self, i, judges):
        self.judges.append(judges)
        step = steps._step(len(self.steps), i, COMMIT, [reading("a", 1.0, bisect.FAST)], {}, 0)
        self.steps.append(step)
        return step


def test_step_0_reads_only_the_cases_named_at_the_minimum_effect_given():
    step = RecordingStepper()
    out = bisect._bisect(step, 0.05, lambda s: None, lambda s: None, cases=["a"])
    (judges,) = step.judges
    assert list(judges) == ["a"]
    # the minimum effect reached step 0's judge: x1.04 is below 5%, x1.06 above
    assert judges["a"](1.04, (1.02, 1.06)) != bisect.SLOW
    assert judges["a"](1.30, (1.20, 1.40)) == bisect.SLOW
    assert out.code == bisect.NO_SLOWDOWN and "no slowdown of 5% or more" in out.summary[0]
    every = RecordingStepper()
    bisect._bisect(every, 0.05, lambda s: None, lambda s: None)
    assert callable(every.judges[0])  # no list: every matched case


def test_a_bad_option_value_after_the_commits_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        build().parse_args(["bisect", "v1", "HEAD", "--budget", "0"])
    assert e.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["imgbench bisect: error: argument --budget: '0' is not a number of seconds "
                   "(valid: above 0) (see 'imgbench bisect --help')"]


BENCH = '''import time
from pathlib import Path

from imgbench.workloads.steps import Workload

MS = float((Path(__file__).parent.parent / "speed.txt").read_text())


def spin():  # busy, not asleep: the time is the CPU's, as a real workload's
    end = time.perf_counter() + MS / 1000
    while time.perf_counter() < end:
        pass


def test_x(device, measure):
    measure(Workload(spin, images=1))
'''


def make_repo(path: Path, slow_at: int, broken_at: int | None = None, n: int = N) -> list[str]:
    """n + 1 commits of a tiny bench project on the installed plugin; the bench spins 2 ms, 4 ms
    from commit `slow_at` (0: the first) on; commit `broken_at` has a syntax error in the bench.
    Returns the hashes."""
    return [commit(path, {**ON_THE_PLUGIN, "speed.txt": "4" if i >= slow_at else "2",
                          "log.txt": f"change {i}\n",
                          "benches/bench_x.py":
                              BENCH + ("def broken(:\n" if i == broken_at else "")},
                   f"change {i}" + (": spin 4 ms" if i == slow_at else "")) for i in range(n + 1)]


def bisect_cli(repo: Path, *extra: str, **popen):
    cmd = [sys.executable, "-m", "imgbench", "bisect", *extra, "--benches", str(repo / "benches"),
           "--device", "cpu", "--budget", "5", "--seed", "3"]
    return cmd, {"cwd": repo, "text": True, **popen}


def worktrees(repo: Path) -> list[str]:
    return run_git(repo, "worktree", "list").strip().splitlines()


@pytest.mark.slow
def test_end_to_end_finds_the_commit_that_slowed_down_past_one_that_does_not_import(tmp_path):
    """8 commits: 2 ms, 4 ms from commit 5 on, and commit 3 does not import. The real command, every
    step a real A/B of GOOD against a commit checked out aside: 3 is skipped, 5 named, in about log2
    steps."""
    repo = tmp_path / "repo"
    shas = make_repo(repo, slow_at=5, broken_at=3, n=7)
    cmd, kw = bisect_cli(repo, shas[0], shas[-1])
    proc = subprocess.run(cmd, capture_output=True, timeout=600, **kw)
    if proc.returncode == cli.UNDECIDED and "contention" in proc.stdout:
        skip_when_busy("the machine was busy: the steps rightly could not decide")
    assert proc.returncode == cli.REGRESSION, proc.stdout + proc.stderr  # a slow commit found
    assert re.search(r"^step 0 \[7/7, BAD\] \w+ \"change 7\": test_x\[cpu\] x\d", proc.stdout, re.M)
    skipped = [ln for ln in proc.stdout.splitlines()
               if ln.startswith("step ") and ": skipped" in ln]
    assert len(skipped) == 1 and "[3/7] " in skipped[0]
    assert ("test_x[cpu]: not collected: ERROR benches/bench_x.py: SyntaxError: invalid syntax"
            in skipped[0])
    assert f"first slow commit: {shas[5][:7]}" in proc.stdout and shas[5] in proc.stdout
    assert '"change 5: spin 4 ms"' in proc.stdout
    assert "step(s) after step 0 for 7 commit(s) (log2 7 = 2.8): 1 skipped" in proc.stdout
    assert len(re.findall(r"^step \d+ ", proc.stdout, re.M)) <= math.ceil(math.log2(8)) + 2
    assert len(worktrees(repo)) == 1


def test_no_slowdown_from_good_to_bad_is_exit_0(tmp_path, monkeypatch, capsys):
    """Step 0's A/B stood in for, BAD reading as fast as GOOD (the real A/B: the test above): one
    step, then the line that says so, exit 0 (nothing to report)."""
    repo = tmp_path / "repo"
    shas = make_repo(repo, slow_at=99, n=3)

    def ab_step(good, cand, args, folder, seed, budget_s, alpha, judges, note, process_sd):
        return [steps.Reading("test_x[cpu]", 1.0, (0.98, 1.02), 12,
                              judges(1.0, (0.98, 1.02)))], {}, 0

    monkeypatch.setattr(steps, "ab_step", ab_step)
    monkeypatch.setattr("imgbench.bench.runner.warn_if_busy", lambda: None)
    code = cli.main(["bisect", shas[0], shas[-1], "--benches", str(repo / "benches"),
                     "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == cli.OK, out
    assert out.strip().splitlines()[-1] == ("no slowdown of 3% or more from GOOD to BAD "
                                            "in the selected cases: nothing to bisect")
    assert len(re.findall(r"^step \d+ ", out, re.M)) == 1 and len(worktrees(repo)) == 1


@pytest.fixture
def branched(tmp_path):
    """main: A - C; a side branch from A: B."""
    repo = tmp_path / "repo"
    commit(repo, {"benches/bench_x.py": BENCH, "speed.txt": "2"}, "A")
    run_git(repo, "checkout", "-qb", "side")
    commit(repo, {"speed.txt": "3"}, "B")
    run_git(repo, "checkout", "-q", "-")
    commit(repo, {"speed.txt": "4"}, "C")
    return repo


def test_the_line_follows_first_parents_past_a_merge(tmp_path):
    """main: A - C - M - D, M merging a side branch B off A: the line is A, C, M, D (M stands for
    B's change), and a GOOD that came in through the merge is refused."""
    repo = tmp_path / "repo"
    a = commit(repo, {"main.txt": "a"}, "A")
    run_git(repo, "checkout", "-qb", "side")
    b = commit(repo, {"side.txt": "b"}, "B")
    run_git(repo, "checkout", "-q", "-")
    c = commit(repo, {"main.txt": "c"}, "C")
    run_git(repo, "merge", "-q", "--no-ff", "-m", "M", "side")
    m = run_git(repo, "rev-parse", "HEAD").strip()
    d = commit(repo, {"main.txt": "d"}, "D")
    assert [x.sha for x in git.first_parent_line(repo, a, d)] == [a, c, m, d]
    assert [x.subject for x in git.first_parent_line(repo, c, d)] == ["C", "M", "D"]
    with pytest.raises(git.GitError,
                       match=rf"GOOD '{b}' \({b[:7]}\) came into BAD '{d}' \({d[:7]}\) "
                             r"through a merge, off its first-parent line"):
        git.first_parent_line(repo, b, d)


@pytest.mark.parametrize("good, bad, message", [
    ("side", "HEAD", r"GOOD 'side' \(\w{7}\) is not an ancestor of BAD 'HEAD' \(\w{7}\): "
                     r"give a GOOD from the history that leads to BAD"),
    ("no-such-ref", "HEAD",
     r"GOOD 'no-such-ref' is not a commit of .*repo \(give a commit, branch or tag\)"),
    ("HEAD", "HEAD",
     r"GOOD 'HEAD' and BAD 'HEAD' are the same commit \(\w{7}\): nothing to bisect"),
], ids=["not-an-ancestor", "unknown", "same"])
def test_bad_commits_are_one_line_and_exit_2(branched, capsys, good, bad, message):
    code = cli.main(["bisect", good, bad, "--benches", str(branched / "benches"),
                     "--device", "cpu"])
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(f"imgbench bisect: error: {message}", err[0]), err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_bisect_leaves_no_checkout_folder_or_worker(tmp_path, sig):
    repo = tmp_path / "repo"
    shas = make_repo(repo, slow_at=2, n=3)
    cmd, kw = bisect_cli(repo, shas[0], shas[-1])
    with running(cmd, **kw) as proc:
        folder = None
        for line in proc.stderr:  # the notes, one a line, as they come
            found = re.search(r"checkouts and worker logs in (\S+),", line)
            folder = found.group(1) if found else folder
            if line.startswith("imgbench bisect: step 0:"):
                break
        assert folder, "no temporary folder named"
        deadline = time.monotonic() + 120
        while (not (Path(folder) / "step0" / "candidate.log").exists()
               and time.monotonic() < deadline):
            time.sleep(0.1)  # until the step's workers are starting
        assert len(worktrees(repo)) == 3  # GOOD's and BAD's checkouts, mid-step
        code, err = stop_with(proc, sig)
    assert code == cli.EXIT_INTERRUPTED, err
    assert "imgbench bisect: interrupted" in err and "Traceback" not in err
    assert len(worktrees(repo)) == 1
    assert not Path(folder).exists()
    assert stray_processes(folder) == []


def test_the_midpoint_is_geometric_between_no_change_and_the_slowdown():
    # x1.44: the geometric midpoint is x1.200, the arithmetic one x1.220
    judge = steps.first_judge(0.10)
    assert judge(1.44, (1.21, 1.70)) == bisect.SLOW  # wholly above its own midpoint
    assert judge(1.44, (1.19, 1.70)) == bisect.UNDECIDED

    class SlowAtBad(RecordingStepper):
        def __call__(self, i, judges):
            self.judges.append(judges)
            found = bisect.SLOW if i == N else bisect.FAST
            step = steps._step(len(self.steps), i, COMMIT, [reading("a", 1.44, found)], {}, 0)
            self.steps.append(step)
            return step

    step = SlowAtBad()
    bisect._bisect(step, 0.10, lambda s: None, lambda s: None)
    later = step.judges[1]["a"]
    assert later(1.3, (1.21, 1.4)) == bisect.SLOW and later(1.1, (1.0, 1.19)) == bisect.FAST
    assert "slow above x1.200" in step.steps[0].why
