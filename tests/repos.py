"""Throwaway git repositories of bench projects, for the end-to-end tests of ab, bisect and explain, and the
processes such a run may leave behind."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ON_THE_PLUGIN = {  # a bench project on the installed imgbench
    "conftest.py": 'pytest_plugins = ["imgbench.plugin"]\n',
    "pytest.ini": "[pytest]\npython_files = bench_*.py\n",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                          capture_output=True, text=True).stdout


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    """Write `files` (relative path -> text) into `repo`, a repository from its first commit, and commit
    everything there; returns the commit's hash."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def stray_processes(text: str) -> list[int]:
    """Processes whose command line holds `text` (a run's folder, a worker plugin's name): workers left running."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@contextmanager
def running(cmd: list[str], **popen) -> Iterator[subprocess.Popen]:
    """A command started with its output piped, killed at the end if it is still running."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_with(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Send `sig` to a running command; its exit code and standard error once it ends."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err
