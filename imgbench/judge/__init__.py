"""Verdicts from stored or paired timings: statistics, the decision rules, compare, speedups, change
points. No torch."""
