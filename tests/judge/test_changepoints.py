"""Change points over stored history (imgbench.changes and `imgbench changes`): E-divisive means
with a permutation test, on synthetic series and on run files; the report's section and the trend
figure's marks."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgbench import cli
from imgbench.judge import changepoints, speedup
from imgbench.runs import history
from imgbench.show import plots, report
from tests.helpers import CASE, GPU_CASE, ROOT, bench_entry, run_file, write_json

STEP, NOISE = np.log(1.05), 0.03  # a 5% step in 3% log-normal run-to-run noise


def write_history(folder, times: dict, contended=(), fingerprint="AMD_EPYC-2c") -> list:
    """Run i (file {i:04}_quick.json, commit {i:04}abcdef) holds each case at times[case][i] (its
    median; three rounds around it); the runs in `contended` were measured while other processes
    took 50% of the CPUs."""
    paths = []
    for i in range(len(next(iter(times.values())))):
        busy = {"contention": {"foreign_cpu": 0.5, "seconds": 1.0}} if i in contended else {}
        benches = [bench_entry(name, dict(params), [t[i] * 0.99, t[i], t[i] * 1.01], extra=busy)
                   for (name, params), t in times.items()]
        paths.append(write_json(folder / f"{i:04}_quick.json",
                                run_file(benches, fingerprint=fingerprint,
                                         when=f"2026-10-{1 + i // 24:02}T"
                                         f"{i % 24:02}:00:00", commit=f"{i:04}abcdef",
                                         meta={"profile": "quick"})))
    return paths


def levels(n, steps: dict, seed=0, noise=0.02, start=0.01):
    """n run medians around `start` seconds, multiplied by `steps[i]` from run i on, in log-normal
    noise."""
    level = np.full(n, start)
    for i, factor in steps.items():
        level[i:] *= factor
    return level * np.exp(noise * np.random.default_rng(seed).standard_normal(n))


def test_a_series_too_short_is_not_tested(tmp_path):
    short = changepoints.MIN_SEGMENT * 2 - 1
    write_history(tmp_path, {CASE: [0.01] * 3 + [0.05] * (short - 3)})
    s = changepoints.scan(history.load([tmp_path]).runs)
    assert (s.changes, s.tested, s.short) == ([], 0, 1)
    assert "1 series too short to test (fewer than 6 runs)" in changepoints.summary(s)


def test_contended_records_are_left_out(tmp_path):
    """Runs 20-29 measured under contention at twice the time: left out, the rest is one level."""
    t = levels(30, {20: 2.0}, seed=3)
    write_history(tmp_path, {CASE: t}, contended=range(20, 30))
    s = changepoints.scan(history.load([tmp_path]).runs)
    assert (s.changes, s.tested, s.contended) == ([], 1, 10)
    write_history(tmp_path, {CASE: t})  # the same times uncontended: the step is found
    assert [c.path for c in changepoints.find(history.load([tmp_path]).runs)] == [
        str(tmp_path / "0020_quick.json")]


@pytest.fixture
def gpu_history(tmp_path):
    """24 runs timing kerascnn on the CPU and on CUDA; from run 15 on the CUDA time is 1.5x."""
    write_history(tmp_path, {CASE: levels(24, {}, seed=4),
                             GPU_CASE: levels(24, {15: 1.5}, seed=5, start=0.001)},
                  fingerprint="Xeon-16c-NVIDIA_H100-x1")
    return tmp_path


def test_a_gpu_slowdown_is_a_time_change_and_a_speedup_change(gpu_history):
    found = changepoints.find(history.load([gpu_history]).runs)
    assert [(c.kind, c.case) for c in found] == [
        ("speedup", "train_step[batch_size=32,model=kerascnn] cuda over cpu"),
        ("time", "train_step[batch_size=32,device=cuda,model=kerascnn]")]
    lost, slower = found
    assert {c.path for c in found} == {str(gpu_history / "0015_quick.json")}
    assert (slower.commit, slower.machine, slower.test) == ("0015abcdef", "Xeon-16c-NVIDIA_H100-x1",
                                                            "train_step")
    assert (slower.ratio == pytest.approx(1.5, rel=0.03)
            and slower.ci[0] < slower.ratio < slower.ci[1])
    assert slower.after / slower.before == pytest.approx(slower.ratio)
    assert (lost.ratio == pytest.approx(1 / 1.5, rel=0.04)
            and lost.ci[0] < lost.ratio < lost.ci[1] < 1)
    assert lost.before == pytest.approx(10, rel=0.05)  # 0.01 s on the CPU / 0.001 s on CUDA
    rows = changepoints.render(found).splitlines()
    assert (re.search(r"  0\.6\d\d \(speedup lost\)  ", rows[1])
            and re.search(r"  1\.[45]\d\d \(slower\)  ", rows[2]))


def test_report_lists_the_change_points(gpu_history, tmp_path):
    r = report.render(history.load([gpu_history]), tmp_path / "out")
    md = report.markdown(r, tmp_path / "out")
    section = md.split("## Change points in the history", 1)[1].split("\n## ", 1)[0]
    assert "### Xeon-16c-NVIDIA_H100-x1" in section
    rows = [line for line in section.splitlines() if line.startswith("| train_step")]
    assert len(rows) == 2 and all("| 0015abc | 0015_quick.json |" in row for row in rows)


def test_the_speedup_trend_marks_the_first_run_after_a_change(gpu_history):
    runs = history.load([gpu_history]).runs
    points = speedup.series(runs)
    found = [c for c in changepoints.find(runs, speedups=points) if c.kind == "speedup"]
    dashed = [line for line in plots.speedup_trend(points, "m", (), found).axes[0].lines
              if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [15, 15]
    assert dashed[0].get_color() == plots.CASE_COLORS[0]
    legend = plots.speedup_trend(points, "m", (), found).legends[0]
    assert "change point (first run after it)" in [t.get_text() for t in legend.get_texts()]
    plain = plots.speedup_trend(points, "m").axes[0].lines
    assert not [line for line in plain if line.get_linestyle() == "--"]


def imgbench(*args):
    return subprocess.run([sys.executable, "-m", "imgbench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_names_the_first_run_and_commit_after_a_step(tmp_path):
    write_history(tmp_path / "runs", {CASE: levels(30, {18: 1.2}, seed=6)})
    (tmp_path / "runs" / "broken.json").write_text('{"benchmarks": [')
    proc = imgbench("changes", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "AMD_EPYC-2c"
    row = next(line for line in out if line.startswith("train_step["))
    assert "2026-10-01 18:00" in row and " 0018abc " in row and " 0018_quick.json " in row
    ratio = float(re.search(r"  (\d\.\d{3}) \(slower\)", row)[1])
    assert ratio == pytest.approx(1.2, rel=0.03)
    assert out[-3] == ("1 change point in 1 series (E-divisive means on ranks pre-whitened by the "
                       "machine's drift, permutation test at p <= 0.001)")
    assert out[-2].startswith("expected false change points in this scan: about 0.001 ")
    assert out[-2].endswith("drift (lag-1 correlation of run medians): AMD_EPYC-2c time own per "
                            "series")
    assert out[-1].startswith("a slowdown at a series' end is pending after 1 run past")
    assert "99% bootstrap, split chosen on these runs (optimistic)" in proc.stdout
    assert (f"imgbench changes: skipped {tmp_path / 'runs' / 'broken.json'}: "
            "corrupt or truncated JSON" in proc.stderr)


def test_cli_no_runs_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = imgbench("changes", str(tmp_path / "empty"))
    assert proc.returncode == cli.EXIT_BAD_INPUT and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "holds no stored runs" in proc.stderr


def test_cli_a_bad_p_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["changes", "--p", "0"])
    assert e.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'0' is not a p-value (valid: from 0.0001 below 1)" in err[0]


def test_a_step_where_torch_changed_is_the_environments_once_and_a_lone_step_names_its_commits(
        tmp_path):
    """45 runs of 45 cases; torch goes from 2.13.0 to 2.14.1 at run 31, where 40 cases step 10%;
    one other case steps 20% at run 16, where nothing recorded changed."""
    n = 45
    for i in range(n):
        benches = []
        for j in range(45):
            level = levels(n, {30: 1.10} if j < 40 else {15: 1.20} if j == 44 else {}, seed=j,
                           noise=0.01)
            benches.append(bench_entry(f"test_forward[m{j}]", {"model": f"m{j}"},
                                       [level[i] * 0.99, level[i], level[i] * 1.01]))
        env = {"torch": "2.13.0" if i < 30 else "2.14.1", "python": "3.11.7"}
        write_json(tmp_path / "runs" / f"{i:04}_quick.json",
                   run_file(benches, when=f"2026-10-{1 + i // 24:02}T{i % 24:02}:00:00",
                            commit=f"{i:04}abcdef", meta={"profile": "quick"},
                            machine={"imgbench": env, "release": "6.18"}))
    found = history.load([tmp_path / "runs"], rounds=False)
    again = history.load([tmp_path / "runs"], rounds=False)  # from the cache this time
    assert again.runs[30][0].software == found.runs[30][0].software == (
        ("torch", "2.14.1"), ("python", "3.11.7"), ("kernel", "6.18"))
    s = changepoints.scan(again.runs)
    groups, rest = changepoints.attributed(s.changes)
    assert len(groups) == 1
    first, moved = groups[0]
    assert first.software == ("torch 2.13.0 -> 2.14.1",) and Path(first.path).name == (
        "0030_quick.json")
    assert len(moved) == 40 and {c.ratio > 1.05 for c in moved} == {True}
    lone = [c for c in rest if c.case.startswith("forward[model=m44]")]
    assert len(lone) == 1 and lone[0].software == ()
    text = changepoints.describe(s)
    assert ("- environment change at 2026-10-02 06:00 (0030_quick.json, commit 0030abc): "
            "torch 2.13.0 -> 2.14.1: moved 40 case(s)") in text
    row = next(line for line in text.splitlines() if line.startswith("forward[model=m44]"))
    assert row.endswith("code only: 0014abc..0015abc")
    assert sum("environment change" in line for line in text.splitlines()) == 1


def test_a_lasting_speed_up_is_flagged_as_a_baseline_to_record(tmp_path):
    write_history(tmp_path / "runs", {CASE: levels(30, {18: 0.8}, seed=6)})
    text = changepoints.describe(changepoints.scan(history.load([tmp_path / "runs"]).runs))
    row = next(line for line in text.splitlines() if line.startswith("train_step["))
    assert "(faster: a new baseline to record)" in row and "code only: 0017abc..0018abc" in row
