"""False change points on drifting histories, and steps found, for the nulls of the permutation
test (imgbench.judge.edivisive): the plain ranks (runs taken as exchangeable); the ranks
pre-whitened with each series' own drift; pre-whitened with the drift pooled over a scan's series
(the default; 170 steady series of the same correlation beside the ones tested); a block permutation
(blocks of ceil(n^(1/3)) runs permuted, a null computed per series). Seeded AR(1) series of 50 runs
at 3% noise (lag-1 correlation 0 to 0.7) without a change; a 5% step in 1% independent noise at run
31 (found exactly there); a 10% step in 3% noise at correlation 0.5 (found); two opposite steps in
2% independent noise, 10% up at run 20 and 8% down at 40 (60 runs; both found, at their runs).
Prints each rate with its number of trials and 95% Wilson interval, and the seconds per series.

    python tools/measure_changepoints.py [TRIALS]
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from imgbench.judge import edivisive, stats


def ar1(rng, n: int, rho: float, sd: float) -> np.ndarray:
    shocks = rng.normal(0, sd * math.sqrt(1 - rho**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0, sd)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + shocks[i]
    return x


def block_split(x, p_max=edivisive.P_MAX, permutations=edivisive.PERMUTATIONS, seed=0):
    """best_split with a block permutation null of this series' own ranks."""
    x = np.asarray(x, float)
    r = edivisive.ranks(x).astype(np.float32)
    n = x.size
    size = math.ceil(n ** (1 / 3))
    blocks = [np.arange(i, min(i + size, n)) for i in range(0, n, size)]
    rng = np.random.default_rng([seed, n])
    orders = np.stack([np.concatenate([blocks[i] for i in rng.permutation(len(blocks))])
                       for _ in range(permutations)])
    rows = np.abs(r[:, None] - r[None, :]).sum(axis=1, dtype=np.float64)
    observed = float(edivisive._scores(r).max())
    null = np.concatenate([edivisive._q(r[o], rows[o]).max(axis=1)
                           for o in np.array_split(orders, max(1, permutations // 64))])
    above = int(np.sum(null >= observed * (1 - 1e-6)))
    return edivisive._place(x), (1 + above) / (1 + permutations)


METHODS = ("plain ranks", "pre-whitened, own drift", "pre-whitened, pooled drift",
           "block permutation")
POOL_SIZE = 170  # series of one scan of a quick-matrix history


def trials(method: str, n_trials: int, rho: float, noise: float, steps: dict | None = None,
           n: int = 50, seed: int = 1) -> tuple[int, int, float]:
    """(series with any change point, series with exactly the change points `steps` {run: factor},
    seconds per series). The pooled drift is taken over POOL_SIZE series, as a scan pools a machine
    class's."""
    rng = np.random.default_rng(seed)
    level = sum((np.log(f) * (np.arange(n) >= i) for i, f in (steps or {}).items()), np.zeros(n))
    series = [ar1(rng, n, rho, noise) + level for _ in range(n_trials)]
    # a scan's other series are steady: the pool is drawn without the steps
    pool = [ar1(rng, n, rho, noise) for _ in range(POOL_SIZE)]
    original_split, original_white = edivisive.best_split, edivisive.whitened
    if method == "plain ranks":
        edivisive.whitened = lambda x, rho=None: x
    elif method == "block permutation":
        edivisive.best_split = lambda x, p, b, s, rho=None: block_split(x, p, b, s)
    try:
        found = exact = 0
        start = time.perf_counter()
        pooled = edivisive.pooled_drift(pool) if method.endswith("pooled drift") else None
        for x in series:
            cuts = [i for i, _ in edivisive.segment(x, rho=pooled)]
            found, exact = found + bool(cuts), exact + (cuts == sorted(steps or {}))
        return found, exact, (time.perf_counter() - start) / n_trials
    finally:
        edivisive.best_split, edivisive.whitened = original_split, original_white


def rate(k: int, n: int) -> str:
    lo, hi = stats.wilson(k, n)
    return f"{k}/{n} ({k / n:.1%}; {lo:.1%}-{hi:.1%})"


def main(n: int) -> None:
    print("| null | false, rho 0 | rho 0.3 | rho 0.5 | rho 0.7 | 5% step in 1% noise, exact "
          "| 10% step in 3% noise at rho 0.5, found | two opposite steps, exact | s per series |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in METHODS:
        cells, seconds = [], []
        for rho in (0.0, 0.3, 0.5, 0.7):
            found, _, s = trials(method, n, rho, 0.03)
            cells.append(rate(found, n))
            seconds.append(s)
        _, exact, _ = trials(method, n // 2, 0.0, 0.01, {31: 1.05}, seed=2)
        found, _, _ = trials(method, n // 2, 0.5, 0.03, {31: 1.10}, seed=3)
        _, both, _ = trials(method, n // 2, 0.0, 0.02, {20: 1.10, 40: 0.92}, n=60, seed=4)
        print(f"| {method} | {' | '.join(cells)} | {rate(exact, n // 2)} | {rate(found, n // 2)} "
              f"| {rate(both, n // 2)} | {np.mean(seconds):.4f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
