"""A stored run -> tidy records, one per case. No torch here: reading history stays light. Every way
a file can be wrong becomes one RunError line naming the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgbench.core.identity import case_key, family_of, test_of
from imgbench.runs import checks, runfile
from imgbench.runs.runfile import RunError


@dataclass(frozen=True)
class Record:
    path: str
    datetime: str
    commit: str | None
    fingerprint: str | None
    test: str                     # the test function without test_: "train_step", "reference_epoch"
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
    family: str = ""              # the bench file's, benches/bench_<family>.py ("" where the run
                                  # did not say)
    devices: tuple = ()           # the run's devices, as it recorded them
    dataset: str = ""             # run-wide settings, "" where the run did not record them
    optimizer: str = ""
    threads: int | None = None
    regressed: bool = False       # judged a regression when saved into a history
                                  # (compare --save-to)
    lacks: str = ""               # the run's imgbench fields it lacks (runfile.Run.missing),
                                  # comma-separated
    software: tuple = ()          # runfile.software: (name, version) pairs of the run

    # Derived once at construction: readers ask for them per record, and a thousand runs hold
    # 170k records.
    key: tuple = field(init=False, repr=False, compare=False)
    device_free_key: tuple = field(init=False, repr=False, compare=False)
    conditions: tuple = field(init=False, repr=False, compare=False)
    flags: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        key = case_key(self.name, self.params)  # the test and every param (core.identity)
        derived = {
            "key": key,
            # the same case on another device: for GPU-over-CPU ratios
            "device_free_key": (key[0], tuple(p for p in key[1] if p[0] != "device")),
            "devices": tuple(self.devices),  # a list where the cache gives one
            "software": tuple(map(tuple, self.software)),
            # run-wide settings that change what every case means
            # (32x32 quick vs 224x224 full images...)
            "conditions": (("profile", self.profile), ("dataset", self.dataset),
                           ("optimizer", self.optimizer), ("threads", self.threads)),
            # the numeric conditions this case ran under (conditions.applied, recorded in
            # extra_info): threads, cuDNN autotuning, TF32 and flushed denormals; unrecorded ones
            # left out
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
        """The machine's contention while the case ran (contention.between, stored in extra_info by
        the plugin); None for runs recorded before it was."""
        c = self.extra.get("contention")
        return c if isinstance(c, dict) else None


UNKNOWN = "unknown-machine"  # the machine class of a run that recorded none
# the keys conditions.applied records
FLAGS = ("threads", "cudnn_benchmark", "tf32", "flush_denormal")


def load(path: str | Path) -> list[Record]:
    return of_run(runfile.read(path))


def of_run(run: runfile.Run) -> list[Record]:
    """One record per case of a run file. A case whose figures are not what the suite writes, or
    contradict each other (runs.checks), or that the run holds twice, makes the whole file
    unreadable: a history reader skips it with that line rather than judge against it."""
    out, software, seen = [], runfile.software(run), {}  # one tuple shared by the run's records
    regressions = run.regressions
    for i, b in enumerate(run.benchmarks):
        try:
            if (why := checks.case(b)) is not None:
                raise RunError(f"{run.path}: benchmark {i} ({b['name']}) {why}")
            stats = b["stats"]
            out.append(Record(
                path=str(run.path), datetime=run.datetime, commit=run.commit,
                fingerprint=run.fingerprint,
                test=test_of(b["name"]), name=b["name"], params=dict(b.get("params") or {}),
                median=float(stats["median"]), min=float(stats["min"]), rounds=stats["rounds"],
                data=[float(x) for x in stats["data"]] if stats.get("data") else None,
                extra=dict(b.get("extra_info") or {}),
                torch=run.env.get("torch"), profile=run.profile,
                version=run.version, family=family_of(str(b.get("fullname", ""))),
                devices=tuple(map(str, run.devices)) if isinstance(run.devices, list) else (),
                dataset=str(run.meta.get("dataset", "")),
                # a run recorded before the run-wide field: its training cases still name theirs
                optimizer=str(run.meta.get("optimizer")
                              or (b.get("extra_info") or {}).get("optimizer") or ""),
                threads=run.threads, regressed=b["name"] in regressions,
                lacks=", ".join(run.missing), software=software))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, RunError):
                raise
            raise RunError(f"{run.path}: benchmark {i} lacks a readable {e} "
                           "(a file of another tool or pytest-benchmark version?)") from None
        if (j := seen.setdefault(out[-1].key, i)) != i:
            raise RunError(f"{run.path}: benchmarks {j} and {i} are the same case "
                           f"({b['name']}): a run measures each case once")
    return out


def differences(a: Record, b: Record, ignore=()) -> list[str]:
    """The run-wide settings two records were measured under that differ (unrecorded ones match)."""
    pairs = zip(a.conditions, b.conditions, strict=True)
    return [f"{k} {x!r} vs {y!r}" for (k, x), (_, y) in pairs
            if x and y and x != y and k not in ignore]


def flag_differences(a: Record, b: Record, ignore=()) -> list[str]:
    """The numeric conditions two records of one case ran under that differ (unrecorded ones
    match)."""
    fa, fb = dict(a.flags), dict(b.flags)
    return [f"{k} {fa[k]!r} vs {fb[k]!r}" for k in FLAGS
            if k in fa and k in fb and fa[k] != fb[k] and k not in ignore]
