"""Interleaved A/B: matching cases by family and params, options the base does not know, the
decision (exact signed-rank test, Holm over the job, Hodges-Lehmann ratio, contention), the burst
schedule (with fake workers), real worker processes on a tree without imgbench (served, replayed and
skipped cases), and one end-to-end `imgbench ab` on two git commits whose candidate is slower."""

import contextlib
import math
import os
import random
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from imgbench import cli
from imgbench.forensics import ab, policy, worker
from imgbench.judge import verdict
from tests.helpers import ROOT, commit, skip_when_busy


def test_cases_are_matched_by_family_and_params_not_by_id():
    base = [("b.py::test_forward[mlp-cpu-bs4]", "test_forward", {"model": "mlp", "batch_size": 4}),
            ("b.py::test_old[x]", "test_old", {"x": "x"})]
    cand = [("b.py::test_forward[mlp-bs4-cpu]", "test_forward",
             {"batch_size": 4, "model": "mlp"}),  # renamed id
            ("b.py::test_new", "test_new", {})]
    both, only_base, only_cand = ab.match(base, cand)
    assert [(m.name, m.base_id, m.cand_id) for m in both] == [
        ("test_forward[mlp-bs4-cpu]", "b.py::test_forward[mlp-cpu-bs4]",
         "b.py::test_forward[mlp-bs4-cpu]")]
    assert only_base == ["b.py::test_old[x]"] and only_cand == ["b.py::test_new"]


def test_refused_options_are_dropped_in_order_and_values_elsewhere_stay():
    args = ["--model", "all", "--cases", "all", "-k", "x", "--new=1"]
    assert worker.without(args, ["--cases", "all", "--new=1"]) == ["--model", "all", "-k", "x"]


def trial(name, d, contention=None):
    return ab.Trial(name, list(d), [1.0] * len(d), [math.exp(x) for x in d], 1, 1.0,
                    contention or {})


def noise(center, n=60, sd=0.05, seed=0):
    return np.random.default_rng(seed).normal(center, sd, n)


def test_decide_slower_faster_same_and_below_the_minimum_effect():
    trials = [trial("test_a[x]", noise(math.log(1.10))),
              trial("test_b[x]", noise(math.log(0.90), seed=1)),
              trial("test_c[x]", noise(0.0, sd=0.01, seed=2)),
              trial("test_d[x]", noise(0.01, sd=0.005, seed=3))]
    got = {v.name: v for v in policy.decide(trials, alpha=0.01, min_effect=0.03,
                                                process=0.0)}
    assert [got[n].verdict for n in ("test_a[x]", "test_b[x]", "test_c[x]", "test_d[x]")] == [
        verdict.REGRESSION, verdict.IMPROVEMENT, verdict.UNCHANGED, verdict.UNCHANGED]
    assert got["test_a[x]"].ratio == pytest.approx(1.10, abs=0.02)
    lo, hi = got["test_a[x]"].ci
    assert lo < got["test_a[x]"].ratio < hi and lo > 1.0
    assert got["test_a[x]"].test == "a"


def test_holm_keeps_the_job_wide_false_alarm_rate():
    """A case significant on its own (p = 2/256) is not a regression among ten cases
    (Holm: 0.001)."""
    d = [0.05] * 7 + [-0.01]  # W+ = 35 of 36: p = 2/256 alone
    alone = policy.decide([trial("test_a[x]", d)], alpha=0.01, min_effect=0.03)
    assert alone[0].verdict == verdict.REGRESSION
    job = policy.decide([trial("test_a[x]", d)]
                    + [trial(f"test_n{i}[x]", noise(0.0, seed=i)) for i in range(9)],
                    alpha=0.01, min_effect=0.03)
    assert job[0].verdict != verdict.REGRESSION


def test_a_case_measured_under_contention_gets_no_verdict():
    t = trial("test_a[x]", noise(math.log(1.5)), contention={"foreign_cpu": 0.5})
    (v,) = policy.decide([t], alpha=0.01, min_effect=0.03)
    assert v.verdict == verdict.CONTENDED and v.ratio == pytest.approx(1.5, abs=0.05)


class FakeWorker:
    """Answers bursts like a worker: each call takes base_s (or cand_s) plus any injected extra."""

    def __init__(self, side, call_s, log):
        self.side, self.name, self.call_s, self.log = (worker.Side(side, ROOT, sys.executable),
                                                       side, call_s, log)
        self.pending = None

    def send(self, *msg):
        self.log.append((self.name, *msg[1:]))
        self.pending = msg

    def recv(self, timeout=None):
        _, calls, extra = self.pending
        return "times", [self.call_s * (1 + 0.001 * i) + extra for i in range(calls)], False


def test_bursts_alternate_abba_drop_the_lead_call_and_slow_only_the_candidate():
    log = []
    base, cand = FakeWorker("base", 0.010, log), FakeWorker("candidate", 0.010, log)
    p = ab.Pairing(ab.Matched("test_a[x]", "a", "a"), base, cand, random.Random(3))
    assert (p.lead, p.calls) == (1, 5)  # 10 ms calls: one untimed, then 50 ms of timed calls
    log.clear()
    t = p.trial(12, slowdown=0.10)
    firsts = [log[i][0] for i in range(0, len(log), 2)]
    assert sorted(firsts) == ["base"] * 6 + ["candidate"] * 6  # each side first in half the pairs
    assert all(firsts[i] != firsts[i + 1] for i in range(0, 12, 2))  # ABBA
    assert {e for n, _, e in log if n == "base"} == {0.0}
    assert [e for n, _, e in log if n == "candidate"] == [pytest.approx(0.001, rel=0.01)] * 12
    assert all(calls == 6 for _, calls, _ in log)
    assert len(t.d) == 12 and np.median(t.d) == pytest.approx(math.log(1.1), abs=0.01)


def test_more_sets_while_open_and_none_past_the_time_left(monkeypatch):
    base, cand = FakeWorker("base", 0.010, []), FakeWorker("candidate", 0.012, [])
    p = ab.Pairing(ab.Matched("test_a[x]", "a", "a"), base, cand, random.Random(0))
    looks = []
    t = p.trial(12, still_open=lambda d: looks.append(len(d)) or len(d) < 48)
    assert looks == [12, 24, 48] and len(t.d) == 48
    # the next set (12 pairs of ~0.14 s by the calibration) would end after `until`: none
    short = p.trial(12, until=ab.time.monotonic() + 0.5, still_open=lambda d: True)
    assert len(short.d) == 12


def test_a_first_set_is_cut_at_the_set_limit_as_a_case(monkeypatch):
    base, cand = FakeWorker("base", 0.010, []), FakeWorker("candidate", 0.010, [])
    p = ab.Pairing(ab.Matched("test_a[x]", "a", "a"), base, cand, random.Random(0))
    monkeypatch.setattr(ab, "AB_SET_LIMIT_S", 0.1)  # a pair costs ~0.12 s by the calibration
    assert len(p.trial(12).d) == 1
    monkeypatch.setattr(ab, "AB_SET_LIMIT_S", 1000.0)
    assert len(p.trial(12).d) == 12


def test_a_trial_joined_with_a_later_round_keeps_each_rounds_pairs_and_any_contention():
    busy = {"foreign_cpu": 0.9, "seconds": 10.0}
    a = trial("test_a[x]", [0.1, 0.2])
    b = trial("test_a[x]", [0.3], contention=busy)
    both = a.join(b).join(trial("test_a[x]", [0.4, 0.5]))
    assert both.d == [0.1, 0.2, 0.3, 0.4, 0.5] and both.sizes == (2, 1, 2)
    assert both.rounds == 3 and both.groups() == ((0.1, 0.2), (0.3,), (0.4, 0.5))
    assert both.contention == busy and both.seconds == 3.0


class FakeSession:
    """A session of fake workers over `cases` (name, node id), each pairing reading `ratio`."""

    def __init__(self, cases, ratio=1.0):
        self.cases = [ab.Matched(n, nid, nid) for n, nid in cases]
        self.only_base, self.only_cand, self.ratio = [], [], ratio

    def each(self):
        for m in self.cases:
            yield m, ab.Pairing(m, FakeWorker("base", 0.010, []),
                                FakeWorker("candidate", 0.010 * self.ratio, []), random.Random(0))


def test_rounds_start_fresh_sessions_and_the_information_tier_runs_in_the_first_only(
        monkeypatch, tmp_path):
    cases = [("test_forward[x]", "benches/bench_forward.py::test_forward[x]"),
             ("test_loader[x]", "benches/bench_dataloader.py::test_loader[x]")]
    started = []
    # fake workers: what else runs on the machine is no part of their pairs
    monkeypatch.setattr(ab.contention, "snapshot", lambda: None)
    monkeypatch.setattr(ab.contention, "between", lambda a, b: {})

    @contextlib.contextmanager
    def session(base, cand, args, folder, seed, note, keep):
        started.append((folder.name, seed))
        yield FakeSession([c for c in cases if keep(ab.Matched(c[0], c[1], c[1]))])
    monkeypatch.setattr(ab, "session", session)
    out = ab.run(None, None, [], tmp_path, seed=5, budget_s=0.5, n_rounds=3)
    assert started == [("round0", 5), ("round1", "5:1"), ("round2", "5:2")]
    by_name = {t.name: t for t in out.trials}
    assert by_name["test_forward[x]"].rounds == 3 and by_name["test_loader[x]"].rounds == 1
    assert [v.verdict for v in out.verdicts] == [verdict.UNCHANGED] * 2
    # nothing gated: one round
    started.clear()
    cases.pop(0)
    (tmp_path / "x").mkdir()
    ab.run(None, None, [], tmp_path / "x", seed=5, budget_s=0.5, n_rounds=3)
    assert started == [("round0", 5)]


TREE_BENCH = '''
import time

import pytest


class Replay:  # a timer driven by its target, as a bench that times elsewhere and replays
    def __init__(self):
        self.shift, self.pending = 0.0, []

    def __call__(self):
        return time.perf_counter() + self.shift

    def play(self):
        self.shift += self.pending.pop(0)


R = Replay()


def test_sleep(benchmark):
    benchmark(time.sleep, 0.002)


@pytest.mark.benchmark(timer=R)
def test_replayed(benchmark):
    R.pending = [0.010, 0.030, 0.020]
    benchmark.pedantic(R.play, rounds=3, iterations=1)


def test_skipped(benchmark):
    pytest.skip("not on this machine")
'''


@pytest.fixture
def plain_tree(tmp_path):
    """A tree whose benches know nothing of imgbench: plain pytest-benchmark, as an old tree
    would be."""
    tree = tmp_path / "tree"
    (tree / "benches").mkdir(parents=True)
    (tree / "benches" / "bench_plain.py").write_text(TREE_BENCH)
    (tree / "pytest.ini").write_text("[pytest]\npython_files = bench_*.py\n")
    return tree


@pytest.mark.slow
def test_real_workers_serve_replay_and_report_skips(plain_tree, tmp_path):
    side = (worker.Side("base", plain_tree, sys.executable),
            worker.Side("candidate", plain_tree, sys.executable))
    (tmp_path / "s").mkdir()
    seen = {}
    with ab.session(*side, [], tmp_path / "s", seed=1) as s:
        assert [m.name for m in s.cases] == ["test_sleep", "test_replayed", "test_skipped"]
        for m, p in s.each():
            if isinstance(p, str):
                seen[m.name] = p
                continue
            seen[m.name] = p.trial(12, slowdown=0.5)
    sleep, replayed = seen["test_sleep"], seen["test_replayed"]
    assert 0.0019 < np.median(sleep.base) < 0.02
    assert np.median(np.array(sleep.cand) / np.array(sleep.base)) == pytest.approx(1.5, rel=0.2)
    # each rerun: the median epoch it replayed
    assert replayed.base == pytest.approx([0.020] * 12, abs=0.002)
    # + 50% of its median, spun inside the clock
    assert np.median(replayed.cand) == pytest.approx(0.030, abs=0.004)
    assert seen["test_skipped"] == ("base: Skipped: not on this machine; "
                                    "candidate: Skipped: not on this machine")


@pytest.mark.slow
def test_one_ab_of_two_trees_cuts_broken_and_overlong_cases_as_cases(plain_tree, tmp_path):
    """A case both sides break on their fourth call is not compared; a case only the candidate
    breaks and one it lacks are missing; the plugin's case limit (--case-timeout 1) applies per
    burst: test_sleep's pairs take longer than that in all and are compared, a 1.5 s call is cut
    as a case; the rest are compared."""
    bench = plain_tree / "benches" / "bench_plain.py"
    bench.write_text(bench.read_text() + textwrap.dedent('''
        CALLS = []


        def test_breaks(benchmark):
            def once():
                CALLS.append(1)
                if len(CALLS) > 3:
                    raise RuntimeError("broke on call 4")
            benchmark(once)


        def test_only_the_candidate_breaks(benchmark):
            benchmark(time.sleep, 0.001)


        def test_overlong(benchmark):
            benchmark(time.sleep, 1.5)


        def test_gone(benchmark):
            benchmark(time.sleep, 0.001)
    '''))
    cand = tmp_path / "cand"
    shutil.copytree(plain_tree, cand)
    cand_bench = cand / "benches" / "bench_plain.py"
    text = cand_bench.read_text().replace("benchmark(time.sleep, 0.001)",
                                          "benchmark(time.sleep, -1)", 1)
    cand_bench.write_text(text[:text.index("def test_gone")])
    (tmp_path / "s").mkdir()
    out = ab.run(worker.Side("base", plain_tree, sys.executable),
                 worker.Side("candidate", cand, sys.executable), ["--case-timeout", "1"],
                 tmp_path / "s", seed=1, budget_s=0.2, n_rounds=2)
    assert out.not_run["test_breaks"] == "base: failed while timed: RuntimeError: broke on call 4"
    assert out.not_run["test_overlong"] == (
        "base: failed while timed: CaseTimeout: benches/bench_plain.py::test_overlong did not end "
        "within the case limit of 1 s (--case-timeout); stopped as hung")
    assert out.missing.keys() == {"test_only_the_candidate_breaks", "test_gone"}
    assert out.missing["test_only_the_candidate_breaks"].startswith(
        "failed while timed: ValueError")
    assert out.missing["test_gone"] == "the candidate has no such case"
    sleep = next(t for t in out.trials if t.name == "test_sleep")
    assert sleep.seconds > 1.0 and len(sleep.d) >= 24  # past the limit in all, not per burst
    assert sleep.rounds == 2  # a fresh pair of workers each round; the broken cases in none
    assert ("test_skipped" in out.not_run
            and [t.name for t in out.trials] == ["test_sleep", "test_replayed"])


def test_a_case_the_candidate_lacks_skips_or_fails_is_missing_unless_removed():
    not_run = {"a": "candidate: failed while timed: ValueError: x",
               "b": "base: failed while timed: E: y",
               "c": "base: failed while timed: E: y; candidate: failed while timed: E: y",
               "d": "base: Skipped: z",
               "e": "candidate: Skipped: no GPU"}
    out = ab.Outcome([], [], not_run, 0, 0.0, ["benches/bench_x.py::test_old[p]"])
    assert out.missing == {"test_old[p]": "the candidate has no such case",
                           "a": "failed while timed: ValueError: x", "e": "Skipped: no GPU"}
    assert ab.unexplained(out.missing, ["test_old", "e"]) == {
        "a": "failed while timed: ValueError: x"}


@pytest.mark.slow
def test_a_worker_that_dies_is_one_line_naming_it(plain_tree, tmp_path):
    (plain_tree / "benches" / "conftest.py").write_text("import os\nos._exit(3)\n")
    sides = (worker.Side("base", plain_tree, sys.executable),
             worker.Side("candidate", plain_tree, sys.executable))
    with pytest.raises(worker.WorkerStopped,
                       match=r"the base worker stopped before it collected its cases \(exit 3\)"), \
            ab.session(*sides, [], tmp_path, seed=1):
        pass


@pytest.mark.parametrize("args, message", [
    (["ab"], "ab needs --base GIT_REF, --base-python PATH, or both"),
    (["ab", "--base-python", "/nonexistent/python"],
     "--base-python '/nonexistent/python' is not an executable"),
    (["ab", "--base-python", __file__], f"--base-python {__file__!r} is not an executable file"),
    (["ab", "--base", "no-such-ref", "--model", "mlp"], "--base 'no-such-ref' is not a commit of "),
    (["ab", "--base", "HEAD", "--cases", "some"], "unknown case set 'some' (valid: all, gate)"),
])
def test_bad_input(capsys, monkeypatch, args, message):
    monkeypatch.setattr("imgbench.bench.runner.warn_if_busy", lambda: None)
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1]


def test_a_significance_level_outside_0_1_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["ab", "--base", "HEAD", "--alpha", "2"])
    assert e.value.code == cli.EXIT_BAD_INPUT
    assert ("argument --alpha: '2' is not a significance level (valid: above 0 and below 1)"
            in capsys.readouterr().err)


def test_a_regressions_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys):
    assert cli.main(["ab", "--base", "HEAD", "--regressions", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == (
        f"imgbench ab: error: --regressions {str(tmp_path)!r} is a folder "
        "(give a file to write)")
    (tmp_path / "file").write_text("")
    assert cli.main(["ab", "--base", "HEAD", "--regressions",
                     str(tmp_path / "file" / "r.txt")]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip().startswith(
        f"imgbench ab: error: --regressions: cannot create {tmp_path}")


@pytest.mark.slow
def test_end_to_end_two_commits(tmp_path):
    """A throwaway repository: the base commit as it is; the candidate sleeps 3 ms more per forward
    and adds a pytest option of its own, which the base does not know."""
    repo = tmp_path / "repo"
    (repo / "benches").mkdir(parents=True)
    shutil.copytree(ROOT / "imgbench", repo / "imgbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    bench = (ROOT / "benches" / "bench_forward.py").read_text()
    commit(repo, {"benches/bench_forward.py": bench}, "base")
    slow = bench.replace("    measure(case.forward(), case.info())",
                         "    import time\n    w = case.forward()\n    f = w.fn\n"
                         "    w.fn = lambda: (time.sleep(0.003), f())\n    measure(w, case.info())")
    assert slow != bench
    commit(repo, {"benches/bench_forward.py": slow, "benches/conftest.py": textwrap.dedent('''
        def pytest_addoption(parser):
            parser.addoption("--new-thing", default=None)
    ''')}, "slower")
    for _ in range(2):  # the gate's own test: measured again once if the machine was busy
        proc = subprocess.run([sys.executable, "-m", "imgbench", "ab", "--base", "HEAD~1",
                               "--budget", "1", "--model", "mlp", "--batch-size", "4",
                               "--device", "cpu", "--seed", "7",
                               "--regressions", str(tmp_path / "regressed.txt"),
                               "--", "-k", "test_forward", "--new-thing=1"],
                              cwd=repo, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(repo)})
        row = next(line for line in proc.stdout.splitlines()
                   if line.startswith("test_forward[mlp-cpu-bs4]"))
        if verdict.CONTENDED not in row:
            break
    else:
        skip_when_busy("the machine was busy: the A/B rightly gave no verdict", gate=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert " regression " in row and ">= " in row  # the verdict, then what it could detect
    case, ratio, effect = (tmp_path / "regressed.txt").read_text().rstrip("\n").split("\t")
    assert (case, effect) == ("test_forward[mlp-cpu-bs4]", "3") and float(ratio) > 1.03
    assert "seed 7 (replay the pair order with --seed 7)" in proc.stderr
    assert "the base does not know --new-thing=1: dropped for the base" in proc.stderr
    assert "1 case(s) in both versions" in proc.stderr
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"],
                               capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the base checkout was removed


def test_the_command_fails_on_a_missing_case_unless_removed_and_names_both(monkeypatch, capsys):
    """`imgbench ab` with the A/B stood in: one case compared, one the candidate lacks, one it
    skips."""
    t = ab.Trial("test_a[x]", list(noise(0.0)), [1.0] * 60, [1.0] * 60, 1, 1.0)
    out = ab.Outcome(policy.decide([t], 0.01, 0.03), [t],
                     {"test_b[x]": "candidate: Skipped: why"}, 1, 1.0,
                     ["benches/bench_x.py::test_gone[x]"])
    monkeypatch.setattr(ab, "run", lambda *a, **k: out)
    monkeypatch.setattr("imgbench.bench.runner.warn_if_busy", lambda: None)
    assert cli.main(["ab", "--base-python", sys.executable, "--removed", "test_gone"]) == 1
    text = capsys.readouterr().out
    assert "test_gone[x]: removed by the change (--removed), not compared" in text
    assert text.rstrip().endswith(
        "the candidate does not run 1 case(s) the base runs (no pass unless the change removes "
        "them: --removed CASE): test_b[x] (Skipped: why)")
    assert cli.main(["ab", "--base-python", sys.executable, "--removed", "test_gone",
                     "--removed", "test_b[x]"]) == 0
