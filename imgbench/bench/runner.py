"""Runs the benches in this process (pytest.main) with every round's time written to a JSON file,
warns first when other processes are using the CPUs, and tells a Ctrl-C apart from a collection
error (pytest ends both with its exit code 2)."""

from __future__ import annotations

import sys
from pathlib import Path

from imgbench.hw import contention

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


BUSY_SAMPLE_S = 1.0  # how long the machine is watched before the run


def warn_if_busy() -> str | None:
    """One line on stderr when other processes are using the CPUs now: the run goes on, and its
    cases measured under contention are flagged (contention.flag) and get no verdict. Returns why,
    or None."""
    why = contention.busy(BUSY_SAMPLE_S)
    if why is not None:
        print(f"imgbench: warning: {why}; numbers measured now are flagged and get no verdict",
              file=sys.stderr, flush=True)
    return why


class _Interrupted:
    ctrl_c = False

    # also called for collection errors and pytest.exit()
    def pytest_keyboard_interrupt(self, excinfo):
        self.ctrl_c = excinfo.type is KeyboardInterrupt


def run(pytest_args: list[str], json_path: Path) -> tuple[int, bool]:
    """(exit code, whether the session ran to its end). The code is pytest's, except: Ctrl-C is
    EXIT_INTERRUPTED, and any other interruption (a collection error, pytest.exit) 1, so that
    pytest's 2 never reads as the command line's "bad input". An interrupted session's JSON is never
    to be kept."""
    import pytest

    warn_if_busy()
    seen = _Interrupted()
    code = int(pytest.main([*pytest_args, f"--benchmark-json={json_path}"], plugins=[seen]))
    if code == pytest.ExitCode.INTERRUPTED:
        return (EXIT_INTERRUPTED if seen.ctrl_c else 1), False
    return code, True
