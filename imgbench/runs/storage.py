"""Where runs live: STORAGE/<machine class>/<platform>/NNNN_<profile>.json as pytest-benchmark lays
them out, the previous run of a profile, baselines at FOLDER/<machine class>/<profile>.json, and
saving either whole or not at all. Run numbers are taken by exclusive creation, so processes saving
into one folder at the same time never overwrite each other. A name a run file gives (its machine
class, its profile) becomes part of a path only when it is one plain name (PATH_PART): anything else
is refused with one line and nothing is saved, so no run file can send a save outside the folder it
is saved into. No torch here.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree

from imgbench.core.errors import UserError
from imgbench.runs import history, runfile
from imgbench.runs.record import UNKNOWN

RUN_NAME = re.compile(r"(\d{4,})_(.+)\.json")  # pytest-benchmark's %04d: run 10000 has five digits
# one folder or file name: no separator, nothing a shell or a file system reads specially
PATH_PART = re.compile(r"[A-Za-z0-9._-]{1,200}")


class StorageError(UserError):
    pass


def path_part(name, what: str) -> str:
    """`name`, which a run file gave, where it is to name one folder or file; StorageError when it
    could name another place ('../..', '/etc', 'a/b', '.', '')."""
    if not (isinstance(name, str) and PATH_PART.fullmatch(name) and name not in (".", "..")):
        raise StorageError(f"{what} {str(name)[:80]!r} cannot name a folder or file (valid: "
                           "letters, digits, '.', '_' and '-', not '.' or '..'): nothing saved")
    return name


def writable_folder(folder: Path, option: str) -> Path:
    """Created if missing; checked before a run of minutes, not after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{option}: cannot create {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"{option}: cannot write to {folder}")
    return folder


def platform_folder(folder: Path) -> Path:
    """pytest-benchmark's sub-folder for this interpreter (Linux-CPython-3.11-64bit)."""
    from pytest_benchmark.utils import get_machine_id

    return folder / get_machine_id()


def previous_run(folder: Path, profile: str, device_list: list[str] | None = None) -> Path | None:
    """The newest saved run of this profile in a machine-class folder, if any; with `device_list`,
    the newest that ran the same devices (a CPU-only run shares no case with a CUDA-only one).

    Newest by the run's recorded date: pytest-benchmark numbers runs per platform sub-folder, so
    after a Python upgrade a new folder starts again at 0001. Read through the cache of stored runs
    (runs.history); unreadable runs, and runs without a case, are never the baseline."""
    named = [p for p in folder.glob(f"*/*_{profile}.json")
             if (m := RUN_NAME.fullmatch(p.name)) and m[2] == profile]
    try:
        runs = history.load(named, rounds=False).runs if named else []
    except runfile.RunError:  # not one readable
        return None
    found = [run[0] for run in runs
             if run[0].datetime and (device_list is None or run[0].devices == tuple(device_list))]
    return Path(max(found, key=lambda r: (r.datetime, Path(r.path).name)).path) if found else None


def stored_runs(folder: Path, prefix: str | None = None) -> list[Path]:
    """The numbered runs in a platform folder; with `prefix` (as --benchmark-compare takes it: 0003,
    or 0003_quick), those whose name starts with it."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if RUN_NAME.fullmatch(p.name)
                  and (prefix is None or p.name.startswith(prefix.rstrip("*"))))


@contextmanager
def partial(folder: Path, name: str) -> Iterator[Path]:
    """A hidden temporary path in `folder` to write a run to; removed at the end whatever
    happens."""
    # Not a .json (a history reader must never take it for a run), nor files.atomic's name (both
    # meet here).
    tmp = folder / f".{name}.{os.getpid()}.pytest-partial"
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def save_run(tmp: Path, folder: Path, profile: str) -> Path:
    """Move the finished run `tmp` to the next free FOLDER/<platform>/NNNN_<profile>.json. The
    number is taken by a hard link that fails if the name exists, so a concurrent save takes the
    next one."""
    sub = platform_folder(folder)
    sub.mkdir(parents=True, exist_ok=True)
    while True:
        numbers = [int(m[1]) for p in sub.iterdir() if (m := RUN_NAME.fullmatch(p.name))]
        dest = sub / f"{max(numbers, default=0) + 1:04}_{profile}.json"
        try:
            _claim(tmp, dest)
        except FileExistsError:
            continue  # another process took this number first
        return dest


def _claim(tmp: Path, dest: Path):
    """Move `tmp` to `dest` unless `dest` exists (FileExistsError): a hard link where the file
    system has them; elsewhere the name is first reserved by exclusive creation, then replaced."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, dest)
        return
    tmp.unlink()


def baseline_path(folder: Path, profile: str) -> Path:
    return folder / f"{profile}.json"


def check_baseline(path: Path, settings) -> None:
    """An existing baseline takes new cases only from runs measured like it: say so before
    running."""
    if not path.is_file():
        return
    try:
        meta = runfile.read(path).meta
    except runfile.RunError as e:
        raise StorageError(f"{e}: move it aside to record a new baseline") from None
    for key, now in (("profile", settings.profile.name), ("dataset", settings.dataset),
                     ("optimizer", settings.optimizer), ("threads", settings.threads)):
        if key in meta and meta[key] != now:
            raise StorageError(f"{path} was recorded with {key} {meta[key]!r}, "
                               f"this run has {now!r}: record it with the same settings, "
                               f"or move {path.name} aside to start a new baseline")


def failed_cases(junit: Path) -> list[str] | None:
    """The names of the failed and errored cases in pytest's junit XML, or None where there is no
    readable file."""
    try:
        root = ElementTree.parse(junit).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    return [str(c.get("name")) for c in root.iter("testcase")
            if c.find("failure") is not None or c.find("error") is not None]


def save_baseline(tmp: Path, path: Path, leave_out: list[str] = ()) -> list[str]:
    """Merge the finished run `tmp` into the baseline at `path`, written whole or not at all: its
    cases replace those of the same test and params, every other case of the baseline stays. Cases
    named in `leave_out` (failed ones: a case that raised after timing is still in the run) are not
    taken from the run. Returns the names of the cases replaced."""
    new = runfile.read(tmp)
    if leave_out:
        kept = [b for b in new.benchmarks if b.get("name") not in leave_out]
        new = dataclasses.replace(new, benchmarks=kept, raw={**new.raw, "benchmarks": kept})
    doc, replaced = runfile.merged(new, runfile.read(path)) if path.is_file() else (new.raw, [])
    doc["benchmarks"] = sorted(doc["benchmarks"], key=lambda b: str(b.get("fullname", b["name"])))
    runfile.write(path, doc)
    tmp.unlink(missing_ok=True)
    return replaced


def save_judged(run: runfile.Run, folder: Path, regressions: list[str], baseline: str) -> Path:
    """A judged run saved into a history folder
    (FOLDER/<machine class>/<platform>/NNNN_<profile>.json, numbered as `imgbench run` numbers
    them), with what it was judged: its `judged` block names the cases found regressed, which
    judge.window keeps out of the reference until accepted."""
    doc = copy.deepcopy(run.raw)
    meta = doc.setdefault("imgbench", {})
    meta["judged"] = {"datetime": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
                      "baseline": baseline, "regressions": regressions}
    machine = path_part(run.fingerprint or UNKNOWN, "the run's machine class")
    profile = path_part(run.profile or "run", "the run's profile")
    target = writable_folder(folder / machine, "--save-to")
    with partial(target, "judged") as tmp:
        runfile.write(tmp, doc)
        return save_run(tmp, target, profile)
