"""imgbench plot and report from a synthetic history: 24 runs of a GPU machine (CPU and GPU cases)
and 20 of a CPU-only machine. Every figure is rendered, has its expected pixel size and is not
blank."""

import numpy as np
import pytest
from PIL import Image

from imgbench import cli
from imgbench.runs import history
from imgbench.show import plots, report
from tests.helpers import (
    CPU_FP,
    GPU_FP,
    cpu_runs_of_two_profiles_then_a_gpu_run,
    write_history,
)


def pixels(path):
    with Image.open(path) as im:
        return im.size, np.asarray(im.convert("RGB"))


def not_blank(path):
    _, a = pixels(path)
    return len(np.unique(a.reshape(-1, 3), axis=0)) > 20 and a.std() > 10


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("storage")
    write_history(folder)
    out = tmp_path_factory.mktemp("out")
    return report.render(history.load([folder]), out), out


@pytest.mark.slow
def test_every_figure_kind_is_drawn_per_machine_class(rendered):
    r, out = rendered
    by = {m.fingerprint: m for m in r.machines}
    assert set(by) == {GPU_FP, CPU_FP}
    assert set(by[GPU_FP].figures) == {"history", "speedup trend", "throughput",
                                       "latest vs baseline", "epoch breakdown", "ddp scaling"}
    # no GPU, no epochs: nothing faked
    assert set(by[CPU_FP].figures) == {"history", "throughput", "latest vs baseline"}
    names = sorted(p.name for p in out.glob("*.png"))  # report.md and .html may be there too
    assert names == sorted([f"speedup_{GPU_FP}.png", f"throughput_{GPU_FP}.png",
                            f"throughput_{CPU_FP}.png", f"epoch_{GPU_FP}.png", f"ddp_{GPU_FP}.png",
                            *(f"vs_baseline_{GPU_FP}_{f}.png"
                              for f in ("ddp", "epoch", "forward", "train_step")),
                            f"vs_baseline_{CPU_FP}_train_step.png",
                            *(f"history_{GPU_FP}_{f}.png"
                              for f in ("ddp", "epoch", "forward", "train_step")),
                            f"history_{CPU_FP}_train_step.png"])


@pytest.mark.slow
def test_figures_have_their_size_and_are_not_blank(rendered):
    r, out = rendered
    # 3 families
    assert pixels(out / f"speedup_{GPU_FP}.png")[0] == (1200, round((1.2 + 3.2 * 3) * plots.DPI))
    assert (pixels(out / f"throughput_{GPU_FP}.png")[0]
            == (round((4.2 * 2 + 2.2) * 100), round((3.2 + 0.8) * 100)))
    assert (pixels(out / f"vs_baseline_{GPU_FP}_forward.png")[0]
            == (1000, round((1.6 + 0.26 * 8) * 100)))
    assert pixels(out / f"epoch_{GPU_FP}.png")[0] == (1000, round((1.6 + 0.3 * 2) * 100))
    assert pixels(out / f"ddp_{GPU_FP}.png")[0] == (1200, 420)
    for p in r.figures:
        assert not_blank(p), p


@pytest.mark.slow
def test_the_regression_is_found_in_the_speedup_series_and_the_latest_comparison(rendered):
    r, _ = rendered
    gpu = next(m for m in r.machines if m.fingerprint == GPU_FP)
    kerascnn = [s for s in gpu.speedups if s.case == "train_step[batch_size=32,model=kerascnn]"]
    assert len(kerascnn) == 24 and all(s.same_run for s in kerascnn)
    assert (kerascnn[0].speedup == pytest.approx(10, rel=0.03)
            and kerascnn[-1].speedup == pytest.approx(10 / 1.5, rel=0.03))
    # latest (run 23) vs run 22: both slow, so unchanged, judged with the history of runs 0-21
    assert {v.verdict for v in gpu.comparison.verdicts} <= {"unchanged", "too noisy to say"}


@pytest.mark.slow
def test_report_markdown_and_self_contained_html(rendered, tmp_path):
    r, out = rendered
    md, md_path, html_path = report.write(r, out)
    assert md_path.read_text() == md
    assert md.startswith(
        "# imgbench report\n\n44 runs from 2 machine classes, 2026-10-01 to 2026-10-24.")
    assert f"### {GPU_FP}: train_step" in md
    assert "| case | batch 32 | batch 128 |" in md
    row = next(line for line in md.splitlines() if line.startswith("| kerascnn (cuda) |"))
    assert row.count("x (") == 2  # both batch sizes, each with its interval
    assert f"- {GPU_FP}, speedup trend: `{out / f'speedup_{GPU_FP}.png'}`" in md
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == len(r.figures)
    assert 'src="http' not in page and "<table>" in page and "<h1>imgbench report</h1>" in page


@pytest.mark.slow
def test_cli_plot_and_report(tmp_path, capsys):
    write_history(tmp_path / "runs", gpu_runs=3, cpu_runs=2)
    assert cli.main(["plot", str(tmp_path / "runs"), "--out", str(tmp_path / "figs"), "--svg"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 * (10 + 5) and all((tmp_path / "figs" / p.split("/")[-1]).exists()
                                          for p in printed)
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    assert capsys.readouterr().out.startswith("# imgbench report")
    assert (tmp_path / "rep" / "report.html").exists()


def test_one_device_only_says_speedup_is_impossible(tmp_path, capsys):
    write_history(tmp_path / "runs", gpu_runs=0, cpu_runs=2)
    assert cli.main(["plot", str(tmp_path / "runs"), "--out", str(tmp_path / "figs")]) == 0
    err = capsys.readouterr().err
    assert "no GPU-over-CPU speedup: no machine has the same case timed on the CPU " \
           "and an accelerator (devices in these runs: cpu)" in err


def test_mixed_versions_and_a_corrupt_file_are_read_or_skipped_with_a_line(tmp_path, capsys):
    write_history(tmp_path / "a", gpu_runs=0, cpu_runs=2, version="4.0.0")
    write_history(tmp_path / "b", gpu_runs=0, cpu_runs=1)
    newer = tmp_path / "b" / CPU_FP / "0000_quick.json"
    newer.write_text(newer.read_text().replace("2026-10-01", "2026-11-01"))
    (tmp_path / "b" / "broken.json").write_text('{"benchmarks": [')
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"),
                     "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "runs written by pytest-benchmark 4.0.0, 5.3.1: read alike" in err
    assert f"skipped {tmp_path / 'b' / 'broken.json'}: corrupt or truncated JSON" in err


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "holds no stored runs"),
    (lambda d: (d / "notes.txt").write_text("hi"), "holds no stored runs"),
    (lambda d: (d / "x.json").write_text("[1, 2]"), "no readable run with any case"),
])
def test_no_runs_or_not_a_storage_folder_is_one_line_exit_2(tmp_path, capsys, setup, message):
    folder = tmp_path / "s"
    folder.mkdir()
    setup(folder)
    assert cli.main(["plot", str(folder), "--out", str(tmp_path / "o")]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(folder) in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["plot", "report"])
def test_an_output_folder_that_cannot_be_made_is_one_line_exit_2(tmp_path, capsys, command):
    write_history(tmp_path / "runs", gpu_runs=0, cpu_runs=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main([command, str(tmp_path / "runs"),
                     "--out", str(blocker / "out")]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"imgbench {command}: error: {blocker / 'out'}: Not a directory"
    assert blocker.read_text() == "x"


def test_latest_records_stay_within_the_newest_runs_profile(tmp_path):
    latest = report.latest_records(cpu_runs_of_two_profiles_then_a_gpu_run(tmp_path))
    assert sorted(r.path for r in latest) == [str(tmp_path / "1.json"), str(tmp_path / "3.json")]


def test_device_colors_are_not_reused_for_cases_or_verdicts():
    from imgbench.show import plots

    devices_ = set(plots.DEVICE_COLORS.values())
    assert not devices_ & (set(plots.CASE_COLORS) | set(plots.VERDICT_COLORS.values()))
    assert len(set(plots.CASE_COLORS)) >= plots.MAX_LINES  # no two lines of one panel share a color


def test_runs_of_another_dataset_are_never_compared_with_the_latest(tmp_path, capsys):
    """A scratch folder: a synthetic run, then a cifar10 run of the same cases. The report says the
    latest has no baseline of its conditions, and exits 0: no traceback, no comparison across
    datasets."""
    from tests.helpers import CASE, rounds, write_run

    write_run(tmp_path / "runs" / "0001_quick.json", {CASE: rounds(1.0)},
              meta={"profile": "quick", "dataset": "synthetic"})
    write_run(tmp_path / "runs" / "0002_quick.json", {CASE: rounds(2.0)},
              when="2026-11-22T10:00:00", meta={"profile": "quick", "dataset": "cifar10"})
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert ("no earlier run of the same profile, dataset, optimizer and thread count: "
            "the latest run has no ") in err
    assert ("1 run(s) measured otherwise (dataset 'synthetic' vs 'cifar10', "
            "against the latest run's) are reported apart") in err
