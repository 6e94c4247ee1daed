"""`imgbench` command line. Thin: each command group's module (machine, running, judging, showing,
gating, forensics) adds its parsers and its functions call the library; this builds the parser from
them and sets the exit code.

Exit codes: 0 success; 1 benchmarks failed or a case regressed; 2 bad input; 3 from compare: a
memory regression without a time regression; 130 interrupted (Ctrl-C or SIGTERM; nothing saved);
other values of run and baseline are pytest's own (3 internal error, 4 usage error, 5 no benchmark
selected).
bisect: 0 the first slow commit found, 1 no slowdown from GOOD to BAD, 3 undecided (too noisy within
its budget, or skipped commits left beside the culprit).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import imgbench
from imgbench.bench.runner import EXIT_INTERRUPTED
from imgbench.cli import forensics, gating, judging, machine, running, showing
from imgbench.cli.common import EXIT_BAD_INPUT
from imgbench.cli.parser import Parser
from imgbench.core.errors import UserError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "main"]


def build() -> argparse.ArgumentParser:
    """Every command, its group's module in workflow order: this machine, running, judging, showing,
    gating a change, then when the gate fires."""
    p = Parser(prog="imgbench", description=imgbench.__doc__,
               epilog="Run 'imgbench COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in (machine, running, judging, showing, gating, forensics):
        group.add(sub)
    return p


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, `timeout`) ends a command as Ctrl-C does, through every
    `finally`: its workers run in sessions of their own, and its checkouts would otherwise outlive
    it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    args = build().parse_args(argv)
    try:
        with sigterm_interrupts():
            return args.run(args)
    except UserError as e:  # only the user's mistakes: a bug keeps its traceback
        print(f"imgbench: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a path we were told to read or write: an unwritable --out, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"imgbench: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("imgbench: interrupted; nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
