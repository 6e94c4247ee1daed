"""The user's mistakes and the suite's bugs (imgbench.errors, imgbench.cli.main): a UserError, of
whatever module, is one line and exit 2; anything else is a bug and keeps its traceback."""

import pytest

from imgbench import cli
from imgbench.cli import machine
from imgbench.core import options
from imgbench.core.errors import UserError
from imgbench.forensics import ab
from imgbench.hw import devices
from imgbench.judge import compare
from imgbench.runs import runfile, storage
from imgbench.workloads import cases, data, models


def raising(error):
    def command(args):
        raise error
    return command


@pytest.mark.parametrize("kind", [UserError, ab.ABError, compare.CompareError, devices.DeviceError,
                                  options.AxisError, runfile.RunError, storage.StorageError,
                                  data.DatasetError, models.UnknownModelError, cases.EmptyEpoch])
def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys, kind):
    monkeypatch.setattr(machine, "listing", raising(kind("--thing 'x' is bad (valid: y)")))
    assert cli.main(["list"]) == cli.EXIT_BAD_INPUT == 2
    assert capsys.readouterr() == ("", "imgbench list: error: --thing 'x' is bad (valid: y)\n")


@pytest.mark.parametrize("bug", [ValueError("bug"), KeyError("bug"), TypeError("bug")])
def test_a_bug_keeps_its_traceback(monkeypatch, capsys, bug):
    monkeypatch.setattr(machine, "listing", raising(bug))
    with pytest.raises(type(bug), match="bug"):
        cli.main(["list"])
    assert capsys.readouterr().err == ""
