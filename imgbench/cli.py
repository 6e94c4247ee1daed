"""`imgbench` command line. Thin: parses, calls the library, sets the exit code.

Exit codes: 0 success; 1 benchmarks failed or a case regressed; 2 bad input; 130 interrupted
(Ctrl-C; nothing saved); other values are pytest's own (3 internal error, 4 usage error, 5 no
benchmark selected).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class BadInput(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="imgbench", description=__doc__.split("\n\n")[0],
                epilog="Run 'imgbench COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    e = sub.add_parser("env", help="the environment as the suite records it",
                       description="Hardware, versions and numeric flags recorded with every run.")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.add_argument("--fingerprint", action="store_true", help="print only the machine class (a folder name)")
    e.add_argument("--threads", help="CPU threads to record (default: every core this process may use)")

    ls = sub.add_parser("list", help="models, benchmark families, axes and profiles",
                        description="What the suite can run.")
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")

    c = sub.add_parser("compare", help="judge a run against a baseline run (and the history of its machine)",
                       description="Matches cases by family and params; per case the ratio of medians with a "
                                   "bootstrap interval from the per-round data, the bound from the run-to-run "
                                   "spread of --history runs, and a verdict. Exit 1 when any case regresses "
                                   "beyond the interval, the minimum effect and the history bound.")
    c.add_argument("candidate", help="the run to judge (pytest-benchmark JSON)")
    c.add_argument("baseline", help="the run to judge it against")
    c.add_argument("--history", nargs="*", default=[], metavar="PATH",
                   help="earlier runs of the same machine class (files or folders)")
    c.add_argument("--min-effect", type=_effect, default=5.0, metavar="PERCENT",
                   help="smallest slowdown worth failing for (default: 5)")
    c.add_argument("--family-effect", nargs="*", default=[], metavar="FAMILY=PERCENT",
                   help="per-family minimum effect, e.g. epoch=10 dataloader=15")
    c.add_argument("--markdown", action="store_true", help="print a markdown table")

    r = sub.add_parser("run", help="run the benchmarks, save the run and compare with the previous one",
                       description="Runs `pytest benches` on the devices found, saves the run under "
                                   "STORAGE/<machine fingerprint>/ and compares it with the previous saved "
                                   "run of the same profile on this machine class.")
    _axis_options(r)
    r.add_argument("--storage", default=".benchmarks", help="where runs are saved (default: .benchmarks)")
    r.add_argument("--json", metavar="PATH", help="also copy the saved run to PATH (e.g. for a CI artifact)")
    r.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help="after --: more pytest arguments, e.g. -- -k train_step")

    ab = sub.add_parser("ab", help="interleaved A/B of this checkout against a git ref or another Python",
                        description="Times the selected cases of the base (--base GIT_REF and/or --base-python) "
                                    "and of this checkout in the same job, pair by pair in random order; decides "
                                    "per case with a one-sided Mann-Whitney U test at --alpha plus --min-effect, "
                                    "and confirms a regression with as many pairs again before exit 1.")
    ab.add_argument("--base", metavar="GIT_REF", help="the version to compare with (checked out aside)")
    ab.add_argument("--base-python", metavar="PATH", help="the base's Python (another environment, e.g. torch)")
    ab.add_argument("--pairs", type=int, default=10, help="samples per side (default: 10)")
    ab.add_argument("--alpha", type=_alpha, default=0.01, help="significance level (default: 0.01)")
    ab.add_argument("--min-effect", type=_effect, default=5.0, metavar="PERCENT",
                    help="smallest slowdown worth failing for (default: 5)")
    ab.add_argument("--seed", type=int, default=0, help="seed of the pair order (default: 0)")
    ab.add_argument("--markdown", action="store_true", help="print a markdown table")
    _axis_options(ab)
    ab.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments, e.g. -- -k forward")

    g = sub.add_parser("gate-check", help="measure the gate: A/A false alarms and injected-slowdown detection",
                       description="Times one case again and again in this process: A/A trials (same code "
                                   "both sides) and trials with a slowdown injected into the candidate, each "
                                   "judged by the interleaved A/B decision, by compare on two successive runs, "
                                   "and by pytest-benchmark's --benchmark-compare-fail median:5%%; prints the "
                                   "share of trials each flagged.")
    g.add_argument("--model", default="kerascnn", help="the case's model (default: kerascnn)")
    g.add_argument("--family", default="train_step", choices=["forward", "train_step"],
                   help="the case's family (default: train_step)")
    g.add_argument("--device", default="cpu", help="one device (default: cpu)")
    g.add_argument("--batch-size", default="32", help="one batch size (default: 32)")
    g.add_argument("--threads", help="CPU threads (default: every core this process may use)")
    g.add_argument("--trials", type=int, default=100, help="trials per slowdown (default: 100)")
    g.add_argument("--effects", default="0,5,10", help="injected slowdowns in percent, 0 = A/A (default: 0,5,10)")
    g.add_argument("--pairs", type=int, default=10, help="A/B samples per side (default: 10)")
    g.add_argument("--rounds", type=int, default=5, help="timed calls per sample (default: 5)")
    g.add_argument("--alpha", type=_alpha, default=0.01, help="significance level (default: 0.01)")
    g.add_argument("--min-effect", type=_effect, default=5.0, metavar="PERCENT",
                   help="smallest slowdown worth failing for (default: 5)")
    g.add_argument("--markdown", action="store_true", help="print a markdown table")

    for name, what in (("plot", "figures from stored runs: speedup trend, throughput, latest vs baseline, epoch"),
                       ("report", "markdown and self-contained HTML report of stored runs, with the figures")):
        pr = sub.add_parser(name, help=what,
                            description=f"{what[0].upper()}{what[1:]}. Reads pytest-benchmark JSON from storage "
                                        "folders (any number of machine classes) and files; unreadable files are "
                                        "skipped with a line each.")
        pr.add_argument("paths", nargs="*", default=[".benchmarks"], metavar="PATH",
                        help="storage folders and run files (default: .benchmarks)")
        pr.add_argument("--out", default="imgbench-report" if name == "report" else "figures",
                        help=f"output folder (default: {'imgbench-report' if name == 'report' else 'figures'})")
        pr.add_argument("--svg", action="store_true", help="SVG files beside the PNGs")
        pr.add_argument("--min-effect", type=_effect, default=5.0, metavar="PERCENT",
                        help="smallest change called a regression or improvement (default: 5)")

    bl = sub.add_parser("baseline", help="record this machine's baseline (every round's time) for the gate",
                        description="Runs `pytest benches` like `run` and writes the run, every round's time "
                                    "included, to FOLDER/<machine fingerprint>/<profile>.json: first to a "
                                    "temporary file, renamed only when the run succeeded.")
    _axis_options(bl)
    bl.add_argument("--folder", default="baselines", help="where baselines live (default: baselines)")
    bl.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments")
    return p


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


_effect = _number(lambda v: 0 <= v < 1000, "a percentage (valid: a number from 0 below 1000)")
_alpha = _number(lambda v: 0 < v < 1, "a significance level (valid: above 0 and below 1)")


def _axis_options(p: argparse.ArgumentParser):
    p.add_argument("--device", default="auto", help="comma list, or auto (default: auto)")
    p.add_argument("--model", default="all", help="comma list, or all (default: all)")
    p.add_argument("--batch-size", default="32,128", help="comma list (default: 32,128)")
    p.add_argument("--profile", default="quick", help="quick or full (default: quick)")
    p.add_argument("--threads", help="CPU threads (default: every core this process may use)")
    p.add_argument("--optimizer", default="adam", help="adam or sgd (default: adam)")
    p.add_argument("--dataset", default="synthetic", help="synthetic, cifar10 or mnist (default: synthetic)")
    p.add_argument("--data-root", help="folder holding the dataset for --dataset cifar10/mnist")
    p.add_argument("--precision", default="fp32", help="comma list of fp32, tf32, bf16, fp16 (default: fp32)")
    p.add_argument("--memory-format", default="nchw", help="comma list of nchw, channels_last (default: nchw)")
    p.add_argument("--compile", default="off", help="comma list of off, on (default: off)")
    p.add_argument("--benches", help="the benches folder (default: the checkout's benches/)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"env": cmd_env, "list": cmd_list, "run": cmd_run, "compare": cmd_compare,
                    "baseline": cmd_baseline, "ab": cmd_ab, "gate-check": cmd_gate_check,
                    "plot": cmd_plot, "report": cmd_report}
        return commands[args.command](args)
    except BadInput as e:
        print(f"imgbench: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a path we were told to read or write: an unwritable --out, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"imgbench: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("imgbench: interrupted; nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED


def _threads(text: str | None) -> int | None:
    from imgbench import axes

    if text is None:
        return None
    try:
        return axes.positive_int("thread count", text)
    except axes.AxisError as e:
        raise BadInput(e) from None


def cmd_env(args) -> int:
    import torch

    from imgbench import devices

    threads = _threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    env = devices.environment(threads=threads or devices.usable_cores())
    if args.fingerprint:
        print(env["fingerprint"])
        return 0
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    cpu = env["cpu"]
    lines = [
        f"fingerprint  {env['fingerprint']}",
        f"cpu          {cpu['brand']} ({cpu['cores']} usable cores, {cpu['logical_cpus']} logical)",
        f"threads      {env['threads']} (interop {env['interop_threads']})",
        f"python       {env['python']}",
        f"torch        {env['torch']} (CUDA {env['cuda'] or '-'}, cuDNN {env['cudnn'] or '-'})",
        f"torchvision  {env['torchvision']}",
    ]
    for g in env["gpus"]:
        lines.append(f"gpu {g['index']}        {g['name']}, {g['memory_gib']} GiB, sm {g['capability']}")
    if env["gpus"]:
        lines.append(f"driver       {env['driver'] or 'unknown'}")
    else:
        lines.append("gpu          none")
    lines.append("flags        " + ", ".join(f"{k}={v}" for k, v in env["flags"].items()))
    lines.append(f"devices      {', '.join(devices.available())}")
    print("\n".join(lines))
    return 0


def cmd_list(args) -> int:
    from imgbench import axes, devices, models

    listing = {
        "models": {n: {"input_shape": list(models.spec(n).input_shape), "num_classes": models.spec(n).num_classes,
                       "summary": models.spec(n).summary} for n in models.names()},
        "families": axes.FAMILIES,
        "axes": {"device": devices.VALID, "devices_here": devices.available(), "batch_size": "32,128",
                 "optimizer": list(axes.OPTIMIZERS), "dataset": list(axes.DATASETS),
                 "precision": list(axes.PRECISIONS), "memory_format": list(axes.MEMORY_FORMATS),
                 "compile": list(axes.COMPILE)},
        "profiles": {p.name: p.summary for p in axes.PROFILES.values()},
    }
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    out = ["models:"]
    out += [f"  {n:<10} {'x'.join(map(str, m['input_shape'])):<10} {m['summary']}"
            for n, m in listing["models"].items()]
    out += ["families:"] + [f"  {n:<10} {s}" for n, s in axes.FAMILIES.items()]
    out += ["axes:",
            f"  device     {devices.VALID} (here: {', '.join(devices.available())}); default auto",
            "  batch-size comma list of positive integers; default 32,128",
            f"  optimizer  {', '.join(axes.OPTIMIZERS)}; default adam",
            f"  dataset    {', '.join(axes.DATASETS)}; default synthetic (cifar10/mnist need --data-root)",
            f"  precision  {', '.join(axes.PRECISIONS)}; default fp32",
            f"  memory-format {', '.join(axes.MEMORY_FORMATS)}; default nchw",
            f"  compile    {', '.join(axes.COMPILE)}; default off"]
    out += ["profiles:"] + [f"  {n:<10} {s}" for n, s in listing["profiles"].items()]
    print("\n".join(out))
    return 0


def cmd_compare(args) -> int:
    from imgbench import axes, compare, results

    try:
        effects = {}
        for item in args.family_effect:
            family, _, percent = item.partition("=")
            if family not in axes.FAMILIES:
                raise BadInput(f"--family-effect {item!r}: unknown family {family!r} (valid: "
                               f"{', '.join(axes.FAMILIES)})")
            try:
                effects[family] = _effect(percent) / 100
            except argparse.ArgumentTypeError:
                raise BadInput(f"--family-effect {item!r}: expected FAMILY=PERCENT with PERCENT from 0 below 1000, "
                               "e.g. epoch=10") from None
        cand, base = results.load(args.candidate), results.load(args.baseline)
        history_files = results.find(args.history)
        history = [results.load(p) for p in history_files]
        notes = []
        if args.history and not history_files:
            notes.append(f"no stored runs in {' '.join(args.history)}: judged without a history bound")
        if (other := compare.hardware(base, cand)) is None:
            verdicts, only_cand, only_base = compare.compare(base, cand, history, args.min_effect / 100, effects)
        else:
            verdicts, only_cand, only_base = compare.compare_speedups(base, cand, args.min_effect / 100, effects)
            print(f"imgbench: {other}: absolute times are not compared; comparing GPU-over-CPU speedups "
                  "(ratio = baseline speedup / candidate speedup, > 1 is worse)", flush=True)
            if history:
                notes.append("the history is not used across machine classes")
    except ValueError as e:  # RunError, CompareError, a bad PERCENT
        raise BadInput(e) from None
    if not verdicts:
        raise BadInput(f"no case of {args.candidate} is in {args.baseline}: nothing to compare")
    if only_base:
        notes.append(f"only in the baseline (not run by the candidate): {', '.join(only_base)}")
    if only_cand:
        notes.append(f"only in the candidate (new, no baseline): {', '.join(only_cand)}")
    return _report(verdicts, args.markdown, notes)


def _report(verdicts, markdown: bool, notes=()) -> int:
    """The verdict table, any notes, a count per verdict; exit 1 when a case regressed."""
    from imgbench import compare

    print(compare.table(verdicts, markdown=markdown))
    for note in notes:
        print(note)
    counts = {k: sum(v.verdict == k for v in verdicts) for k in (compare.REGRESSION, compare.IMPROVEMENT,
                                                                 compare.UNCHANGED, compare.NOISY)}
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if counts[compare.REGRESSION] else 0


def _benches_dir(given: str | None) -> Path:
    candidates = [Path(given)] if given else [Path(__file__).resolve().parent.parent / "benches",
                                               Path.cwd() / "benches"]
    for c in candidates:
        if c.is_dir() and any(c.glob("bench_*.py")):
            return c
    raise BadInput(f"no benches folder at {', '.join(map(str, candidates))} (run from a checkout of imgbench, "
                   "or pass --benches DIR)")


def previous_run(folder: Path, profile: str, device_list: list[str] | None = None) -> Path | None:
    """The newest saved run of this profile in a machine-class folder, if any; with `device_list`,
    the newest that ran the same devices (a CPU-only run shares no case with a CUDA-only one).

    Newest by the run's recorded date: pytest-benchmark numbers runs per platform sub-folder, so
    after a Python upgrade a new folder starts again at 0001.
    """
    def head(path: Path) -> tuple[str, object]:
        try:
            run = json.loads(path.read_text())
            return str(run.get("datetime", "")), (run.get("imgbench") or {}).get("devices")
        except (OSError, ValueError, AttributeError):
            return "", None  # unreadable: never the comparison's baseline

    runs = []
    for path in folder.glob(f"*/[0-9][0-9][0-9][0-9]_{profile}.json"):
        started, ran = head(path)
        if started and (device_list is None or ran == device_list):
            runs.append((started, path.name, path))
    return max(runs)[2] if runs else None


def _pytest_args(args):
    """Check every option before pytest starts (same one-line messages as the plugin); the settings
    and the args that run the benches with them."""
    from imgbench import axes, data, devices

    try:
        s = axes.settings(lambda name: getattr(args, name))
        if s.dataset != "synthetic":
            data.real(s.dataset, s.data_root)
    except (axes.AxisError, devices.DeviceError, data.DatasetError) as e:
        raise BadInput(e) from None
    out = [str(_benches_dir(args.benches)), "-p", "no:xdist", "--device", args.device, "--model", args.model,
           "--batch-size", args.batch_size, "--profile", args.profile, "--optimizer", args.optimizer,
           "--dataset", args.dataset, *(["--data-root", args.data_root] if args.data_root else []),
           "--precision", args.precision, "--memory-format", args.memory_format, "--compile", args.compile,
           "--benchmark-sort=fullname"]
    if args.threads:
        out += ["--threads", str(s.threads)]
    return s, out


def _writable_folder(folder: Path, option: str) -> Path:
    """Created if missing; checked before a run of minutes, not after it."""
    import os

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"{option}: cannot create {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"{option}: cannot write to {folder}")
    return folder


def _rest(args) -> list[str]:
    return args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args


def next_run_path(folder: Path, profile: str) -> Path:
    """Where pytest-benchmark's own --benchmark-save would put the run: FOLDER/<platform>/NNNN_<profile>.json."""
    from pytest_benchmark.utils import get_machine_id

    sub = folder / get_machine_id()
    numbers = [int(p.name[:4]) for p in sub.glob("[0-9][0-9][0-9][0-9]_*.json")]
    return sub / f"{max(numbers, default=0) + 1:04}_{profile}.json"


def _run_atomically(pytest_args: list[str], tmp: Path, keep: tuple[int, ...], final) -> tuple[int, Path | None]:
    """pytest writes its JSON (every round included) to `tmp`; only a run that ended with an exit
    code in `keep` is renamed to `final()`. A failed or interrupted (Ctrl-C) run leaves no file."""
    import os

    import pytest

    class CtrlC:  # pytest ends with 2 both for Ctrl-C and for a collection error
        seen = False

        def pytest_keyboard_interrupt(self, excinfo):  # also called for collection errors, as Interrupted
            self.seen = excinfo.type is KeyboardInterrupt

    ctrl_c = CtrlC()
    try:
        code = int(pytest.main([*pytest_args, f"--benchmark-json={tmp}"], plugins=[ctrl_c]))
        if code == pytest.ExitCode.INTERRUPTED:  # pytest's 2 would read as our "bad input"
            code = EXIT_INTERRUPTED if ctrl_c.seen else 1
            return code, None
        if code in keep and tmp.is_file():
            dest = final()
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            return code, dest
        return code, None
    finally:
        tmp.unlink(missing_ok=True)


def cmd_run(args) -> int:
    import os

    from imgbench import devices

    s, pytest_args = _pytest_args(args)
    folder = _writable_folder(Path(args.storage) / devices.environment()["fingerprint"], "--storage")
    if args.json:
        if Path(args.json).is_dir():
            raise BadInput(f"--json {args.json}: is a folder (give a file path, e.g. results/run.json)")
        _writable_folder(Path(args.json).parent, "--json")
    pytest_args.append(f"--benchmark-storage={folder}")  # where pytest-benchmark looks for what it compares
    prev = previous_run(folder, args.profile, s.devices)
    if prev is None:
        print(f"imgbench: no earlier '{args.profile}' run on {', '.join(s.devices)} saved in {folder}: this run "
              "becomes the first; the next run is compared with it", flush=True)
    else:
        print(f"imgbench: comparing with the previous run {prev}", flush=True)
        pytest_args.append(f"--benchmark-compare={prev.resolve()}")
    # Saved by us, not by --benchmark-save: pytest-benchmark writes in place, so Ctrl-C could leave
    # half a file in the history.
    tmp = folder / f".run-{os.getpid()}.partial"
    code, saved = _run_atomically(pytest_args + _rest(args), tmp, (0, 1), lambda: next_run_path(folder, args.profile))
    if saved is None:
        print(f"imgbench: the run did not finish (exit {code}); nothing saved", file=sys.stderr)
        return code
    print(f"imgbench: run saved to {saved}", flush=True)
    if args.json:
        import shutil

        from imgbench import files

        with files.atomic(args.json) as tmp:
            shutil.copyfile(saved, tmp)
        print(f"imgbench: run copied to {args.json}", flush=True)
    return code


def cmd_ab(args) -> int:
    import tempfile

    from imgbench import ab

    if not args.base and not args.base_python:
        raise BadInput("ab needs --base GIT_REF, --base-python PATH, or both")
    if args.pairs < 3:
        raise BadInput(f"--pairs {args.pairs} is too few to decide anything (valid: 3 or more; 10 by default)")
    pytest_args = _pytest_args(args)[1][1:] + _rest(args)  # each side runs its own benches/
    here = _benches_dir(args.benches).parent
    with tempfile.TemporaryDirectory() as tmp:
        try:
            base_python = ab.python_of(args.base_python)
            tree = ab.worktree(args.base, here, Path(tmp) / "base") if args.base else here
            try:
                sides = ab.samplers(ab.Side("base", tree, base_python), ab.Side("candidate", here, sys.executable),
                                    pytest_args, Path(tmp))
                verdicts = ab.run(sides, args.pairs, args.alpha, args.min_effect / 100, args.seed,
                                  progress=lambda m: print(f"imgbench ab: {m}", file=sys.stderr, flush=True))
            finally:
                if args.base:
                    ab.remove_worktree(here, tree)
        except ab.ABError as e:
            raise BadInput(e) from None
    if not verdicts:
        raise BadInput("no case ran in both versions: nothing to compare")
    return _report(verdicts, args.markdown)


def _percent(option: str, text: str) -> float:
    try:
        return _effect(text)
    except argparse.ArgumentTypeError:
        raise BadInput(f"{option} {text!r} is not a percentage (valid: numbers from 0, e.g. 0,5,10)") from None


def cmd_gate_check(args) -> int:
    import torch

    from imgbench import axes, cases, devices, gatecheck

    try:
        opts = {"device": args.device, "batch_size": args.batch_size, "model": args.model, "profile": "quick",
                "threads": args.threads, "optimizer": "adam", "dataset": "synthetic", "precision": "fp32",
                "memory_format": "nchw", "compile": "off"}
        s = axes.settings(opts.get)
        if len(s.devices) != 1 or len(s.batch_sizes) != 1 or len(s.models) != 1:
            raise BadInput("gate-check times one case: give one --device, one --batch-size and one --model")
        devices.check(s.devices[0])
        effects = [_percent("--effects", e) / 100 for e in args.effects.split(",")]
    except (axes.AxisError, devices.DeviceError) as e:
        raise BadInput(e) from None
    for name, value, least in (("--trials", args.trials, 1), ("--pairs", args.pairs, 3), ("--rounds", args.rounds, 1)):
        if value < least:
            raise BadInput(f"{name} {value}: valid is {least} or more")
    torch.set_num_threads(s.threads)
    case = cases.Case(s.models[0], s.devices[0], s.batch_sizes[0], s)
    fn = getattr(case, args.family)().fn
    print(f"imgbench gate-check: {args.family} {case.model} on {case.device}, batch {case.batch_size}, "
          f"{s.threads} threads; {args.trials} trials per slowdown, {args.pairs} pairs of {args.rounds} rounds",
          flush=True)
    tallies = gatecheck.measure(fn, devices.synchronizer(case.device), effects, args.trials, args.pairs, args.rounds,
                                args.min_effect / 100, args.alpha,
                                progress=lambda m: print(f"imgbench gate-check: {m}", file=sys.stderr, flush=True))
    print(gatecheck.table(tallies, args.markdown))
    return 0


def _render(args):
    from imgbench import report, results

    try:
        history = results.load_history(args.paths)
    except results.RunError as e:
        raise BadInput(e) from None
    rendered = report.render(history, Path(args.out), args.svg, args.min_effect / 100)
    for note in rendered.notes:
        print(f"imgbench {args.command}: {note}", file=sys.stderr)
    return rendered


def cmd_plot(args) -> int:
    rendered = _render(args)
    for path in rendered.figures:
        print(path)
    return 0


def cmd_report(args) -> int:
    from imgbench import report

    md, md_path, html_path = report.write(_render(args), Path(args.out))
    print(md)
    print(f"imgbench report: wrote {md_path} and {html_path}", file=sys.stderr)
    return 0


def cmd_baseline(args) -> int:
    from imgbench import devices

    _, pytest_args = _pytest_args(args)
    folder = _writable_folder(Path(args.folder) / devices.environment()["fingerprint"], "--folder")
    final = folder / f"{args.profile}.json"
    code, saved = _run_atomically([*pytest_args, *_rest(args)], folder / f".{args.profile}.json.partial",
                                  (0,), lambda: final)
    if saved is not None:
        print(f"imgbench: baseline written to {final}", flush=True)
    elif code == 0:
        code = 1
        print("imgbench: the run wrote no benchmark data; baseline unchanged", file=sys.stderr)
    else:
        print(f"imgbench: the run failed (exit {code}); baseline unchanged", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
