"""One crafted or damaged file in a history: it neither stops a command (a traceback, a hang, exit
2) nor moves a verdict. Each is skipped with one line naming it and why, and the gate still judges
against the other runs."""

import copy
import json
import os

import numpy as np
import pytest

from imgbench.judge import window
from imgbench.runs import acceptances, checks, history, record, runfile, storage
from tests.helpers import (
    CASE,
    FP,
    ROOT,
    bench_entry,
    imgbench,
    records,
    rounds,
    run_file,
    write_json,
)


def day(i: int) -> str:
    return f"2026-11-{i + 1:02}T10:00:00"


def doc(center=1.0, i=9, judged=None, seed=None) -> dict:
    d = run_file([bench_entry(CASE[0], dict(CASE[1]), rounds(center, seed=i if seed is None
                                                              else seed))],
                 when=day(i), meta={"profile": "quick"})
    if judged is not None:
        d["imgbench"]["judged"] = {"regressions": judged}
    return d


def history_of(folder, n=6):
    for i in range(n):
        write_json(folder / FP / f"{i:04}_quick.json", doc(1.0, i))
    return folder


def case(d):
    return d["benchmarks"][0]


CRAFTED = {
    "name_not_text": (lambda d: case(d).update(name=5), "has a name that is not text"),
    "rounds_infinite": (lambda d: case(d)["stats"].update(rounds=float("inf")),
                        "has rounds inf (valid: a whole number from 1)"),
    "median_edited": (lambda d: case(d)["stats"].update(median=5.0),
                      "has median 5.0 and min"),
    "rounds_cut": (lambda d: case(d)["stats"].update(rounds=3), "round times for 3 rounds"),
    "min_above_median": (lambda d: case(d)["stats"].update(min=9.0), "has min 9.0 with median"),
    "params_not_object": (lambda d: case(d).update(params=[["model", "x"]]),
                          "has params [['model', 'x']] (valid: an object)"),
    "peak_infinite": (lambda d: case(d)["extra_info"].update(peak_memory_bytes=float("inf")),
                      "extra_info peak_memory_bytes inf"),
    "contention_text": (lambda d: case(d)["extra_info"].update(contention={"seconds": "1"}),
                        "extra_info contention"),
    "flag_list": (lambda d: case(d)["extra_info"].update(tf32=[True]), "extra_info tf32 [True]"),
    "twice": (lambda d: d["benchmarks"].append(copy.deepcopy(case(d))),
              "benchmarks 0 and 1 are the same case"),
    "machine_list": (lambda d: d["machine_info"].update(fingerprint=["x"]),
                     "machine class ['x'] is not a folder name"),
    "machine_path": (lambda d: d["machine_info"].update(fingerprint="../../elsewhere"),
                     "machine class '../../elsewhere' is not a folder name"),
    "commit_number": (lambda d: d["commit_info"].update(id=7), "commit 7 is not a commit id"),
    "date_garbage": (lambda d: d.update(datetime="soon"), "datetime 'soon' is not a date"),
    "date_future": (lambda d: d.update(datetime="2099-01-01T00:00:00"),
                    "dated 2099-01-01T00:00:00, later than this machine's clock"),
    "judged_number": (lambda d: d["imgbench"].update(judged={"regressions": 1}),
                      "imgbench.judged is not compare's verdict"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
@pytest.mark.parametrize("light", [False, True], ids=["rounds", "cache"])
def test_a_crafted_run_is_skipped_with_one_line_and_the_others_read(tmp_path, monkeypatch, name,
                                                                     light):
    monkeypatch.setenv("IMGBENCH_CACHE", str(tmp_path / "cache"))
    folder = history_of(tmp_path / "h")
    mutate, why = CRAFTED[name]
    d = doc()
    mutate(d)
    bad = write_json(folder / FP / "0099_quick.json", d)
    h = history.load([folder], rounds=not light)
    assert len(h.runs) == 6 and len(h.skipped) == 1
    assert h.skipped[0].startswith(f"{bad}: ") and why in h.skipped[0], h.skipped[0]
    assert "\n" not in h.skipped[0]


@pytest.mark.parametrize("text, why", [
    ("[" * 100_000 + "]" * 100_000, "unreadable JSON: maximum recursion depth"),
    ('{"machine_info": {}, "benchmarks": [], "n": ' + "9" * 5000 + "}",
     "unreadable JSON: Exceeds the limit"),
])
def test_json_that_would_raise_inside_the_parser_is_one_line(tmp_path, text, why):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(runfile.RunError, match=f"x.json: not a pytest-benchmark run .*{why}"):
        runfile.read(tmp_path / "x.json")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_named_like_a_run_is_not_read(tmp_path):
    folder = history_of(tmp_path / "h")
    os.mkfifo(folder / "x.json")  # opening it to read would wait for a writer for ever
    h = history.load([folder])
    assert len(h.runs) == 6 and h.skipped == [
        f"{folder / 'x.json'}: cannot read: not a regular file (a pipe, socket or device)"]


def test_a_file_larger_than_any_run_is_not_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(runfile, "MAX_BYTES", 1000)
    path = write_json(tmp_path / "big.json", {**doc(), "padding": "x" * 2000})
    with pytest.raises(runfile.RunError, match="big.json: not a pytest-benchmark run .*larger"):
        runfile.read(path)


def test_dates_are_compared_as_times_whatever_their_spelling(tmp_path):
    a = write_json(tmp_path / "a.json", {**doc(seed=1), "datetime": "2026-11-20T12:00:00+05:00"})
    b = write_json(tmp_path / "b.json", {**doc(seed=2), "datetime": "2026-11-20 08:00:00"})
    runs = history.load([a, b]).runs
    # 12:00 at +05:00 is 07:00 UTC: before 08:00, though its text sorted after
    assert [run[0].path for run in runs] == [str(a), str(b)]
    assert runs[0][0].datetime == "2026-11-20T07:00:00+00:00"
    assert runfile.canonical_time("2026-11-20T08:00:00Z") == "2026-11-20T08:00:00+00:00"


def test_a_run_dated_ahead_never_becomes_the_previous_run(tmp_path):
    folder = tmp_path / FP
    write_json(folder / "Linux" / "0001_quick.json", doc(1.0, 1))
    write_json(folder / "Linux" / "0002_quick.json", {**doc(1.0, 2), "datetime": "2099-01-01"})
    assert storage.previous_run(folder, "quick").name == "0001_quick.json"


def test_a_judged_regression_copied_without_its_verdict_stays_out_of_the_window(tmp_path):
    folder = history_of(tmp_path / "h")
    judged = write_json(folder / FP / "0010_quick.json", doc(1.3, 10, judged=[CASE[0]]))
    for k in range(3):  # re-dated copies, the judged block taken out
        d = json.loads(judged.read_text())
        del d["imgbench"]["judged"]
        write_json(tmp_path / "h" / f"copy{k}.json", {**d, "datetime": day(11 + k)})
    runs = history.load([folder]).runs
    assert len(runs) == 10 and all(r.regressed for run in runs[-4:] for r in run)
    cand = records(tmp_path / "c.json", {CASE: rounds(1.3, seed=50)}, when=day(20))
    (key,) = {r.key for r in cand}
    assert len(window.window(runs, cand).medians[key]) == 6  # the steady runs only


def test_one_run_far_off_is_left_out_of_the_window_not_widening_the_bound(tmp_path):
    """A run that holds together (its round times give its median) at 5x the level: the bound
    was the window's spread, which it made 30x wider, and a 30% slowdown passed."""
    folder = history_of(tmp_path / "h")
    write_json(folder / FP / "0010_quick.json", doc(5.0, 10))
    base = write_json(tmp_path / "b.json", doc(1.0, 0, seed=50))
    cand = write_json(tmp_path / "c.json", doc(1.3, 20, seed=60))
    done = imgbench("compare", cand, base, "--history", folder,
                    env={**os.environ, "IMGBENCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("history: 1 run(s) left out (a median far outside the other runs' (a crafted or "
            "broken run?))") in done.stdout


def test_the_outlier_screen_leaves_ordinary_histories_whole():
    """Lognormal run-to-run noise, windows of 4 to 20 runs: the screen's level is 1/1000 a window,
    so about 1 of these 2000 windows loses a run; a screen at the usual 1% would take 20."""
    rng = np.random.default_rng(0)

    def run(median, i):
        return [record.Record("", day(i), None, FP, "train_step", CASE[0], dict(CASE[1]), median,
                              median, 5, None)]

    cand = run(1.0, 28)
    screened = 0
    for trial in range(2000):
        runs = [run(float(np.exp(rng.normal(0, 0.03))), i) for i in range(4 + trial % 17)]
        screened += bool(window.window(runs, cand).left_out)
    assert screened <= 5


@pytest.mark.parametrize("where, content, why", [
    ("x.accept", {"datetime": "2026-11-20T00:00:00"}, "not in a <machine class>/accepted/"),
    (f"{FP}/accepted/x.accept", {"datetime": "2099-01-01T00:00:00"},
     "dated 2099-01-01T00:00:00, later than this machine's clock"),
    (f"{FP}/accepted/x.accept", {"datetime": "2026-11-20T00:00:00", "fingerprint": "Other-4c"},
     f"for machine class Other-4c, filed under {FP}"),
    (f"{FP}/accepted/x.accept", {"datetime": "now"}, "Invalid isoformat string: 'now'"),
])
def test_an_acceptance_not_filed_as_accept_files_it_accepts_nothing(tmp_path, where, content,
                                                                     why):
    folder = history_of(tmp_path / "h")
    write_json(folder / FP / "0010_quick.json", doc(1.3, 10, judged=[CASE[0]]))
    write_json(folder / where, {"cases": [], **content})
    notes = []
    assert acceptances.read([folder], notes) == []
    assert len(notes) == 1 and why in notes[0] and notes[0].endswith("not applied")
    base = write_json(tmp_path / "b.json", doc(1.0, 0, seed=50))
    cand = write_json(tmp_path / "c.json", doc(1.3, 20, seed=60))
    done = imgbench("compare", cand, base, "--history", folder,
                    env={**os.environ, "IMGBENCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1 and why in done.stdout and "Traceback" not in done.stderr


def test_an_acceptance_written_without_a_machine_class_covers_its_folders_only(tmp_path):
    write_json(tmp_path / "h" / FP / "accepted" / "x.accept",
               {"datetime": "2026-11-20T00:00:00", "cases": []})
    (a,) = acceptances.read([tmp_path / "h"])
    assert a.fingerprint == FP


def test_a_candidate_naming_a_path_as_its_machine_cannot_be_saved_outside_the_history(tmp_path):
    d = doc(1.0, 20)
    d["machine_info"]["fingerprint"] = "../../outside"
    cand = write_json(tmp_path / "a" / "b" / "c.json", d)
    done = imgbench("compare", cand, cand, "--save-to", tmp_path / "a" / "b" / "h")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "machine class '../../outside' is not a folder name" in done.stderr
    assert not (tmp_path / "outside").exists()


def test_the_committed_baseline_passes_every_check():
    for path in sorted((ROOT / "baselines").rglob("*.json")):
        run = runfile.read(path)
        assert [checks.case(b) for b in run.benchmarks] == [None] * len(run.benchmarks)


def test_an_acceptance_accepts_no_run_recorded_after_the_newest_it_saw(tmp_path):
    """`accept` writes `through`, the newest regressed run it accepted: whatever date the file
    says, a run recorded later is not accepted by it."""
    folder = tmp_path / "h" / FP / acceptances.ACCEPT_DIR
    folder.mkdir(parents=True)
    (folder / "x.accept").write_text(json.dumps(
        {"datetime": day(20), "cases": [], "fingerprint": FP, "through": day(5)}))
    (a,) = acceptances.read([tmp_path / "h"])
    older, newer = (record.Record("", day(i), None, FP, "train_step", CASE[0], dict(CASE[1]), 1.0,
                                  1.0, 5, None, regressed=True) for i in (5, 6))
    assert acceptances.unaccepted([[older]], [a]) == []
    assert acceptances.unaccepted([[newer]], [a]) == [newer]
    written = acceptances.write(tmp_path / "w", [], FP, through=day(5))
    assert json.loads(written.read_text())["through"] == day(5)
