"""Git in one place (imgbench.forensics.git): refs resolved to commits before use, so that a ref
that looks like an option is a bad ref and never reaches git as an option; checkouts aside removed
whatever ends their block."""

import pytest

from imgbench import cli
from imgbench.forensics import git
from tests.helpers import ON_THE_PLUGIN, commit, run_git


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, {**ON_THE_PLUGIN, "benches/bench_x.py": "def test_x():\n    pass\n"}, "first")
    return repo


def worktrees(repo) -> list[str]:
    return run_git(repo, "worktree", "list").strip().splitlines()


@pytest.mark.parametrize("ref", ["--lock", "-b", "HEAD~5", "no-such-ref"])
def test_a_ref_that_is_no_commit_is_refused_naming_it(repo, ref):
    with pytest.raises(git.GitError,
                       match=rf"^--base '{ref}' is not a commit of .*repo \(give a commit"):
        git.resolve(repo, ref, "--base")


def test_a_ref_is_resolved_to_its_full_hash(repo):
    head = run_git(repo, "rev-parse", "HEAD").strip()
    assert git.resolve(repo, "HEAD", "--base") == head and len(head) == 40


def test_ab_with_an_option_for_a_base_is_one_line_and_leaves_no_checkout(repo, monkeypatch, capsys):
    """`ab --base=--lock` once reached `git worktree add` as an option: HEAD checked out, the
    worktree locked and left behind."""
    monkeypatch.setattr("imgbench.bench.runner.warn_if_busy", lambda: None)
    code = cli.main(["ab", "--base=--lock", "--benches", str(repo / "benches"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_BAD_INPUT
    assert err[-1].startswith("imgbench ab: error: --base '--lock' is not a commit of ")
    assert len(worktrees(repo)) == 1  # no checkout made, none left locked


def test_a_checkout_is_removed_when_its_block_ends_or_raises(repo, tmp_path):
    with git.checkout(repo, "HEAD", tmp_path / "aside", "--base") as tree:
        assert (tree / "benches" / "bench_x.py").is_file() and len(worktrees(repo)) == 2
    assert not (tmp_path / "aside").exists() and len(worktrees(repo)) == 1
    with pytest.raises(KeyboardInterrupt), git.checkout(repo, "HEAD", tmp_path / "aside", "--base"):
        raise KeyboardInterrupt
    assert not (tmp_path / "aside").exists() and len(worktrees(repo)) == 1
