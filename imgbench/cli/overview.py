"""The commands in workflow order: the groups `imgbench --help` lists (argparse has no groups of
subcommands: its own list is suppressed) and the command reference follows."""

from __future__ import annotations

import argparse
import shutil
import textwrap

from imgbench.core.errors import EXIT_CODES

GROUPS = (
    ("set up", ("env", "doctor", "list")),
    ("measure", ("run", "baseline")),
    ("judge", ("compare", "ab", "changes", "accept")),
    ("investigate", ("bisect", "explain", "gate-check")),
    ("show", ("report",)),  # `plot` is `report --figures-only`
)


def commands(sub: argparse._SubParsersAction) -> dict[str, str]:
    """Each command's one-line help, by name (aliases are not commands of their own)."""
    return {a.dest: a.help for a in sub._choices_actions}


def width() -> int:
    return max(60, min(100, shutil.get_terminal_size().columns - 2))


def listing(helps: dict[str, str], columns: int | None = None) -> str:
    """The groups and their commands with one line of help each, then the exit codes."""
    columns = columns or width()
    pad = 4 + max(map(len, helps)) + 2
    wrap = textwrap.TextWrapper(columns, initial_indent=" " * pad, subsequent_indent=" " * pad)
    out = ["commands, in workflow order:"]
    for group, names in GROUPS:
        out.append(f"  {group}:")
        for name in names:
            text = helps[name].replace("%%", "%")  # argparse's escape, for its own formatting
            out.append(f"    {name:<{pad - 4}}" + wrap.fill(text)[pad:])
    codes = ", ".join(f"{code} {what}" for code, what, _ in EXIT_CODES)
    out += ["", *textwrap.wrap(f"exit codes, the same for every command: {codes} (see "
                               "docs/commands.md).", columns)]
    return "\n".join(out)
