"""Git, in one place: every ref resolved to a commit before use (options ended before the ref, so a
ref that looks like an option is a bad ref, never an option), the commits of a range along first
parents, and checkouts aside (worktrees) that are removed whatever ends the block that made them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgbench.core.errors import UserError

SUBJECT = 50  # characters of a commit's subject shown


class GitError(UserError):
    pass


def run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def toplevel(here: Path) -> Path:
    proc = run(here, "rev-parse", "--show-toplevel")
    if proc.returncode:
        raise GitError(f"{here} is not in a git repository: this command checks out commits of the "
                       "benches' repository")
    return Path(proc.stdout.strip()).resolve()


def resolve(repo: Path, ref: str, role: str) -> str:
    """The commit `ref` names in `repo`, as a full hash; `role` names the ref in the error
    ("--base")."""
    proc = run(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if proc.returncode:
        raise GitError(f"{role} {ref!r} is not a commit of {repo} (give a commit, branch or tag)")
    return proc.stdout.strip()


@dataclass(frozen=True)
class Commit:
    sha: str
    short: str
    parent: str   # the first parent
    date: str     # author date
    subject: str

    def __str__(self) -> str:
        subject = (self.subject if len(self.subject) <= SUBJECT
                   else self.subject[:SUBJECT - 3] + "...")
        return f'{self.short} "{subject}"'


def log(repo: Path, *revs: str) -> list[Commit]:
    proc = run(repo, "log", "--format=%H%x1f%h%x1f%P%x1f%ad%x1f%s", "--date=iso", *revs)
    if proc.returncode:
        raise GitError(f"git log {' '.join(revs)} failed in {repo}: {proc.stderr.strip()}")
    out = []
    for line in proc.stdout.splitlines():
        sha, short, parents, date, subject = line.split("\x1f", 4)
        out.append(Commit(sha, short, (parents.split() or [""])[0], date, subject))
    return out


def first_parent_line(repo: Path, good: str, bad: str) -> list[Commit]:
    """GOOD, then the commits after it up to BAD along BAD's first parents."""
    g, b = resolve(repo, good, "GOOD"), resolve(repo, bad, "BAD")
    if g == b:
        raise GitError(f"GOOD {good!r} and BAD {bad!r} are the same commit ({g[:7]}): "
                       "nothing to bisect")
    if run(repo, "merge-base", "--is-ancestor", g, b).returncode:
        raise GitError(f"GOOD {good!r} ({g[:7]}) is not an ancestor of BAD {bad!r} ({b[:7]}): "
                       "give a GOOD from the history that leads to BAD")
    after = log(repo, "--first-parent", "--reverse", f"{g}..{b}")
    if after[0].parent != g:
        raise GitError(f"GOOD {good!r} ({g[:7]}) came into BAD {bad!r} ({b[:7]}) through a merge, "
                       "off its first-parent line: give a GOOD from "
                       f"`git log --first-parent {bad}`")
    return log(repo, "-1", g) + after


def short_head(tree: Path) -> str:
    """The checked-out commit's short hash, or a line saying there is none."""
    proc = run(tree, "rev-parse", "--short", "HEAD")
    return proc.stdout.strip() if proc.returncode == 0 else "not a git checkout"


def add_worktree(repo: Path, sha: str, into: Path) -> Path:
    """A detached checkout of the resolved commit `sha` at `into` (the current checkout's files
    untouched)."""
    proc = run(repo, "worktree", "add", "--detach", str(into), sha)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed"
        raise GitError(f"cannot check out {sha[:12]} into {into}: {why}")
    return into


def remove_worktree(repo: Path, path: Path):
    run(repo, "worktree", "remove", "--force", str(path))


@contextmanager
def checkout(repo: Path, ref: str, into: Path, role: str) -> Iterator[Path]:
    """`ref` (resolved first: `role` names it in the error) checked out at `into` for the block's
    length."""
    sha = resolve(repo, ref, role)
    try:  # from before git starts: an interrupted checkout is removed too
        yield add_worktree(repo, sha, into)
    finally:
        remove_worktree(repo, into)


class Checkouts:
    """Commits checked out aside in one folder; `close` removes every one still there."""

    def __init__(self, repo: Path, folder: Path):
        self.repo, self.folder, self.made = repo, folder, []

    def add(self, commit: Commit) -> Path:
        path = self.folder / f"tree-{commit.short}"
        self.made.append(path)  # before git starts: an interrupted checkout is removed too
        return add_worktree(self.repo, commit.sha, path)

    def remove(self, path: Path):
        remove_worktree(self.repo, path)
        self.made.remove(path)

    def close(self):
        for path in list(self.made):
            self.remove(path)
