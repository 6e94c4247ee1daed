"""The analysis commands stay light: `imgbench compare`, `plot` and `report` read stored runs without
importing torch or torchvision (seconds of start-up, and no CUDA libraries on a machine that only reads)."""

import subprocess
import sys

import pytest

from conftest import CASE, GPU_CASE, rounds, write_run

CALL = """
import sys
from imgbench import cli
code = cli.main(sys.argv[1:])
print("exit", code)
print(*sorted(sys.modules))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    for i, when in enumerate(["2026-11-20T10:00:00", "2026-11-21T10:00:00"]):
        write_run(folder / "AMD_EPYC-2c" / f"{i + 1:04}_quick.json",
                  {CASE: rounds(0.02, seed=i), GPU_CASE: rounds(0.001, seed=i + 10)}, when=when, bench="train_step")
    return folder


@pytest.mark.parametrize("command", ["compare", "plot", "report"])
def test_analysis_commands_import_neither_torch_nor_torchvision(runs, tmp_path, command):
    first, second = sorted(runs.rglob("*.json"))
    args = {"compare": [str(second), str(first)], "plot": [str(runs), "--out", str(tmp_path / "figures")],
            "report": [str(runs), "--out", str(tmp_path / "report")]}[command]
    proc = subprocess.run([sys.executable, "-c", CALL, command, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == "exit 0", proc.stdout + proc.stderr  # the command did its work
    modules = set(lines[-1].split())
    assert "imgbench.cli.commands" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "torchvision")}
