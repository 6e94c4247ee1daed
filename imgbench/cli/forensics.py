"""When the gate fires: `bisect` (the first slow commit between GOOD and BAD) and `explain` (one
case's time per operator in two versions)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgbench.bench import runner
from imgbench.cli import common, jsonout, parser
from imgbench.core import config
from imgbench.core.errors import OK, REGRESSION, UNDECIDED, UserError


class AfterRefs(argparse.Action):
    """bisect's trailing arguments. After GOOD BAD, argparse's REMAINDER takes the options too (it
    matches positionals greedily): those before `--` are parsed here by `options`; the rest, and any
    option it does not know, go to pytest."""

    def __init__(self, *args, options: argparse.ArgumentParser, **kwargs):
        super().__init__(*args, **kwargs)
        self.options = options

    def __call__(self, parser, namespace, values, option_string=None):
        cut = values.index("--") if "--" in values else len(values)
        _, unknown = self.options.parse_known_args(values[:cut], namespace)
        setattr(namespace, self.dest, unknown + values[cut + 1:])


def add(sub):
    _add_bisect(sub)
    _add_explain(sub)


def _add_bisect(sub):
    opts = parser.Parser(prog="imgbench bisect", add_help=False)  # the options, wherever they stand
    parser.bench_options(opts.add_argument)
    parser.paired_policy(opts, "chance that a step's verdict is wrong, split over its looks and "
                         "cases")
    opts.add_argument("--regressions", metavar="PATH",
                      help="bisect only the cases `imgbench ab --regressions PATH` wrote, at the "
                           "minimum effect it used")
    opts.add_argument("--budget", type=parser.seconds, default=config.BISECT_STEP_BUDGET_S,
                      metavar="SECONDS",
                      help="time of pairs per case and step: the first set of pairs always runs, "
                           "then the pairs double while the next set fits (default: "
                           f"{config.BISECT_STEP_BUDGET_S:g})")
    opts.add_argument("--seed", type=int, help="seed of the pair orders (default: drawn, printed)")
    jsonout.option(opts)
    b = sub.add_parser(
        "bisect", parents=[opts],
        help="the first commit between GOOD and BAD at which the selected cases got slower",
        description="Bisects the commits after GOOD up to BAD along BAD's first parents (a merge "
                    "is one commit of that line). Each step is an interleaved A/B, as `imgbench "
                    "ab` runs one, of GOOD against one commit, both checked out aside. Step 0 "
                    "times BAD: a case slower by --min-effect is a slowdown to find, and the "
                    "geometric midpoint between no change and that slowdown divides slow commits "
                    "from fast ones: a commit is slow when a case's ratio interval lies wholly "
                    "above it, fast when every case's lies wholly below. A step that cannot say "
                    "adds pairs within --budget; a commit that does not run the cases (does not "
                    "import, fails, lacks them) is skipped, as `git bisect skip` does, and the "
                    "untried commit nearest the middle is tried instead. Prints every step, then "
                    "the first slow commit with its evidence and the number of steps. Exit 1: "
                    "the first slow commit found; 0: no slowdown from GOOD to BAD; 2: bad input; "
                    "3: undecided (too noisy within --budget, or only skipped commits left "
                    "between the last fast and the first slow).")
    b.add_argument("good", metavar="GOOD", help="a commit without the slowdown, an ancestor of BAD")
    b.add_argument("bad", metavar="BAD", help="a later commit with it")
    b.add_argument("pytest_args", nargs=argparse.REMAINDER, default=[], action=AfterRefs,
                   options=opts,
                   help="axis options, then after --: more pytest arguments, e.g. --device cpu "
                        "-- -k forward")
    b.set_defaults(run=bisect)


def _add_explain(sub):
    ex = parser.bench_command(
        sub, "explain", "what got slower: one case's time per operator in two versions",
        "Profiles one case with torch.profiler in two versions, the base's own tree (checked out "
        "aside) and this checkout, each in its own pytest process: after warm-up, blocks of calls "
        "alternate between them (base first, then candidate first). Per operator (CPU operators; "
        "on a CUDA case the kernels): self time per step in each version, the added time (median "
        "over the pairs of blocks), its share of the change in step time, and its noise (from the "
        "spread of the pairs, and at least a small share of the step time); lines sorted by added "
        "time, those within their noise left out. Writes both Chrome traces and both operator "
        "tables into --out. The case is not timed: exit 0; 2 on bad input; 4 when a worker "
        "crashed (its log is kept in --out).")
    ex.add_argument("case", nargs="?", metavar="CASE",
                    help="the case: its test id (e.g. 'test_train_step[kerascnn-cpu-bs32]') or a "
                         "-k expression matching one case")
    ex.add_argument("--base", metavar="GIT_REF",
                    help="the version to compare with (checked out aside)")
    ex.add_argument("--profiles", nargs=2, metavar=("BASE", "CANDIDATE"),
                    help="diff two operator tables written earlier (base.ops.json "
                         "candidate.ops.json); runs nothing")
    ex.add_argument("--out", metavar="DIR",
                    help="folder for the traces and operator tables (default: a new temporary "
                         "folder, printed)")
    whole = parser.number(lambda v: v >= 0 and v == int(v), "a whole number (valid: 0 or more)")
    ex.add_argument("--pairs",
                    type=parser.number(lambda v: v >= 1 and v == int(v),
                                       "a whole number of pairs (valid: 1 or more)"),
                    default=config.EXPLAIN_PAIRS,
                    help=f"pairs of blocks (default: {config.EXPLAIN_PAIRS})")
    ex.add_argument("--warmup", type=whole, default=config.EXPLAIN_WARMUP,
                    help="calls per side before the first block, after the bench's own warm-up "
                         f"(default: {config.EXPLAIN_WARMUP})")
    ex.add_argument("--max-seconds", type=parser.seconds, metavar="SECONDS",
                    help="stop after this long, show what was profiled by then and say it was cut "
                         "(default: no limit)")
    parser.markdown(ex, "print a markdown table (e.g. for a CI job summary)")
    ex.set_defaults(run=explain)


def bisect(args) -> int:
    from imgbench.forensics import ab, git
    from imgbench.forensics import bisect as search

    side_args = common.side_args(args)  # each commit runs its own benches/
    here = common.benches_dir(args.benches).parent
    commits = git.first_parent_line(git.toplevel(here), args.good, args.bad)
    seed = ab.draw_seed(args.seed)
    runner.warn_if_busy()
    cases, min_effect = None, args.min_effect / 100
    if args.regressions:
        cases, min_effect = regressions(args.regressions)
    to = jsonout.out(args.json)  # each step's line as it ends: stderr under --json
    out = search.run(here, commits, side_args, sys.executable, args.alpha, min_effect,
                     args.budget, seed, show=lambda line: print(line, flush=True, file=to),
                     note=common.progress("bisect"), process_sd=common.process_term(args),
                     cases=cases)
    # its outcomes on the one scheme: a slow commit found is a regression found
    code, result = {search.FOUND: (REGRESSION, "found"), search.NO_SLOWDOWN: (OK, "no slowdown"),
                    search.OPEN: (UNDECIDED, "undecided")}[out.code]
    if args.json:
        return jsonout.emit("bisect", code, {
            "result": result, "good": commits[0], "bad": commits[-1], "seed": seed,
            "min_effect": min_effect, "culprit": out.culprit, "suspects": out.suspects,
            "steps": out.steps, "summary": out.summary})
    print("\n".join(out.summary))
    return code


def regressions(path: str) -> tuple[list[str], float]:
    """The cases and the minimum effect (a fraction) of an `imgbench ab --regressions` file."""
    try:
        lines = [ln.split("\t") for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise UserError(f"--regressions {path!r}: {e.strerror or e}") from None
    if not lines:
        raise UserError(f"--regressions {path!r} lists no regressed case: nothing to bisect")
    try:
        effects = {float(f[2]) for f in lines}
    except (IndexError, ValueError):
        raise UserError(f"--regressions {path!r} is not a file `imgbench ab --regressions` wrote "
                        "(valid: lines of test id, ratio and minimum effect, tab-separated)"
                        ) from None
    return [f[0] for f in lines], min(effects) / 100


def explain(args) -> int:
    from imgbench.forensics import explain as profiles
    from imgbench.forensics import git

    if args.profiles:
        if args.case or args.base:
            raise UserError("explain takes CASE --base GIT_REF, or --profiles BASE CANDIDATE: "
                            "not both")
        print(profiles.render(profiles.diff(*map(profiles.load, args.profiles)), args.markdown))
        return 0
    if not args.case or not args.base:
        raise UserError("explain needs CASE and --base GIT_REF (or --profiles BASE CANDIDATE)")
    side_args = common.side_args(args)
    # a given folder is checked before anything runs
    out = profiles.out_folder(args.out) if args.out else None
    runner.warn_if_busy()
    with common.paired("explain", args.benches, args.base) as (base, cand, tmp):
        out = out or profiles.out_folder(None)  # a new temporary one once the base is checked out
        versions = (f"{args.base} ({git.short_head(base.tree)})",
                    f"this checkout (HEAD {git.short_head(cand.tree)})")
        got = profiles.run(args.case, base, cand, side_args, tmp, out, versions, int(args.pairs),
                           int(args.warmup), args.max_seconds, common.progress("explain"))
    print(got.describe(args.markdown, out))
    return 0
