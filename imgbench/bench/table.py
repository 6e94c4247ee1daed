"""pytest-benchmark's table as `imgbench run` shows it by default: trimmed to the columns that
matter here and grouped so that its relative figures compare like with like. pytest-benchmark's own
default puts every case in one group, so each cell's relative figure is against the fastest case of
the run (">1000.0" in almost every cell of a run of the suite). Here a group is one test function on
one device with one model: its batch sizes side by side, and beside each case its previous run's row
when `imgbench run` compares. `imgbench run --full-table` keeps pytest-benchmark's own table."""

from __future__ import annotations

import operator
from collections import defaultdict

GROUP = "imgbench"  # --benchmark-group-by=imgbench
COLUMNS = "median,iqr,rounds"
# what `imgbench run` passes unless told otherwise
ARGS = (f"--benchmark-group-by={GROUP}", f"--benchmark-columns={COLUMNS}")


def group(benchmarks: list[dict]) -> list[tuple[str, list[dict]]]:
    """pytest-benchmark's groups: (label, its cases sorted by name), sorted by label."""
    groups = defaultdict(list)
    for bench in benchmarks:
        params = bench.get("params") or {}
        key = [bench["name"].split("[", 1)[0]]
        key += [f"{name}={params[name]}" for name in ("device", "model") if name in params]
        groups[" ".join(key)].append(bench)
    for cases in groups.values():
        cases.sort(key=operator.itemgetter("name"))
    return sorted(groups.items())


def given(args: list[str]) -> bool:
    """Whether pytest arguments already choose the table's grouping or columns."""
    return any(a.startswith(("--benchmark-group-by", "--benchmark-columns")) for a in args)
