"""A synthetic history of stored runs, for tests and for measuring how history readers scale.

Each run is a copy of a template run (by default the committed quick baseline) laid out as `imgbench
run` stores it, OUT/<machine class>/<platform>/NNNN_<profile>.json, with its own date (an hour
apart, the newest an hour ago) and commit, every case's rounds scaled by a per-run factor (log-
normal, `spread`) and per-round noise, and pytest-benchmark's statistics recomputed from the new
rounds by pytest-benchmark itself. Optionally a step: from run `step_at` on, the first `step_cases`
cases (by name) are `step` times slower, so that change points have something to find.

    python tools/make_history.py OUT --runs 1000
        [--template baselines/<machine class>/quick.json] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from pytest_benchmark.stats import Stats

from imgbench.core import atomic
from imgbench.runs import runfile

ROOT = Path(__file__).resolve().parent.parent

# the committed quick baseline
TEMPLATE = min((ROOT / "baselines").glob("*/quick.json"), default=None)
# pytest-benchmark's folder for the interpreter that ran the template
PLATFORM = "Linux-CPython-3.11-64bit"
# relative sd of the per-round noise, on top of the template's own
ROUND_NOISE = 0.01


def stats(old: dict, data: list[float]) -> dict:
    """`old` (a case's stored stats) with every statistic recomputed from `data` as pytest-benchmark
    does."""
    s = Stats()
    s.data = data
    return {**old, **s.as_dict(), "data": data}


def run(template: dict, i: int, seed: int = 0, spread: float = 0.03, step_at: int | None = None,
        step: float = 1.0, stepped: frozenset[str] = frozenset(),
        start: datetime | None = None) -> dict:
    """Run number `i` (0-based) of the history made from `template` (a run file's JSON), an hour
    after `start` per run (default: the template's date)."""
    rng = np.random.default_rng([seed, i])
    doc = copy.deepcopy(template)
    when = (start or datetime.fromisoformat(template["datetime"])) + timedelta(hours=i)
    doc["datetime"] = when.isoformat()
    doc["commit_info"] = {**template.get("commit_info", {}),
                          "id": hashlib.sha1(f"{seed}-{i}".encode()).hexdigest(),
                          "time": when.isoformat()}
    factor = float(np.exp(rng.normal(0, spread)))
    for b in doc["benchmarks"]:
        old = b["stats"]["data"]
        scale = factor * (step if step_at is not None and i >= step_at and b["name"] in stepped
                          else 1.0)
        noise = np.exp(rng.normal(0, ROUND_NOISE, len(old)))
        b["stats"] = stats(b["stats"], [float(x) for x in np.asarray(old, float) * scale * noise])
    return doc


def make(out: str | Path, runs: int, template: str | Path = TEMPLATE, seed: int = 0,
         spread: float = 0.03, step_at: int | None = None, step: float = 1.10,
         step_cases: int = 3, start: datetime | None = None) -> tuple[list[Path], list[str]]:
    """Write `runs` runs under `out`, an hour apart from `start` (default: the template's date);
    returns their paths (oldest first) and the names of the stepped cases (none without `step_at`).
    Each file is written whole or not at all."""
    doc = json.loads(Path(template).read_text(encoding="utf-8"))
    base = runfile.read(template)  # for the machine class, as history readers see it
    profile = base.profile or "quick"
    folder = Path(out) / str(base.fingerprint or "unknown-machine") / PLATFORM
    stepped = (sorted(b["name"] for b in doc["benchmarks"])[:step_cases] if step_at is not None
               else [])
    paths = []
    for i in range(runs):
        path = folder / f"{i + 1:04}_{profile}.json"
        text = json.dumps(run(doc, i, seed, spread, step_at, step, frozenset(stepped), start),
                          indent=4)
        with atomic.written(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths, stepped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to write the history into")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--template", default=str(TEMPLATE),
                   help="a stored run to copy (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spread", type=float, default=0.03,
                   help="sd of the per-run log factor (default: 0.03)")
    p.add_argument("--step-at", type=int, default=None,
                   help="runs from this one (0-based) on are stepped")
    p.add_argument("--step", type=float, default=1.10,
                   help="the stepped cases' factor (default: 1.10)")
    p.add_argument("--step-cases", type=int, default=3, help="how many cases step (default: 3)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs {args.runs}: valid is 1 or more")
    # the newest run an hour ago: readers skip runs dated past the clock
    like = datetime.fromisoformat(json.loads(Path(args.template).read_text())["datetime"])
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=args.runs)
    paths, stepped = make(args.out, args.runs, args.template, args.seed, args.spread, args.step_at,
                          args.step, args.step_cases,
                          start if like.tzinfo else start.replace(tzinfo=None))
    print(f"wrote {len(paths)} runs to {paths[0].parent}")
    if stepped:
        print(f"stepped x{args.step} from run {args.step_at} on: {', '.join(stepped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
