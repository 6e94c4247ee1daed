"""One exit-code scheme for every command (core/errors.py): 0 nothing to report, 1 a regression
found, 2 bad input, 3 undecided, 4 the tool could not run, 130 interrupted. Per command a table of
its codes on small or stood-in inputs; a crashed worker's log outlives the temporary folder."""

import sys
import types
from pathlib import Path

import pytest

from imgbench import cli
from imgbench.bench import runner
from imgbench.cli import common, running
from imgbench.core import errors
from imgbench.forensics import ab, worker
from imgbench.forensics import bisect as search
from imgbench.judge import verdict
from imgbench.preflight import doctor
from tests.helpers import CASE, ROOT, rounds, write_run


def test_the_scheme_is_defined_once():
    assert [code for code, _, _ in errors.EXIT_CODES] == [0, 1, 2, 3, 4, 130]
    assert (errors.OK, errors.REGRESSION, errors.BAD_INPUT, errors.UNDECIDED, errors.FAILED) == (
        cli.OK, cli.REGRESSION, cli.EXIT_BAD_INPUT, cli.UNDECIDED, cli.FAILED)
    assert errors.INTERRUPTED == runner.EXIT_INTERRUPTED == cli.EXIT_INTERRUPTED


@pytest.mark.parametrize("center, extra, code", [
    (1.0, [], 0),                                # the same times
    (1.3, [], 0),                                # slower, but one pair of runs is information
    (1.3, ["--gate-without-history"], 1),        # slower, gated: a regression found
    (1.0, ["--min-effect", "x"], 2),             # bad input (argparse)
])
def test_compare(tmp_path, capsys, center, extra, code):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(center, seed=1)})
    assert main(["compare", str(cand), str(base), *extra]) == code


def test_compare_of_a_missing_file_is_bad_input(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    assert cli.main(["compare", str(tmp_path / "none.json"), str(base)]) == 2
    assert capsys.readouterr().err.startswith("imgbench compare: error: ")


def main(argv: list[str]) -> int:
    """cli.main, with argparse's SystemExit as the code it carries."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


def verdict_of(name: str, found: str) -> verdict.Verdict:
    return verdict.Verdict(name, "test_x", 1.0, 1.2, 1.2, (1.1, 1.3), None, None, 0.03, found)


@pytest.fixture
def stand_in(monkeypatch):
    """`imgbench ab`/`bisect` with their measuring stood in for: nothing is checked out or timed."""
    monkeypatch.setattr(runner, "warn_if_busy", lambda: None)
    monkeypatch.setattr(common, "process_term", lambda args: 0.0)


AB = ["ab", "--base-python", sys.executable, "--device", "cpu"]


@pytest.mark.parametrize("verdicts, only_base, removed, code", [
    ([verdict.UNCHANGED], [], [], 0),
    ([verdict.UNCHANGED, verdict.REGRESSION], [], [], 1),
    ([verdict.UNCHANGED], ["benches/bench_x.py::test_old[p]"], [], 1),  # a case gone
    ([verdict.UNCHANGED], ["benches/bench_x.py::test_old[p]"], ["--removed", "test_old"], 0),
])
def test_ab(monkeypatch, capsys, stand_in, verdicts, only_base, removed, code):
    out = ab.Outcome([verdict_of(f"test_x[{i}]", v) for i, v in enumerate(verdicts)], [], {}, 1,
                     1.0, only_base)
    monkeypatch.setattr(ab, "run", lambda *a, **k: out)
    assert cli.main([*AB, *removed]) == code


def test_ab_without_a_base_is_bad_input(capsys):
    assert cli.main(["ab"]) == 2
    assert capsys.readouterr().err == ("imgbench ab: error: ab needs --base GIT_REF, "
                                       "--base-python PATH, or both\n")


def crash(side: worker.Side, folder: Path, text: str = "Fatal Python error: boom"):
    """A worker of `side` that died with `text` as the last line of its log in `folder`."""
    w = worker.Worker.__new__(worker.Worker)
    w.side, w.name, w.log = side, f"{side.name} worker", folder / f"{side.name}.log"
    w.log.write_text(f"collecting ...\n{text}\n")
    w.proc = types.SimpleNamespace(poll=lambda: -11)
    return worker.WorkerStopped(w, "while serving")


def test_a_crashed_ab_worker_is_exit_4_and_its_log_is_kept(monkeypatch, capsys, stand_in):
    seen = {}

    def crashing(base, cand, args, folder, *rest, **kw):
        seen["tmp"] = folder
        raise crash(cand, folder)
    monkeypatch.setattr(ab, "run", crashing)
    assert cli.main(AB) == cli.FAILED == 4
    (kept,) = (common.logs_folder()).glob("ab-*-candidate.log")
    assert kept.read_text() == "collecting ...\nFatal Python error: boom\n"
    assert not seen["tmp"].exists()  # the temporary folder went; the copy stays
    assert capsys.readouterr().err == (
        "imgbench ab: error: the candidate worker stopped while serving (exit -11): Fatal Python "
        f"error: boom (log: {kept})\n")


@pytest.mark.parametrize("command", ["explain", "gate-check"])
def test_a_paired_run_keeps_the_log_of_a_worker_that_stopped(command):
    with (pytest.raises(worker.WorkerStopped) as e,
          common.paired(command, str(ROOT / "benches"), None, sys.executable) as (base, _, tmp)):
        raise crash(base, tmp)
    assert e.value.log.parent == common.logs_folder() and e.value.log.is_file()
    assert e.value.log.name.startswith(f"{command}-") and str(e.value.log) in str(e.value)


def test_a_log_kept_already_is_left_where_it_is(tmp_path):
    """explain keeps its workers' logs in --out: the paired run does not copy them again."""
    with (pytest.raises(worker.WorkerStopped) as e,
          common.paired("explain", str(ROOT / "benches"), None, sys.executable) as (b, _, tmp)):
        raise crash(b, tmp).keep(tmp_path / "out" / "base.log")
    assert e.value.log == tmp_path / "out" / "base.log"
    assert str(e.value).endswith(f"(log: {tmp_path / 'out' / 'base.log'})")


def test_a_log_that_cannot_be_kept_is_said(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    e = crash(worker.Side("base", tmp_path, sys.executable), tmp_path).keep(blocker / "base.log")
    assert "its log could not be kept at" in str(e) and e.log == tmp_path / "base.log"


@pytest.mark.parametrize("found, code", [(search.FOUND, 1), (search.NO_SLOWDOWN, 0),
                                         (search.OPEN, 3)])
def test_bisect(monkeypatch, capsys, stand_in, found, code):
    from imgbench.forensics import git

    monkeypatch.setattr(git, "toplevel", lambda here: here)
    monkeypatch.setattr(git, "first_parent_line", lambda repo, good, bad: ["a", "b"])
    monkeypatch.setattr(search, "run", lambda *a, **k: types.SimpleNamespace(
        summary=["the summary"], code=found))
    assert cli.main(["bisect", "v1", "HEAD", "--device", "cpu"]) == code
    assert capsys.readouterr().out == "the summary\n"


@pytest.mark.parametrize("statuses, code", [
    ([doctor.OK, doctor.SKIP, doctor.INFO], 0),
    ([doctor.OK, doctor.FAIL], 4),   # a run here would not run as it should
])
def test_doctor(monkeypatch, capsys, statuses, code):
    monkeypatch.setattr(doctor, "each", lambda spec, note: (
        doctor.Check(s, f"check {i}", "detail") for i, s in enumerate(statuses)))
    assert cli.main(["doctor"]) == code


def test_changes_is_information(tmp_path, capsys):
    for i in range(2):
        write_run(tmp_path / "h" / f"{i}.json", {CASE: rounds(1.0 + i, seed=i)},
                  when=f"2026-11-2{i}T10:00:00")
    assert cli.main(["changes", str(tmp_path / "h")]) == 0
    assert cli.main(["changes", str(tmp_path / "none")]) == 2


@pytest.mark.parametrize("pytest_code, code", [(0, 0), (1, 4), (3, 4), (4, 2), (5, 2),
                                               (130, 130)])
def test_run_and_baseline_put_pytests_codes_on_the_scheme(pytest_code, code):
    assert running.exit_code(pytest_code) == code


BENCH = """
def test_ok(benchmark):
    benchmark(lambda: None)


def test_fails(benchmark):
    raise RuntimeError("the case broke")
"""


@pytest.mark.filterwarnings("ignore:Not saving anything")
@pytest.mark.parametrize("select, code, said", [
    (["-k", "test_ok"], 0, "run saved to"),
    ([], 4, "pytest's exit 1: a case failed or the benches did not import; the cases that ran "
            "were saved"),
    (["-k", "no_such_case"], 2, "pytest's exit 5: no case selected"),
])
def test_run(tmp_path, monkeypatch, capsys, select, code, said):
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "bench_exit_codes.py").write_text(BENCH)  # a module name of its own
    monkeypatch.chdir(tmp_path)  # the run's pytest runs here, in this process
    monkeypatch.setattr(runner, "warn_if_busy", lambda: None)
    got = cli.main(["run", "--device", "cpu", "--benches", str(benches), "--storage",
                    str(tmp_path / "runs"), "--", "-p", "no:cacheprovider", "-o",
                    "python_files=bench_*.py", "--benchmark-min-rounds=1",
                    "--benchmark-max-time=0.001", *select])
    out, err = capsys.readouterr()
    assert got == code, out + err
    assert said in out + err


def test_the_tool_failing_in_any_command_is_exit_4_naming_it(monkeypatch, capsys):
    from imgbench.cli import machine

    def failing(args):
        raise errors.CouldNotRun("the base worker stopped (exit 1): boom (log: /x.log)")
    monkeypatch.setattr(machine, "listing", failing)
    assert cli.main(["list"]) == 4
    assert capsys.readouterr().err == ("imgbench list: error: the base worker stopped (exit 1): "
                                       "boom (log: /x.log)\n")
