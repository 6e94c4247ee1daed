"""Set-up promises: the README's two Quickstart commands, .ci/run runs the test one, pins, plugin name."""

import re
import subprocess
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_quickstart_has_exactly_two_commands_one_runs_benchmarks_one_tests():
    run, test = quickstart_commands()
    assert "imgbench run" in run
    assert "pytest tests" in test


def test_ci_runs_the_readme_test_command_and_fails_when_it_fails(tmp_path):
    _, test = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()
    assert "set -euo pipefail" in ci
    # Same script with a failing first step in place of the test command: it must stop, non-zero.
    script = tmp_path / "run"
    script.write_text(ci.replace(test, "false && " + test).replace('cd "$(dirname "$0")/.."', "cd /"))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ruff" not in proc.stdout + proc.stderr


def test_constraints_pin_the_cuda_stack():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert tuple(map(int, pins["pytest-benchmark"].split("."))) >= (5, 3, 1)


def test_plugin_entry_point_is_named_by_its_module_path():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {"imgbench.plugin": "imgbench.plugin"}
    assert meta["project"]["scripts"]["imgbench"] == "imgbench.cli:main"
