"""The imgbench command: env, list, run; --help everywhere; bad input exits 2 with one line."""

import json
import re
import subprocess
import sys

import pytest
from pytest_benchmark.logger import PytestBenchmarkWarning

from imgbench import cli
from imgbench.cli import common, machine
from imgbench.core import config
from imgbench.hw import devices, environment
from imgbench.workloads import models
from tests.helpers import ROOT


def imgbench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "imgbench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("command", [[], ["env"], ["list"], ["run"], ["compare"], ["baseline"]])
def test_help_everywhere(capsys, command):
    with pytest.raises(SystemExit) as e:
        cli.main([*command, "--help"])
    assert e.value.code == 0
    assert "usage: imgbench" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus' (choose from"),
    (["run", "--optimiser", "sgd"], "unrecognized arguments: --optimiser"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("imgbench")


def test_env_text_and_json(capsys):
    assert cli.main(["env", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("fingerprint  ") and "threads      1" in text and "torch" in text
    assert cli.main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["threads"] == devices.usable_cores()
    assert re.fullmatch(rf"[\w.]+(-f\d+m\d+)?-{devices.usable_cores()}c(-[\w.]+-x\d+)*",
                        env["fingerprint"])
    assert cli.main(["env", "--fingerprint"]) == 0
    assert capsys.readouterr().out == env["fingerprint"] + "\n"


def test_list_names_models_families_axes_profiles(capsys):
    assert cli.main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert sorted(listing["models"]) == models.names()
    assert listing["models"]["kerascnn"]["input_shape"] == [3, 32, 32]
    assert set(listing["profiles"]) == {"quick", "full"}
    assert listing["axes"]["devices_here"] == devices.available()
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    for word in ["models:", "families:", "axes:", "profiles:", "resnet50", "train_step"]:
        assert word in text


def test_every_family_has_its_bench_file_and_back():
    files = {p.stem.removeprefix("bench_") for p in (ROOT / "benches").glob("bench_*.py")}
    assert files == set(config.FAMILIES)


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--batch-size", "0"], "batch size 0 is not positive"),
    (["--profile", "long"], "unknown profile 'long'"),
    (["--threads", "two"], "thread count 'two' is not an integer"),
    (["--benches", "/nonexistent"], "no benches folder at /nonexistent"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs' (valid: adam, sgd)"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'"),
    (["--dataset", "mnist", "--data-root", "/nonexistent"],
     "mnist: missing under '/nonexistent/MNIST/raw'"),
    (["--data-root", "/tmp"], "--data-root '/tmp' needs a real dataset"),
])
def test_run_bad_input_exits_2_with_one_line(capsys, args, message):
    assert cli.main(["run", *args]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgbench run: error: ") and message in err[0]


@pytest.mark.parametrize("option, value, message", [
    ("--storage", "{blocker}/runs", "--storage: cannot create {blocker}/runs/"),
    ("--json", "{tmp}", "--json {tmp}: is a folder (give a file path"),
    ("--json", "{blocker}/run.json", "--json: cannot create {blocker}: "),
])
def test_run_refuses_places_it_cannot_write_before_running(tmp_path, capsys, option, value,
                                                           message):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fill = {"blocker": blocker, "tmp": tmp_path}
    args = ["run", "--device", "cpu", "--model", "mlp", option, value.format(**fill)]
    if option != "--storage":
        args += ["--storage", str(tmp_path / "runs")]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"imgbench run: error: {message.format(**fill)}")
    assert not list((tmp_path / "runs").rglob("*.json"))  # nothing ran


@pytest.mark.slow
def test_the_benches_are_the_working_folders_before_this_checkouts(tmp_path, monkeypatch):
    """In a project of one's own, `imgbench run` (ab, bisect...) runs that project's benches/, even
    with imgbench installed from a checkout; elsewhere, the checkout's."""
    (tmp_path / "benches").mkdir()
    (tmp_path / "benches" / "bench_mine.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert common.benches_dir(None) == tmp_path / "benches"
    monkeypatch.chdir(tmp_path / "benches")  # no benches/ below it
    assert common.benches_dir(None) == ROOT / "benches"
    assert common.benches_dir(str(tmp_path / "benches")) == tmp_path / "benches"


def test_a_bench_that_fails_to_import_is_a_failed_run_not_an_interrupt(tmp_path, monkeypatch,
                                                                        capsys):
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "bench_broken.py").write_text("import no_such_module\n")
    monkeypatch.chdir(tmp_path)  # the run's pytest runs here, in this process
    code = cli.main(["run", "--device", "cpu", "--benches", str(benches),
                     "--storage", str(tmp_path / "runs"),
                     "--", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py"])
    out, err = capsys.readouterr()
    assert code == cli.FAILED == 4, out + err
    assert ("the run did not finish (pytest's exit 1: a case failed or the benches did not "
            "import); nothing saved") in err
    assert "No module named 'no_such_module'" in out
    assert not list((tmp_path / "runs").rglob("*.json"))


@pytest.mark.slow
@pytest.mark.parametrize("command, folder", [("run", "--storage"), ("baseline", "--folder")])
def test_a_run_stopped_by_pytest_exit_saves_nothing(tmp_path, monkeypatch, capsys, command, folder):
    """pytest ends a session stopped part-way (pytest.exit) as it ends a Ctrl-C: its JSON holds only
    the cases before the stop, so neither the history nor a baseline may take it."""
    benches = tmp_path / "benches"
    benches.mkdir()
    # a module name of its own: the run's pytest imports it into this process
    (benches / f"bench_stop_{command}.py").write_text(
        "import pytest\n\ndef test_a(benchmark):\n    benchmark(lambda: None)\n\n"
        "def test_b():\n    pytest.exit('stopped part-way')\n")
    monkeypatch.chdir(tmp_path)
    code = cli.main([command, "--device", "cpu", "--benches", str(benches),
                     folder, str(tmp_path / "out"),
                     "--", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py"])
    out, err = capsys.readouterr()
    assert code == cli.FAILED, out + err
    assert "stopped part-way" in out + err
    assert not list((tmp_path / "out").rglob("*.json")) and not list((tmp_path / "out").rglob(".*"))


def main(capsys, *args) -> tuple[int, str, str]:
    """`imgbench ARGS` in this process (its pytest too): the exit code, standard output and
    error."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_run_saves_then_compares_with_the_previous_run(tmp_path, capsys):
    """Three runs into storage outside the working folder: the first is saved as the first, the
    second is compared with it and copied, the third (other threads: other conditions) is compared
    all the same, pytest-benchmark warning that the machine_info differs."""
    def run(*more, threads="2"):
        return main(capsys, "run", "--model", "mlp", "--batch-size", "4", "--device", "cpu",
                    "--threads", threads, "--storage", tmp_path / "runs", *more,
                    "--", "-k", "forward or train_step or empty_round",
                    "--benchmark-max-time=0.01", "-p", "no:cacheprovider")

    code, out, err = run()
    assert code == 0, out + err
    assert "no earlier 'quick' run on cpu saved" in out
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name == environment.environment()["fingerprint"]
    (saved,) = folder.glob("*/0001_quick.json")
    stored = json.loads(saved.read_text())
    assert sorted(b["name"] for b in stored["benchmarks"]) == [
        "test_empty_round[cpu]", "test_forward[mlp-cpu-bs4]", "test_train_step[mlp-cpu-bs4]"]
    assert all(len(b["stats"]["data"]) == b["stats"]["rounds"]
               for b in stored["benchmarks"])  # save-data

    copy = tmp_path / "ci" / "run.json"
    code, out, err = run("--json", copy)
    assert code == 0, out + err
    assert f"comparing with the previous run {saved}" in out
    assert copy.read_bytes() == next(folder.glob("*/0002_quick.json")).read_bytes()
    assert f"run copied to {copy}" in out
    assert "0001_quick" in out  # pytest-benchmark's comparison table names the baseline
    # its table trimmed and grouped per test, device and model; the estimate learned from the
    # previous run; the end of the run says what moved and that it does not gate
    assert "benchmark 'test_forward device=cpu model=mlp'" in out and "StdDev" not in out
    # (the three timed cases and those the CPU skips, which the first run listed with their seconds)
    assert "5 cases, estimated " in out
    assert "; 5 case(s) at what they took in the previous run 0001_quick.json" in out
    assert "(3 case(s))" in out and "against the previous run 0001_quick.json: " in out
    assert "two separate runs on a noisy machine inform and never gate" in out

    with pytest.warns(PytestBenchmarkWarning, match="machine_info is different in: imgbench"):
        code, out, err = run("--full-table", threads="1")
    assert code == 0, out + err
    assert "INTERNALERROR" not in out + err
    assert "device=cpu model=mlp" not in out and "StdDev" in out  # pytest-benchmark's own
    assert sorted(p.name for p in folder.glob("*/*.json")) == ["0001_quick.json", "0002_quick.json",
                                                               "0003_quick.json"]


@pytest.mark.slow
def test_baseline_merges_a_subset_and_is_written_whole_or_not_at_all(tmp_path, capsys):
    def baseline(*select):
        return main(capsys, "baseline", "--model", "mlp", "--batch-size", "4", "--device", "cpu",
                    "--folder", tmp_path,
                    "--", *select, "--benchmark-max-time=0.01", "-p", "no:cacheprovider")

    code, out, err = baseline("-k", "test_forward or test_train_step")
    assert code == 0, out + err
    (path,) = tmp_path.glob("*/quick.json")
    assert path.parent.name == environment.environment()["fingerprint"]
    first = {b["name"]: b for b in json.loads(path.read_text())["benchmarks"]}
    assert sorted(first) == ["test_forward[mlp-cpu-bs4]", "test_train_step[mlp-cpu-bs4]"]
    assert all(len(b["stats"]["data"]) == b["stats"]["rounds"] for b in first.values())

    code, out, err = baseline("-k", "test_train_step")
    assert code == 0, out + err
    assert "replaced 1 case(s) of the earlier baseline: test_train_step[mlp-cpu-bs4]" in out
    now = {b["name"]: b for b in json.loads(path.read_text())["benchmarks"]}
    assert sorted(now) == sorted(first)
    assert now["test_forward[mlp-cpu-bs4]"] == first["test_forward[mlp-cpu-bs4]"]  # kept as it was
    assert (now["test_train_step[mlp-cpu-bs4]"]["stats"]
            != first["test_train_step[mlp-cpu-bs4]"]["stats"])

    before = path.read_bytes()
    # invalid: the run fails
    code, out, err = baseline("-k", "test_forward", "-x", "--benchmark-min-rounds=0")
    assert code != 0 and "baseline unchanged" in err
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["quick.json"]  # no partial file left


def test_baseline_with_bad_options_creates_nothing(tmp_path, capsys):
    assert (cli.main(["baseline", "--model", "nosuch", "--folder", str(tmp_path / "b")])
            == cli.EXIT_BAD_INPUT)
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_ctrl_c_during_a_run_saves_nothing_and_keeps_earlier_runs(tmp_path):
    import os
    import signal
    import time

    benches = tmp_path / "benches"
    benches.mkdir()
    ready = tmp_path / "ready"
    (benches / "bench_hang.py").write_text(
        "import pathlib, time\n"
        "def test_a_quick(benchmark):\n    benchmark(lambda: None)\n"
        "def test_b_hang(benchmark):\n"
        f"    pathlib.Path({str(ready)!r}).touch()\n    time.sleep(120)\n")
    storage = tmp_path / "runs"
    fp = environment.environment()["fingerprint"]
    from pytest_benchmark.utils import get_machine_id

    earlier = storage / fp / get_machine_id() / "0001_quick.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"machine_info": {}, "benchmarks": [], "datetime": "2026-11-01T00:00:00"}')
    before = earlier.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "imgbench", "run", "--device", "cpu",
                             "--benches", str(benches), "--storage", str(storage), "--",
                             "-p", "no:cacheprovider", "--benchmark-max-time=0.01",
                             "-o", "python_files=bench_*.py"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            # as in a terminal: a job started in the background by a script inherits
                            # SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert ready.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED == 130, out + err
    assert "nothing saved" in err
    assert earlier.read_bytes() == before
    assert sorted(p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file()) == [
        f"{fp}/{get_machine_id()}/0001_quick.json"]


def test_ctrl_c_in_any_command_is_exit_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(machine, "listing", interrupted)
    assert cli.main(["list"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "imgbench list: interrupted; nothing saved\n"
