"""Interleaved A/B: the decision rule, the random pair order, the confirming rerun (with a fake
sampler), and one end-to-end run of two git commits whose candidate is slower."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from imgbench import ab, cli, verdict


def fake_sides(base_s, cand_s, calls, spread=0.01):
    rng = np.random.default_rng(0)

    def of(side):
        def sample():
            calls.append(side)
            center = base_s if side == "base" else cand_s(len(calls))
            return {"test_forward[mlp-cpu-bs4]": center * (1 + spread * rng.standard_normal())}
        return sample

    return {"base": of("base"), "candidate": of("candidate")}


def test_pairs_run_in_random_order_both_sides_each_time():
    calls = []
    samples = ab.collect(fake_sides(1.0, lambda n: 1.0, calls), pairs=10, seed=3)
    assert len(samples["test_forward[mlp-cpu-bs4]"]["base"]) == 10
    pairs = [tuple(calls[i:i + 2]) for i in range(0, 20, 2)]
    assert all(set(p) == {"base", "candidate"} for p in pairs)
    assert len(set(pairs)) == 2  # both orders occur


def test_a_real_slowdown_is_a_regression_and_a_null_one_is_not():
    calls = []
    (v,) = ab.run(fake_sides(1.0, lambda n: 1.10, calls), pairs=10)
    assert v.verdict == verdict.REGRESSION and v.ratio == pytest.approx(1.10, rel=0.02)
    assert len(calls) == 40  # confirmed by a second set of pairs
    calls.clear()
    (v,) = ab.run(fake_sides(1.0, lambda n: 1.0, calls), pairs=10)
    assert v.verdict in (verdict.UNCHANGED, verdict.NOISY) and len(calls) == 20


def test_a_slowdown_below_the_minimum_effect_does_not_fail():
    (v,) = ab.run(fake_sides(1.0, lambda n: 1.03, [], spread=0.001), pairs=10, min_effect=0.05)
    assert v.verdict != verdict.REGRESSION


def test_an_unconfirmed_regression_does_not_fail():
    # slow only during the first set of pairs (a passing disturbance), normal in the confirming set
    (v,) = ab.run(fake_sides(1.0, lambda n: 1.3 if n <= 20 else 1.0, []), pairs=10)
    assert v.verdict != verdict.REGRESSION


def test_a_significance_level_outside_0_1_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["ab", "--base", "HEAD", "--alpha", "2"])
    assert e.value.code == cli.EXIT_BAD_INPUT
    assert "argument --alpha: '2' is not a significance level (valid: above 0 and below 1)" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["ab"], "ab needs --base GIT_REF, --base-python PATH, or both"),
    (["ab", "--base", "HEAD", "--pairs", "2"], "--pairs 2 is too few"),
    (["ab", "--base-python", "/nonexistent/python"], "--base-python '/nonexistent/python' is not an executable"),
    (["ab", "--base-python", __file__], f"--base-python {__file__!r} is not an executable file"),
    (["ab", "--base", "no-such-ref", "--model", "mlp"], "cannot check out 'no-such-ref'"),
])
def test_bad_input(capsys, args, message):
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1]


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_end_to_end_two_commits(tmp_path):
    """A throwaway repository: the base commit as it is, the candidate with a 3 ms sleep per forward."""
    repo = tmp_path / "repo"
    (repo / "benches").mkdir(parents=True)
    shutil.copytree(ROOT / "imgbench", repo / "imgbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    bench = (ROOT / "benches" / "bench_forward.py").read_text()
    (repo / "benches" / "bench_forward.py").write_text(bench)
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    slow = bench.replace("    measure(case.forward(), case.info())",
                         "    import time\n    w = case.forward()\n    f = w.fn\n"
                         "    w.fn = lambda: (time.sleep(0.003), f())\n    measure(w, case.info())")
    assert slow != bench
    (repo / "benches" / "bench_forward.py").write_text(slow)
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "slower")
    proc = subprocess.run([sys.executable, "-m", "imgbench", "ab", "--base", "HEAD~1", "--pairs", "5",
                           "--model", "mlp", "--batch-size", "4", "--device", "cpu", "--",
                           "--benchmark-max-time=0.01"],
                          cwd=repo, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "test_forward[mlp-cpu-bs4]" in proc.stdout and "regression" in proc.stdout
    assert "pair 5/5 done" in proc.stderr and "confirming with 5 more pairs" in proc.stderr
    assert not (repo.parent / "base").exists()
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the base checkout was removed
