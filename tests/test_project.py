"""Set-up promises: the README's two Quickstart commands, .ci/run runs the test one, pins, plugin name."""

import re
import subprocess
from pathlib import Path

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
    script.write_text(ci.replace(test, "false && " + test).replace('cd "$(dirname "$0")/.."', "cd /"))
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
    stack = {"torch", "torchvision", "numpy", "pytest", "pytest-benchmark"}  # what the numbers depend on
    assert {name: here[name] for name in stack} == {name: pins[name] for name in stack}
    assert {name: v for name, v in here.items() if v is not None} == {name: pins[name] for name in pins if here[name]}


def test_the_installed_entry_points_are_the_ones_declared():
    from importlib.metadata import entry_points

    import imgbench.cli
    import imgbench.plugin

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (plugin,) = [e for e in entry_points(group="pytest11") if e.value.startswith("imgbench")]
    (script,) = entry_points(group="console_scripts", name="imgbench")
    assert {plugin.name: plugin.value} == meta["project"]["entry-points"]["pytest11"]
    assert plugin.name == plugin.value  # named by its module path: a root conftest loading it too is one plugin
    assert script.value == meta["project"]["scripts"]["imgbench"]
    assert plugin.load() is imgbench.plugin and script.load() is imgbench.cli.main


def _gate(tmp_path, **env):
    import os
    import sys

    summary = tmp_path / "summary.md"
    baseline = ROOT / "baselines" / "AMD_EPYC-f25m17-2c" / "quick.json"
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "gate")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "IMGBENCH": str(Path(sys.executable).parent / "imgbench"),
                               "GATE_RUN": str(baseline), "GATE_BASELINE": str(baseline),
                               "GITHUB_STEP_SUMMARY": str(summary), **env})
    return proc, summary.read_text() if summary.exists() else ""


def test_ci_gate_reports_the_baseline_comparison_in_the_job_summary(tmp_path):
    proc, summary = _gate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary.startswith("## imgbench on ")
    assert "### Quick run against the committed baseline" in summary
    assert "| case | baseline | candidate | ratio |" in summary and "0 regression, 0 improvement" in summary


def test_ci_gate_fails_when_the_ab_run_cannot_start(tmp_path):
    proc, summary = _gate(tmp_path, GATE_BASE_REF="no-such-ref")
    assert proc.returncode == 2
    assert "### Interleaved A/B against no-such-ref (gating)" in summary
    assert "A/B failed to run (exit 2): imgbench: error: --base 'no-such-ref' is not a commit of " in summary


def test_workflows_gate_and_keep_history_on_main_only():
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in ci and "bash .ci/gate" in ci and "upload-artifact" in ci and "fetch-depth: 0" in ci
    assert 'git cat-file -e "$GATE_BASE_REF^{commit}"' in ci  # a force-pushed-away base skips, not fails
    gpu = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    assert "runs-on: [self-hosted, gpu]" in gpu and "--profile full --device cuda" in gpu
    assert "IS_MAIN: ${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}" in gpu
    # judged, then saved: the GPU run goes to a throwaway folder and enters main's history through compare
    assert 'storage="$RUNNER_TEMP/imgbench-runs"' in gpu and '--device cuda --storage "$storage"' in gpu
    assert 'save=(); [ "$IS_MAIN" = true ] && save=(--save-to "$IMGBENCH_HISTORY")' in gpu
    assert '"${history[@]}" \\\n                "${save[@]}"' in gpu  # compare saves after judging
    assert 'imgbench accept "$IMGBENCH_HISTORY"' in gpu  # accepting a new level: workflow_dispatch
    assert "GITHUB_STEP_SUMMARY" in gpu
    assert gpu.index("--device cpu --storage") < gpu.index("--device cuda --storage")  # the GPU run is the latest
