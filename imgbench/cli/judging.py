"""Judging stored runs: `compare` (a run against a baseline and its machine's history), `accept`
(a regressed level as the new reference) and `changes` (change points in a history). No torch."""

from __future__ import annotations

import sys
from pathlib import Path

from imgbench.cli import common, jsonout, parser
from imgbench.core import config
from imgbench.core.errors import UserError
from imgbench.runs import acceptances, history, record, runfile, storage


def add(sub):
    _add_compare(sub)
    _add_accept(sub)
    _add_changes(sub)


def _add_compare(sub):
    c = sub.add_parser("compare",
                       help="judge a run against a baseline run (and the history of its machine)",
                       description="Matches cases by test and params; per case the ratio of "
                                   "medians with its interval (each run's autocorrelated rounds, "
                                   "and the history's between-run spread), the bound from the "
                                   "run-to-run spread of the --history window, and a verdict. "
                                   "Exit 1 when a case regressed by the minimum effect: beyond "
                                   "the history's bound where there is a history, beyond the "
                                   "interval where there is none; or when a case's peak memory "
                                   "grew beyond --memory-effect and --memory-floor (the memory "
                                   "table and a line say so).")
    c.add_argument("candidate", help="the run to judge (pytest-benchmark JSON)")
    c.add_argument("baseline", help="the run to judge it against")
    c.add_argument("--history", nargs="*", default=[], metavar="PATH",
                   help="earlier runs of the same machine class (files or folders): the newest 20 "
                        "recorded before the candidate, without regressions not yet accepted, are "
                        "its reference")
    c.add_argument("--save-to", metavar="DIR",
                   help="after judging, save the candidate into this history folder, its regressed "
                        "cases marked (kept out of the reference until `imgbench accept`)")
    parser.min_effect(c, config.MIN_EFFECT)
    c.add_argument("--family-effect", nargs="*", default=[], metavar="FAMILY=PERCENT",
                   help="per-family minimum effect, e.g. epoch=10 dataloader=15")
    parser.markdown(c)
    jsonout.option(c)
    c.add_argument("--memory-effect", type=parser.effect, default=100 * config.MEMORY_EFFECT,
                   metavar="PERCENT",
                   help="peak memory growth worth failing for, with --memory-floor (default: "
                        f"{100 * config.MEMORY_EFFECT:g})")
    c.add_argument("--memory-floor", type=parser.mebibytes, default=config.MEMORY_FLOOR_MIB,
                   metavar="MIB",
                   help="least peak memory growth worth failing for, with --memory-effect "
                        f"(default: {config.MEMORY_FLOOR_MIB:g})")
    c.add_argument("--gate-without-history", action="store_true",
                   help="fail on a slowdown of a case the history does not bound (fewer than 3 "
                        "runs of it): without, one pair of runs is information only")
    c.add_argument("--memory-cpu", action="store_true",
                   help="gate the CPU's peak memory too (off: where one process runs many cases "
                        "the figure moves from run to run; with one case per process it reads "
                        "alike)")
    c.set_defaults(run=compare)


def _add_accept(sub):
    a = sub.add_parser("accept",
                       help="accept the new level of cases judged a regression in a history",
                       description="Marks the cases judged a regression when compare --save-to "
                                   "saved them into HISTORY (all, or those whose name contains a "
                                   "--case text) as the new level: from the first run of their "
                                   "newest stretch of regressed runs on, they are the reference "
                                   "again. Writes a small file under HISTORY/<machine class>/"
                                   "accepted/; stored runs are not modified. Exit 2 when nothing "
                                   "matches.")
    a.add_argument("history", metavar="HISTORY",
                   help="the history folder (as given to compare --save-to)")
    a.add_argument("--case", nargs="*", default=[], metavar="TEXT",
                   help="only cases whose name contains TEXT")
    a.add_argument("--fingerprint", metavar="FP",
                   help="only this machine class (default: every one)")
    a.add_argument("--note", default="", help="why, kept in the acceptance file")
    a.set_defaults(run=accept)


def _add_changes(sub):
    ch = sub.add_parser("changes",
                        help="change points in stored history: the first run and commit of each "
                             "step",
                        description="Per machine class, run conditions and case, the steps in the "
                                    "median time per run and in the GPU-over-CPU speedups, found "
                                    "with E-divisive means and a permutation test; per change the "
                                    "first run after it, the levels before and after, their ratio "
                                    "with a 99% bootstrap interval, and p. Exit 0: the history is "
                                    "information; compare and ab are the gate.")
    parser.stored_paths(ch)
    ch.add_argument("--p",
                    type=parser.number(lambda v: 0.0001 <= v < 1,
                                       "a p-value (valid: from 0.0001 below 1)"),
                    default=config.CHANGE_P,
                    help=f"significance of each split (default: {config.CHANGE_P:g})")
    parser.markdown(ch, "print markdown tables")
    jsonout.option(ch)
    ch.set_defaults(run=changes)


def past_runs(paths: list[str], notes: list[str]) -> list:
    """The runs of the --history paths (light records: the window needs medians only), and a note
    for each path without runs, each unreadable file, and a history no file of which could be
    read."""
    stored = [p for p in paths if history.find([p])]  # raises for a path that does not exist
    notes += [f"no stored runs in {p}: left out of the history" for p in paths if p not in stored]
    if not stored:
        return []
    try:
        found = history.load(stored, rounds=False)
    except runfile.RunError as e:  # every file unreadable: judged without, said so
        notes.append(f"history: {e}: judged without a history bound")
        return []
    notes += [f"history: {line}" for line in found.notes]
    notes += [f"history: skipped {line}" for line in found.skipped]
    return found.runs


def compare(args) -> int:
    from imgbench.judge import compare as judge
    from imgbench.judge import memory_rule

    effects = parser.family_effects(args.family_effect)
    cand_run, base_run = runfile.read(args.candidate), runfile.read(args.baseline)
    notes = [line for run in {r.path: r for r in (cand_run, base_run)}.values()
             if (line := run.lacks())]
    if args.save_to:  # before judging: a verdict must not end in a failed save
        storage.writable_folder(Path(args.save_to), "--save-to")
    accepted = acceptances.read(args.history, notes)  # one bad file is a note, not the end
    past = past_runs(args.history, notes)
    base, cand = record.of_run(base_run), record.of_run(cand_run)
    judged = judge.runs(base, cand, past, args.min_effect / 100, effects, accepted,
                        args.gate_without_history)
    if judged.across:
        print(f"imgbench: {judged.across}", flush=True, file=jsonout.out(args.json))
    if not judged.verdicts:
        raise UserError(f"no case of {args.candidate} is in {args.baseline}: nothing to compare")
    memory = memory_rule.compare(base, cand, args.memory_effect / 100, args.memory_floor,
                                 args.memory_cpu, past)
    notes += judged.notes
    if not args.json:
        code = common.report(judged.verdicts, args.markdown, notes, memory)
    saved = save_judged(args, cand_run, judged.verdicts)
    if not args.json:
        return code
    return jsonout.emit("compare", common.verdict_code(judged.verdicts, memory), {
        "candidate": args.candidate, "baseline": args.baseline, "across": judged.across,
        **common.verdicts_json(judged.verdicts), "memory": [jsonout.memory(v) for v in memory],
        "memory_counts": memory_rule.counts(memory), "notes": notes, "saved_to": saved})


def save_judged(args, cand_run, verdicts) -> str | None:
    """compare --save-to: the candidate saved into the history after judging, its regressed cases
    marked; the path, or None."""
    from imgbench.judge import verdict

    if not args.save_to:
        return None
    regressed = [v.name for v in verdicts if v.verdict == verdict.REGRESSION]
    saved = storage.save_judged(cand_run, Path(args.save_to), regressed, str(args.baseline))
    print(f"imgbench: run saved to {saved}"
          + (f", {len(regressed)} case(s) marked as regressions: kept out of the history's "
             "reference until accepted (imgbench accept)" if regressed else ""),
          flush=True, file=jsonout.out(args.json))
    return str(saved)


def accept(args) -> int:
    folder = Path(args.history)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such history folder "
                        "(give the folder compare --save-to saves into)")
    skipped: list[str] = []
    accepted = acceptances.read([folder], skipped)
    for line in skipped:
        print(f"imgbench accept: {line}", file=sys.stderr)
    runs = history.load([folder], rounds=False).runs if history.find([folder]) else []
    todo = [r for r in acceptances.unaccepted(runs, accepted)
            if (not args.case or any(c in r.name for c in args.case))
            and args.fingerprint in (None, r.machine)]
    if not todo:
        raise UserError(f"nothing to accept in {folder}: no case judged a regression since the "
                        "last acceptance"
                        + (f" matches {', '.join(args.case)}" if args.case else ""))
    for fp in sorted({r.machine for r in todo}):
        path = acceptances.write(folder, args.case, fp, args.note,
                                 max((r.datetime for r in todo if r.machine == fp), key=str))
        for r in sorted((r for r in todo if r.machine == fp), key=lambda r: r.name):
            print(f"accepted the level of {r.name} on {fp} "
                  f"(newest regressed run {r.datetime[:16]}, commit {(r.commit or '-')[:7]})")
        print(f"imgbench accept: wrote {path}", file=sys.stderr)
    return 0


def changes(args) -> int:
    from imgbench.judge import changepoints

    found = history.load(args.paths, rounds=False)  # medians are all it needs
    notes = found.notes + [f"skipped {line}" for line in found.skipped]
    for line in notes:
        print(f"imgbench changes: {line}", file=sys.stderr)
    scan = changepoints.scan(found.runs, args.p)
    if args.json:  # the history is information: exit 0 (the gate is compare and ab)
        return jsonout.emit("changes", 0, {
            "p": args.p, "changes": [jsonout.change(c) for c in scan.changes],
            "pending": [jsonout.pending(p) for p in scan.pending], "tested": scan.tested,
            "short": scan.short, "contended": scan.contended, "notes": notes})
    print(changepoints.describe(scan, args.p, args.markdown))
    return 0  # the history is information: the gate is compare and ab
