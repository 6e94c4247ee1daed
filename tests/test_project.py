"""Set-up promises: the README's two Quickstart commands, .ci/run runs the test one, pins, plugin
name."""

import re
import subprocess

import pytest

from tests.helpers import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


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
    script.write_text(ci.replace(test, "false && " + test).replace('cd "$(dirname "$0")/.."',
                                                                   "cd /"))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ruff" not in proc.stdout + proc.stderr


def test_constraints_pin_exactly_what_the_tests_run_with():
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:  # pinned for another platform (the CUDA libraries on a Mac)
            return None

    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    here = {name: installed(name) for name in pins}
    # what the numbers depend on
    stack = {"torch", "torchvision", "numpy", "pytest", "pytest-benchmark"}
    assert {name: here[name] for name in stack} == {name: pins[name] for name in stack}
    assert ({name: v for name, v in here.items() if v is not None}
            == {name: pins[name] for name in pins if here[name]})


def test_the_installed_entry_points_are_the_ones_declared():
    from importlib.metadata import entry_points

    import imgbench.cli
    import imgbench.plugin

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (plugin,) = [e for e in entry_points(group="pytest11") if e.value.startswith("imgbench")]
    (script,) = entry_points(group="console_scripts", name="imgbench")
    assert {plugin.name: plugin.value} == meta["project"]["entry-points"]["pytest11"]
    # named by its module path: a root conftest loading it too is one plugin
    assert plugin.name == plugin.value
    assert script.value == meta["project"]["scripts"]["imgbench"]
    assert plugin.load() is imgbench.plugin and script.load() is imgbench.cli.main
