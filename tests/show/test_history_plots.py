"""The history figures (show.history_plots) and what report and plot do with them: one figure per
machine class and test, change points, pending changes, software changes and acceptances drawn
where they happened, run-file text shown literally, acceptances listed in the markdown, and the
latest run judged by compare's rule."""

from datetime import datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from imgbench import cli
from imgbench.judge import changepoints, compare
from imgbench.runs import acceptances, history
from imgbench.show import history_plots as hp
from imgbench.show import plots, report
from tests.helpers import run_file, timed_case, write_json

FP, OTHER = "AMD_EPYC-2c", "Xeon-8c"
MODELS = ("kerascnn", "mlp", "resnet18", "tinyvgg")
STEP_AT, RUNS = 10, 20
START = datetime(2026, 10, 1, 12)  # runs an hour apart


def write_stepped(folder, runs=RUNS, fp=FP, models=MODELS, step_at=STEP_AT, stepped=2,
                  torch_at=STEP_AT):
    """`runs` runs of forward and train_step; from run `step_at` on the first `stepped` forward
    cases 10% slower, and torch 2.13.0 -> 2.14.1 at run `torch_at`."""
    for i in range(runs):
        benches = []
        for family in ("forward", "train_step"):
            for j, model in enumerate(models):
                slow = 1.1 if family == "forward" and i >= step_at and j < stepped else 1.0
                benches.append(timed_case(family, {"model": model, "device": "cpu",
                                                   "batch_size": 32},
                                          1e-3 * (j + 1) * slow, seed=i * 100 + len(benches)))
        torch = "2.14.1" if torch_at is not None and i >= torch_at else "2.13.0"
        write_json(folder / fp / f"{i:04}_quick.json",
                   run_file(benches, fingerprint=fp, when=f"{START + timedelta(hours=i)}+00:00",
                            commit=f"{i:07x}abcdef", meta={"profile": "quick"},
                            machine={"imgbench": {"torch": torch}}))


def accept(folder, when, cases, fp=FP):
    return write_json(folder / fp / "accepted" / f"{when.replace(':', '-')}.accept",
                      {"datetime": when, "cases": cases, "fingerprint": fp})


def artists(fig, gid):
    ax = fig.axes[0]
    return [a for a in (*ax.lines, *ax.collections, *ax.texts) if a.get_gid() == gid]


@pytest.fixture
def stepped(tmp_path):
    write_stepped(tmp_path / "h")
    accept(tmp_path / "h", "2026-10-02T02:00:00", ["test_forward[kerascnn"])
    runs = history.load([tmp_path / "h"]).runs
    return tmp_path / "h", runs, changepoints.scan(runs)


def test_change_points_software_change_and_acceptance_are_drawn_where_they_happened(stepped):
    folder, runs, scan = stepped
    fig = hp.figure(runs, FP, "forward", scan.changes, [], acceptances.read([folder]))
    ((marks,),) = [[a for a in artists(fig, hp.CHANGE) if isinstance(a, PathCollection)]]
    # the two stepped cases, at the first run after the step, each 10% up
    xy = marks.get_offsets()
    assert sorted(xy[:, 0]) == [STEP_AT, STEP_AT]
    assert np.allclose(sorted(xy[:, 1]), 1.1 ** 0.5, rtol=0.03)  # over a median half-way between
    env = artists(fig, hp.ENVIRONMENT)
    assert [a.get_xdata()[0] for a in env if hasattr(a, "get_xdata")] == [STEP_AT - 0.5]
    assert [t.get_text() for t in env if hasattr(t, "get_text")] == ["torch 2.13.0 -> 2.14.1"]
    # accepted at 10-02 02:00: the first run from then is #15 (0-based 14, 12:00 + 14 hours)
    lines = [a for a in artists(fig, hp.ACCEPTED) if hasattr(a, "get_xdata")]
    assert [a.get_xdata()[0] for a in lines] == [13.5]
    (diamonds,) = [a for a in artists(fig, hp.ACCEPTED) if isinstance(a, PathCollection)]
    assert [x for x, _ in diamonds.get_offsets()] == [14]  # the one case it names
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "kerascnn: x1.10 at #11" in labels and "mlp: x1.10 at #11" in labels
    # four cases fit: all in color, none grey
    assert not any("other" in t for t in labels)


def test_a_family_without_change_points_has_no_markers_and_no_software_line_of_its_own(stepped):
    _, runs, scan = stepped
    fig = hp.figure(runs, FP, "train_step", scan.changes, [], [])
    assert not artists(fig, hp.CHANGE) and not artists(fig, hp.PENDING)
    # the software did change there: drawn on every family's figure
    assert len([a for a in artists(fig, hp.ENVIRONMENT) if hasattr(a, "get_xdata")]) == 1
    assert hp.figure(runs, FP, "no_such_test") is None


def test_pending_changes_are_hollow_and_named_pending(stepped):
    _, runs, _ = stepped
    first = next(r for r in runs[17] if r.name == "test_forward[resnet18-cpu-32]")
    pending = SimpleNamespace(machine=FP, case=first.name, test="forward",
                              kind=changepoints.TIME, first=first, runs=2, ratio=1.2)
    fig = hp.figure(runs, FP, "forward", [], [pending], [])
    (hollow,) = artists(fig, hp.PENDING)
    assert [x for x, _ in hollow.get_offsets()] == [17]
    assert len(hollow.get_facecolors()) == 0 or hollow.get_facecolors()[0][3] == 0
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "resnet18: pending x1.20 at #18" in labels
    assert any(t.startswith("pending change") for t in labels)


def test_many_cases_color_those_with_change_points_and_grey_the_rest(tmp_path):
    models = tuple(f"m{i:02}" for i in range(12))
    write_stepped(tmp_path / "h", models=models, stepped=3, torch_at=None)
    runs = history.load([tmp_path / "h"]).runs
    fig = hp.figure(runs, FP, "forward", changepoints.find(runs))
    ax = fig.axes[0]
    (grey,) = [c for c in ax.collections if c.get_gid() == hp.OTHERS]
    colored = [ln for ln in ax.lines if ln.get_color() in hp.COLORS]
    assert (len(grey.get_segments()), len(colored)) == (9, 3)
    assert "12 case(s), all with batch_size 32, device cpu: in color the 3 " in ax.get_title(
        loc="left")
    assert "the other 9 case(s)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_thousand_run_axis_ticks_are_dated_and_few(tmp_path):
    runs = [[SimpleNamespace(datetime=f"2026-{1 + i // 600:02}-{1 + i // 24 % 25:02}T"
                                      f"{i % 24:02}:00:00", path=str(i))] for i in range(1000)]
    ticks, labels = hp.date_ticks(runs)
    assert len(ticks) <= 9 and ticks[0] == 0
    assert labels[0] == "2026-01-01\n#1"


def test_report_draws_a_history_per_machine_class_and_test_and_lists_acceptances(tmp_path):
    write_stepped(tmp_path / "h")
    write_stepped(tmp_path / "h", runs=4, fp=OTHER, torch_at=None)
    path = accept(tmp_path / "h", "2026-10-02T02:00:00", ["test_forward[kerascnn"])
    out = tmp_path / "out"
    r = report.render(history.load([tmp_path / "h"]), out,
                      accepted=acceptances.read([tmp_path / "h"]))
    for fp in (FP, OTHER):
        m = next(m for m in r.machines if m.fingerprint == fp)
        assert m.figures["history"] == [out / f"history_{fp}_{t}.png"
                                        for t in ("forward", "train_step")]
        assert all(p.stat().st_size > 10_000 for p in m.figures["history"])
    md, _, _ = report.write(r, out)
    assert "## Accepted levels" in md
    assert f"| 2026-10-02 02:00 | test_forward[kerascnn | {FP} | `{path}` |" in md


def test_report_lists_and_draws_pending_changes_where_the_scan_has_them(tmp_path, monkeypatch):
    write_stepped(tmp_path / "h")
    scan = changepoints.scan

    def with_pending(runs, *a, **kw):
        s = scan(runs, *a, **kw)
        first = next(r for r in runs[-2] if r.test == "train_step")
        s.pending = [SimpleNamespace(machine=FP, case=first.name, test=first.test,
                                     kind=changepoints.TIME, first=first, runs=2, ratio=1.15,
                                     bound=1.05, called=True)]
        return s

    monkeypatch.setattr(changepoints, "scan", with_pending)
    r = report.render(history.load([tmp_path / "h"]), tmp_path / "out")
    md, _, _ = report.write(r, tmp_path / "out")
    md = md.split("## Change points in the history")[1].split("## Accepted levels")[0]
    (line,) = [x for x in md.splitlines() if x.startswith("- test_train_step[kerascnn-cpu-32]")]
    assert "0018_quick.json" in line and "1.150" in line
    assert "regression: 2 runs in a row past the bound" in line
    assert any(x.startswith("- expected false change points in this scan: about ")
               for x in md.splitlines())


def test_dollar_signs_in_case_names_are_drawn_literally(tmp_path, capsys):
    """matplotlib reads $...$ as math: "$a_b_c$" failed the whole report (double subscript)."""
    write_stepped(tmp_path / "h", models=("$x^2$", "$a_b_c$", "plain"), torch_at=None)
    assert cli.main(["report", str(tmp_path / "h"), "--out", str(tmp_path / "out")]) == 0
    runs = history.load([tmp_path / "h"]).runs
    fig = hp.figure(runs, FP, "forward", changepoints.find(runs))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert r"\$x^2\$: x1.10 at #11" in labels and r"\$a_b_c\$: x1.10 at #11" in labels
    assert plots.esc("$a_b_c$ $") == r"\$a_b_c\$ \$"


def test_latest_against_previous_is_judged_as_compare_judges_it(stepped):
    _, runs, _ = stepped
    c = report.latest_vs_previous(runs, 0.05)
    assert c.verdicts == compare.runs(runs[-2], runs[-1], runs[:-2], 0.05).verdicts
    # with 18 runs of history: the interval holds their between-run spread, and a bound is given
    assert all(v.history_bound is not None for v in c.verdicts)
    fig = plots.versus_baseline(c.verdicts, "forward", FP, "a", "b")
    label = fig.axes[0].get_xlabel()
    assert "bootstrap" not in label and "between-run spread" in label


def test_cli_plot_prints_the_history_figures(tmp_path, capsys):
    write_stepped(tmp_path / "h", runs=3, torch_at=None)
    assert cli.main(["plot", str(tmp_path / "h"), "--out", str(tmp_path / "f")]) == 0
    printed = capsys.readouterr().out.split()
    assert [p for p in printed if "/history_" in p] == [
        str(tmp_path / "f" / f"history_{FP}_{t}.png") for t in ("forward", "train_step")]


def test_beyond_150_runs_unmoved_cases_are_one_grey_median_and_band(tmp_path):
    write_stepped(tmp_path / "h", runs=160, step_at=150, torch_at=None)
    runs = history.load([tmp_path / "h"]).runs
    fig = hp.figure(runs, FP, "forward", changepoints.find(runs))
    ax = fig.axes[0]
    # the two stepped cases in color, unjoined; the two others one median line and one band
    assert sorted(ln.get_linewidth() for ln in ax.lines if ln.get_color() in hp.COLORS) == [0, 0]
    others = [a for a in (*ax.lines, *ax.collections) if a.get_gid() == hp.OTHERS]
    assert len(others) == 2 and len(others[0].get_xdata() if hasattr(others[0], "get_xdata")
                                    else others[1].get_xdata()) == 160
    fig = hp.figure(runs, FP, "train_step", [])
    assert not [ln for ln in fig.axes[0].lines if ln.get_color() in hp.COLORS]
