"""The parser class, argument types and option helpers every command group (cli/<group>.py) builds
its parsers with. Parsing only; nothing here imports torch."""

from __future__ import annotations

import argparse
import math

from imgbench.cli.common import EXIT_BAD_INPUT
from imgbench.core import config, options
from imgbench.core.errors import UserError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def number(ok, what: str):
    """An argparse type: a float that `ok` accepts, else one line naming the text and what is
    valid."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # fails every check
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


effect = number(lambda v: 0 <= v < 1000, "a percentage (valid: a number from 0 below 1000)")
alpha = number(lambda v: 0 < v < 1, "a significance level (valid: above 0 and below 1)")
mebibytes = number(lambda v: 0 <= v < 1 << 30,
                   "a size in MiB (valid: a number from 0, e.g. 1 or 0.5)")
seconds = number(lambda v: v > 0, "a number of seconds (valid: above 0)")


def percent(option: str, text: str) -> float:
    """A percentage given inside another option's value, as a fraction."""
    try:
        return effect(text) / 100
    except argparse.ArgumentTypeError:
        raise UserError(f"{option} {text!r} is not a percentage "
                        "(valid: numbers from 0, e.g. 0,5,10)") from None


def family_effects(items: list[str]) -> dict[str, float]:
    """--family-effect FAMILY=PERCENT ... -> {family: fraction}."""
    out = {}
    for item in items:
        family, _, text = item.partition("=")
        if family not in config.FAMILIES:
            raise UserError(f"--family-effect {item!r}: unknown family {family!r} "
                            f"(valid: {', '.join(config.FAMILIES)})")
        try:
            out[family] = effect(text) / 100
        except argparse.ArgumentTypeError:
            raise UserError(f"--family-effect {item!r}: expected FAMILY=PERCENT with PERCENT from "
                            "0 below 1000, e.g. epoch=10") from None
    return out


def bench_options(add):
    """The axis options from the one table, and --benches: every command that runs the benches."""
    options.add_options(add)
    add("--benches", help="the benches folder (default: ./benches, else this checkout's benches/)")


def bench_command(sub, name: str, what: str, description: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=what, description=description)
    bench_options(p.add_argument)
    return p


def min_effect(p: argparse.ArgumentParser, default: float,
               what: str = "smallest slowdown worth failing for"):
    p.add_argument("--min-effect", type=effect, default=100 * default, metavar="PERCENT",
                   help=f"{what} (default: {100 * default:g})")


def significance(p: argparse.ArgumentParser, what: str = "chance of any false alarm in the job"):
    p.add_argument("--alpha", type=alpha, default=config.ALPHA,
                   help=f"{what} (default: {config.ALPHA:g})")


def paired_policy(p: argparse.ArgumentParser,
                  alpha_what: str = "chance of any false alarm in the job"):
    """The paired policy's options, one set for ab, gate-check and bisect (judge/paired.py)."""
    significance(p, alpha_what)
    min_effect(p, config.AB_MIN_EFFECT)
    p.add_argument("--process-sd", type=effect, metavar="PERCENT",
                   help="sd of the log-ratio of two worker processes of one tree, in percent: the "
                        "bias a pair of processes keeps for its lifetime, added to each case's "
                        "variance (divided by the square root of the rounds) where --process-from "
                        "measured no more for the case (default: "
                        f"{100 * config.AB_PROCESS_SD:g} on the CPU, "
                        f"{100 * config.AB_PROCESS_SD_ACCELERATOR:g} for a case on an accelerator, "
                        "where each process also autotunes its kernels; given: for every case)")
    p.add_argument("--process-from", metavar="PATH", default=config.GATE_CHECK_RESULTS,
                   help="a gate-check results file: a case's between-process sd measured there "
                        f"for this machine class in at least {config.AB_PROCESS_MIN_JOBS} A/A "
                        "jobs raises its term above --process-sd (default: "
                        f"{config.GATE_CHECK_RESULTS}, used where it exists)")


def rounds(p: argparse.ArgumentParser):
    p.add_argument("--rounds", type=number(lambda v: 1 <= v <= 100 and v == int(v),
                                           "a whole number of rounds (valid: 1 to 100)"),
                   default=config.AB_ROUNDS,
                   help="fresh pairs of worker processes a gated case's pairs come from, one "
                        "after the other (the information tier runs in the first only): the "
                        "bias of a pair of processes averages out (default: "
                        f"{config.AB_ROUNDS})")


def budget(p: argparse.ArgumentParser):
    p.add_argument("--budget", type=seconds, default=config.AB_BUDGET_S, metavar="SECONDS",
                   help="seconds of pairs per case on average, both sides together: the job's "
                        "cap is this times its cases; a case's first set takes half of it (12 to "
                        "300 pairs), then as many pairs again while more could change its verdict "
                        f"and the cap allows (default: {config.AB_BUDGET_S:g})")


def seed(p: argparse.ArgumentParser):
    p.add_argument("--seed", type=int, help="seed of the pair order (default: drawn, printed)")


def stored_paths(p: argparse.ArgumentParser):
    """The stored runs a command reads (changes, report): folders and files."""
    p.add_argument("paths", nargs="*", default=[".benchmarks"], metavar="PATH",
                   help="storage folders and run files (default: .benchmarks)")


def markdown(p: argparse.ArgumentParser, what: str = "print a markdown table"):
    p.add_argument("--markdown", action="store_true", help=what)


def pytest_rest(p: argparse.ArgumentParser, example: str = ""):
    p.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help=f"after --: more pytest arguments{example}")
