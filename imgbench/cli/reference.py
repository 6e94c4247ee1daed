"""The command reference, docs/commands.md, generated from the parser: the exit codes, then every
command in its group (cli/overview.py) with its usage, description and options with their defaults.

    python -m imgbench.cli.reference            write docs/commands.md (or the PATH given)
    python -m imgbench.cli.reference --check    exit 1 when the file differs from the parser

A test runs the check, so the reference is current with every commit. No torch here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgbench.cli import build, overview
from imgbench.core import atomic
from imgbench.core.errors import EXIT_CODES

DEFAULT = Path(__file__).resolve().parents[2] / "docs" / "commands.md"
REGENERATE = "python -m imgbench.cli.reference"
WIDTH = 100  # usage lines wrapped here, whatever the terminal


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("%%", "%")


def option_name(a: argparse.Action) -> str:
    if not a.option_strings:
        return f"`{a.metavar or a.dest}`"
    meta = "" if a.nargs == 0 else " " + (" ".join(a.metavar) if isinstance(a.metavar, tuple)
                                          else a.metavar or a.dest.upper())
    return ", ".join(f"`{s}{meta}`" for s in a.option_strings)


def default_of(a: argparse.Action) -> str:
    if a.default in (None, False, [], argparse.SUPPRESS) or not a.option_strings:
        return ""
    given = a.default if isinstance(a.default, list) else [a.default]
    return "`" + " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in given) + "`"


def command(name: str, p: argparse.ArgumentParser, helps: dict[str, str],
            aliases: list[str]) -> list[str]:
    p.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    what = cell(helps[name])
    out = [f"### imgbench {name}", "", f"{what[0].upper()}{what[1:]}.", ""]
    if aliases:
        out += [f"Also spelled: {', '.join(f'`imgbench {a}`' for a in aliases)}.", ""]
    out += ["```", p.format_usage().strip(), "```", ""]
    if p.description:
        out += [" ".join(p.description.split()), ""]
    rows = [a for a in p._actions if a.help != argparse.SUPPRESS and "-h" not in a.option_strings]
    if rows:
        out += ["| argument | default | what |", "|---|---|---|"]
        out += [f"| {option_name(a)} | {default_of(a)} | {cell(a.help or '')} |" for a in rows]
        out.append("")
    return out


def render() -> str:
    """docs/commands.md's text, from the parser as it is now."""
    top = build()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    helps = overview.commands(sub)
    aliases: dict[str, list[str]] = {}
    for alias, p in sub.choices.items():
        main = p.prog.removeprefix("imgbench ")
        if alias != main:
            aliases.setdefault(main, []).append(alias)
    out = ["# Command reference", "",
           f"Generated from the parser by `{REGENERATE}`: do not edit it by hand (a test checks "
           "that it matches the parser). `imgbench --help` lists the commands; `imgbench COMMAND "
           "--help` says the same as each section here.", "",
           "## Exit codes", "",
           "One scheme for every command (`imgbench.core.errors.EXIT_CODES`):", "",
           "| code | meaning | when |", "|---|---|---|"]
    out += [f"| {code} | {what} | {cell(when)} |" for code, what, when in EXIT_CODES]
    out += ["", "## Commands, in workflow order", ""]
    out += [f"- {group}: " + ", ".join(f"[`{n}`](#imgbench-{n})" for n in names)
            for group, names in overview.GROUPS]
    for group, names in overview.GROUPS:
        out += ["", f"## {group[0].upper()}{group[1:]}", ""]
        for name in names:
            out += command(name, sub.choices[name], helps, aliases.get(name, []))
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog=REGENERATE,
                                description="Write or check the command reference.")
    a.add_argument("path", nargs="?", default=str(DEFAULT), help=f"default: {DEFAULT}")
    a.add_argument("--check", action="store_true",
                   help="exit 1 when the file is not what the parser generates")
    args = a.parse_args(argv)
    text, path = render(), Path(args.path)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path} does not match the parser: regenerate it with `{REGENERATE}`",
                  file=sys.stderr)
            return 1
        return 0
    with atomic.written(path) as tmp:
        tmp.write_text(text)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
