"""The end of `imgbench run` (show/run_summary.py): cases and where saved, the families that took
the time, what moved against the previous run, and the caveat that separate runs never gate."""

from imgbench.runs import runfile
from imgbench.show import run_summary
from tests.helpers import bench_entry, run_file, write_json

P = {"model": "mlp", "device": "cpu", "batch_size": 32}


def case(name, median, bench, seconds):
    return bench_entry(f"{name}[mlp-cpu-bs32]", P, [median] * 5, bench=bench,
                       extra={"case_s": seconds})


def test_the_end_of_a_run_names_what_moved_and_says_it_does_not_gate(tmp_path):
    before = write_json(tmp_path / "0001_quick.json", run_file([
        case("test_forward", 0.010, "forward", 3.0),
        case("test_train_step", 0.030, "train_step", 5.0),
        case("test_conv", 0.020, "conv", 1.0), case("test_gone", 0.5, "conv", 1.0)]))
    now = write_json(tmp_path / "0002_quick.json", run_file([
        case("test_forward", 0.013, "forward", 3.0),       # x1.30: moved
        case("test_train_step", 0.0315, "train_step", 60.0),  # x1.05: not
        case("test_conv", 0.015, "conv", 1.0)]))  # x0.75: moved
    lines = run_summary.lines(runfile.read(now), runfile.read(before))
    assert lines == [
        f"imgbench: run saved to {now} (3 case(s))",
        "imgbench: the families that took the time: train_step 1.0 min, forward 0.1 min, "
        "conv 0.0 min",
        "imgbench: against the previous run 0001_quick.json: 2 of 3 case(s) moved by more than "
        "10% (median move x1.02)",
        "  slower x1.30  test_forward[mlp-cpu-bs32]",
        "  faster x0.75  test_conv[mlp-cpu-bs32]",
        "imgbench: two separate runs on a noisy machine inform and never gate: for a verdict, "
        "`imgbench ab` (interleaved) or `imgbench compare` with a history"]


def test_a_first_run_and_an_old_run_without_case_times(tmp_path):
    old = write_json(tmp_path / "0001_quick.json", run_file([
        bench_entry("test_forward[mlp-cpu-bs32]", P, [0.01] * 5, bench="forward")]))
    assert run_summary.lines(runfile.read(old), None) == [
        f"imgbench: run saved to {old} (1 case(s))"]
    many = [case(f"test_c{i}", 0.01 * (2 if i % 2 else 0.5), "conv", 1.0) for i in range(14)]
    base = [case(f"test_c{i}", 0.01, "conv", 1.0) for i in range(14)]
    got = run_summary.lines(runfile.read(write_json(tmp_path / "2.json", run_file(many))),
                            runfile.read(write_json(tmp_path / "1.json", run_file(base))))
    assert sum(line.startswith("  slower x2.00") for line in got) == 5
    assert sum(line.startswith("  faster x0.50") for line in got) == 5
    assert "  and 4 more" in got
