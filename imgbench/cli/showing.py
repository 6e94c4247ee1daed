"""Showing stored runs: `report` (markdown and one self-contained HTML file, with the figures) and
its figures alone, `report --figures-only`, also spelled `plot` (once a command of its own, whose
output was always a subset of the report's). No torch."""

from __future__ import annotations

import sys
from pathlib import Path

from imgbench.cli import parser
from imgbench.core import config
from imgbench.runs import acceptances, history

OUT = {"report": "imgbench-report", "plot": "figures"}  # --out's default, by the name used


def add(sub):
    p = sub.add_parser(
        "report", aliases=["plot"],
        help="markdown and self-contained HTML report of stored runs, with the figures (`plot`: "
             "the figures only)",
        description="Markdown and self-contained HTML report of stored runs, with the figures: "
                    "each case's history per machine class and test, speedup trend, throughput, "
                    "latest vs the run before, epoch. Reads pytest-benchmark JSON from storage "
                    "folders (any number of machine classes) and files; unreadable files are "
                    "skipped with a line each. `imgbench plot` is `imgbench report "
                    "--figures-only` with --out figures.")
    parser.stored_paths(p)
    p.add_argument("--out", help="output folder (default: imgbench-report; plot: figures)")
    p.add_argument("--figures-only", action="store_true",
                   help="draw the figures and print their paths; no markdown or HTML (as `plot`)")
    p.add_argument("--svg", action="store_true", help="SVG files beside the PNGs")
    parser.min_effect(p, config.MIN_EFFECT, "smallest change called a regression or improvement")
    p.set_defaults(run=report)


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


def report(args) -> int:
    from imgbench.show import report as reports

    args.out = args.out or OUT[args.command]
    if args.command == "plot" or args.figures_only:
        for path in rendered(args).figures:
            print(path)
        if args.command == "plot":  # after the work: an error stays one line
            print("imgbench plot: the same as `imgbench report --figures-only`", file=sys.stderr)
        return 0
    md, md_path, html_path = reports.write(rendered(args), Path(args.out))
    print(md)
    print(f"imgbench report: wrote {md_path} and {html_path}", file=sys.stderr)
    return 0
