"""The exit codes of every command, and the two kinds of error the command line turns into one line.

A UserError is the user's mistake (a bad option, a missing dataset, an unreadable run file): exit 2.
A CouldNotRun is the tool's own failure to run (a worker process that crashed): exit 4, its message
naming the log that was kept. Anything else is a bug and keeps its traceback. A UserError is a
ValueError too, so that library callers may catch them as the bad values they are.
"""

OK, REGRESSION, BAD_INPUT, UNDECIDED, FAILED = 0, 1, 2, 3, 4
INTERRUPTED = 130  # Ctrl-C or SIGTERM, as shells report SIGINT

# One scheme for every command, (code, what it says, when): `imgbench --help` prints the first two,
# the command reference (docs/commands.md) all three.
EXIT_CODES = (
    (OK, "nothing to report",
     "no regression (compare, ab), no slowdown from GOOD to BAD (bisect), every check passed "
     "(doctor), every case ran (run, baseline); the information commands (changes, accept, "
     "gate-check, explain, report, plot, env, list) end here when they ran"),
    (REGRESSION, "a regression found",
     "a case slower (compare, ab) or its peak memory grown (compare), a case the base runs and the "
     "candidate does not (ab), the first slow commit (bisect)"),
    (BAD_INPUT, "bad input",
     "an unknown option or value, a missing or unreadable file or folder, nothing that matches: "
     "one line naming the command, the value and what would be valid"),
    (UNDECIDED, "undecided",
     "bisect could not tell within its budget (too noisy, or only skipped commits left beside the "
     "first slow one)"),
    (FAILED, "the tool could not run",
     "a bench case failed or the benches did not import (run, baseline), a check failed (doctor), "
     "a worker process crashed (ab, gate-check, explain: the message names the command and the "
     "log it kept)"),
    (INTERRUPTED, "interrupted", "Ctrl-C or SIGTERM: nothing saved"),
)

class UserError(ValueError):
    """Bad input; the message names the bad value and what would be valid."""


class CouldNotRun(RuntimeError):
    """The tool could not run (not the user's input): a worker process crashed. The message says
    where its log was kept."""
