"""Stored runs -> records (imgbench.results): every field read, histories of runs, and every way a
file can be wrong as one line naming the file."""

import json

import pytest

from imgbench.runs import history, record
from tests.helpers import CASE, FP, bench_entry, records, rounds, run_file, write_json, write_run


def test_records_carry_family_params_and_rounds(tmp_path):
    (r,) = records(tmp_path / "a.json", {CASE: [1.0, 2.0, 3.0]})
    assert (r.test, r.params["batch_size"], r.median, r.min, r.rounds, r.data) == (
        "train_step", 32, 2.0, 1.0, 3, [1.0, 2.0, 3.0])
    assert r.family == ""  # the run named no bench file
    assert r.fingerprint == FP and r.commit == "abc"


def test_records_carry_the_runs_settings_and_the_bench_file(tmp_path):
    meta = {"profile": "full", "dataset": "cifar10", "optimizer": "sgd", "threads": 4}
    path = write_json(tmp_path / "r.json", run_file(
        [bench_entry("test_loader[png-w0]", {"source": "png", "workers": 0}, [1.0],
                     bench="dataloader")],
        meta=meta, machine={"imgbench": {"torch": "2.14.1"}}, version="5.3.1"))
    (r,) = record.load(path)
    assert (r.test, r.family, r.profile, r.dataset, r.optimizer) == (
        "loader", "dataloader", "full", "cifar10", "sgd")
    assert (r.torch, r.version, r.path) == ("2.14.1", "5.3.1", str(path))
    assert r.conditions == (("profile", "full"), ("dataset", "cifar10"), ("optimizer", "sgd"),
                            ("threads", 4))
    # the fields it lacks
    assert r.lacks == "version, devices, precisions, memory_formats, compile, peaks"


def test_a_history_names_what_its_older_runs_lack(tmp_path):
    write_run(tmp_path / "h" / "1.json", {CASE: [1.0]}, meta={"profile": "quick"},
              when="2026-11-01T00:00:00")
    write_run(tmp_path / "h" / "2.json", {CASE: [1.0]}, meta={"profile": "quick"},
              when="2026-11-02T00:00:00")
    for with_rounds in (True, False):
        notes = history.load([tmp_path / "h"], rounds=with_rounds).notes
        assert notes == ["2 run(s) lack version, devices, threads, dataset, optimizer, precisions, "
                         "memory_formats, compile, peaks (older imgbench, or another tool): read, "
                         "those settings not checked"]


def test_differences_name_only_settings_both_runs_recorded(tmp_path):
    (quick,) = records(tmp_path / "q.json", {CASE: [1.0]},
                       meta={"profile": "quick", "optimizer": "adam"})
    (full,) = records(tmp_path / "f.json", {CASE: [1.0]},
                      meta={"profile": "full", "optimizer": "sgd"})
    (old,) = records(tmp_path / "o.json", {CASE: [1.0]})  # recorded no settings
    assert record.differences(quick, full) == ["profile 'quick' vs 'full'",
                                               "optimizer 'adam' vs 'sgd'"]
    assert record.differences(quick, old) == []


@pytest.mark.parametrize("text, message", [
    ('{"machine_info": {}, "benchmarks": [', "corrupt or truncated JSON (line 1"),
    ('{"results": []}', "not a pytest-benchmark run"),
    ('[1, 2]', "not a pytest-benchmark run"),
    ('{"machine_info": {}, "benchmarks": [{"name": "t"}]}', "benchmark 0 lacks a readable 'stats'"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(record.RunError) as e:
        record.load(path)
    assert (str(e.value).startswith(str(path)) and message in str(e.value)
            and "\n" not in str(e.value))


@pytest.mark.parametrize("median", [0, -1, "NaN", "Infinity"])
def test_a_median_that_is_not_a_positive_time_is_refused(tmp_path, median):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": [
        {"name": "test_forward[x]", "stats": {"median": 1.0, "min": 0, "rounds": 1}}]}).replace(
        '"median": 1.0', f'"median": {median}'))
    with pytest.raises(record.RunError,
                       match=r"benchmark 0 \(test_forward\[x\]\) has median .* \(valid: a pos"):
        record.load(path)


def test_a_binary_file_is_one_line_error_naming_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(record.RunError,
                       match="run.json: not a pytest-benchmark run \\(not UTF-8 text\\)"):
        record.load(path)


def test_find_takes_files_and_folders(tmp_path):
    (tmp_path / "x").mkdir()
    a, b = write_run(tmp_path / "x" / "1.json", {}), write_run(tmp_path / "2.json", {})
    assert history.find([tmp_path / "x", b]) == [a, b]
    with pytest.raises(record.RunError, match="no such file or folder"):
        history.find([tmp_path / "missing"])


def test_history_is_oldest_first_and_skips_unreadable_files_with_a_line(tmp_path):
    newer = write_run(tmp_path / "a.json", {CASE: rounds(1.0)}, when="2026-11-22T00:00:00")
    older = write_run(tmp_path / "b.json", {CASE: rounds(1.1)}, when="2026-11-20T00:00:00")
    write_run(tmp_path / "empty.json", {})  # no case: not a run of the history
    (tmp_path / "c.json").write_text('{"benchmarks": [')
    h = history.load([tmp_path])
    assert [run[0].path for run in h.runs] == [str(older), str(newer)]
    assert len(h.skipped) == 1 and h.skipped[0].startswith(
        f"{tmp_path / 'c.json'}: corrupt or truncated JSON")


def test_a_copy_of_a_run_counts_once(tmp_path):
    run = write_run(tmp_path / "runs" / "0001_quick.json", {CASE: rounds(1.0)})
    write_run(tmp_path / "runs" / "0002_quick.json", {CASE: rounds(1.0, seed=1)},
              when="2026-11-22T10:00:00")
    (tmp_path / "copy.json").write_text(run.read_text())  # a CI artifact beside the history
    assert len(history.load([tmp_path / "runs", tmp_path / "copy.json"]).runs) == 2
