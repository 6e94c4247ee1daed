"""The command line's parser: every command and its options, the axis options from `options.OPTIONS`.
Parsing only; nothing here imports torch."""

from __future__ import annotations

import argparse
import math

import imgbench
from imgbench.core import config, options
from imgbench.core.errors import UserError

EXIT_BAD_INPUT = 2
EXIT_MEMORY_REGRESSION = 3  # compare: no time regression, but a case's peak memory grew


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(ok, what: str):
    """An argparse type: a float that `ok` accepts, else one line naming the text and what is valid."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # fails every check
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


effect = _number(lambda v: 0 <= v < 1000, "a percentage (valid: a number from 0 below 1000)")
alpha = _number(lambda v: 0 < v < 1, "a significance level (valid: above 0 and below 1)")
mebibytes = _number(lambda v: 0 <= v < 1 << 30, "a size in MiB (valid: a number from 0, e.g. 1 or 0.5)")


def percent(option: str, text: str) -> float:
    """A percentage given inside another option's value, as a fraction."""
    try:
        return effect(text) / 100
    except argparse.ArgumentTypeError:
        raise UserError(f"{option} {text!r} is not a percentage (valid: numbers from 0, e.g. 0,5,10)") from None


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
            raise UserError(f"--family-effect {item!r}: expected FAMILY=PERCENT with PERCENT from 0 below 1000, "
                            "e.g. epoch=10") from None
    return out


def _bench_command(sub, name: str, what: str, description: str) -> argparse.ArgumentParser:
    """A command that runs the benches: the axis options from the one table, and --benches."""
    p = sub.add_parser(name, help=what, description=description)
    options.add_options(p.add_argument)
    p.add_argument("--benches", help="the benches folder (default: the checkout's benches/)")
    return p


def _min_effect(p: argparse.ArgumentParser, what: str = "smallest slowdown worth failing for", default: float = 5):
    p.add_argument("--min-effect", type=effect, default=float(default), metavar="PERCENT",
                   help=f"{what} (default: {default:g})")


def _budget(p: argparse.ArgumentParser):
    p.add_argument("--budget", type=_number(lambda v: v > 0, "a number of seconds (valid: above 0)"), default=20.0,
                   metavar="SECONDS", help="time per case for the first set of pairs, both sides together; at "
                                           "least 12 pairs, at most 300 (default: 20)")


def _pytest_rest(p: argparse.ArgumentParser, example: str = ""):
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help=f"after --: more pytest arguments{example}")


class _AfterRefs(argparse.Action):
    """bisect's trailing arguments. After GOOD BAD, argparse's REMAINDER takes the options too (it matches
    positionals greedily): those before `--` are parsed here by `options`; the rest, and any option it does
    not know, go to pytest."""

    def __init__(self, *args, options: argparse.ArgumentParser, **kwargs):
        super().__init__(*args, **kwargs)
        self.options = options

    def __call__(self, parser, namespace, values, option_string=None):
        cut = values.index("--") if "--" in values else len(values)
        _, unknown = self.options.parse_known_args(values[:cut], namespace)
        setattr(namespace, self.dest, unknown + values[cut + 1:])


def _bisect_command(sub):
    opts = _Parser(prog="imgbench bisect", add_help=False)  # the options, wherever they stand
    options.add_options(opts.add_argument)
    opts.add_argument("--benches", help="the benches folder (default: the checkout's benches/)")
    opts.add_argument("--alpha", type=alpha, default=0.01,
                      help="chance that a step's verdict is wrong, split over its looks and cases (default: 0.01)")
    _min_effect(opts, "smallest slowdown from GOOD to BAD worth bisecting; the two processes of a step may "
                      "differ by a few percent on their own", default=10)
    opts.add_argument("--budget", type=_number(lambda v: v > 0, "a number of seconds (valid: above 0)"),
                      default=config.BISECT_STEP_BUDGET_S, metavar="SECONDS",
                      help="time of pairs per case and step: the first set of pairs always runs, then the pairs "
                           f"double while the next set fits (default: {config.BISECT_STEP_BUDGET_S:g})")
    opts.add_argument("--seed", type=int, help="seed of the pair orders (default: drawn, printed)")
    b = sub.add_parser(
        "bisect", parents=[opts], help="the first commit between GOOD and BAD at which the selected cases got slower",
        description="Bisects the commits after GOOD up to BAD along BAD's first parents (a merge is one commit of "
                    "that line). Each step is an interleaved A/B, as `imgbench ab` runs one, of GOOD against one "
                    "commit, both checked out aside. Step 0 times BAD: a case slower by --min-effect is a slowdown "
                    "to find, and the geometric midpoint between no change and that slowdown divides slow commits "
                    "from fast ones: a commit is slow when a case's ratio interval lies wholly above it, fast when "
                    "every case's lies wholly below. A step that cannot say adds pairs within --budget; a commit "
                    "that does not run the cases (does not import, fails, lacks them) is skipped, as `git bisect "
                    "skip` does, and the untried commit nearest the middle is tried instead. Prints every step, "
                    "then the first slow commit with its evidence and the number of steps. Exit 0: found; 1: no "
                    "slowdown from GOOD to BAD; 2: bad input; 3: undecided (too noisy within --budget, or only "
                    "skipped commits left between the last fast and the first slow).")
    b.add_argument("good", metavar="GOOD", help="a commit without the slowdown, an ancestor of BAD")
    b.add_argument("bad", metavar="BAD", help="a later commit with it")
    b.add_argument("pytest_args", nargs=argparse.REMAINDER, default=[], action=_AfterRefs, options=opts,
                   help="axis options, then after --: more pytest arguments, e.g. --device cpu -- -k forward")


def build() -> argparse.ArgumentParser:
    p = _Parser(prog="imgbench", description=imgbench.__doc__,
                epilog="Run 'imgbench COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    e = sub.add_parser("env", help="the environment as the suite records it",
                       description="Hardware, versions and numeric flags recorded with every run.")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.add_argument("--fingerprint", action="store_true", help="print only the machine class (a folder name)")
    e.add_argument("--threads", help=options.BY_DEST["threads"].help_text)

    dr = sub.add_parser("doctor", help="what would break a run on this machine, checked in about a minute",
                        description="Versions, /dev/shm for the loader workers, a real torch.compile on each "
                                    "device, the GPU and NCCL, and whether ddp workers import as torchrun starts "
                                    "them: one line per check (ok, FAIL, skip, info). Exit 1 when a check failed.")
    dr.add_argument("--device", default="auto", help=options.BY_DEST["device"].help_text)

    ls = sub.add_parser("list", help="models, benchmark families, axes and profiles",
                        description="What the suite can run.")
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")

    c = sub.add_parser("compare", help="judge a run against a baseline run (and the history of its machine)",
                       description="Matches cases by family and params; per case the ratio of medians with its "
                                   "interval (each run's autocorrelated rounds, and the history's between-run "
                                   "spread), the bound from the run-to-run spread of the --history window, and a "
                                   "verdict. Exit 1 when a case regressed by the minimum effect: beyond the "
                                   "history's bound where there is a history, beyond the interval where there is "
                                   "none; else exit 3 when a case's peak memory grew beyond --memory-effect and "
                                   "--memory-floor.")
    c.add_argument("candidate", help="the run to judge (pytest-benchmark JSON)")
    c.add_argument("baseline", help="the run to judge it against")
    c.add_argument("--history", nargs="*", default=[], metavar="PATH",
                   help="earlier runs of the same machine class (files or folders): the newest 20 recorded before "
                        "the candidate, without regressions not yet accepted, are its reference")
    c.add_argument("--save-to", metavar="DIR",
                   help="after judging, save the candidate into this history folder, its regressed cases marked "
                        "(kept out of the reference until `imgbench accept`)")
    _min_effect(c)
    c.add_argument("--family-effect", nargs="*", default=[], metavar="FAMILY=PERCENT",
                   help="per-family minimum effect, e.g. epoch=10 dataloader=15")
    c.add_argument("--markdown", action="store_true", help="print a markdown table")
    c.add_argument("--memory-effect", type=effect, default=1.0, metavar="PERCENT",
                   help="peak memory growth worth failing for, with --memory-floor (default: 1)")
    c.add_argument("--memory-floor", type=mebibytes, default=1.0, metavar="MIB",
                   help="least peak memory growth worth failing for, with --memory-effect (default: 1)")
    c.add_argument("--memory-cpu", action="store_true",
                   help="gate the CPU's peak memory too (off: where one process runs many cases the figure moves "
                        "from run to run; with one case per process it reads alike)")

    ac = sub.add_parser("accept", help="accept the new level of cases judged a regression in a history",
                        description="Marks the cases judged a regression when compare --save-to saved them into "
                                    "HISTORY (all, or those whose name contains a --case text) as the new level: "
                                    "from the first run of their newest stretch of regressed runs on, they are "
                                    "the reference again. Writes a small file under HISTORY/<machine class>/"
                                    "accepted/; stored runs are not modified. Exit 2 when nothing matches.")
    ac.add_argument("history", metavar="HISTORY", help="the history folder (as given to compare --save-to)")
    ac.add_argument("--case", nargs="*", default=[], metavar="TEXT", help="only cases whose name contains TEXT")
    ac.add_argument("--fingerprint", metavar="FP", help="only this machine class (default: every one)")
    ac.add_argument("--note", default="", help="why, kept in the acceptance file")

    r = _bench_command(sub, "run", "run the benchmarks, save the run and compare with the previous one",
                       "Runs `pytest benches` on the devices found, saves the run under STORAGE/<machine "
                       "fingerprint>/ and compares it with the previous saved run of the same profile on this "
                       "machine class.")
    r.add_argument("--storage", default=".benchmarks", help="where runs are saved (default: .benchmarks)")
    r.add_argument("--json", metavar="PATH", help="also copy the saved run to PATH (e.g. for a CI artifact)")
    _pytest_rest(r, ", e.g. -- -k train_step")

    ab = _bench_command(sub, "ab", "interleaved A/B of this checkout against a git ref or another Python",
                        "Starts one worker per version (the base's own tree, checked out aside, and this "
                        "checkout), each running its own benches under pytest, and times the cases both have "
                        "(matched by test and params) burst by burst, alternating between the workers in "
                        "counterbalanced order. Per case: a one-sided exact signed-rank test on the pairs' "
                        "log-ratios, Holm's rule over the job's cases at --alpha, and the Hodges-Lehmann "
                        "ratio against --min-effect; a case that looks slower gets as many pairs again. "
                        "Exit 1 when a case regressed.")
    ab.add_argument("--base", metavar="GIT_REF", help="the version to compare with (checked out aside)")
    ab.add_argument("--base-python", metavar="PATH", help="the base's Python (another environment, e.g. torch)")
    ab.add_argument("--alpha", type=alpha, default=0.01,
                    help="chance of any false alarm in the job (default: 0.01)")
    _min_effect(ab, default=3)
    ab.add_argument("--seed", type=int, help="seed of the pair order (default: drawn, printed)")
    _budget(ab)
    ab.add_argument("--markdown", action="store_true", help="print a markdown table")
    ab.add_argument("--regressions", metavar="PATH", help="also write the test ids of the cases that regressed to "
                                                           "PATH, one a line (empty when none), e.g. for explain")
    _pytest_rest(ab, ", e.g. -- -k forward")

    g = _bench_command(sub, "gate-check", "measure the real gate: job-level A/A false alarms and detection of "
                       "injected slowdowns, with 95%% intervals",
                       "Runs --jobs real A/B sessions of the gate set (--cases gate): a base worker on a "
                       "checkout of --base and a candidate worker on this tree. In each job every case runs one "
                       "trial per --effects value, the candidate's calls slowed by that share of the case's "
                       "median call (0 = A/A), each effect's trials decided together as `imgbench ab` decides "
                       "a job. With --hog a CPU-bound process runs beside it.")
    g.add_argument("--base", metavar="GIT_REF", default="HEAD", help="the base side's version (default: HEAD)")
    g.add_argument("--jobs", type=int, default=3, help="A/B sessions (default: 3)")
    g.add_argument("--effects", default="0,2,5,10", help="injected slowdowns in percent, 0 = A/A (default: 0,2,5,10)")
    g.add_argument("--alpha", type=alpha, default=0.01, help="chance of any false alarm in a job (default: 0.01)")
    _min_effect(g, default=3)
    g.add_argument("--seed", type=int, help="seed of the first job (default: drawn, printed)")
    _budget(g)
    g.add_argument("--hog", action="store_true", help="run a CPU-bound process beside the jobs")
    g.add_argument("--markdown", action="store_true", help="print markdown tables")
    _pytest_rest(g)
    _bisect_command(sub)

    for name, what in (("plot", "figures from stored runs: speedup trend, throughput, latest vs baseline, epoch"),
                       ("report", "markdown and self-contained HTML report of stored runs, with the figures")):
        out = "imgbench-report" if name == "report" else "figures"
        pr = sub.add_parser(name, help=what,
                            description=f"{what[0].upper()}{what[1:]}. Reads pytest-benchmark JSON from storage "
                                        "folders (any number of machine classes) and files; unreadable files are "
                                        "skipped with a line each.")
        pr.add_argument("paths", nargs="*", default=[".benchmarks"], metavar="PATH",
                        help="storage folders and run files (default: .benchmarks)")
        pr.add_argument("--out", default=out, help=f"output folder (default: {out})")
        pr.add_argument("--svg", action="store_true", help="SVG files beside the PNGs")
        _min_effect(pr, "smallest change called a regression or improvement")

    ch = sub.add_parser("changes", help="change points in stored history: the first run and commit of each step",
                        description="Per machine class, run conditions and case, the steps in the median time "
                                    "per run and in the GPU-over-CPU speedups, found with E-divisive means and a "
                                    "permutation test; per change the first run after it, the levels before and "
                                    "after, their ratio with a 99% bootstrap interval, and p. Exit 0: the history "
                                    "is information; compare and ab are the gate.")
    ch.add_argument("paths", nargs="*", default=[".benchmarks"], metavar="PATH",
                    help="storage folders and run files (default: .benchmarks)")
    ch.add_argument("--p", type=_number(lambda v: 0.0001 <= v < 1, "a p-value (valid: from 0.0001 below 1)"),
                    default=0.001, help="significance of each split (default: 0.001)")
    ch.add_argument("--markdown", action="store_true", help="print markdown tables")

    ex = _bench_command(sub, "explain", "what got slower: one case's time per operator in two versions",
                        "Profiles one case with torch.profiler in two versions, the base's own tree (checked out "
                        "aside) and this checkout, each in its own pytest process: after warm-up, blocks of calls "
                        "alternate between them (base first, then candidate first). Per operator (CPU operators; "
                        "on a CUDA case the kernels): self time per step in each version, the added time (median "
                        "over the pairs of blocks), its share of the change in step time, and its noise (from the "
                        "spread of the pairs, and at least a small share of the step time); lines sorted by "
                        "added time, those within their noise left out. Writes both Chrome traces and both "
                        "operator tables into --out. The case is not timed: exit 0, or 2 on bad input.")
    ex.add_argument("case", nargs="?", metavar="CASE",
                    help="the case: its test id (e.g. 'test_train_step[kerascnn-cpu-bs32]') or a -k expression "
                         "matching one case")
    ex.add_argument("--base", metavar="GIT_REF", help="the version to compare with (checked out aside)")
    ex.add_argument("--profiles", nargs=2, metavar=("BASE", "CANDIDATE"),
                    help="diff two operator tables written earlier (base.ops.json candidate.ops.json); runs nothing")
    ex.add_argument("--out", metavar="DIR", help="folder for the traces and operator tables (default: a new "
                                                 "temporary folder, printed)")
    ex.add_argument("--pairs", type=_number(lambda v: v >= 1 and v == int(v), "a whole number of pairs (valid: 1 "
                                            "or more)"), default=config.EXPLAIN_PAIRS,
                    help=f"pairs of blocks (default: {config.EXPLAIN_PAIRS})")
    ex.add_argument("--warmup", type=_number(lambda v: v >= 0 and v == int(v), "a whole number of calls (valid: 0 "
                                             "or more)"), default=config.EXPLAIN_WARMUP,
                    help="calls per side before the first block, after the bench's own warm-up (default: "
                         f"{config.EXPLAIN_WARMUP})")
    ex.add_argument("--max-seconds", type=_number(lambda v: v > 0, "a number of seconds (valid: above 0)"),
                    metavar="SECONDS", help="stop after this long, show what was profiled by then and say it was "
                                            "cut (default: no limit)")
    ex.add_argument("--markdown", action="store_true", help="print a markdown table (e.g. for a CI job summary)")

    bl = _bench_command(sub, "baseline", "record this machine's baseline (every round's time) for the gate",
                        "Runs `pytest benches` like `run` and merges the run, every round's time included, into "
                        "FOLDER/<machine fingerprint>/<profile>.json: its cases replace those of the same id, the "
                        "others stay; written only when the run succeeded.")
    bl.add_argument("--folder", default="baselines", help="where baselines live (default: baselines)")
    _pytest_rest(bl)
    return p
