"""docs/own-model.md, followed literally: its marked blocks, in order (a file block writes the file,
a shell block runs in the project's folder with this environment's `imgbench` on PATH and must end
with the exit code its marker names), in a throwaway project outside this repository. Then what
the page promises: the run saved both cases of the project's model, and the A/B of the committed
slowdown named both as regressions, and the run on the project's own dataset read it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgbench.judge import verdict
from tests.helpers import ROOT, skip_when_busy

PAGE = ROOT / "docs" / "own-model.md"
MARKED = re.compile(r"<!-- walk-through: (run(?:, exit (\d+))?|file (\S+)) -->\n```\w*\n(.*?)```",
                    re.S)
CASES = ("test_forward[mine-cpu-bs32]", "test_train_step[mine-cpu-bs32]")


def steps() -> list[tuple[str, str, int | str]]:
    """("run", commands, exit code) and ("file", text, path) in the page's order."""
    out = []
    for m in MARKED.finditer(PAGE.read_text()):
        kind, code, path, body = m.groups()
        out.append(("file", body, path) if path else ("run", body, int(code or 0)))
    return out


def environment(tmp_path: Path) -> dict:
    """This environment's imgbench first on PATH; git's identity; caches and logs in tmp_path;
    nothing of this checkout on PYTHONPATH (imgbench comes from the environment, as installed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = "walk-through", "walk@through.example"
    env["IMGBENCH_CACHE"] = str(tmp_path / "cache")
    return env


def run_block(commands: str, project: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_page_marks_the_whole_walk_through():
    found = steps()
    assert [s[2] for s in found if s[0] == "file"] == [
        "conftest.py", "benches/bench_mine.py", ".gitignore", "conftest.py", "benches/conftest.py",
        "make_data.py"]
    runs = [s[1] for s in found if s[0] == "run"]
    assert runs[0].strip() == "git init -q"
    assert any(r.startswith("imgbench run ") for r in runs)
    assert [s[2] for s in found if s[0] == "run" and s[1].startswith("imgbench ab ")] == [1]
    text = PAGE.read_text()
    assert "```sh\nmkdir my-project && cd my-project\n```" in text  # the folder the test makes
    ci = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "fetch-depth: 0" in ci and "imgbench.register_model" not in ci
    assert 'imgbench ab --base "${{ github.event.pull_request.base.sha }}" --device cpu' in ci
    assert "--cases gate" in ci and "pull_request" in ci


def contended(out: str) -> bool:
    """Whether a case of the A/B got no verdict for contention (its counts line says how many: it
    names the verdict even when no case has it)."""
    return any(int(n) for n in re.findall(rf"(\d+) {verdict.CONTENDED}", out))


@pytest.mark.slow
def test_the_walk_through_runs_and_its_slowdown_is_caught(tmp_path):
    project = tmp_path / "my-project"
    project.mkdir()
    env = environment(tmp_path)
    outputs = []
    for kind, body, extra in steps():
        if kind == "file":
            (project / extra).parent.mkdir(parents=True, exist_ok=True)
            (project / extra).write_text(body)
            continue
        proc = run_block(body, project, env)
        if body.startswith("imgbench ab ") and contended(proc.stdout):
            proc = run_block(body, project, env)  # the gate's own test: measured once more
            if contended(proc.stdout):
                skip_when_busy("the machine was busy: the A/B rightly gave no verdict", gate=True)
        assert proc.returncode == extra, f"{body}\n{proc.stdout}\n{proc.stderr}"
        outputs.append((body, proc.stdout + proc.stderr))
    run_out = next(out for body, out in outputs if body.startswith("imgbench run "))
    assert "FLOPs of mine: counted (" in run_out
    saved = list(project.glob(".benchmarks/*/*/0001_quick.json"))
    assert len(saved) == 1, run_out
    assert sorted(b["name"] for b in json.loads(saved[0].read_text())["benchmarks"]) == list(CASES)
    ab_out = next(out for body, out in outputs if body.startswith("imgbench ab "))
    rows = {line.split()[0]: line for line in ab_out.splitlines() if line.startswith(CASES)}
    assert sorted(rows) == list(CASES)
    # the verdict, then what the job could have caught
    assert all(f" {verdict.REGRESSION} " in line + " " for line in rows.values()), ab_out
    # the run on the project's dataset: its images' size and classes, recorded as its condition
    saved = list(project.glob(".benchmarks/*/*/0002_quick.json"))
    assert len(saved) == 1, outputs[-1][1]
    cases = json.loads(saved[0].read_text())["benchmarks"]
    assert sorted(b["name"] for b in cases) == list(CASES)
    assert {(b["extra_info"]["dataset"], b["extra_info"]["num_classes"],
             b["extra_info"]["image_size"]) for b in cases} == {("shapes", 4, 32)}
