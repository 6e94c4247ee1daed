"""The self-hosted GPU job (.ci/gpu-job) run end to end on the CPU: the "accelerator" is the CPU
(GPU_JOB_DEVICE=cpu; IMGBENCH_FAKE_ACCELERATOR fakes only `--device auto`, an explicit device is
checked against the real GPUs), a case fails through a small pytest plugin loaded with -p, and every
run holds a case or two of the quick profile. Also `imgbench baseline --allow-failed`."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT

IMGBENCH = Path(sys.executable).parent / "imgbench"
CPU_K = "test_forward and mlp and bs32"
ACCEL_K = "test_train_step and not copy and (mlp or tinyvgg) and bs32"
FAIL_PLUGIN = textwrap.dedent("""\
    import os
    import pytest

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(item):
        if os.environ.get("FAIL_CASE") and os.environ["FAIL_CASE"] in item.nodeid:
            raise AssertionError("failed on purpose")
""")
FAST = "-p failcase --benchmark-max-time=0.01 -p no:cacheprovider"


def environ(tmp_path, **env) -> dict:
    (tmp_path / "plug").mkdir(exist_ok=True)
    (tmp_path / "plug" / "failcase.py").write_text(FAIL_PLUGIN)
    return {**os.environ, "PYTHONPATH": str(tmp_path / "plug"), "IMGBENCH": str(IMGBENCH),
            "IMGBENCH_CACHE": str(tmp_path / "cache"), "RUNNER_TEMP": str(tmp_path / "runner"),
            "IMGBENCH_HISTORY": str(tmp_path / "state" / "history"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GPU_JOB_RESULTS": str(tmp_path / "results"),
            "GPU_JOB_BASELINES": str(tmp_path / "baselines"), "GPU_JOB_DEVICE": "cpu",
            "GPU_JOB_PROFILE": "quick", "GPU_JOB_CPU_K": CPU_K, "GPU_JOB_GPU_K": ACCEL_K,
            "GPU_JOB_PYTEST_ARGS": FAST, "GPU_JOB_REPORT": "0", "GPU_JOB_MAIN": "false", **env}


def job(tmp_path, **env) -> tuple[subprocess.CompletedProcess, str]:
    """.ci/gpu-job's process and the job summary it wrote."""
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-job")], capture_output=True, text=True,
                          timeout=300, env=environ(tmp_path, **env))
    summary = tmp_path / "summary.md"
    return proc, summary.read_text() if summary.exists() else ""


def history_runs(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "state" / "history").rglob("*.json"))


def test_scripts_parse_and_the_workflow_only_calls_the_job():
    assert subprocess.run(["bash", "-n", str(ROOT / ".ci" / "gpu-job")]).returncode == 0
    gpu = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    assert "runs-on: [self-hosted, gpu]" in gpu and "run: bash .ci/gpu-job" in gpu
    assert ("GPU_JOB_MAIN: ${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}"
            in gpu)
    assert "inputs.accept" in gpu and "upload-artifact" in gpu and "path: results/" in gpu
    assert "imgbench run" not in gpu and "/var/lib" not in gpu
    script = (ROOT / ".ci" / "gpu-job").read_text()
    # judged, then saved: the accelerator run goes to a throwaway folder and enters the history
    # through compare; the CPU run (not gated) is saved into main's history as it is
    assert 'save=(--save-to "$history")' in script
    assert 'cpu_storage=$storage; [ "$is_main" = true ] && cpu_storage=$history' in script
    assert script.index("run cpu cpu") < script.index('run accelerator "$dev"')


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_a_history_folder_that_cannot_be_made_stops_the_job_at_once_in_one_sentence(tmp_path,
                                                                                     where):
    (tmp_path / "state").write_text("not a folder")
    history = tmp_path / "state" / "history" if where == "under a file" else tmp_path / "state"
    proc, summary = job(tmp_path, IMGBENCH_HISTORY=str(history))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"gpu-job: the history folder {history} cannot be created or written: set "
        "IMGBENCH_HISTORY to a folder this runner's user can write (default "
        "$HOME/.local/share/imgbench/history)."]
    assert summary == "" and not (tmp_path / "results").exists()  # nothing ran


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_history_folder_stops_the_job(tmp_path):
    history = tmp_path / "history"
    history.mkdir(mode=0o500)
    proc, _ = job(tmp_path, IMGBENCH_HISTORY=str(history))
    assert proc.returncode == 2 and "set IMGBENCH_HISTORY" in proc.stderr


@pytest.mark.slow
def test_first_day_then_a_failed_case_named_while_the_others_are_judged_and_saved(tmp_path):
    # the first run: no history folder yet (created), no baseline (said, not a failure)
    proc, summary = job(tmp_path, GPU_JOB_MAIN="true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| CPU subset | cpu | 0 | none |" in summary
    assert "| quick profile | cpu | 0 | none |" in summary
    assert "Gate: not judged: no GPU baseline for " in summary
    assert "until then nothing is saved into the history" in summary
    assert summary.rstrip().endswith("**gpu-job: exit 0**")
    assert history_runs(tmp_path) == ["0001_quick.json"]  # main's CPU run only

    # the baseline, recorded although tinyvgg fails: it is left out and named
    def baseline(*allow):
        return subprocess.run([str(IMGBENCH), "baseline", "--profile", "quick", "--device", "cpu",
                               "--folder", str(tmp_path / "baselines"), *allow, "--",
                               "-k", ACCEL_K, *FAST.split()], capture_output=True, text=True,
                              timeout=300, env=environ(tmp_path, FAIL_CASE="tinyvgg"))

    refused = baseline("--allow-failed", "resnet")
    assert refused.returncode == 4  # a case failed: the suite could not run
    assert ("failed, and not named by --allow-failed: test_train_step[tinyvgg-cpu-bs32]"
            in refused.stderr) and "baseline unchanged" in refused.stderr
    assert not list((tmp_path / "baselines").rglob("*.json"))
    made = baseline("--allow-failed", "tinyvgg")
    assert made.returncode == 0, made.stdout + made.stderr
    assert ("1 failed case(s) left out (--allow-failed): test_train_step[tinyvgg-cpu-bs32]"
            in made.stdout)
    (path,) = (tmp_path / "baselines").rglob("quick.json")
    assert [b["name"] for b in json.loads(path.read_text())["benchmarks"]] == [
        "test_train_step[mlp-cpu-bs32]"]

    # tinyvgg fails on the accelerator: named, mlp still judged, main's run saved after judging
    (tmp_path / "summary.md").unlink()
    proc, summary = job(tmp_path, GPU_JOB_MAIN="true", FAIL_CASE="tinyvgg")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| quick profile | cpu | 4 | test_train_step[tinyvgg-cpu-bs32] |" in summary
    assert "| CPU subset | cpu | 0 | none |" in summary
    assert "| test_train_step[mlp-cpu-bs32] |" in summary  # compare's row
    assert any(line.startswith("Gate: ") and "not judged" not in line
               for line in summary.splitlines())
    assert summary.rstrip().endswith("the accelerator run (cpu) exited 4.")
    assert history_runs(tmp_path) == ["0001_quick.json", "0002_quick.json", "0003_quick.json"]


@pytest.mark.slow
def test_a_device_run_that_fails_whole_leaves_the_other_run_and_a_verdict(tmp_path):
    # the CPU run selects nothing (pytest exit 5, imgbench's 2): the accelerator run still runs
    proc, summary = job(tmp_path, GPU_JOB_CPU_K="no_such_case")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| CPU subset | cpu | 2 | none |" in summary
    assert "| quick profile | cpu | 0 | none |" in summary
    assert "Gate: not judged: no GPU baseline" in summary
    assert summary.rstrip().endswith("**gpu-job: exit 1**: the CPU run exited 2.")
    assert (tmp_path / "results" / "accelerator.json").is_file()

    # no GPU here: the accelerator run refuses at once, the gate says it judged nothing
    (tmp_path / "summary.md").unlink()
    proc, summary = job(tmp_path, GPU_JOB_DEVICE="cuda")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| CPU subset | cpu | 0 | none |" in summary
    assert "| full profile" not in summary and "| quick profile | cuda | 2 |" in summary
    assert "Gate: not judged: the cuda run wrote no results (exit 2" in summary
    assert not (tmp_path / "results" / "accelerator.json").exists()  # an earlier job's is removed
    assert summary.rstrip().endswith("the accelerator run (cuda) exited 2; the gate exited 1.")


@pytest.mark.slow
def test_accept_runs_nothing_else_and_says_what_it_did(tmp_path):
    proc, summary = job(tmp_path, GPU_JOB_ACCEPT="*", GPU_JOB_CPU_K="unused")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # accept: nothing matched
    assert "nothing to accept in " in summary and "no case judged a regression" in summary
    assert "| CPU subset" not in summary and not (tmp_path / "results" / "cpu.json").exists()


@pytest.mark.slow
def test_a_pull_request_is_gated_by_the_ab_against_its_base_and_touches_nothing_shared(tmp_path):
    """GPU_JOB_BASE_SHA set: the interleaved A/B of the gate set against that commit (one case, one
    round here), with the between-process terms of the base's own file; no run, no history (not
    even created), no shared index cache, no save although GPU_JOB_MAIN says main."""
    proc, summary = job(tmp_path, GPU_JOB_BASE_SHA="HEAD", GPU_JOB_MAIN="true",
                        GPU_JOB_GPU_K="test_forward", GPU_JOB_AB_ARGS="--rounds 1 --budget 2")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "## GPU job: interleaved A/B against the base HEAD (gating)" in summary
    assert "| test_forward[kerascnn-cpu-bs32] |" in summary  # the A/B's row
    verdict = {0: "Gate: no regression (exit 0).",
               1: "Gate: regression, or a case the base runs that this change does not (exit 1)."}
    assert verdict[proc.returncode] in summary
    assert summary.rstrip().endswith(f"**gpu-job: exit {proc.returncode}**")
    assert "| CPU subset" not in summary and not (tmp_path / "results" / "cpu.json").exists()
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()
    terms = tmp_path / "runner" / "imgbench-runs" / "base-gate-check.jsonl"
    assert terms.read_bytes() == subprocess.run(
        ["git", "show", "HEAD:docs/measured/gate-check.jsonl"], cwd=ROOT, capture_output=True,
        check=True).stdout


def test_a_pull_requests_ab_past_its_limit_is_cut_and_fails_the_job(tmp_path):
    proc, summary = job(tmp_path, GPU_JOB_BASE_SHA="HEAD", GPU_JOB_AB_LIMIT="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Gate: not judged: the A/B ran past GPU_JOB_AB_LIMIT=1 s and was cut." in summary
    assert summary.rstrip().endswith("**gpu-job: exit 1**")


def test_the_workflows_read_only_pin_their_actions_and_gate_pull_requests_behind_approval():
    import re

    for name in ("ci.yml", "gpu.yml"):
        text = (ROOT / ".github" / "workflows" / name).read_text()
        assert "\npermissions:\n  contents: read\n" in text, name
        uses = re.findall(r"uses: (\S+)", text)
        assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    gpu = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    assert ("environment: ${{ github.event_name == 'pull_request' && 'gpu-pull-request' || "
            "'gpu-main' }}") in gpu
    assert "GPU_JOB_BASE_SHA: ${{ github.event_name == 'pull_request' && " in gpu
