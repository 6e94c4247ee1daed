"""Stored runs -> tidy records, one per case per run, and histories of runs. No torch here: reading
history stays light. Every way a file can be wrong becomes one RunError line naming the file."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.runs import runfile
from imgbench.runs.runfile import RunError


@dataclass(frozen=True)
class Record:
    path: str
    datetime: str
    commit: str | None
    fingerprint: str | None
    family: str
    name: str
    params: dict
    median: float
    min: float
    rounds: int
    data: list[float] | None
    extra: dict = field(default_factory=dict)
    torch: str | None = None
    profile: str = ""
    version: str = ""             # of pytest-benchmark that wrote the run
    bench: str = ""               # the family named by its file, benches/bench_<bench>.py ("" if unknown)
    dataset: str = ""             # run-wide settings, "" where the run did not record them
    optimizer: str = ""
    threads: int | None = None
    regressed: bool = False       # judged a regression when saved into a history (compare --save-to)
    lacks: str = ""               # the run's imgbench fields it lacks (runfile.Run.missing), comma-separated

    # Derived once at construction: readers ask for them per record, and a thousand runs hold 170k records.
    key: tuple = field(init=False, repr=False, compare=False)
    device_free_key: tuple = field(init=False, repr=False, compare=False)
    conditions: tuple = field(init=False, repr=False, compare=False)
    flags: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        params = sorted((k, str(v)) for k, v in self.params.items())
        derived = {
            # what makes two records the same case: the family and every param (model, device, batch
            # size, axes...), not the test id, so renamed ids still match
            "key": (self.family, tuple(params)),
            # the same case on another device: for GPU-over-CPU ratios
            "device_free_key": (self.family, tuple(p for p in params if p[0] != "device")),
            # run-wide settings that change what every case means (32x32 quick vs 224x224 full images...)
            "conditions": (("profile", self.profile), ("dataset", self.dataset), ("optimizer", self.optimizer),
                           ("threads", self.threads)),
            # the numeric conditions this case ran under (conditions.applied, recorded in extra_info):
            # threads, cuDNN autotuning, TF32 and flushed denormals; unrecorded ones left out
            "flags": tuple((k, self.extra[k]) for k in FLAGS if self.extra.get(k) is not None),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def machine(self) -> str:
        """The machine class, named even for a run that recorded none."""
        return self.fingerprint or UNKNOWN

    @property
    def contention(self) -> dict | None:
        """The machine's contention while the case ran (contention.between, stored in extra_info by the
        plugin); None for runs recorded before it was."""
        c = self.extra.get("contention")
        return c if isinstance(c, dict) else None


UNKNOWN = "unknown-machine"  # the machine class of a run that recorded none
FLAGS = ("threads", "cudnn_benchmark", "tf32", "flush_denormal")  # the keys conditions.applied records


def family_of(name: str) -> str:
    return name.split("[", 1)[0].removeprefix("test_")


def bench_of(fullname: str) -> str:
    """'benches/bench_dataloader.py::test_loader[...]' -> 'dataloader' (the family a user names)."""
    file = Path(fullname.split("::", 1)[0]).name
    return file[len("bench_"):-len(".py")] if file.startswith("bench_") and file.endswith(".py") else ""


def load(path: str | Path) -> list[Record]:
    return records(runfile.read(path))


def records(run: runfile.Run) -> list[Record]:
    """One record per case of a run file."""
    out = []
    for i, b in enumerate(run.benchmarks):
        try:
            stats = b["stats"]
            out.append(Record(
                path=str(run.path), datetime=run.datetime, commit=run.commit, fingerprint=run.fingerprint,
                family=family_of(b["name"]), name=b["name"], params=dict(b.get("params") or {}),
                median=float(stats["median"]), min=float(stats["min"]), rounds=int(stats["rounds"]),
                data=[float(x) for x in stats["data"]] if stats.get("data") else None,
                extra=dict(b.get("extra_info") or {}), torch=run.env.get("torch"), profile=run.profile,
                version=run.version, bench=bench_of(str(b.get("fullname", ""))),
                dataset=str(run.meta.get("dataset", "")),
                # a run recorded before the run-wide field: its training cases still name theirs
                optimizer=str(run.meta.get("optimizer") or (b.get("extra_info") or {}).get("optimizer") or ""),
                threads=run.threads, regressed=b["name"] in run.regressions, lacks=", ".join(run.missing)))
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{run.path}: benchmark {i} lacks a readable {e} (a file of another tool or "
                           "pytest-benchmark version?)") from None
        if not math.isfinite(out[-1].median) or out[-1].median <= 0:
            raise RunError(f"{run.path}: benchmark {i} ({b['name']}) has median {out[-1].median} (valid: a "
                           "positive time in seconds)")
    return out


def differences(a: Record, b: Record, ignore=()) -> list[str]:
    """The run-wide settings two records were measured under that differ (unrecorded ones match)."""
    pairs = zip(a.conditions, b.conditions, strict=True)
    return [f"{k} {x!r} vs {y!r}" for (k, x), (_, y) in pairs if x and y and x != y and k not in ignore]


def flag_differences(a: Record, b: Record, ignore=()) -> list[str]:
    """The numeric conditions two records of one case ran under that differ (unrecorded ones match)."""
    fa, fb = dict(a.flags), dict(b.flags)
    return [f"{k} {fa[k]!r} vs {fb[k]!r}" for k in FLAGS
            if k in fa and k in fb and fa[k] != fb[k] and k not in ignore]


def find(paths) -> list[Path]:
    """JSON files named directly, and every *.json under folders named; in a stable order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.rglob("*.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise RunError(f"{p}: no such file or folder")
    return out


def identity(run: list[Record]) -> tuple:
    """What makes two files the same run (a copy kept as a CI artifact beside the history, say)."""
    return (run[0].fingerprint, run[0].datetime, tuple((r.name, r.median) for r in run)) if run else ()


@dataclass
class History:
    runs: list[list[Record]]   # one list per readable file with at least one case, oldest first
    skipped: list[str]         # one line per file that could not be read, naming it and why
    versions: set[str]         # pytest-benchmark versions that wrote the runs
    notes: list[str] = field(default_factory=list)  # about the index of stored runs (rebuilt, not usable)


def _load(path: Path) -> list[Record] | RunError:
    try:
        return load(path)
    except RunError as e:
        return e


def load_history(paths, rounds: bool = True) -> History:
    """Every run under the given files and folders. Unreadable files are skipped with a line each, so
    one corrupt file does not hide a history; no readable run at all is a RunError. rounds=False gives
    light records (index.light: no per-round data, extra_info trimmed to what history readers use) from
    the index of stored runs, which a thousand runs need: their JSON is gigabytes."""
    files = find(paths)
    for p in map(Path, paths):
        if p.is_dir() and not any(f.is_relative_to(p) for f in files):
            raise RunError(f"{p}: holds no stored runs (no *.json below it; expected a storage folder such as "
                           ".benchmarks/ or baselines/, or pytest-benchmark JSON files)")
    if rounds:
        loaded, notes = map(_load, files), []
    else:
        from imgbench.runs import cache as index  # it builds on this module

        loaded, notes = index.records(files, [p for p in map(Path, paths) if p.is_dir()])
    runs, skipped, versions, seen = [], [], set(), {}
    for run in loaded:
        if isinstance(run, RunError):
            skipped.append(str(run))
            continue
        if not run:
            continue
        if (i := seen.get(identity(run))) is None:  # a copy of a run (a CI artifact beside the history) counts once
            seen[identity(run)] = len(runs)
            runs.append(run)
            versions.add(run[0].version)
        elif any(r.regressed for r in run) and not any(r.regressed for r in runs[i]):
            runs[i] = run  # the copy saved with its verdict: its regressed cases must stay marked
    if not runs:
        raise RunError(f"no readable run with any case in {', '.join(map(str, paths))}"
                       + (f" ({len(skipped)} unreadable: {skipped[0]})" if skipped else ""))
    runs.sort(key=lambda run: (run[0].datetime, run[0].path))
    lacking = Counter(run[0].lacks for run in runs if run[0].lacks)
    notes += [f"{n} run(s) lack {fields} (older imgbench, or another tool): read, those settings not checked"
              for fields, n in sorted(lacking.items())]
    return History(runs, skipped, versions, notes)
