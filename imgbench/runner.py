"""Runs the benches in this process (pytest.main) with every round's time written to a JSON file,
and tells a Ctrl-C apart from a collection error (pytest ends both with its exit code 2)."""

from __future__ import annotations

from pathlib import Path

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class _CtrlC:
    seen = False

    def pytest_keyboard_interrupt(self, excinfo):  # also called for collection errors, as Interrupted
        self.seen = excinfo.type is KeyboardInterrupt


def run(pytest_args: list[str], json_path: Path) -> int:
    """pytest's exit code, except: Ctrl-C is EXIT_INTERRUPTED, and a collection error 1 (a failed run),
    so that pytest's 2 never reads as the command line's "bad input"."""
    import pytest

    ctrl_c = _CtrlC()
    code = int(pytest.main([*pytest_args, f"--benchmark-json={json_path}"], plugins=[ctrl_c]))
    if code == pytest.ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED if ctrl_c.seen else 1
    return code
