"""The one set of decision rules (imgbench.verdict): what makes a regression, an improvement, an
unchanged case or one too noisy to say; the verdict table; and ab and compare deciding alike on the
same evidence."""

import numpy as np
import pytest

from imgbench.forensics import ab, policy
from imgbench.judge import compare, verdict
from imgbench.judge.verdict import CONTENDED, IMPROVEMENT, NOISY, REGRESSION, UNCHANGED, History
from tests.helpers import CASE, records, rounds

E = 0.05  # the minimum effect of these cases


@pytest.mark.parametrize("ratio, slower, faster, ci, history, expected", [
    # a regression needs both: slower, by the minimum effect (against the history where
    # there is one)
    (1.20, True, False, (1.1, 1.3), None, REGRESSION),
    (1 + E, True, False, (1.01, 1.1), None, REGRESSION),  # the minimum effect itself counts
    (1.03, True, False, (1.01, 1.04), None, UNCHANGED),   # slower, but by less than the effect
    (1.20, False, False, (0.9, 1.5), None, NOISY),        # the effect, but the noise could hide it
    (1.20, True, False, (1.1, 1.3), History(1.1, 0.9, 1.15),
     NOISY),  # within the history's usual spread
    (1.20, True, False, (1.1, 1.3), History(1.2, 0.9, 1.15), REGRESSION),
    # the mirror image
    (0.80, False, True, (0.75, 0.85), None, IMPROVEMENT),
    (1 / (1 + E), False, True, (0.9, 0.99), None, IMPROVEMENT),
    (0.97, False, True, (0.96, 0.98), None, UNCHANGED),
    (0.80, False, False, (0.6, 1.1), None, NOISY),
    (0.80, False, True, (0.75, 0.85), History(0.9, 0.85, 1.5),
     NOISY),  # not below the history's lower bound
    (0.80, False, True, (0.75, 0.85), History(0.8, 0.85, 1.5), IMPROVEMENT),
    # unchanged: the interval rules out the minimum effect either way
    (1.00, False, False, (1 / (1 + E), 1 + E), None, UNCHANGED),
    (1.00, False, False, (0.94, 1.02), None, NOISY),
    (1.00, False, False, (0.98, 1.06), None, NOISY),
    # no interval and no history: no measure of noise, nothing decided however large the change
    (2.00, True, False, None, None, NOISY),
    (0.50, False, True, None, None, NOISY),
    (1.00, False, False, None, None, NOISY),
    # no interval, a history: the history decides
    (1.50, True, False, None, History(1.5, 0.9, 1.1), REGRESSION),
    (1.01, False, False, None, History(1.0, 0.9, 1.1), UNCHANGED),
    (1.01, False, False, None, History(1.2, 0.9, 1.1),
     REGRESSION),  # 20% above the history's median
    # a history is the reference where it exists: its window of runs, not one baseline run,
    # says slower
    (1.02, False, False, (0.9, 1.2), History(1.15, 0.9, 1.1), REGRESSION),
    (1.30, True, False, (1.2, 1.4), History(1.03, 0.9, 1.1), NOISY),  # a baseline run on a fast day
])
def test_judge(ratio, slower, faster, ci, history, expected):
    assert verdict.judge(ratio, E, slower, faster, ci, history) == expected


@pytest.mark.parametrize("ratio, ci, history, expected", [
    (1.20, (1.1, 1.3), None, REGRESSION),
    (1.20, (0.99, 1.3), None, NOISY),        # the interval reaches 1: not slower
    (0.80, (0.7, 0.9), None, IMPROVEMENT),
    (0.80, (0.7, 1.01), None, NOISY),
    (1.50, None, None, NOISY),
    (1.50, None, History(1.5, 1 / 1.1, 1.1),
     REGRESSION),  # without an interval the ratio itself says slower
    (0.70, None, History(0.7, 0.9, 1.1), IMPROVEMENT),
    (1.03, None, History(1.03, 0.9, 1.02),
     NOISY),  # slower beyond the history, but below the minimum effect
    # an improvement must fall below the history's own lower bound, not below 1 / the upper one
    (0.80, (0.75, 0.85), History(0.9, 0.95, 1.5), IMPROVEMENT),
    (0.80, (0.75, 0.85), History(0.9, 0.85, 1.5), NOISY),
])
def test_by_interval_lets_the_interval_say_slower_or_faster(ratio, ci, history, expected):
    assert verdict.by_interval(ratio, ci, E, history) == expected


def make(name, ratio, decided, ci=(0.9, 1.1), history=None, kind="time"):
    base = 20.0 if kind == "speedup" else 0.002
    return verdict.Verdict(name, "train_step", base, base * ratio, ratio, ci,
                           history and history.ratio, history and history.bound, E, decided, kind)


def test_counts_every_verdict_including_absent_ones():
    vs = [make("a", 1.2, REGRESSION), make("b", 1.0, UNCHANGED), make("c", 1.3, REGRESSION)]
    assert verdict.counts(vs) == {REGRESSION: 2, IMPROVEMENT: 0, UNCHANGED: 1, NOISY: 0,
                                  CONTENDED: 0}
    assert list(verdict.counts([])) == list(verdict.VERDICTS)


def test_a_contended_case_keeps_its_figures_but_gets_no_verdict():
    v = make("a", 1.5, REGRESSION)
    assert verdict.contended(v, None) is v
    c = verdict.contended(v, "measured under contention: other processes used 48% of the CPUs "
                             "(limit 10%)")
    assert (c.verdict, c.ratio, c.why) == (CONTENDED, 1.5,
                                           "measured under contention: other processes used 48% "
                                           "of the CPUs (limit 10%)")
    assert verdict.counts([c])[CONTENDED] == 1 and verdict.counts([c])[REGRESSION] == 0
    assert verdict.render([c], markdown=True).splitlines()[2].endswith(
        "| 1.500 | 0.900-1.100 | - | measured under contention |")


def test_render_text_is_aligned_and_markdown_is_a_table():
    vs = [make("test_forward[mlp-cpu-bs8]", 1.25, REGRESSION, (1.1, 1.4), History(1.3, 0.9, 1.15)),
          make("test_x", 1.0, NOISY, None)]
    lines = verdict.render(vs).splitlines()
    assert lines[0].split() == ["case", "baseline", "candidate", "ratio", "interval", "vs",
                                "history", "(bound)", "verdict"]
    assert lines[1].split() == ["test_forward[mlp-cpu-bs8]", "2.000", "ms", "2.500", "ms", "1.250",
                                "1.100-1.400", "1.300", "(1.150)", "regression"]
    assert lines[2].split() == ["test_x", "2.000", "ms", "2.000", "ms", "1.000", "-", "-", "too",
                                "noisy", "to", "say"]
    # columns start at one place
    ratio, decided = lines[0].index("ratio"), lines[0].index("verdict")
    assert lines[1][ratio:].startswith("1.250 ") and lines[2][ratio:].startswith("1.000 ")
    assert (lines[1][decided:], lines[2][decided:]) == ("regression", "too noisy to say")
    md = verdict.render(vs, markdown=True).splitlines()
    assert md[0] == ("| case | baseline | candidate | ratio | interval | vs history (bound) | "
                     "verdict |")
    assert md[1] == "|---|---|---|---|---|---|---|"
    assert md[2] == ("| test_forward[mlp-cpu-bs8] | 2.000 ms | 2.500 ms | 1.250 | 1.100-1.400 | "
                     "1.300 (1.150) | regression |")
    assert md[3] == "| test_x | 2.000 ms | 2.000 ms | 1.000 | - | - | too noisy to say |"


def test_speedups_render_as_factors():
    (row,) = verdict.render([make("cuda/cpu train_step[bs=32]", 2.0, REGRESSION, kind="speedup")],
                            markdown=True).splitlines()[2:]
    assert row.startswith("| cuda/cpu train_step[bs=32] | 20.00x | 40.00x | 2.000 |")


def test_ab_and_compare_decide_by_the_same_rules(tmp_path, monkeypatch):
    """Change the rules in verdict.judge and both change: neither keeps rules of its own. ab's
    evidence is pairs' log-ratios (its own test), compare's two runs' rounds (an interval): the
    rules are one."""
    seen = []

    def rules(ratio, effect, slower, faster, ci, history=None):
        seen.append((round(ratio, 2), effect, slower, faster))
        return "decided by verdict.judge"

    monkeypatch.setattr(verdict, "judge", rules)
    d = list(np.random.default_rng(0).normal(np.log(1.2), 0.01, 30))
    t = ab.Trial(CASE[0], d, [1.0] * 30, list(np.exp(d)), 1, 1.0)
    (by_ab,) = policy.decide([t], alpha=0.01, min_effect=E)
    base, cand = (records(tmp_path / "a.json", {CASE: rounds(1.0)}),
                  records(tmp_path / "b.json", {CASE: rounds(1.2)}))
    (by_compare,), _, _ = compare.compare(base, cand, min_effect=E)
    assert by_ab.verdict == by_compare.verdict == "decided by verdict.judge"
    assert seen == [(1.2, E, True, False), (1.2, E, True, False)]
