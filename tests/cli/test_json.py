"""--json of compare, ab, changes and bisect: one JSON document on stdout, nothing else there, with
the exit code the table would have had."""

import json
import sys
import types

import pytest

from imgbench import cli
from imgbench.bench import runner
from imgbench.cli import common
from imgbench.forensics import ab, git, steps
from imgbench.forensics import bisect as search
from imgbench.judge import verdict
from tests.helpers import CASE, rounds, write_run


def document(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out)  # the whole of stdout: one document


@pytest.mark.parametrize("center, code", [(1.0, 0), (1.3, 1)])
def test_compare(tmp_path, capsys, center, code):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(center, seed=1)})
    got = cli.main(["compare", str(cand), str(base), "--gate-without-history", "--json",
                    "--save-to", str(tmp_path / "h")])
    doc = document(capsys)
    assert got == doc["exit_code"] == code
    assert doc["command"] == "compare" and doc["format_version"] == 1
    (v,) = doc["verdicts"]
    assert v["name"] == CASE[0] and v["ratio"] == pytest.approx(center, rel=0.02)
    assert v["verdict"] == (verdict.REGRESSION if code else verdict.UNCHANGED)
    assert doc["counts"][verdict.REGRESSION] == code
    assert doc["saved_to"].startswith(str(tmp_path / "h"))  # its line went to stderr
    assert isinstance(doc["memory"], list) and "regression" in doc["memory_counts"]


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(runner, "warn_if_busy", lambda: None)
    monkeypatch.setattr(common, "process_term", lambda args: 0.0)


def test_ab(monkeypatch, capsys, stand_in):
    v = verdict.Verdict("test_x[a]", "test_x", 1.0, 1.2, 1.2, (1.1, 1.3), None, None, 0.03,
                        verdict.REGRESSION)
    out = ab.Outcome([v], [], {"test_y[b]": "candidate: Skipped: no GPU"}, 7, 12.5,
                     ["benches/bench_x.py::test_old[p]"])
    monkeypatch.setattr(ab, "run", lambda *a, **k: out)
    got = cli.main(["ab", "--base-python", sys.executable, "--device", "cpu", "--json",
                    "--removed", "test_old"])
    doc = document(capsys)
    assert got == doc["exit_code"] == 1
    assert doc["seed"] == 7 and doc["verdicts"][0]["ci"] == [1.1, 1.3]
    assert doc["removed"] == ["test_old[p]"]
    assert doc["missing"] == {"test_y[b]": "Skipped: no GPU"}
    assert doc["not_compared"] == {"test_y[b]": "candidate: Skipped: no GPU"}


def test_changes(tmp_path, capsys):
    for i in range(16):  # a step up by half at run 8
        write_run(tmp_path / "h" / f"{i:02d}.json", {CASE: rounds(1.0 if i < 8 else 1.5, seed=i)},
                  when=f"2026-11-{i + 1:02d}T10:00:00")
    assert cli.main(["changes", str(tmp_path / "h"), "--json"]) == 0
    doc = document(capsys)
    assert doc["command"] == "changes" and doc["exit_code"] == 0 and doc["tested"] >= 1
    (c,) = [c for c in doc["changes"] if c["kind"] == "time"]
    assert c["first"]["path"].endswith("08.json") and c["since"]["path"].endswith("07.json")
    assert c["ratio"] == pytest.approx(1.5, rel=0.05) and c["ci"][0] < c["ratio"] < c["ci"][1]


def commit(n: int) -> git.Commit:
    return git.Commit(f"{n:040x}", f"{n:07x}", f"{n - 1:040x}", "2026-11-01", f"change {n}")


@pytest.mark.parametrize("found, code, result", [(search.FOUND, 1, "found"),
                                                 (search.NO_SLOWDOWN, 0, "no slowdown"),
                                                 (search.OPEN, 3, "undecided")])
def test_bisect(monkeypatch, capsys, stand_in, found, code, result):
    line = [commit(i) for i in range(4)]
    step = steps.Step(0, 3, line[3], steps.SLOW,
                      [steps.Reading("test_x[cpu]", 1.4, (1.3, 1.5), 24, steps.SLOW)])
    monkeypatch.setattr(git, "toplevel", lambda here: here)
    monkeypatch.setattr(git, "first_parent_line", lambda repo, good, bad: line)

    def run(*args, show, **kw):
        show("step 0 [3/3, BAD] ...")
        return search.Outcome(found, [step], ["first slow commit: 0000002"],
                              line[2] if found == search.FOUND else None, line[1:3])
    monkeypatch.setattr(search, "run", run)
    got = cli.main(["bisect", "v1", "HEAD", "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert got == doc["exit_code"] == code and doc["result"] == result
    assert "step 0 [3/3, BAD] ..." in err  # the steps' lines as they end: on stderr
    assert doc["good"]["sha"] == line[0].sha and doc["bad"]["subject"] == "change 3"
    assert doc["steps"][0]["readings"][0] == {"case": "test_x[cpu]", "ratio": 1.4,
                                              "ci": [1.3, 1.5], "pairs": 24,
                                              "verdict": steps.SLOW, "why": ""}
    assert (doc["culprit"] or {}).get("short") == ("0000002" if code == 1 else None)
    assert [c["short"] for c in doc["suspects"]] == ["0000001", "0000002"]


def test_a_nan_is_null():
    from imgbench.cli import jsonout

    assert jsonout.plain({"a": float("nan"), "b": (1, float("inf"))}) == {"a": None,
                                                                          "b": [1, None]}
    assert json.loads(json.dumps(jsonout.plain(types.SimpleNamespace())))  # an object: its text
