"""The CI gate (.ci/gate) and the workflows that call it. The gate's wiring (which commands it runs
with which options, what reaches the job summary, its exit code) is tested with a stand-in
`imgbench` that records its calls and answers as the real one does; one test runs the real command,
comparing the committed baseline with itself. The real `ab` and `explain` are tested end to end in
tests/forensics."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT, commit

STAND_IN = textwrap.dedent(f"""\
    #!{sys.executable}
    # imgbench as .ci/gate calls it: each call logged, answers from the environment.
    import json, os, pathlib, sys
    args = sys.argv[1:]
    with open(os.environ["STAND_IN_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    def value(flag):
        return args[args.index(flag) + 1]
    if args[:2] == ["env", "--fingerprint"]:
        print("STAND-IN-2c")
    elif args[0] == "ab":
        regressed = [c for c in os.environ.get("REGRESSED", "").split(",") if c]
        pathlib.Path(value("--regressions")).write_text(
            "".join(c + "\\t1.2000\\t3\\n" for c in regressed))
        print("| case | verdict |")
        print("|---|---|")
        for c in regressed:
            print(f"| {{c}} | regression |")
        print("imgbench: error: stand-in refused", file=sys.stderr)
        sys.exit(int(os.environ.get("AB_EXIT", "1" if regressed else "0")))
    elif args[0] == "explain":
        pathlib.Path(value("--out")).mkdir(parents=True, exist_ok=True)
        print(f"**imgbench explain** {{args[1]}}: the added operators")
    elif args[0] == "compare":
        print("| case | baseline | candidate | ratio |")
        print("0 regression, 0 improvement")
    else:
        sys.exit(f"stand-in: unexpected {{args}}")
""")


def gate(tmp_path, imgbench=None,
         **env) -> tuple[subprocess.CompletedProcess, str, list[list[str]]]:
    """.ci/gate run from a copy of its folder (it writes results/ beside it), the job summary, and
    the stand-in's calls."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "gate", tmp_path / ".ci" / "gate")
    if imgbench is None:
        imgbench = tmp_path / "imgbench"
        imgbench.write_text(STAND_IN)
        imgbench.chmod(0o755)
    summary, log = tmp_path / "summary.md", tmp_path / "calls.jsonl"
    baseline = ROOT / "baselines" / "AMD_EPYC-f25m17-2c" / "quick.json"
    proc = subprocess.run(["bash", str(tmp_path / ".ci" / "gate")], capture_output=True, text=True,
                          timeout=300,
                          env={**os.environ, "IMGBENCH": str(imgbench), "GATE_RUN": str(baseline),
                               "GATE_BASELINE": str(baseline), "GITHUB_STEP_SUMMARY": str(summary),
                               "STAND_IN_LOG": str(log), **env})
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, summary.read_text() if summary.exists() else "", calls


@pytest.mark.slow
def test_the_real_gate_reports_the_baseline_comparison_in_the_job_summary(tmp_path):
    proc, summary, _ = gate(tmp_path, imgbench=Path(sys.executable).parent / "imgbench")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary.startswith("## imgbench on ")
    assert "### Quick run against the committed baseline" in summary
    assert ("| case | baseline | candidate | ratio |" in summary
            and "0 regression, 0 improvement" in summary)


def test_without_a_base_ref_only_the_comparison_runs_and_passes(tmp_path):
    proc, summary, calls = gate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c[0] for c in calls] == ["env", "compare"] and "Interleaved A/B" not in summary


def test_a_regression_fails_the_job_and_the_first_regressed_cases_are_explained(tmp_path):
    proc, summary, calls = gate(tmp_path, GATE_BASE_REF="abc123",
                                REGRESSED="test_a[cpu],test_b[cpu]", GATE_EXPLAIN_CASES="1",
                                GATE_EXPLAIN_S="240")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    ab = next(c for c in calls if c[0] == "ab")
    assert (ab[:3] == ["ab", "--base", "abc123"]
            and {"--cases", "gate", "--device", "cpu", "--markdown"} <= set(ab))
    explained = [c for c in calls if c[0] == "explain"]
    assert (len(explained) == 1
            and explained[0][:4] == ["explain", "test_a[cpu]", "--base", "abc123"])
    assert explained[0][explained[0].index("--max-seconds") + 1] == "240"
    assert explained[0][explained[0].index("--out") + 1] == "results/explain/1"
    assert "### What got slower: imgbench explain against abc123 (at most 240 s a case)" in summary
    assert "**imgbench explain** test_a[cpu]: the added operators" in summary
    assert "1 more regressed case(s) not explained (GATE_EXPLAIN_CASES=1)" in summary
    assert ("| test_a[cpu] | regression |" in summary
            and "### Quick run against the committed baseline" in summary)


def test_cases_the_change_says_it_removes_are_passed_to_the_ab(tmp_path):
    base = commit(tmp_path, {"a.txt": "a"}, "base")
    commit(tmp_path, {"a.txt": "b"}, "drop two cases\n\nRemoves-case: test_gone[cpu]\n"
                                     "Removes-case: test_old\n")
    commit(tmp_path, {"a.txt": "c"}, "unrelated")
    proc, _, calls = gate(tmp_path, GATE_BASE_REF=base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ab = next(c for c in calls if c[0] == "ab")
    removed = [ab[i + 1] for i, a in enumerate(ab) if a == "--removed"]
    assert sorted(removed) == ["test_gone[cpu]", "test_old"]


def test_no_regression_passes_without_explaining(tmp_path):
    proc, summary, calls = gate(tmp_path, GATE_BASE_REF="abc123")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ab" in [c[0] for c in calls] and "explain" not in [c[0] for c in calls]


def test_an_ab_that_cannot_run_fails_the_job_naming_why(tmp_path):
    proc, summary, calls = gate(tmp_path, GATE_BASE_REF="no-such-ref", AB_EXIT="2")
    assert proc.returncode == 2
    assert "### Interleaved A/B against no-such-ref (gating)" in summary
    assert "A/B failed to run (exit 2): imgbench: error: stand-in refused" in summary
    assert "explain" not in [c[0] for c in calls]


def test_the_ci_workflow_gates():
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert ("bash .ci/run" in ci and "bash .ci/gate" in ci and "upload-artifact" in ci
            and "fetch-depth: 0" in ci)
    # a force-pushed-away base skips, not fails
    assert 'git cat-file -e "$GATE_BASE_REF^{commit}"' in ci
    # gpu.yml only calls .ci/gpu-job: tests/test_gpu_job.py


@pytest.mark.parametrize("script", ["gate", "gpu-check", "run"])
def test_ci_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / ".ci" / script)]).returncode == 0
