"""A/A coverage of compare's interval on real runs: every run of one unchanged tree judged against
the run before it, with the runs before that as its history, as the GPU workflow judges main. The
code is the same in every run, so a 99% interval should contain 1 in 99% of cases. Prints the
comparisons that called any regression against a history (each a false alarm), and the coverage per
setting (with and without a history, many or few rounds) with 95% Wilson intervals, of the plain
bootstrap of independent rounds (the old interval), compare's 99% interval, and compare's interval
at the Holm level it is judged at.

    python tools/measure_coverage.py STORAGE_FOLDER
"""

from __future__ import annotations

import sys

from imgbench.hw import contention
from imgbench.judge import compare, evidence, stats, verdict, window
from imgbench.runs import history


def bootstrap_ratio_ci(base, cand, alpha: float = 0.01) -> tuple[float, float]:
    """The interval compare once had: each run's rounds resampled as independent values."""
    b, c = stats.bootstrap_medians([base, cand])
    return stats.interval(c / b, alpha)


def main(paths) -> None:
    runs = history.load(paths).runs
    tally: dict[tuple, list[int]] = {}
    gated = 0  # comparisons with a regression called: a false alarm, the code being the same
    for j in range(1, len(runs)):
        base, cand, past = runs[j - 1], runs[j], runs[: j - 1]
        verdicts, _, _ = compare.compare(base, cand, past)
        gated += any(v.verdict == verdict.REGRESSION and v.history_bound is not None
                     for v in verdicts)
        by_key = {r.key: r for r in base}
        past_window = window.window(past, cand)
        for c in cand:
            b = by_key.get(c.key)
            if (b is None or not b.data or contention.flag(c.contention)
                    or contention.flag(b.contention)):
                continue
            v = next(v for v in verdicts if v.name == c.name)
            hist = ("history >= 3 runs" if len(past_window.medians.get(c.key, [])) >= 3
                    else "no history")
            rounds = ("< 10 rounds" if min(len(b.data), len(c.data)) < stats.MIN_ROUNDS_RHO
                      else ">= 10 rounds")
            plain = bootstrap_ratio_ci(b.data, c.data)
            nominal = evidence.of_runs(b.data, c.data, c.median,
                                       past_window.medians.get(c.key, [])).interval(0.01)
            for kind, ci in (("plain bootstrap", plain), ("compare's 99% interval", nominal),
                             ("compare's, at its Holm level", v.ci)):
                if ci is not None:
                    t = tally.setdefault((kind, hist, rounds), [0, 0])
                    t[0] += ci[0] <= 1 <= ci[1]
                    t[1] += 1
    lo, hi = stats.wilson(gated, len(runs) - 1)
    print(f"{len(runs)} runs; comparisons calling a regression against a history: {gated}/"
          f"{len(runs) - 1} ({100 * lo:.0f}-{100 * hi:.0f}%)")
    print("| interval | history | rounds | covered | coverage (95% interval) |")
    print("|---|---|---|---|---|")
    for (kind, hist, rounds), (k, n) in sorted(tally.items()):
        lo, hi = stats.wilson(k, n)
        print(f"| {kind} | {hist} | {rounds} | {k}/{n} | "
              f"{100 * k / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}%) |")


if __name__ == "__main__":
    main(sys.argv[1:])
