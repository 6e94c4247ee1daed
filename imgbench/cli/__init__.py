"""`imgbench` command line. Thin: each command group's module (machine, running, judging, showing,
gating, forensics) adds its parsers and its functions call the library; this builds the parser from
them and sets the exit code.

Exit codes: one scheme for every command, defined once in imgbench.core.errors (EXIT_CODES) and
printed by the command reference (docs/commands.md): 0 nothing to report, 1 a regression found,
2 bad input, 3 undecided, 4 the tool could not run, 130 interrupted.
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
from imgbench.cli import forensics, gating, judging, machine, overview, running, showing
from imgbench.cli.common import EXIT_BAD_INPUT
from imgbench.cli.parser import Parser
from imgbench.core.errors import FAILED, OK, REGRESSION, UNDECIDED, CouldNotRun, UserError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "FAILED", "OK", "REGRESSION", "UNDECIDED", "main"]


def build() -> argparse.ArgumentParser:
    """Every command, listed in --help by its group in workflow order (cli/overview.py): set up,
    measure, judge, investigate, show."""
    p = Parser(prog="imgbench", usage="%(prog)s [-h] COMMAND ...",
               description=imgbench.__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    # argparse's own list of the commands is suppressed: the epilog lists them in their groups
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser,
                           prog="imgbench", help=argparse.SUPPRESS)
    for group in (machine, running, judging, showing, gating, forensics):
        group.add(sub)
    p.epilog = (overview.listing(overview.commands(sub))
                + "\n\nRun 'imgbench COMMAND --help' for a command's options.")
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
    said = f"imgbench {args.command}"  # as argparse names it in a usage error
    try:
        with sigterm_interrupts():
            return args.run(args)
    except UserError as e:  # only the user's mistakes: a bug keeps its traceback
        print(f"{said}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CouldNotRun as e:  # a worker that crashed: its log was kept, and the message names it
        print(f"{said}: error: {e}", file=sys.stderr)
        return FAILED
    except OSError as e:  # a path we were told to read or write: an unwritable --out, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"{said}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{said}: interrupted; nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
