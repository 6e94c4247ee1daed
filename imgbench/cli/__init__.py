"""`imgbench` command line. Thin: `parser` parses, `commands` call the library, this sets the exit code.

Exit codes: 0 success; 1 benchmarks failed or a case regressed; 2 bad input; 3 from compare: a
memory regression without a time regression; 130 interrupted (Ctrl-C or SIGTERM; nothing saved); other values
of run and baseline are pytest's own (3 internal error, 4 usage error, 5 no benchmark selected).
bisect: 0 the first slow commit found, 1 no slowdown from GOOD to BAD, 3 undecided (too noisy within
its budget, or skipped commits left beside the culprit).
"""

from __future__ import annotations

import sys

from imgbench.cli import commands
from imgbench.cli.parser import EXIT_BAD_INPUT, build
from imgbench.core.errors import UserError
from imgbench.bench.runner import EXIT_INTERRUPTED, sigterm_interrupts

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build().parse_args(argv)
    try:
        with sigterm_interrupts():
            return commands.COMMANDS[args.command](args)
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
