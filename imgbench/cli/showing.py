"""Showing stored runs: `plot` (the figures) and `report` (markdown and one self-contained HTML
file, with the figures). No torch."""

from __future__ import annotations

import sys
from pathlib import Path

from imgbench.cli import parser
from imgbench.core import config
from imgbench.runs import acceptances, history


def add(sub):
    for name, what, run in (
            ("plot",
             "figures from stored runs: each case's history per machine class and test, speedup "
             "trend, throughput, latest vs the run before, epoch",
             plot),
            ("report",
             "markdown and self-contained HTML report of stored runs, with the figures", report)):
        out = "imgbench-report" if name == "report" else "figures"
        p = sub.add_parser(name, help=what,
                           description=f"{what[0].upper()}{what[1:]}. Reads pytest-benchmark "
                                       "JSON from storage folders (any number of machine classes) "
                                       "and files; unreadable files are skipped with a line each.")
        p.add_argument("paths", nargs="*", default=[".benchmarks"], metavar="PATH",
                       help="storage folders and run files (default: .benchmarks)")
        p.add_argument("--out", default=out, help=f"output folder (default: {out})")
        p.add_argument("--svg", action="store_true", help="SVG files beside the PNGs")
        parser.min_effect(p, config.MIN_EFFECT,
                          "smallest change called a regression or improvement")
        p.set_defaults(run=run)


def rendered(args):
    from imgbench.show import report as reports

    # light records (the cache); render reads rounds again only for the few runs it judges or draws
    runs, skipped = history.load(args.paths, rounds=False), []
    out = reports.render(runs, Path(args.out), args.svg, args.min_effect / 100,
                         acceptances.read(args.paths, skipped))
    # the cache's notes are about this machine: not in the report
    for note in runs.notes + skipped + out.notes:
        print(f"imgbench {args.command}: {note}", file=sys.stderr)
    return out


def plot(args) -> int:
    for path in rendered(args).figures:
        print(path)
    return 0


def report(args) -> int:
    from imgbench.show import report as reports

    md, md_path, html_path = reports.write(rendered(args), Path(args.out))
    print(md)
    print(f"imgbench report: wrote {md_path} and {html_path}", file=sys.stderr)
    return 0
