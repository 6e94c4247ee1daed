"""Where runs live: STORAGE/<machine class>/<platform>/NNNN_<profile>.json as pytest-benchmark lays them
out, the previous run of a profile, baselines at FOLDER/<machine class>/<profile>.json, and saving either
whole or not at all. Run numbers are taken by exclusive creation, so processes saving into one folder
at the same time never overwrite each other. No torch here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgbench import files, runfile
from imgbench.errors import UserError

RUN_NAME = re.compile(r"(\d{4,})_(.+)\.json")  # pytest-benchmark's %04d: run 10000 has five digits


class StorageError(UserError):
    pass


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
    after a Python upgrade a new folder starts again at 0001. Unreadable runs are never the baseline.
    """
    runs = []
    for path in folder.glob(f"*/*_{profile}.json"):
        if not (m := RUN_NAME.fullmatch(path.name)) or m[2] != profile:
            continue
        try:
            run = runfile.read(path)
        except runfile.RunError:
            continue
        if run.datetime and (device_list is None or run.devices == device_list):
            runs.append((run.datetime, path.name, path))
    return max(runs)[2] if runs else None


@contextmanager
def partial(folder: Path, name: str) -> Iterator[Path]:
    """A hidden temporary path in `folder` to write a run to; removed at the end whatever happens."""
    tmp = folder / f".{name}.{os.getpid()}.partial"
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def save_run(tmp: Path, folder: Path, profile: str) -> Path:
    """Move the finished run `tmp` to the next free FOLDER/<platform>/NNNN_<profile>.json. The number is
    taken by a hard link that fails if the name exists, so a concurrent save takes the next one."""
    sub = platform_folder(folder)
    sub.mkdir(parents=True, exist_ok=True)
    while True:
        numbers = [int(m[1]) for p in sub.iterdir() if (m := RUN_NAME.fullmatch(p.name))]
        dest = sub / f"{max(numbers, default=0) + 1:04}_{profile}.json"
        try:
            os.link(tmp, dest)
        except FileExistsError:
            continue  # another process took this number first
        tmp.unlink()
        return dest


def baseline_path(folder: Path, profile: str) -> Path:
    return folder / f"{profile}.json"


def check_baseline(path: Path, settings) -> None:
    """An existing baseline takes new cases only from runs measured like it: say so before running."""
    if not path.is_file():
        return
    meta = runfile.read(path).meta
    for key, now in (("profile", settings.profile.name), ("dataset", settings.dataset),
                     ("optimizer", settings.optimizer), ("threads", settings.threads)):
        if key in meta and meta[key] != now:
            raise StorageError(f"{path} was recorded with {key} {meta[key]!r}, this run has {now!r}: record it "
                               f"with the same settings, or move {path.name} aside to start a new baseline")


def save_baseline(tmp: Path, path: Path) -> list[str]:
    """Merge the finished run `tmp` into the baseline at `path` (atomically): its cases replace those of
    the same test id, every other case of the baseline stays. Returns the ids replaced."""
    new = json.loads(tmp.read_text(encoding="utf-8"))
    replaced = []
    if path.is_file():
        old = runfile.read(path)
        ids = {b.get("fullname", b["name"]) for b in new["benchmarks"]}
        replaced = sorted(b.get("fullname", b["name"]) for b in old.benchmarks if b.get("fullname", b["name"]) in ids)
        kept = [b for b in old.benchmarks if b.get("fullname", b["name"]) not in ids]
        new["benchmarks"] = sorted(kept + new["benchmarks"], key=lambda b: b.get("fullname", b["name"]))
        meta = new.get("imgbench")
        if isinstance(meta, dict) and isinstance(old.devices, list):
            meta["devices"] = list(dict.fromkeys([*old.devices, *meta.get("devices", [])]))
    with files.atomic(path) as out:
        out.write_text(json.dumps(new, indent=4), encoding="utf-8")
    tmp.unlink(missing_ok=True)
    return replaced
