"""Gating a change: `ab` (the interleaved A/B of this checkout against a git ref or another
Python) and `gate-check` (the real gate measuring its own false alarms and detection)."""

from __future__ import annotations

from pathlib import Path

from imgbench.bench import runner
from imgbench.cli import common, parser
from imgbench.core import atomic, config
from imgbench.core.errors import UserError
from imgbench.runs import storage


def add(sub):
    ab = parser.bench_command(
        sub, "ab", "interleaved A/B of this checkout against a git ref or another Python",
        "Starts one worker per version (the base's own tree, checked out aside, and this "
        "checkout), each running its own benches under pytest, and times the cases both have "
        "(matched by test and params) burst by burst, alternating between the workers in "
        "counterbalanced order. Per case: a one-sided exact signed-rank test on the pairs' "
        "log-ratios, Holm's rule over the job's cases at --alpha, and the Hodges-Lehmann ratio "
        "against --min-effect; a case that looks slower gets as many pairs again. Exit 1 when a "
        "case regressed.")
    ab.add_argument("--base", metavar="GIT_REF",
                    help="the version to compare with (checked out aside)")
    ab.add_argument("--base-python", metavar="PATH",
                    help="the base's Python (another environment, e.g. torch)")
    parser.significance(ab)
    parser.min_effect(ab, config.AB_MIN_EFFECT)
    parser.seed(ab)
    parser.budget(ab)
    parser.markdown(ab)
    ab.add_argument("--regressions", metavar="PATH",
                    help="also write the test ids of the cases that regressed to PATH, one a line "
                         "(empty when none), e.g. for explain")
    parser.pytest_rest(ab, ", e.g. -- -k forward")
    ab.set_defaults(run=run_ab)

    g = parser.bench_command(
        sub, "gate-check", "measure the real gate: job-level A/A false alarms and detection of "
        "injected slowdowns, with 95%% intervals",
        "Runs --jobs real A/B sessions of the gate set (--cases gate): a base worker on a checkout "
        "of --base and a candidate worker on this tree. In each job every case runs one trial per "
        "--effects value, the candidate's calls slowed by that share of the case's median call "
        "(0 = A/A), each effect's trials decided together as `imgbench ab` decides a job. With "
        "--hog a CPU-bound process runs beside it.")
    g.add_argument("--base", metavar="GIT_REF", default="HEAD",
                   help="the base side's version (default: HEAD)")
    g.add_argument("--jobs", type=int, default=config.GATE_CHECK_JOBS,
                   help=f"A/B sessions (default: {config.GATE_CHECK_JOBS})")
    g.add_argument("--effects", default=config.GATE_CHECK_EFFECTS,
                   help="injected slowdowns in percent, 0 = A/A "
                        f"(default: {config.GATE_CHECK_EFFECTS})")
    parser.significance(g, "chance of any false alarm in a job")
    parser.min_effect(g, config.AB_MIN_EFFECT)
    g.add_argument("--seed", type=int, help="seed of the first job (default: drawn, printed)")
    parser.budget(g)
    g.add_argument("--hog", action="store_true", help="run a CPU-bound process beside the jobs")
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
    runner.warn_if_busy()
    with common.paired(args.benches, args.base, args.base_python) as (base, cand, tmp):
        out = ab.run(base, cand, side_args, tmp, args.alpha, args.min_effect / 100, args.seed,
                     budget_s=args.budget, note=common.progress("ab"))
    if not out.verdicts:
        raise UserError("no case ran in both versions: nothing to compare")
    notes = [f"seed {out.seed}; {len(out.trials)} case(s) in {out.seconds:.0f} s; "
             f"false alarms kept at {args.alpha:g} over the job (Holm)"]
    notes += [f"{name}: not compared ({why})" for name, why in out.not_run.items()]
    notes += [f"{v.name}: {v.why}" for v in out.verdicts if v.why]
    code = common.report(out.verdicts, args.markdown, notes)
    if args.regressions:
        with atomic.written(args.regressions) as tmp:
            tmp.write_text("".join(f"{v.name}\n" for v in out.verdicts
                                   if v.verdict == verdict.REGRESSION))
    if out.broken:
        print(f"the candidate fails {len(out.broken)} case(s) the base runs: "
              f"{', '.join(out.broken)}")
        return max(code, 1)
    return code


def gate_check(args) -> int:
    from imgbench.forensics import ab, gatecheck

    effects = [parser.percent("--effects", e) for e in args.effects.split(",")]
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: valid is 1 or more")
    args.cases = "gate"
    side_args = common.side_args(args)
    seed = ab.draw_seed(args.seed)
    note = common.progress("gate-check")
    note(f"{args.jobs} job(s) of the gate set against {args.base}, effects {args.effects} %, "
         f"seed {seed}{', a CPU hog beside it' if args.hog else ''}")
    runner.warn_if_busy()  # before any hog of ours
    with common.paired(args.benches, args.base) as (base, cand, tmp), gatecheck.hog(args.hog):
        measured = gatecheck.run_jobs(base, cand, side_args, tmp, args.jobs, effects, args.alpha,
                                      args.min_effect / 100, seed, args.budget, note)
    print(gatecheck.render(measured, args.markdown))
    return 0
