"""Running the benches: `run` (save the run, compare it with the previous one) and `baseline` (merge
the run into this machine class's baseline for the gate). pytest's exit code is put on the one
scheme (core/errors.py) by `exit_code`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from imgbench.bench import runner, table
from imgbench.cli import common, parser
from imgbench.core import atomic
from imgbench.core.errors import BAD_INPUT, FAILED, INTERRUPTED, OK, UserError
from imgbench.runs import storage


def add(sub):
    r = parser.bench_command(sub, "run",
                             "run the benchmarks, save the run and compare with the previous one",
                             "Runs `pytest benches` on the devices found, saves the run under "
                             "STORAGE/<machine fingerprint>/ and compares it with the previous "
                             "saved run of the same profile on this machine class.")
    r.add_argument("--storage", default=".benchmarks",
                   help="where runs are saved (default: .benchmarks)")
    r.add_argument("--json", metavar="PATH",
                   help="also copy the saved run to PATH (e.g. for a CI artifact)")
    r.add_argument("--full-table", action="store_true",
                   help="pytest-benchmark's own table: every column, one group (default: median, "
                        "IQR and rounds, one group per test, device and model)")
    parser.pytest_rest(r, ", e.g. -- -k train_step")
    r.set_defaults(run=run)

    b = parser.bench_command(sub, "baseline",
                             "record this machine's baseline (every round's time) for the gate",
                             "Runs `pytest benches` like `run` and merges the run, every round's "
                             "time included, into BASELINES/<machine fingerprint>/<profile>.json: "
                             "its cases replace those of the same id, the others stay; written "
                             "only when the run succeeded, or when its only failures are cases "
                             "named by --allow-failed (left out, and listed). Where `run` adds a "
                             "run to the history and compares it with the one before, `baseline` "
                             "keeps one reference per machine class and profile, for compare and "
                             "the CI gate.")
    # --baselines names what the folder holds, as gpu-job's GPU_JOB_BASELINES does; --folder was
    # its first spelling
    b.add_argument("--baselines", "--folder", dest="folder", metavar="BASELINES",
                   default="baselines",
                   help="where baselines live, one folder per machine class (default: baselines; "
                        "--folder is the older spelling)")
    b.add_argument("--allow-failed", action="append", default=[], metavar="TEXT",
                   help="write the baseline even though cases whose name contains TEXT failed "
                        "(repeatable): they are left out of it and listed; any other failure "
                        "still leaves the baseline unchanged")
    parser.pytest_rest(b)
    b.set_defaults(run=baseline)


# pytest's exit codes on the one scheme: its usage error (an unknown pytest option, a bad axis
# value) and "no case selected" are bad input; a failed case, an import error or its internal
# error: the suite could not run
PYTEST_EXIT = {0: OK, 4: BAD_INPUT, 5: BAD_INPUT, INTERRUPTED: INTERRUPTED}


def exit_code(pytest_code: int) -> int:
    return PYTEST_EXIT.get(pytest_code, FAILED)


def why_not(pytest_code: int) -> str:
    """What pytest's exit code says, for the line that says nothing was saved."""
    return (f"pytest's exit {pytest_code}"
            + {1: ": a case failed or the benches did not import", 3: ": pytest's internal error",
               4: ": pytest's usage error", 5: ": no case selected"}.get(pytest_code, ""))


def summary(saved: Path, prev: Path | None) -> list[str]:
    """The end of the run (show/run_summary.py); a previous run that cannot be read is left out."""
    from imgbench.runs import runfile
    from imgbench.show import run_summary

    try:
        before = runfile.read(prev) if prev is not None else None
    except runfile.RunError:
        before = None
    return run_summary.lines(runfile.read(saved), before)


def machine_folder(parent: str, option: str) -> Path:
    from imgbench.hw import environment

    return storage.writable_folder(Path(parent) / environment.environment()["fingerprint"], option)


def run(args) -> int:
    s, pytest_args = common.pytest_args(args)
    folder = machine_folder(args.storage, "--storage")
    if args.json:
        if Path(args.json).is_dir():
            raise UserError(f"--json {args.json}: is a folder "
                            "(give a file path, e.g. results/run.json)")
        storage.writable_folder(Path(args.json).parent, "--json")
    # where pytest-benchmark looks for what it compares
    pytest_args.append(f"--benchmark-storage={folder}")
    if not args.full_table and not table.given(common.rest(args)):
        pytest_args += table.ARGS
    prev = storage.previous_run(folder, args.profile, s.devices)
    if prev is None:
        print(f"imgbench: no earlier '{args.profile}' run on {', '.join(s.devices)} saved in "
              f"{folder}: this run becomes the first; the next run is compared with it", flush=True)
    else:
        print(f"imgbench: comparing with the previous run {prev}", flush=True)
        pytest_args.append(f"--benchmark-compare={prev.resolve()}")
    # Saved by us, not by --benchmark-save: pytest-benchmark writes in place, so Ctrl-C could leave
    # half a file in the history.
    with storage.partial(folder, "run") as tmp:
        code, complete = runner.run(pytest_args + common.rest(args), tmp)
        if not complete or code not in (0, 1) or not tmp.is_file():
            print(f"imgbench run: the run did not finish ({why_not(code)}); nothing saved",
                  file=sys.stderr)
            return exit_code(code)
        saved = storage.save_run(tmp, folder, args.profile)
    print("\n".join(summary(saved, prev)), flush=True)
    if args.json:
        with atomic.written(args.json) as out:
            shutil.copyfile(saved, out)
        print(f"imgbench: run copied to {args.json}", flush=True)
    if code:
        print(f"imgbench run: {why_not(code)}; the cases that ran were saved", file=sys.stderr)
    return exit_code(code)


def baseline(args) -> int:
    s, pytest_args = common.pytest_args(args)
    final = storage.baseline_path(machine_folder(args.folder, "--baselines"), args.profile)
    storage.check_baseline(final, s)
    with (storage.partial(final.parent, final.name) as tmp,
          storage.partial(final.parent, final.name + ".junit") as junit):
        # the junit XML names the failed cases (only asked for where some may be allowed)
        junit_args = [f"--junitxml={junit}"] if args.allow_failed else []
        code, complete = runner.run([*pytest_args, *common.rest(args), *junit_args], tmp)
        failed = allowed_failures(args.allow_failed, junit) if complete and code == 1 else None
        if not complete or (code != 0 and failed is None) or not tmp.is_file():
            why = f"the run failed ({why_not(code)})" if code else "the run wrote no benchmark data"
            print(f"imgbench baseline: {why}; baseline unchanged", file=sys.stderr)
            return exit_code(code) if code else FAILED
        replaced = storage.save_baseline(tmp, final, leave_out=failed or [])
    print(f"imgbench: baseline written to {final}", flush=True)
    if failed:
        print(f"imgbench: {len(failed)} failed case(s) left out (--allow-failed): "
              f"{', '.join(failed)}", flush=True)
        code = 0
    if replaced:
        print(f"imgbench: replaced {len(replaced)} case(s) of the earlier baseline: "
              f"{', '.join(replaced)}", flush=True)
    return exit_code(code)


def allowed_failures(allow: list[str], junit: Path) -> list[str] | None:
    """The failed cases of a run when --allow-failed names every one of them; else None, and the
    ones it does not name are printed."""
    if not allow:
        return None
    failed = storage.failed_cases(junit)
    if not failed:
        print("imgbench: the run failed, but no case did (see above)", file=sys.stderr)
        return None
    other = [c for c in failed if not any(t in c for t in allow)]
    if other:
        print(f"imgbench: failed, and not named by --allow-failed: {', '.join(other)}",
              file=sys.stderr)
        return None
    return failed
