"""The run file: pytest-benchmark's JSON plus imgbench's block, written and read here and nowhere
else.

pytest-benchmark owns the file's shape (machine_info, commit_info, datetime, benchmarks); imgbench
adds `machine_info.imgbench` (the recorded environment), `machine_info.fingerprint` (the machine
class) and a top-level `imgbench` block with the run's settings under a schema version. A run of a
newer schema is refused; older runs are read, and the fields they lack are named. No torch here.
"""

from __future__ import annotations

import copy
import datetime as dt
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from imgbench.core import atomic
from imgbench.core.errors import UserError
from imgbench.hw import machine_class

SCHEMA = 1  # version of the imgbench block; runs written before it was recorded read as 0
# What a schema-1 block holds; an older run lacks some (the committed 2-core baseline has no
# optimizer).
FIELDS = ("version", "profile", "devices", "threads", "dataset", "optimizer", "precisions",
          "memory_formats", "compile", "peaks")


class RunError(UserError):
    """A file that is not a readable run; the message names it and says why."""


def block(version: str, settings, peaks: dict) -> dict:
    """The imgbench block of a run measured under `settings` (options.Settings)."""
    return {"schema": SCHEMA, "version": version, "profile": settings.profile.name,
            "devices": settings.devices, "threads": settings.threads, "dataset": settings.dataset,
            "optimizer": settings.optimizer,
            "precisions": settings.precisions, "memory_formats": settings.memory_formats,
            "compile": settings.compile,
            # measured, so not machine_info: it would differ in every comparison
            "peaks": peaks}


def machine_info(env: dict) -> dict:
    """What imgbench adds to pytest-benchmark's machine_info: the environment and the machine
    class."""
    return {"imgbench": env, "fingerprint": env["fingerprint"]}


@dataclass(frozen=True)
class Run:
    path: Path
    raw: dict                   # the whole file, as stored
    benchmarks: list            # pytest-benchmark's list of cases, as stored
    datetime: str
    commit: str | None
    fingerprint: str | None
    env: dict                   # machine_info.imgbench
    meta: dict                  # the imgbench block
    version: str                # of pytest-benchmark
    schema: int

    @property
    def profile(self) -> str:
        return str(self.meta.get("profile", ""))

    @property
    def missing(self) -> list[str]:
        """The schema's fields this run lacks (an older imgbench's run, or another tool's)."""
        return [f for f in FIELDS if f not in self.meta]

    @property
    def threads(self) -> int | None:
        t = self.meta.get("threads")
        return t if isinstance(t, int) and not isinstance(t, bool) else None

    @property
    def regressions(self) -> set[str]:
        """Cases judged a regression when this run was saved into a history (its `judged` block)."""
        return set(_dict(self.meta.get("judged")).get("regressions", []))  # checked by read()

    @property
    def devices(self):
        return self.meta.get("devices")

    def lacks(self) -> str | None:
        """One line naming the imgbench fields this run lacks (an older imgbench's, or another
        tool's), or None."""
        if not self.missing:
            return None
        who = "not written by imgbench" if not self.meta else f"run file schema {self.schema}"
        return f"{self.path}: lacks {', '.join(self.missing)} ({who}): not checked"


def read(path: str | Path) -> Run:
    path = Path(path)
    text = _text(path)
    try:
        run = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: corrupt or truncated JSON "
                       f"(line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:  # a 5000-digit number; arrays nested 10^5 deep
        raise RunError(f"{path}: not a pytest-benchmark run (unreadable JSON: "
                       f"{str(e).split(':')[0]})") from None
    if (not isinstance(run, dict) or not isinstance(run.get("benchmarks"), list)
            or "machine_info" not in run):
        raise RunError(f"{path}: not a pytest-benchmark run "
                       "(expected 'machine_info' and a 'benchmarks' list)")
    machine = _dict(run["machine_info"])
    meta = _dict(run.get("imgbench"))
    schema = meta.get("schema", 0)
    # JSON true is no version
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        raise RunError(f"{path}: imgbench schema {schema!r} is not a version number "
                       f"(valid: 0 to {SCHEMA})")
    if schema > SCHEMA:
        raise RunError(f"{path}: written by a newer imgbench (run file schema {schema}; "
                       f"this version reads up to {SCHEMA}): upgrade imgbench to read it")
    fingerprint, commit = machine_class.of_run(machine), _dict(run.get("commit_info")).get("id")
    # The machine class names the folders that compare --save-to and accept write into.
    if fingerprint is not None and not (isinstance(fingerprint, str)
                                        and FOLDER_NAME.fullmatch(fingerprint)
                                        and fingerprint not in (".", "..")):
        raise RunError(f"{path}: machine class {fingerprint!r} is not a folder name "
                       "(valid: letters, digits, '.', '_' and '-')")
    if commit is not None and not isinstance(commit, str):
        raise RunError(f"{path}: commit {commit!r} is not a commit id (valid: text)")
    judged = meta.get("judged")
    # its regressions stay out of the reference: a block read as none would let them in
    if judged is not None and not (isinstance(judged, dict)
                                   and isinstance(names := judged.get("regressions"), list)
                                   and all(isinstance(n, str) for n in names)):
        raise RunError(f"{path}: imgbench.judged is not compare's verdict (valid: an object whose "
                       "regressions are a list of case names)")
    return Run(path=path, raw=run, benchmarks=run["benchmarks"],
               datetime=_when(path, run.get("datetime")), commit=commit, fingerprint=fingerprint,
               env=_dict(machine.get("imgbench")), meta=meta,
               version=str(run.get("version", "unknown")), schema=schema)


FOLDER_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
# Far above any run (a 2-core quick run with every round is 2 MB): a file past it is not parsed,
# which would hold gigabytes of memory.
MAX_BYTES = 256 * 2**20


def _text(path: Path) -> str:
    """The file's text, from a regular file of at most MAX_BYTES: a pipe, socket or device named
    *.json in a history would block a reader or never end. Opened without blocking, checked on
    what was opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise RunError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise RunError(f"{path}: cannot read: {os.strerror(errno.EISDIR)}")
        if not stat.S_ISREG(mode):
            raise RunError(f"{path}: cannot read: not a regular file (a pipe, socket or device)")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise RunError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise RunError(f"{path}: not a pytest-benchmark run (over {MAX_BYTES // 2**20} MiB, "
                       "larger than any run)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunError(f"{path}: not a pytest-benchmark run (not UTF-8 text)") from None


def canonical_time(value) -> str:
    """An ISO date and time as every reader compares them, as text: naive ones as they are (UTC, as
    pytest-benchmark writes them), others in UTC with +00:00. ValueError for anything else. Text
    order is then time order, whatever spelling (' ' for 'T', 'Z', +05:00) a file used."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    when = dt.datetime.fromisoformat(value)
    return (when if when.tzinfo is None else when.astimezone(dt.timezone.utc)).isoformat()


def _when(path: Path, value) -> str:
    """The run's date (canonical_time); "" where it recorded none."""
    if value is None or value == "":
        return ""
    try:
        return canonical_time(value)
    except ValueError:
        raise RunError(f"{path}: datetime {value!r} is not a date and time "
                       "(valid: ISO 8601, as pytest-benchmark writes it)") from None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


# what a run records of the software and settings under it that can move every case at once
SOFTWARE = ("torch", "torchvision", "cuda", "cudnn", "driver", "python", "threads")


def software(run: Run) -> tuple[tuple[str, str], ...]:
    """(name, version) of what the run recorded of SOFTWARE, and the kernel (pytest-benchmark's
    `release`); unrecorded ones left out. The CPU's microcode is not recorded."""
    out = [(k, str(run.env[k])) for k in SOFTWARE if run.env.get(k) is not None]
    release = _dict(run.raw.get("machine_info")).get("release")
    return tuple(out + ([("kernel", str(release))] if release else []))


def case_key(b: dict) -> tuple:
    """What makes two stored cases the same case: the test function and every param (as results
    matches them), not the test id, which changes with the folder pytest ran from."""
    return (b["name"].split("[", 1)[0],
            tuple(sorted((k, str(v)) for k, v in (b.get("params") or {}).items())))


def merged(new: Run, old: Run) -> tuple[dict, list[str]]:
    """`new`'s file with every case of `old` that `new` did not run, and the names of the cases new
    replaced. The imgbench block's axis lists and peaks cover both runs' cases, and its `merged`
    list names the earlier runs (date, commit) whose cases the file still holds."""
    doc = copy.deepcopy(new.raw)
    ran = {case_key(b) for b in new.benchmarks}
    replaced = sorted(b["name"] for b in old.benchmarks if case_key(b) in ran)
    doc["benchmarks"] = new.benchmarks + [b for b in old.benchmarks if case_key(b) not in ran]
    meta = doc.get("imgbench")
    if isinstance(meta, dict):
        # The header is new's: say when and at which commits the cases kept from old were measured.
        if len(doc["benchmarks"]) > len(new.benchmarks):
            meta["merged"] = [*_list(old.meta.get("merged")),
                              {"datetime": old.datetime, "commit": old.commit}]
        for key in ("devices", "precisions", "memory_formats", "compile"):
            if isinstance(old.meta.get(key), list):
                meta[key] = list(dict.fromkeys(map(str, [*old.meta[key], *_list(meta.get(key))])))
        if isinstance(old.meta.get("peaks"), dict):
            meta["peaks"] = {**old.meta["peaks"], **_dict(meta.get("peaks"))}
    return doc, replaced


def write(path: Path, doc: dict):
    """A run file written whole or not at all."""
    with atomic.written(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=4), encoding="utf-8")
