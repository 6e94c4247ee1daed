"""Interleaved A/B: the same cases of two versions (two git refs, or two Python environments) timed in
the same job, pair by pair in random order, so the machine's drift hits both sides alike. Each sample
is one pytest-benchmark run of the selected cases in that version's own tree; the decision per case
is a one-sided Mann-Whitney U test on the samples' medians plus a minimum effect, confirmed by a
second set of pairs before anything fails (see `run`)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgbench import results, stats, verdict
from imgbench.errors import UserError
from imgbench.results import family_of
from imgbench.verdict import Verdict


class ABError(UserError):
    pass


@dataclass(frozen=True)
class Side:
    name: str       # "base" or "candidate"
    tree: Path      # checkout whose benches/ and imgbench/ run
    python: str


def worktree(ref: str, repo: Path, into: Path) -> Path:
    """A detached checkout of `ref` (no effect on the current checkout's files)."""
    proc = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(into), ref],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed"
        raise ABError(f"cannot check out {ref!r}: {why}")
    return into


def remove_worktree(repo: Path, path: Path):
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)


def sample(side: Side, pytest_args: list[str], out: Path) -> dict[str, tuple[float, dict]]:
    """One pytest-benchmark run of the selected cases in `side`'s tree: name -> (median, params)."""
    env = {**os.environ, "PYTHONPATH": str(side.tree)}
    try:
        proc = subprocess.run([side.python, "-m", "pytest", str(side.tree / "benches"), *pytest_args,
                               f"--benchmark-json={out}", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                              cwd=side.tree, env=env, capture_output=True, text=True)
    except OSError as e:
        raise ABError(f"the {side.name} run could not start {side.python}: {e.strerror or e}") from None
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise ABError(f"the {side.name} run failed (exit {proc.returncode}): {tail[0]}")
    return {r.name: (r.median, r.params) for r in results.load(out)}


Sampler = Callable[[], dict[str, float]]  # one sample of one side: case name -> median seconds


def samplers(base: Side, cand: Side, pytest_args: list[str], tmp: Path) -> dict[str, Sampler]:
    """Each side's sampler: one pytest-benchmark run in its own tree and Python."""
    def of(side: Side) -> Sampler:
        return lambda: {name: m for name, (m, _) in sample(side, pytest_args, tmp / f"{side.name}.json").items()}
    return {"base": of(base), "candidate": of(cand)}


def collect(sides: dict[str, Sampler], pairs: int, seed: int,
            progress: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, list[float]]]:
    """`pairs` samples per side, each pair in random order; name -> side -> sample medians."""
    rng = random.Random(seed)
    samples: dict[str, dict[str, list[float]]] = {}
    start = time.monotonic()
    for i in range(pairs):
        order = ["base", "candidate"]
        rng.shuffle(order)
        for side in order:
            for name, median in sides[side]().items():
                samples.setdefault(name, {"base": [], "candidate": []})[side].append(median)
        elapsed = time.monotonic() - start
        progress(f"pair {i + 1}/{pairs} done, about {elapsed / (i + 1) * (pairs - i - 1):.0f} s left")
    return samples


def decide(samples: dict[str, dict[str, list[float]]], alpha: float = 0.01, min_effect: float = 0.05) -> list[Verdict]:
    """Per case: slower or faster when a one-sided Mann-Whitney test on the samples says so at `alpha`."""
    out = []
    for name, by_side in sorted(samples.items()):
        a, b = by_side["base"], by_side["candidate"]
        if len(a) < 2 or len(b) < 2:
            continue  # a case only one version has
        ratio = stats.ratio_of_medians(a, b)
        ci = stats.bootstrap_ratio_ci(a, b, alpha)
        slower, faster = stats.mann_whitney_greater(b, a) < alpha, stats.mann_whitney_greater(a, b) < alpha
        out.append(Verdict(name, family_of(name), float(np.median(a)), float(np.median(b)), ratio, ci, None, None,
                           min_effect, verdict.judge(ratio, min_effect, slower, faster, ci)))
    return out


SCREEN_ALPHA = 0.10  # a first set this suggestive of a slowdown earns the confirming set


def run(sides: dict[str, Sampler], pairs: int = 10, alpha: float = 0.01, min_effect: float = 0.05, seed: int = 0,
        progress: Callable[[str], None] = lambda s: None) -> list[Verdict]:
    """Two stages. The first set of pairs decides, unless a case looks slower (one-sided Mann-Whitney
    p < SCREEN_ALPHA); then as many pairs again are run, and a case regresses only if all pairs
    together pass the test at `alpha` with the minimum effect, and the confirming set on its own is
    slower by at least half the minimum effect. False alarms stay within `alpha`, as the final test
    on all pairs must pass; requiring the second set to pass on its own at `alpha` would square the
    power (measured: 64% of 10% slowdowns caught that way on the 2-core box)."""
    first = collect(sides, pairs, seed, progress)
    suspects = [name for name, s in first.items() if len(s["base"]) >= 2 and len(s["candidate"]) >= 2
                and stats.mann_whitney_greater(s["candidate"], s["base"]) < SCREEN_ALPHA]
    if not suspects:
        return decide(first, alpha, min_effect)
    progress(f"{len(suspects)} case(s) may be slower: confirming with {pairs} more pairs")
    second = collect(sides, pairs, seed + 1, progress)
    pooled = {name: {side: first[name][side] + second.get(name, {}).get(side, []) for side in ("base", "candidate")}
              for name in first}
    out = []
    for v in decide(pooled, alpha, min_effect):
        again = second.get(v.name) or {"base": [], "candidate": []}
        ratio = stats.ratio_of_medians(again["base"], again["candidate"]) if all(again.values()) else None
        out.append(verdict.confirmed(v, ratio))
    return out


def python_of(path: str | None) -> str:
    if path is None:
        return sys.executable
    if not Path(path).is_file() or not os.access(path, os.X_OK):
        raise ABError(f"--base-python {path!r} is not an executable file (give the python executable of the "
                      "other environment)")
    return path
