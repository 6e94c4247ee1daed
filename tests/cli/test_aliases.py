"""Overlapping commands merged, old spellings kept: `plot` is `report --figures-only` (its --out
default `figures`), and baseline's --folder is --baselines."""

import pytest

from imgbench import cli
from tests.helpers import write_history


@pytest.fixture
def runs(tmp_path):
    write_history(tmp_path / "runs", gpu_runs=0, cpu_runs=3)
    return tmp_path / "runs"


def test_plot_is_report_figures_only_with_its_own_default_folder(tmp_path, runs, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["plot", str(runs)]) == 0
    out, err = capsys.readouterr()
    plotted = out.splitlines()
    assert plotted and all(line.startswith("figures/") for line in plotted)
    assert "imgbench plot: the same as `imgbench report --figures-only`" in err
    assert cli.main(["report", str(runs), "--figures-only", "--out", "figures"]) == 0
    assert capsys.readouterr().out.splitlines() == plotted
    assert not list((tmp_path / "figures").glob("*.md"))  # no report written
    assert cli.main(["report", str(runs)]) == 0
    assert (tmp_path / "imgbench-report" / "report.md").is_file()


@pytest.mark.parametrize("spelling", ["--baselines", "--folder"])
def test_baselines_folder_has_its_older_spelling(spelling):
    args = cli.build().parse_args(["baseline", spelling, "somewhere"])
    assert args.folder == "somewhere"
