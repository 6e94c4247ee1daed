"""What several commands share: progress lines, the benches folder and the pytest arguments a run is
given, and the verdict table with its exit code. Nothing here imports torch."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from imgbench.core import config, options
from imgbench.core.errors import BAD_INPUT, OK, REGRESSION, UserError
from imgbench.forensics import git
from imgbench.forensics.worker import Side, WorkerStopped, python_of
from imgbench.judge import verdict

EXIT_BAD_INPUT = BAD_INPUT  # the name callers and tests know


def progress(command: str):
    return lambda message: print(f"imgbench {command}: {message}", file=sys.stderr, flush=True)


def threads(text: str | None) -> int | None:
    return None if text is None else options.positive_int("thread count", text)


def benches_dir(given: str | None) -> Path:
    """--benches, else the working folder's benches/ (a project of one's own), else this
    checkout's."""
    candidates = [Path(given)] if given else [Path.cwd() / "benches",
                                               Path(__file__).resolve().parents[2] / "benches"]
    for c in candidates:
        if c.is_dir() and any(c.glob("bench_*.py")):
            return c
    raise UserError(f"no benches folder at {', '.join(map(str, dict.fromkeys(candidates)))} "
                    "(run from a checkout of imgbench, or pass --benches DIR)")


def pytest_args(args):
    """Check every option before pytest starts (same one-line messages as the plugin); the settings
    and the args that run the benches with them."""
    from imgbench.bench import project
    from imgbench.bench.settings import from_options
    from imgbench.workloads import datasets

    project.load(benches_dir(args.benches))  # its conftest.py's models, before --model is checked
    s = from_options(lambda name: getattr(args, name))
    if s.dataset != "synthetic":
        datasets.load(s.dataset, s.data_root)
    given = {o.dest: getattr(args, o.dest) for o in options.OPTIONS}
    return s, [str(benches_dir(args.benches)), "-p", "no:xdist", *options.pytest_args(given),
               "--benchmark-sort=fullname"]


def side_args(args) -> list[str]:
    """The pytest arguments each side of a paired run gets: its own benches/, so not the
    folder's."""
    return pytest_args(args)[1][1:] + rest(args)


def rest(args) -> list[str]:
    """The arguments after `--`, for pytest."""
    given = getattr(args, "pytest_args", [])
    return given[1:] if given[:1] == ["--"] else given


def logs_folder() -> Path:
    """Where a crashed worker's log is kept: beside the cache of stored runs ($IMGBENCH_CACHE, else
    $XDG_CACHE_HOME/imgbench, else ~/.cache/imgbench), under logs/."""
    from imgbench.runs import cache

    return cache.location().parent / "logs"


@contextmanager
def paired(command: str, benches: str | None, base_ref: str | None,
           base_python: str | None = None) -> Iterator[tuple[Side, Side, Path]]:
    """The two sides of a paired run and a temporary folder for it: the base (`base_ref` checked out
    aside, or this checkout under `base_python`) and this checkout as the candidate. The folder and
    the checkout are removed whatever ends the block; the log of a worker that stopped is copied
    out first (logs_folder), and the error names `command` and that copy."""
    here = benches_dir(benches).parent.resolve()
    python = python_of(base_python)
    with tempfile.TemporaryDirectory() as tmp:
        if base_ref:
            repo = git.toplevel(here)
            checkout = git.checkout(repo, base_ref, Path(tmp) / "base", "--base")
        else:
            repo, checkout = here, nullcontext(here)
        try:
            with checkout as tree:
                yield (Side("base", tree / here.relative_to(repo), python),
                       Side("candidate", here, sys.executable), Path(tmp))
        except WorkerStopped as e:
            if Path(tmp) in e.log.parents:  # not kept yet (explain keeps its own in --out)
                stamp = time.strftime("%Y%m%d-%H%M%S")
                e.keep(logs_folder() / f"{command}-{stamp}-{e.worker.side.name}.log")
            raise


def process_term(args):
    """The paired policy's process term from --process-sd and --process-from, for this machine
    class (gate-check's results file is refused if it is not one; a missing one adds nothing)."""
    from imgbench.forensics import gatecheck
    from imgbench.hw import environment

    path = Path(args.process_from)
    if path.is_dir():
        raise UserError(f"--process-from {args.process_from!r} is a folder (give a gate-check "
                        "results file)")
    machine = environment.environment()["fingerprint"]
    if args.process_sd is None:  # the defaults: the CPU's, and the accelerators' own
        return gatecheck.process_term(path, machine, config.AB_PROCESS_SD,
                                      config.AB_PROCESS_SD_ACCELERATOR)
    return gatecheck.process_term(path, machine, args.process_sd / 100)  # for every case


def verdict_code(verdicts, memory_verdicts=None) -> int:
    """1 when a case regressed, in time or in peak memory; else 0."""
    from imgbench.judge import memory_rule

    memory = memory_rule.counts(memory_verdicts or [])[verdict.REGRESSION]
    return REGRESSION if verdict.counts(verdicts)[verdict.REGRESSION] or memory else OK


def report(verdicts, markdown: bool, notes=(), memory_verdicts=None) -> int:
    """The verdict table, any notes, a count per verdict, then the memory verdicts if given; exit 1
    when a case regressed, in time or in peak memory (the memory table and a line say which)."""
    print(verdict.render(verdicts, markdown=markdown))
    for note in notes:
        print(note)
    print(", ".join(f"{n} {k}" for k, n in verdict.counts(verdicts).items()))
    if memory_verdicts is not None:
        from imgbench.judge import memory_rule

        print(memory_rule.describe(memory_verdicts, markdown))
        if memory_rule.counts(memory_verdicts)[verdict.REGRESSION]:
            print("imgbench: a case's peak memory grew beyond --memory-effect and "
                  "--memory-floor: a regression (exit 1)")
    return verdict_code(verdicts, memory_verdicts)


def verdicts_json(verdicts) -> dict:
    """The verdicts and their count per verdict, for --json."""
    from imgbench.cli import jsonout

    return {"verdicts": jsonout.plain(verdicts), "counts": verdict.counts(verdicts)}
