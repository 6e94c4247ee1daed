"""The run file: pytest-benchmark's JSON plus imgbench's block, written and read here and nowhere else.

pytest-benchmark owns the file's shape (machine_info, commit_info, datetime, benchmarks); imgbench adds
`machine_info.imgbench` (the recorded environment), `machine_info.fingerprint` (the machine class) and a
top-level `imgbench` block with the run's settings under a schema version. A run of a newer schema is
refused; older runs are read, and the fields they lack are named. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.errors import UserError

SCHEMA = 1  # version of the imgbench block; runs written before it was recorded read as 0
# What a schema-1 block holds; an older run lacks some (the committed 2-core baseline has no optimizer).
FIELDS = ("version", "profile", "devices", "threads", "dataset", "optimizer", "precisions", "memory_formats",
          "compile", "peaks")


class RunError(UserError):
    """A file that is not a readable run; the message names it and says why."""


def block(version: str, settings, peaks: dict) -> dict:
    """The imgbench block of a run measured under `settings` (options.Settings)."""
    return {"schema": SCHEMA, "version": version, "profile": settings.profile.name, "devices": settings.devices,
            "threads": settings.threads, "dataset": settings.dataset, "optimizer": settings.optimizer,
            "precisions": settings.precisions, "memory_formats": settings.memory_formats,
            "compile": settings.compile,
            # measured, so not machine_info: it would differ in every comparison
            "peaks": peaks}


def machine_info(env: dict) -> dict:
    """What imgbench adds to pytest-benchmark's machine_info: the environment and the machine class."""
    return {"imgbench": env, "fingerprint": env["fingerprint"]}


@dataclass(frozen=True)
class Run:
    path: Path
    benchmarks: list            # pytest-benchmark's list of cases, as stored
    datetime: str
    commit: str | None
    fingerprint: str | None
    env: dict                   # machine_info.imgbench
    meta: dict                  # the imgbench block
    version: str                # of pytest-benchmark
    schema: int
    missing: list[str] = field(default_factory=list)  # schema fields this (older) run lacks

    @property
    def profile(self) -> str:
        return str(self.meta.get("profile", ""))

    @property
    def devices(self):
        return self.meta.get("devices")


def read(path: str | Path) -> Run:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RunError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise RunError(f"{path}: not a pytest-benchmark run (not UTF-8 text)") from None
    try:
        run = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: corrupt or truncated JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(run, dict) or not isinstance(run.get("benchmarks"), list) or "machine_info" not in run:
        raise RunError(f"{path}: not a pytest-benchmark run (expected 'machine_info' and a 'benchmarks' list)")
    machine = _dict(run["machine_info"])
    meta = _dict(run.get("imgbench"))
    schema = meta.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:  # JSON true is no version
        raise RunError(f"{path}: imgbench schema {schema!r} is not a version number (valid: 0 to {SCHEMA})")
    if schema > SCHEMA:
        raise RunError(f"{path}: written by a newer imgbench (run file schema {schema}; this version reads up to "
                       f"{SCHEMA}): upgrade imgbench to read it")
    return Run(path=path, benchmarks=run["benchmarks"], datetime=str(run.get("datetime", "")),
               commit=_dict(run.get("commit_info")).get("id"), fingerprint=machine.get("fingerprint"),
               env=_dict(machine.get("imgbench")), meta=meta, version=str(run.get("version", "unknown")),
               schema=schema, missing=[f for f in FIELDS if f not in meta])


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}
