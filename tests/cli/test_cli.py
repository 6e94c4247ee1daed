"""The imgbench command: env, list, run; --help everywhere; bad input exits 2 with one line."""

import json
import re
import subprocess
import sys

import pytest

from imgbench import cli
from imgbench.cli import machine
from imgbench.core import config
from imgbench.hw import devices, environment
from imgbench.workloads import models
from tests.helpers import ROOT


def imgbench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "imgbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


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
    assert re.fullmatch(rf"[\w.]+(-f\d+m\d+)?-{devices.usable_cores()}c(-[\w.]+-x\d+)*", env["fingerprint"])
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
    (["--dataset", "mnist", "--data-root", "/nonexistent"], "mnist: missing under '/nonexistent/MNIST/raw'"),
    (["--data-root", "/tmp"], "--data-root '/tmp' needs a real dataset"),
])
def test_run_bad_input_exits_2_with_one_line(capsys, args, message):
    assert cli.main(["run", *args]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgbench: error: ") and message in err[0]


@pytest.mark.parametrize("option, value, message", [
    ("--storage", "{blocker}/runs", "--storage: cannot create {blocker}/runs/"),
    ("--json", "{tmp}", "--json {tmp}: is a folder (give a file path"),
    ("--json", "{blocker}/run.json", "--json: cannot create {blocker}: "),
])
def test_run_refuses_places_it_cannot_write_before_running(tmp_path, capsys, option, value, message):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fill = {"blocker": blocker, "tmp": tmp_path}
    args = ["run", "--device", "cpu", "--model", "mlp", option, value.format(**fill)]
    if option != "--storage":
        args += ["--storage", str(tmp_path / "runs")]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"imgbench: error: {message.format(**fill)}")
    assert not list((tmp_path / "runs").rglob("*.json"))  # nothing ran


def test_a_bench_that_fails_to_import_is_a_failed_run_not_an_interrupt(tmp_path):
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "bench_broken.py").write_text("import no_such_module\n")
    done = imgbench("run", "--device", "cpu", "--benches", str(benches), "--storage", str(tmp_path / "runs"),
                    "--", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the run did not finish (exit 1); nothing saved" in done.stderr
    assert "No module named 'no_such_module'" in done.stdout
    assert not list((tmp_path / "runs").rglob("*.json"))


@pytest.mark.parametrize("command, folder", [("run", "--storage"), ("baseline", "--folder")])
def test_a_run_stopped_by_pytest_exit_saves_nothing(tmp_path, command, folder):
    """pytest ends a session stopped part-way (pytest.exit) as it ends a Ctrl-C: its JSON holds only the
    cases before the stop, so neither the history nor a baseline may take it."""
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "bench_stop.py").write_text("import pytest\n\ndef test_a(benchmark):\n    benchmark(lambda: None)\n\n"
                                          "def test_b():\n    pytest.exit('stopped part-way')\n")
    done = imgbench(command, "--device", "cpu", "--benches", str(benches), folder, str(tmp_path / "out"),
                    "--", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "stopped part-way" in done.stdout + done.stderr
    assert not list((tmp_path / "out").rglob("*.json")) and not list((tmp_path / "out").rglob(".*"))


def test_run_saves_then_compares_with_the_previous_run(tmp_path):
    args = ["run", "--model", "mlp", "--batch-size", "4", "--device", "cpu", "--storage", str(tmp_path),
            "--", "-k", "forward or train_step or empty_round", "--benchmark-max-time=0.01", "-p", "no:cacheprovider"]
    first = imgbench(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no earlier 'quick' run on cpu saved" in first.stdout
    (folder,) = tmp_path.iterdir()
    assert folder.name == environment.environment()["fingerprint"]
    (saved,) = folder.glob("*/0001_quick.json")
    run = json.loads(saved.read_text())
    assert sorted(b["name"] for b in run["benchmarks"]) == [
        "test_empty_round[cpu]", "test_forward[mlp-cpu-bs4]", "test_train_step[mlp-cpu-bs4]"]
    assert all(len(b["stats"]["data"]) == b["stats"]["rounds"] for b in run["benchmarks"])  # save-data

    copy = tmp_path / "ci" / "run.json"
    sep = args.index("--")
    second = imgbench(*args[:sep], "--json", str(copy), *args[sep:])
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"comparing with the previous run {saved}" in second.stdout
    assert copy.read_bytes() == next(folder.glob("*/0002_quick.json")).read_bytes()
    assert f"run copied to {copy}" in second.stdout
    assert "0001_quick" in second.stdout  # pytest-benchmark's comparison table names the baseline
    assert sorted(p.name for p in folder.glob("*/*.json")) == ["0001_quick.json", "0002_quick.json"]


def test_run_compares_across_changed_conditions_with_storage_outside_the_working_directory(tmp_path):
    def args(threads):
        return ["run", "--model", "mlp", "--batch-size", "2", "--device", "cpu", "--threads", threads,
                "--storage", str(tmp_path / "runs"), "--", "-k", "forward", "--benchmark-max-time=0.01",
                "-p", "no:cacheprovider"]

    assert imgbench(*args("1")).returncode == 0
    second = imgbench(*args("2"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "machine_info is different in: imgbench" in second.stdout + second.stderr
    assert "INTERNALERROR" not in second.stdout + second.stderr


def test_baseline_is_written_whole_or_not_at_all(tmp_path):
    args = ["baseline", "--model", "mlp", "--batch-size", "4", "--device", "cpu", "--folder", str(tmp_path),
            "--", "-k", "test_forward", "--benchmark-max-time=0.01", "-p", "no:cacheprovider"]
    done = imgbench(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    (baseline,) = tmp_path.glob("*/quick.json")
    assert baseline.parent.name == environment.environment()["fingerprint"]
    run = json.loads(baseline.read_text())
    assert [b["name"] for b in run["benchmarks"]] == ["test_forward[mlp-cpu-bs4]"]
    assert len(run["benchmarks"][0]["stats"]["data"]) == run["benchmarks"][0]["stats"]["rounds"]
    before = baseline.read_bytes()
    failed = imgbench(*args[:-5], "-k", "test_forward", "--benchmark-max-time=0.01", "-p", "no:cacheprovider",
                      "-x", "--benchmark-min-rounds=0")  # an invalid option value: the run fails
    assert failed.returncode != 0 and "baseline unchanged" in failed.stderr
    assert baseline.read_bytes() == before
    assert sorted(p.name for p in baseline.parent.iterdir()) == ["quick.json"]  # no partial file left


def test_baseline_of_a_subset_merges_and_names_the_cases_it_replaced(tmp_path):
    def baseline(*select):
        return imgbench("baseline", "--model", "mlp", "--batch-size", "4", "--device", "cpu", "--folder",
                        str(tmp_path), "--", *select, "--benchmark-max-time=0.01", "-p", "no:cacheprovider")

    assert baseline("-k", "test_forward or test_train_step").returncode == 0
    (path,) = tmp_path.glob("*/quick.json")
    first = {b["name"]: b for b in json.loads(path.read_text())["benchmarks"]}
    assert sorted(first) == ["test_forward[mlp-cpu-bs4]", "test_train_step[mlp-cpu-bs4]"]
    done = baseline("-k", "test_train_step")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replaced 1 case(s) of the earlier baseline: test_train_step[mlp-cpu-bs4]" in done.stdout
    now = {b["name"]: b for b in json.loads(path.read_text())["benchmarks"]}
    assert sorted(now) == sorted(first)
    assert now["test_forward[mlp-cpu-bs4]"] == first["test_forward[mlp-cpu-bs4]"]  # kept as it was
    assert now["test_train_step[mlp-cpu-bs4]"]["stats"] != first["test_train_step[mlp-cpu-bs4]"]["stats"]


def test_baseline_with_bad_options_creates_nothing(tmp_path, capsys):
    assert cli.main(["baseline", "--model", "nosuch", "--folder", str(tmp_path / "b")]) == cli.EXIT_BAD_INPUT
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


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
        f"def test_b_hang(benchmark):\n    pathlib.Path({str(ready)!r}).touch()\n    time.sleep(120)\n")
    storage = tmp_path / "runs"
    fp = environment.environment()["fingerprint"]
    from pytest_benchmark.utils import get_machine_id

    earlier = storage / fp / get_machine_id() / "0001_quick.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"machine_info": {}, "benchmarks": [], "datetime": "2026-11-01T00:00:00"}')
    before = earlier.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "imgbench", "run", "--device", "cpu", "--benches", str(benches),
                             "--storage", str(storage), "--", "-p", "no:cacheprovider", "--benchmark-max-time=0.01",
                             "-o", "python_files=bench_*.py"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            # as in a terminal: a job started in the background by a script inherits SIGINT ignored
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
    assert capsys.readouterr().err == "imgbench: interrupted; nothing saved\n"
