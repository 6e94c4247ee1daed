"""One short function per command: check the input, call the library, print, return the exit code.
Heavy modules (torch) are imported inside the commands that time something, so compare, plot and
report start fast."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from imgbench.bench import runner
from imgbench.core import atomic as files, options
from imgbench.judge import verdict
from imgbench.runs import storage
from imgbench.cli.parser import EXIT_MEMORY_REGRESSION, family_effects, percent
from imgbench.core.errors import UserError


def _progress(command: str):
    return lambda message: print(f"imgbench {command}: {message}", file=sys.stderr, flush=True)


def _threads(text: str | None) -> int | None:
    return None if text is None else options.positive_int("thread count", text)


def cmd_env(args) -> int:
    import torch

    from imgbench.hw import devices, environment

    threads = _threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    env = environment.environment(threads=threads or devices.usable_cores())
    print(env["fingerprint"] if args.fingerprint else json.dumps(env, indent=2) if args.json else
          environment.describe(env))
    return 0


def cmd_doctor(args) -> int:
    from imgbench.preflight import doctor

    found = doctor.checks(args.device, _progress("doctor"))
    print(doctor.render(found), flush=True)
    if doctor.failed(found):
        print(f"imgbench doctor: {sum(c.status == doctor.FAIL for c in found)} check(s) failed", file=sys.stderr)
        return 1
    return 0


def cmd_list(args) -> int:
    from imgbench.core import config
    from imgbench.hw import devices
    from imgbench.workloads import models

    listing = {
        "models": {n: {"input_shape": list(models.spec(n).input_shape), "num_classes": models.spec(n).num_classes,
                       "summary": models.spec(n).summary} for n in models.names()},
        "families": config.FAMILIES,
        "axes": {"device": config.DEVICES, "devices_here": devices.available(),
                 "batch_size": options.DEFAULTS["batch_size"],
                 "optimizer": list(config.OPTIMIZERS), "dataset": list(config.DATASETS),
                 "precision": list(config.PRECISIONS), "memory_format": list(config.MEMORY_FORMATS),
                 "compile": list(config.COMPILE)},
        "profiles": {p.name: p.summary for p in config.PROFILES.values()},
    }
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    out = ["models:"]
    out += [f"  {n:<10} {'x'.join(map(str, m['input_shape'])):<10} {m['summary']}"
            for n, m in listing["models"].items()]
    out += ["families:"] + [f"  {n:<10} {s}" for n, s in config.FAMILIES.items()]
    out += ["axes:"] + [f"  {o.flag:<15} {o.valid}; default {o.default or o.unset}" for o in options.OPTIONS]
    out += [f"  devices here: {', '.join(devices.available())}"]
    out += ["profiles:"] + [f"  {n:<10} {s}" for n, s in listing["profiles"].items()]
    print("\n".join(out))
    return 0


def cmd_compare(args) -> int:
    from imgbench.judge import compare, window as history
    from imgbench.runs import record as results, runfile

    effects = family_effects(args.family_effect)
    cand_run, base_run = runfile.read(args.candidate), runfile.read(args.baseline)
    notes = [line for run in {r.path: r for r in (cand_run, base_run)}.values() if (line := run.lacks())]
    if args.save_to:  # before judging: a verdict must not end in a failed save
        storage.writable_folder(Path(args.save_to), "--save-to")
    past, accepted = [], history.acceptances(args.history)
    stored = [p for p in args.history if results.find([p])]  # raises for a path that does not exist
    notes += [f"no stored runs in {p}: left out of the history" for p in args.history if p not in stored]
    if stored:
        try:
            found = results.load_history(stored, rounds=False)  # the window needs medians only
        except results.RunError as e:  # every file unreadable: judged without, said so
            notes.append(f"history: {e}: judged without a history bound")
        else:
            past = found.runs
            notes += [f"history: {line}" for line in found.notes]
            notes += [f"history: skipped {line}" for line in found.skipped]
    cand = results.records(cand_run)
    judged = compare.runs(results.records(base_run), cand, past, args.min_effect / 100, effects, accepted)
    if judged.across:
        print(f"imgbench: {judged.across}", flush=True)
    if not judged.verdicts:
        raise UserError(f"no case of {args.candidate} is in {args.baseline}: nothing to compare")
    code = _report(judged.verdicts, args.markdown, notes + judged.notes, _memory(args, base_run, cand_run))
    if args.save_to:
        regressed = [v.name for v in judged.verdicts if v.verdict == verdict.REGRESSION]
        saved = history.save(cand_run, Path(args.save_to), regressed, str(args.baseline))
        print(f"imgbench: run saved to {saved}" + (f", {len(regressed)} case(s) marked as regressions: kept out of "
                                                   "the history's reference until accepted (imgbench accept)"
                                                   if regressed else ""), flush=True)
    return code


def cmd_accept(args) -> int:
    from imgbench.judge import window as history
    from imgbench.runs import record as results

    folder = Path(args.history)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such history folder (give the folder compare --save-to saves into)")
    accepted = history.acceptances([folder])
    runs = results.load_history([folder], rounds=False).runs if results.find([folder]) else []
    todo = [r for r in history.unaccepted(runs, accepted)
            if (not args.case or any(c in r.name for c in args.case))
            and args.fingerprint in (None, r.machine)]
    if not todo:
        raise UserError(f"nothing to accept in {folder}: no case judged a regression since the last acceptance"
                        + (f" matches {', '.join(args.case)}" if args.case else ""))
    for fp in sorted({r.machine for r in todo}):
        path = history.accept(folder, args.case, fp, args.note)
        for r in sorted((r for r in todo if r.machine == fp), key=lambda r: r.name):
            print(f"accepted the level of {r.name} on {fp} (newest regressed run {r.datetime[:16]}, "
                  f"commit {(r.commit or '-')[:7]})")
        print(f"imgbench accept: wrote {path}", file=sys.stderr)
    return 0


def _memory(args, base_run, cand_run) -> list:
    """Each case's peak memory in both runs, judged by its own rule (imgbench.memory)."""
    from imgbench.judge import memory_rule as memory
    from imgbench.runs import record as results

    return memory.compare(results.records(base_run), results.records(cand_run), args.memory_effect / 100,
                          args.memory_floor, args.memory_cpu)


def _report(verdicts, markdown: bool, notes=(), memory_verdicts=None) -> int:
    """The verdict table, any notes, a count per verdict, then the memory verdicts if given; exit 1 when a
    case regressed, else 3 when a case's peak memory did."""
    print(verdict.render(verdicts, markdown=markdown))
    for note in notes:
        print(note)
    counts = verdict.counts(verdicts)
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    memory_regressed = False
    if memory_verdicts is not None:
        from imgbench.judge import memory_rule as memory

        print(memory.describe(memory_verdicts, markdown))
        memory_regressed = memory.counts(memory_verdicts)[verdict.REGRESSION] > 0
    return 1 if counts[verdict.REGRESSION] else EXIT_MEMORY_REGRESSION if memory_regressed else 0


def _benches_dir(given: str | None) -> Path:
    candidates = [Path(given)] if given else [Path(__file__).resolve().parents[2] / "benches",
                                               Path.cwd() / "benches"]
    for c in candidates:
        if c.is_dir() and any(c.glob("bench_*.py")):
            return c
    raise UserError(f"no benches folder at {', '.join(map(str, candidates))} (run from a checkout of imgbench, "
                    "or pass --benches DIR)")


def _pytest_args(args):
    """Check every option before pytest starts (same one-line messages as the plugin); the settings
    and the args that run the benches with them."""
    from imgbench.workloads import data

    s = options.settings(lambda name: getattr(args, name))
    if s.dataset != "synthetic":
        data.real(s.dataset, s.data_root)
    given = {o.dest: getattr(args, o.dest) for o in options.OPTIONS}
    out = [str(_benches_dir(args.benches)), "-p", "no:xdist", *options.pytest_args(given), "--benchmark-sort=fullname"]
    return s, out


def _rest(args) -> list[str]:
    return args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args


def _machine_folder(parent: str, option: str) -> Path:
    from imgbench.hw import environment

    return storage.writable_folder(Path(parent) / environment.environment()["fingerprint"], option)


def cmd_run(args) -> int:
    s, pytest_args = _pytest_args(args)
    folder = _machine_folder(args.storage, "--storage")
    if args.json:
        if Path(args.json).is_dir():
            raise UserError(f"--json {args.json}: is a folder (give a file path, e.g. results/run.json)")
        storage.writable_folder(Path(args.json).parent, "--json")
    pytest_args.append(f"--benchmark-storage={folder}")  # where pytest-benchmark looks for what it compares
    prev = storage.previous_run(folder, args.profile, s.devices)
    if prev is None:
        print(f"imgbench: no earlier '{args.profile}' run on {', '.join(s.devices)} saved in {folder}: this run "
              "becomes the first; the next run is compared with it", flush=True)
    else:
        print(f"imgbench: comparing with the previous run {prev}", flush=True)
        pytest_args.append(f"--benchmark-compare={prev.resolve()}")
    # Saved by us, not by --benchmark-save: pytest-benchmark writes in place, so Ctrl-C could leave
    # half a file in the history.
    with storage.partial(folder, "run") as tmp:
        code, complete = runner.run(pytest_args + _rest(args), tmp)
        if not complete or code not in (0, 1) or not tmp.is_file():
            print(f"imgbench: the run did not finish (exit {code}); nothing saved", file=sys.stderr)
            return code
        saved = storage.save_run(tmp, folder, args.profile)
    print(f"imgbench: run saved to {saved}", flush=True)
    if args.json:
        from imgbench.core import atomic as files

        with files.atomic(args.json) as out:
            shutil.copyfile(saved, out)
        print(f"imgbench: run copied to {args.json}", flush=True)
    return code


def cmd_baseline(args) -> int:
    s, pytest_args = _pytest_args(args)
    final = storage.baseline_path(_machine_folder(args.folder, "--folder"), args.profile)
    storage.check_baseline(final, s)
    with storage.partial(final.parent, final.name) as tmp:
        code, complete = runner.run([*pytest_args, *_rest(args)], tmp)
        if not complete or code != 0 or not tmp.is_file():
            why = f"the run failed (exit {code})" if code else "the run wrote no benchmark data"
            print(f"imgbench: {why}; baseline unchanged", file=sys.stderr)
            return code or 1
        replaced = storage.save_baseline(tmp, final)
    print(f"imgbench: baseline written to {final}", flush=True)
    if replaced:
        print(f"imgbench: replaced {len(replaced)} case(s) of the earlier baseline: {', '.join(replaced)}", flush=True)
    return code


def cmd_ab(args) -> int:
    import tempfile

    from imgbench.forensics import ab

    if not args.base and not args.base_python:
        raise UserError("ab needs --base GIT_REF, --base-python PATH, or both")
    args_ = _pytest_args(args)[1][1:] + _rest(args)  # each side runs its own benches/
    here = _benches_dir(args.benches).parent
    if args.regressions:  # checked before minutes of pairs
        if Path(args.regressions).is_dir():
            raise UserError(f"--regressions {args.regressions!r} is a folder (give a file to write)")
        storage.writable_folder(Path(args.regressions).resolve().parent, "--regressions")
    note = _progress("ab")
    runner.warn_if_busy()
    with tempfile.TemporaryDirectory() as tmp:
        base_python = ab.python_of(args.base_python)
        tree = ab.worktree(args.base, here, Path(tmp) / "base") if args.base else here
        try:
            out = ab.run(ab.Side("base", tree, base_python), ab.Side("candidate", here, sys.executable), args_,
                         Path(tmp), args.alpha, args.min_effect / 100, args.seed, budget_s=args.budget, note=note)
        finally:
            if args.base:
                ab.remove_worktree(here, tree)
    if not out.verdicts:
        raise UserError("no case ran in both versions: nothing to compare")
    notes = [f"seed {out.seed}; {len(out.trials)} case(s) in {out.seconds:.0f} s; false alarms kept at "
             f"{args.alpha:g} over the job (Holm)"]
    notes += [f"{name}: not compared ({why})" for name, why in out.not_run.items()]
    notes += [f"{v.name}: {v.why}" for v in out.verdicts if v.why]
    code = _report(out.verdicts, args.markdown, notes)
    if args.regressions:
        with files.atomic(args.regressions) as tmp:
            tmp.write_text("".join(f"{v.name}\n" for v in out.verdicts if v.verdict == verdict.REGRESSION))
    if out.broken:
        print(f"the candidate fails {len(out.broken)} case(s) the base runs: {', '.join(out.broken)}")
        return max(code, 1)
    return code


def cmd_gate_check(args) -> int:
    import tempfile

    from imgbench.forensics import ab, gatecheck

    effects = [percent("--effects", e) for e in args.effects.split(",")]
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: valid is 1 or more")
    args.cases = "gate"
    args_ = [*_pytest_args(args)[1][1:], *_rest(args)]
    here = _benches_dir(args.benches).parent
    seed = ab.draw_seed(args.seed)
    note = _progress("gate-check")
    note(f"{args.jobs} job(s) of the gate set against {args.base}, effects {args.effects} %, seed {seed}"
         f"{', a CPU hog beside it' if args.hog else ''}")
    runner.warn_if_busy()  # before any hog of ours
    with tempfile.TemporaryDirectory() as tmp, gatecheck.hog(args.hog):
        tree = ab.worktree(args.base, here, Path(tmp) / "base")
        try:
            sides = ab.Side("base", tree, sys.executable), ab.Side("candidate", here, sys.executable)
            measured = gatecheck.measure(*sides, args_, Path(tmp), args.jobs, effects, args.alpha,
                                         args.min_effect / 100, seed, args.budget, note)
        finally:
            ab.remove_worktree(here, tree)
    print(gatecheck.render(measured, args.markdown))
    return 0


def cmd_bisect(args) -> int:
    from imgbench.forensics import ab, bisect

    args_ = _pytest_args(args)[1][1:] + _rest(args)  # each commit runs its own benches/
    here = _benches_dir(args.benches).parent
    commits = bisect.line(bisect.toplevel(here), args.good, args.bad)
    seed = ab.draw_seed(args.seed)
    runner.warn_if_busy()
    out = bisect.run(here, commits, args_, sys.executable, args.alpha, args.min_effect / 100, args.budget, seed,
                     show=lambda line: print(line, flush=True), note=_progress("bisect"))
    print("\n".join(out.summary))
    return out.code


def cmd_explain(args) -> int:
    import tempfile

    from imgbench.forensics import ab, explain

    if args.profiles:
        if args.case or args.base:
            raise UserError("explain takes CASE --base GIT_REF, or --profiles BASE CANDIDATE: not both")
        print(explain.render(explain.diff(*map(explain.load, args.profiles)), args.markdown))
        return 0
    if not args.case or not args.base:
        raise UserError("explain needs CASE and --base GIT_REF (or --profiles BASE CANDIDATE)")
    args_ = _pytest_args(args)[1][1:]  # each side runs its own benches/
    here = _benches_dir(args.benches).parent
    out = explain.out_folder(args.out) if args.out else None  # a given folder is checked before anything runs
    runner.warn_if_busy()
    with tempfile.TemporaryDirectory() as tmp:
        tree = ab.worktree(args.base, here, Path(tmp) / "base")
        try:
            out = out or explain.out_folder(None)  # a new temporary one once the base is checked out
            versions = f"{args.base} ({explain.commit_of(tree)})", f"this checkout (HEAD {explain.commit_of(here)})"
            sides = ab.Side("base", tree, sys.executable), ab.Side("candidate", here, sys.executable)
            got = explain.run(args.case, *sides, args_, Path(tmp), out, versions, int(args.pairs), int(args.warmup),
                              args.max_seconds, _progress("explain"))
        finally:
            ab.remove_worktree(here, tree)
    print(got.describe(args.markdown, out))
    return 0


def _render(args):
    from imgbench.judge import window as history
    from imgbench.runs import record as results
    from imgbench.show import report

    # light records (the index); render reads rounds again only for the few runs it judges or draws
    runs = results.load_history(args.paths, rounds=False)
    rendered = report.render(runs, Path(args.out), args.svg, args.min_effect / 100, history.acceptances(args.paths))
    for note in runs.notes + rendered.notes:  # the index's notes are about this machine: not in the report
        print(f"imgbench {args.command}: {note}", file=sys.stderr)
    return rendered


def cmd_plot(args) -> int:
    for path in _render(args).figures:
        print(path)
    return 0


def cmd_changes(args) -> int:
    from imgbench.judge import changepoints as changes
    from imgbench.runs import record as results

    history = results.load_history(args.paths, rounds=False)  # medians are all it needs
    for line in history.notes + [f"skipped {line}" for line in history.skipped]:
        print(f"imgbench changes: {line}", file=sys.stderr)
    print(changes.describe(changes.scan(history.runs, args.p), args.p, args.markdown))
    return 0  # the history is information: the gate is compare and ab


def cmd_report(args) -> int:
    from imgbench.show import report

    md, md_path, html_path = report.write(_render(args), Path(args.out))
    print(md)
    print(f"imgbench report: wrote {md_path} and {html_path}", file=sys.stderr)
    return 0


COMMANDS = {"env": cmd_env, "list": cmd_list, "run": cmd_run, "compare": cmd_compare, "baseline": cmd_baseline,
            "ab": cmd_ab, "gate-check": cmd_gate_check, "plot": cmd_plot, "report": cmd_report, "changes": cmd_changes,
            "accept": cmd_accept, "doctor": cmd_doctor, "bisect": cmd_bisect, "explain": cmd_explain}
