"""History without a ratchet (imgbench.history, compare --history/--save-to, imgbench accept): the
reference window leaves out the run itself, later runs, other conditions and unaccepted regressions;
a regression that lands on main stays flagged until its level is accepted."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgbench.judge import compare, verdict, window
from imgbench.runs import acceptances, history, record
from tests.helpers import CASE, FP, ROOT, records, rounds, write_run

OTHER = ("test_forward[kerascnn-cpu-bs32]",
         (("model", "kerascnn"), ("device", "cpu"), ("batch_size", 32)))


CASE_KEY = record.Record("", "", None, FP, "train_step", CASE[0], dict(CASE[1]), 1, 1, 1, None).key


def day(i: int) -> str:
    return f"2026-11-{1 + i // 24:02}T{i % 24:02}:00:00"


def imgbench(*args):
    return subprocess.run([sys.executable, "-m", "imgbench", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_the_window_leaves_out_the_candidate_later_runs_other_conditions_and_contention(tmp_path):
    meta = {"profile": "quick", "threads": 2}
    past = [records(tmp_path / f"h{i}.json", {CASE: rounds(1 + i / 100, seed=i)}, when=day(i),
                    meta=meta)
            for i in range(4)]
    cand = records(tmp_path / "c.json", {CASE: rounds(1.0, seed=9)}, when=day(10), meta=meta)
    later = records(tmp_path / "l.json", {CASE: rounds(9.0)}, when=day(11), meta=meta)
    one_thread = records(tmp_path / "t.json", {CASE: rounds(9.0)}, when=day(5),
                         meta={**meta, "threads": 1})
    other_machine = records(tmp_path / "m.json", {CASE: rounds(9.0)}, when=day(6), meta=meta,
                            fingerprint="X-4c")
    w = window.window([*past, cand, later, one_thread, other_machine], cand)
    assert w.medians[CASE_KEY] == pytest.approx([r[0].median for r in past])
    assert {why: len(runs) for why, runs in w.left_out.items()} == {
        "the candidate itself": 1, "recorded at or after the candidate": 1,
        "other conditions: threads 1 vs 2": 1, "another machine class": 1}
    assert "history: 1 run(s) left out (recorded at or after the candidate)" in w.notes()


def test_the_window_holds_the_newest_runs_only(tmp_path):
    past = [records(tmp_path / f"h{i}.json", {CASE: rounds(1 + i / 1000, seed=i)}, when=day(i))
            for i in range(25)]
    cand = records(tmp_path / "c.json", {CASE: rounds(1.0)}, when=day(30))
    medians = window.window(past, cand).medians[CASE_KEY]
    assert len(medians) == window.WINDOW and medians == [r[0].median for r in past[-window.WINDOW:]]


def judged_run(path, center, when, regressed=(), seed=0):
    """A run as compare --save-to stores it: its `judged` block names the regressed cases."""
    p = write_run(path, {CASE: rounds(center, seed=seed), OTHER: rounds(center, seed=seed + 1)},
                  when=when)
    doc = json.loads(p.read_text())
    doc["imgbench"] = {"judged": {"regressions": list(regressed)}}
    p.write_text(json.dumps(doc))
    return record.load(p)


def test_regressed_cases_stay_out_of_the_window_until_accepted(tmp_path):
    steady = [judged_run(tmp_path / f"s{i}.json", 1.0, day(i), seed=i) for i in range(5)]
    stepped = [judged_run(tmp_path / f"r{i}.json", 1.15, day(10 + i), [CASE[0]], seed=i)
               for i in range(3)]
    cand = records(tmp_path / "c.json", {CASE: rounds(1.15), OTHER: rounds(1.0)}, when=day(20))
    w = window.window(steady + stepped, cand)
    assert (len(w.medians[CASE_KEY]) == 5
            and len(w.left_out["judged a regression, not accepted"]) == 3)
    assert len(w.medians[cand[1].key]) == 8  # the other case was not regressed: every run counts
    accepted = [acceptances.Acceptance(day(15), (), FP)]
    w = window.window(steady + stepped, cand, accepted)
    # the new level only
    assert w.medians[CASE_KEY] == pytest.approx([r[0].median for r in stepped])
    assert len(w.left_out["before an accepted new level"]) == 5
    assert acceptances.unaccepted(steady + stepped, accepted) == []
    other_case_only = [acceptances.Acceptance(day(15), ("test_forward",), FP)]
    assert [r.name for r in acceptances.unaccepted(steady + stepped, other_case_only)] == [CASE[0]]


@pytest.mark.slow
def test_a_regression_on_main_is_flagged_until_its_level_is_accepted(tmp_path):
    """The review's scenario, with the real commands: 10 steady runs (3% spread between runs), then
    a 15% regression lands; each run of main is judged against the baseline and the history, then
    saved."""
    hist, runs = tmp_path / "history", tmp_path / "runs"
    hist.mkdir()
    rng = np.random.default_rng(1)
    level = lambda i: (1.15 if i >= 10 else 1.0) * float(np.exp(0.03 * rng.standard_normal()))  # noqa: E731
    base = write_run(tmp_path / "baseline.json", {CASE: rounds(1.0, spread=0.01, seed=99)},
                     when=day(0))
    codes = []
    for i in range(16):
        run = write_run(runs / f"{i:02}.json", {CASE: rounds(level(i), spread=0.01, seed=i)},
                        when=day(i + 1))
        done = imgbench("compare", run, base, "--history", hist, "--save-to", hist)
        assert done.returncode in (0, 1), done.stderr
        codes.append(done.returncode)
        if i == 13:
            assert "marked as regressions" in done.stdout
    assert codes[10:] == [1] * 6  # every run after the step, not only the first
    assert codes[:10].count(1) <= 1
    saved = sorted(hist.rglob("*.json"))
    assert len(saved) == 16 and all(json.loads(p.read_text())["imgbench"]["judged"]["baseline"]
                                    for p in saved)
    accept = imgbench("accept", hist, "--note", "the new level is intended")
    assert accept.returncode == 0, accept.stderr
    assert f"accepted the level of {CASE[0]} on {FP}" in accept.stdout
    after = [imgbench("compare",
                      write_run(runs / f"{i}.json", {CASE: rounds(level(i), spread=0.01, seed=i)},
                                when=day(i + 40)), base, "--history", hist, "--save-to", hist)
             for i in range(16, 18)]
    assert [a.returncode for a in after] == [0, 0], [a.stdout for a in after]
    again = imgbench("accept", hist)
    assert (again.returncode == 2 and again.stderr.count("\n") == 1
            and "nothing to accept" in again.stderr)


def test_accept_needs_a_history_folder(tmp_path):
    done = imgbench("accept", tmp_path / "nowhere")
    assert (done.returncode == 2 and "no such history folder" in done.stderr
            and "Traceback" not in done.stderr)


def test_unreadable_history_files_are_skipped_and_copies_count_once(tmp_path):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)}, when=day(0))
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.0, seed=1)}, when=day(20))
    hist = tmp_path / "h"
    for i, m in enumerate([1.0, 1.05, 0.95]):
        write_run(hist / f"{i}.json", {CASE: rounds(m, seed=i)}, when=day(i + 1))
    clean = imgbench("compare", cand, base, "--history", hist)
    (hist / "copy.json").write_text((hist / "1.json").read_text())
    (hist / "broken.json").write_text('{"benchmarks": [')
    messy = imgbench("compare", cand, base, "--history", hist)
    assert clean.returncode == messy.returncode == 0, messy.stderr
    table = lambda out: out.splitlines()[1]  # noqa: E731  (the case's row: ratio, interval, vs history)
    assert table(clean.stdout) == table(messy.stdout)  # the same bound: the copy is counted once
    assert f"history: skipped {hist / 'broken.json'}: corrupt or truncated JSON" in messy.stdout


def test_runs_of_other_threads_or_numeric_flags_are_refused_with_one_line(tmp_path):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)},
                     meta={"profile": "quick", "threads": 2})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.0)},
                     meta={"profile": "quick", "threads": 1})
    done = imgbench("compare", cand, base)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "threads 2 vs 1" in done.stderr
    flagged = {}
    for name, tf32 in (("b2.json", False), ("c2.json", True)):
        doc = json.loads(write_run(tmp_path / name, {CASE: rounds(1.0)}).read_text())
        doc["benchmarks"][0]["extra_info"] = {"tf32": tf32, "threads": 2}
        flagged[name] = tmp_path / name
        flagged[name].write_text(json.dumps(doc))
    done = imgbench("compare", flagged["c2.json"], flagged["b2.json"])
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert (f"{CASE[0]} ran under other numeric conditions "
            "(baseline vs candidate: tf32 False vs True)" in done.stderr)


def test_a_level_accepted_after_one_flagged_run_settles_instead_of_failing_every_run(tmp_path):
    """Accepted at once: the window holds one run of the new level, too few for a bound, and the
    committed baseline still has the old one. The next runs are not called regressions against that
    stale baseline; once the level has 3 runs it is the reference like any other."""
    steady = [judged_run(tmp_path / f"s{i}.json", 1.0, day(i), seed=i) for i in range(6)]
    flagged = [judged_run(tmp_path / "r.json", 1.15, day(10), [CASE[0]])]
    accepted = [acceptances.Acceptance(day(11), (), FP)]
    base = records(tmp_path / "b.json", {CASE: rounds(1.0, seed=50)}, when=day(0))
    runs = steady + flagged
    verdicts = []
    for i in range(4):
        cand = records(tmp_path / f"c{i}.json", {CASE: rounds(1.15, seed=60 + i)}, when=day(12 + i))
        (v,), _, _ = compare.compare(base, cand, runs, accepted=accepted)
        verdicts.append(v)
        runs.append(cand)
    assert [v.verdict for v in verdicts[:2]] == [verdict.NOISY] * 2
    assert ("a newly accepted level: 1 run(s) of it in the history, judged against it from 3"
            in verdicts[0].why)
    assert verdicts[2].history_bound is not None and verdicts[2].verdict != verdict.REGRESSION


def test_an_old_isolated_false_alarm_does_not_pull_the_accepted_level_back(tmp_path):
    # a false alarm, never accepted
    runs = [judged_run(tmp_path / "a.json", 1.0, day(0), [CASE[0]])]
    runs += [judged_run(tmp_path / f"s{i}.json", 1.0, day(1 + i), seed=i) for i in range(5)]
    runs += [judged_run(tmp_path / f"r{i}.json", 1.15, day(10 + i), [CASE[0]], seed=i)
             for i in range(3)]
    cand = records(tmp_path / "c.json", {CASE: rounds(1.15)}, when=day(20))
    w = window.window(runs, cand, [acceptances.Acceptance(day(15), (), FP)])
    # the new level only
    assert w.medians[CASE_KEY] == pytest.approx([r[0].median for r in runs[-3:]])


def test_the_copy_saved_with_its_verdict_wins_over_an_unmarked_copy(tmp_path):
    judged_run(tmp_path / "h" / "b_judged.json", 1.2, day(5), [CASE[0]])
    plain = json.loads((tmp_path / "h" / "b_judged.json").read_text())
    del plain["imgbench"]
    (tmp_path / "h" / "a_artifact.json").write_text(json.dumps(plain))  # found first
    (run,) = history.load([tmp_path / "h"]).runs
    assert run[0].regressed and run[0].path.endswith("b_judged.json")


@pytest.mark.parametrize("doc, why", [
    ({"datetime": "now", "cases": []}, "Invalid isoformat string: 'now'"),
    ({"datetime": "2026-11-30T10:00:00", "cases": "test_forward"}, "cases must be a list of texts"),
    ({"cases": []}, "'datetime'"),
])
def test_a_malformed_acceptance_is_a_note_and_accepts_nothing(tmp_path, doc, why):
    """Not exit 2: one damaged or crafted file would stop the gate; read as accepting nothing, its
    regressions stay out of the reference."""
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)}, when=day(0))
    hist = tmp_path / "h"
    write_run(hist / "1.json", {CASE: rounds(1.0)}, when=day(1))
    (hist / FP / "accepted").mkdir(parents=True)
    (hist / FP / "accepted" / "x.accept").write_text(json.dumps(doc))
    done = imgbench("compare", base, base, "--history", hist)
    assert done.returncode == 0 and "not a readable acceptance" in done.stdout
    assert why in done.stdout and "not applied" in done.stdout and "Traceback" not in done.stderr


def test_an_empty_history_folder_is_said_and_the_others_are_used(tmp_path):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)}, when=day(0))
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.0, seed=1)}, when=day(20))
    for i, m in enumerate([1.0, 1.02, 0.98]):
        write_run(tmp_path / "h" / f"{i}.json", {CASE: rounds(m, seed=i)}, when=day(i + 1))
    (tmp_path / "empty").mkdir()
    done = imgbench("compare", cand, base, "--history", tmp_path / "empty", tmp_path / "h")
    assert done.returncode == 0, done.stderr
    assert f"no stored runs in {tmp_path / 'empty'}: left out of the history" in done.stdout
    assert " (1." in done.stdout.splitlines()[1]  # the "vs history (bound)" column is filled


def test_an_unwritable_save_to_is_refused_before_judging(tmp_path):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)}, when=day(0))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = imgbench("compare", base, base, "--save-to", blocker / "h")
    assert (done.returncode == 2 and done.stderr.count("\n") == 1
            and "--save-to: cannot create" in done.stderr)
    assert done.stdout == ""  # refused before any verdict was printed


def test_an_optimizer_recorded_only_by_the_cases_is_still_checked(tmp_path):
    """The committed 2-core baseline predates the run-wide optimizer field; its training cases
    name theirs."""
    doc = json.loads(write_run(tmp_path / "b.json", {CASE: rounds(1.0)},
                               meta={"profile": "quick"}).read_text())
    doc["benchmarks"][0]["extra_info"] = {"optimizer": "adam"}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    sgd = write_run(tmp_path / "c.json", {CASE: rounds(1.0)},
                    meta={"profile": "quick", "optimizer": "sgd"})
    done = imgbench("compare", sgd, tmp_path / "b.json")
    assert done.returncode == 2 and "optimizer 'adam' vs 'sgd'" in done.stderr


def test_a_lone_false_alarm_rejoins_the_window_and_a_repeated_one_does_not(tmp_path):
    """Left out, each lone false alarm would narrow the spread for good (a slow ratchet): once the
    next run is back it counts again. Two flagged runs in a row stay out until accepted, and so
    does the newest flagged run, which nothing followed yet."""
    runs = [judged_run(tmp_path / f"s{i}.json", level, day(i), seed=i)
            for i, level in enumerate((1.0, 1.04, 0.97, 1.02))]
    runs.append(judged_run(tmp_path / "alarm.json", 1.06, day(5), [CASE[0]], seed=9))
    runs += [judged_run(tmp_path / f"t{i}.json", level, day(6 + i), seed=10 + i)
             for i, level in enumerate((0.99, 1.03))]
    runs += [judged_run(tmp_path / f"r{i}.json", 1.15, day(10 + i), [CASE[0]], seed=20 + i)
             for i in range(2)]
    runs.append(judged_run(tmp_path / "back.json", 1.0, day(13), seed=30))
    runs.append(judged_run(tmp_path / "newest.json", 1.2, day(14), [CASE[0]], seed=31))
    cand = records(tmp_path / "c.json", {CASE: rounds(1.0)}, when=day(20))
    w = window.window(runs, cand)
    kept = w.medians[CASE_KEY]
    assert len(kept) == 8 and max(kept) == pytest.approx(runs[4][0].median)  # the lone alarm
    out = {Path(p).name for p in w.left_out["judged a regression, not accepted"]}
    assert out == {"r0.json", "r1.json", "newest.json"}
