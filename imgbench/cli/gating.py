"""Gating a change: `ab` (the interleaved A/B of this checkout against a git ref or another
Python) and `gate-check` (the real gate measuring its own false alarms and detection)."""

from __future__ import annotations

from pathlib import Path

from imgbench.bench import runner
from imgbench.cli import common, jsonout, parser
from imgbench.core import atomic, config
from imgbench.core.errors import UserError
from imgbench.runs import storage


def add(sub):
    ab = parser.bench_command(
        sub, "ab", "interleaved A/B of this checkout against a git ref or another Python",
        "Starts one worker per version (the base's own tree, checked out aside, and this "
        "checkout), each running its own benches under pytest, and times the cases both have "
        "(matched by test and params) burst by burst, alternating between the workers in "
        "counterbalanced order. Per case: the Hodges-Lehmann ratio of the pairs' log-ratios "
        "with a variance holding the pairs' noise and --process-sd, a one-sided t test, Holm's "
        "rule over the job's cases at --alpha, each interval at the level Holm held its case to, "
        "and the ratio against --min-effect; a case gets as many pairs again while more could "
        "change its verdict and the job's cap (--budget per case) allows. Cases of the "
        f"information tier ({', '.join(config.AB_INFORMATION_FAMILIES)}) are shown, never gated. "
        "The table says per case the smallest slowdown the job could have caught. Exit 1 when a "
        "case regressed, or when the candidate does not run a case the base runs (--removed).")
    ab.add_argument("--base", metavar="GIT_REF",
                    help="the version to compare with (checked out aside)")
    ab.add_argument("--base-python", metavar="PATH",
                    help="the base's Python (another environment, e.g. torch)")
    parser.paired_policy(ab)
    parser.rounds(ab)
    parser.seed(ab)
    parser.budget(ab)
    parser.markdown(ab)
    jsonout.option(ab)
    ab.add_argument("--regressions", metavar="PATH",
                    help="also write the cases that regressed to PATH, one a line: test id, ratio "
                         "and minimum effect, tab-separated (empty when none), e.g. for explain "
                         "and bisect --regressions")
    ab.add_argument("--removed", action="append", default=[], metavar="CASE",
                    help="a case the change removes on purpose (test id, or test function for "
                         "all its cases; repeat for more): the candidate may lack, skip or fail "
                         "it. Any other case the base runs and the candidate does not fails the "
                         "job")
    parser.pytest_rest(ab, ", e.g. -- -k forward")
    ab.set_defaults(run=run_ab)
    _add_gate_check(sub)


def _add_gate_check(sub):
    g = parser.bench_command(
        sub, "gate-check", "measure the real gate: job-level A/A false alarms and detection of "
        "injected slowdowns, with 95%% intervals",
        "Runs --jobs real A/B sessions of the gate set (--cases gate): a base worker on a checkout "
        "of --base and a candidate worker on this tree. In each job every case runs an A/A trial, "
        "and per --effects value above 0 one case drawn at random also runs a trial with the "
        "candidate's calls slowed by that share of its median call; the A/A trials are decided "
        "together as `imgbench ab` decides a job, and each slowed trial among the others' A/A "
        "trials. Every trial is appended to --results, and the tables (false alarms, detection "
        "per family, the between-process sd per case) are computed from all of that file's "
        "trials of this machine class. With --hog a CPU-bound process runs beside it.")
    g.add_argument("--base", metavar="GIT_REF", default="HEAD",
                   help="the base side's version (default: HEAD)")
    g.add_argument("--jobs", type=int, default=config.GATE_CHECK_JOBS,
                   help=f"A/B sessions (default: {config.GATE_CHECK_JOBS})")
    g.add_argument("--effects", default=config.GATE_CHECK_EFFECTS,
                   help="injected slowdowns in percent, 0 = A/A "
                        f"(default: {config.GATE_CHECK_EFFECTS})")
    parser.paired_policy(g, "chance of any false alarm in a job")
    parser.rounds(g)
    g.add_argument("--seed", type=int, help="seed of the first job (default: drawn, printed)")
    parser.budget(g)
    g.add_argument("--hog", action="store_true", help="run a CPU-bound process beside the jobs")
    g.add_argument("--results", metavar="PATH", default=config.GATE_CHECK_RESULTS,
                   help="the JSON-lines file the trials are appended to and the tables read from "
                        f"(default: {config.GATE_CHECK_RESULTS})")
    parser.markdown(g, "print markdown tables")
    parser.pytest_rest(g)
    g.set_defaults(run=gate_check)


def run_ab(args) -> int:
    from imgbench.forensics import ab
    from imgbench.judge import verdict

    if not args.base and not args.base_python:
        raise UserError("ab needs --base GIT_REF, --base-python PATH, or both")
    side_args = common.side_args(args)
    if args.regressions:  # checked before minutes of pairs
        if Path(args.regressions).is_dir():
            raise UserError(f"--regressions {args.regressions!r} is a folder "
                            "(give a file to write)")
        storage.writable_folder(Path(args.regressions).resolve().parent, "--regressions")
    process = common.process_term(args)
    runner.warn_if_busy()
    with common.paired("ab", args.benches, args.base, args.base_python) as (base, cand, tmp):
        out = ab.run(base, cand, side_args, tmp, args.alpha, args.min_effect / 100, args.seed,
                     budget_s=args.budget, note=common.progress("ab"), process=process,
                     n_rounds=int(args.rounds))
    if not out.verdicts:
        raise UserError("no case ran in both versions: nothing to compare")
    notes = [f"seed {out.seed}; {len(out.trials)} case(s) in {out.seconds:.0f} s; "
             f"false alarms kept at {args.alpha:g} over the job (Holm)"]
    notes += [f"{name}: not compared ({why})" for name, why in out.not_run.items()]
    notes += [f"{v.name}: {v.why}" for v in out.verdicts if v.why]
    if args.regressions:
        with atomic.written(args.regressions) as tmp:
            tmp.write_text("".join(f"{v.name}\t{v.ratio:.4f}\t{args.min_effect:g}\n"
                                   for v in out.verdicts if v.verdict == verdict.REGRESSION))
    return ab_outcome(args, out, notes)


def ab_outcome(args, out, notes: list[str]) -> int:
    """The table (or --json), the cases the change removes, and the exit code: 1 when a case
    regressed or the candidate does not run a case the base runs (unless --removed names it)."""
    from imgbench.forensics import ab

    left = ab.unexplained(out.missing, args.removed)
    removed = sorted(out.missing.keys() - left.keys())
    code = max(common.verdict_code(out.verdicts), 1 if left else 0)
    if args.json:
        return jsonout.emit("ab", code, {
            "seed": out.seed, "seconds": out.seconds, "alpha": args.alpha,
            "min_effect": args.min_effect / 100, **common.verdicts_json(out.verdicts),
            "not_compared": out.not_run, "removed": removed, "missing": left, "notes": notes})
    common.report(out.verdicts, args.markdown, notes)
    for name in removed:
        print(f"{name}: removed by the change (--removed), not compared")
    if left:
        print(f"the candidate does not run {len(left)} case(s) the base runs (no pass unless the "
              "change removes them: --removed CASE): "
              + "; ".join(f"{n} ({why})" for n, why in left.items()))
    return code


def gate_check(args) -> int:
    from imgbench.forensics import ab, gatecheck
    from imgbench.hw import environment

    effects = [parser.percent("--effects", e) for e in args.effects.split(",")]
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: valid is 1 or more")
    results = Path(args.results)
    if results.is_dir():
        raise UserError(f"--results {args.results!r} is a folder (give a file to append to)")
    storage.writable_folder(results.resolve().parent, "--results")
    gatecheck.load(results)  # a file that is not ours is refused before minutes of pairs
    process = common.process_term(args)  # read before this run adds to it
    args.cases = "gate"
    side_args = common.side_args(args)
    seed = ab.draw_seed(args.seed)
    note = common.progress("gate-check")
    note(f"{args.jobs} job(s) of the gate set against {args.base}, effects {args.effects} %, "
         f"seed {seed}{', a CPU hog beside it' if args.hog else ''}")
    machine = environment.environment()["fingerprint"]
    runner.warn_if_busy()  # before any hog of ours
    with (common.paired("gate-check", args.benches, args.base) as (base, cand, tmp),
          gatecheck.hog(args.hog)):
        lines = gatecheck.run_jobs(base, cand, side_args, tmp, args.jobs, effects, args.alpha,
                                   args.min_effect / 100, seed, args.budget, note, process,
                                   gatecheck.stamp(machine, args.base) | {"hog": args.hog},
                                   done=lambda job: gatecheck.append(results, job),
                                   n_rounds=int(args.rounds))
    every = [ln for ln in gatecheck.load(results, machine) if not ln.get("hog")]
    print(f"this run: {len(lines)} trial(s), appended to {results}")
    print(gatecheck.render(lines, args.markdown))
    print(f"\nall runs of this machine class in {results} (without --hog):")
    print(gatecheck.render(every, args.markdown))
    return 0
