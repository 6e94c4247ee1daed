"""How long an interleaved A/B job will take, from the run's cost model (bench/estimate.py) and the
job's sizing (policy.Sizing): what the GPU job's pull-request bound
(tests/bench/test_ab_estimate.py: the GPU gate set on one H100 within 20 minutes) is checked
against. An estimate, not a measurement; the job's last line says how long it took. Per round (fresh
workers, config.AB_ROUNDS) the two workers start at once (one process start-up), and each case it
holds is set up and warmed up as a run would (the cost model's case, its timed rounds included: an
upper bound for the calibrating bursts). The pairs: a trial (one case in one round) takes its share
of the job's cap, `budget_s / rounds` on average, but its first set is at least config.AB_MIN_PAIRS
pairs, and no longer than config.AB_SET_LIMIT_S: a replayed case (ddp, each burst a torchrun launch
per side) can take that whole limit."""

from __future__ import annotations

from imgbench.bench import estimate
from imgbench.core.config import (
    AB_BURST_S,
    AB_INFORMATION_FAMILIES,
    AB_MIN_PAIRS,
    AB_SET_LIMIT_S,
    PROCESS_START_S,
)
from imgbench.core.options import Settings

REPLAYED = ("ddp",)  # families whose every burst reruns the test body (workers/ab_worker.py)


def pair_seconds(family: str, test: str, p: dict, s: Settings) -> float:
    """One pair: a burst per side, each a lead call and ~AB_BURST_S of calls, or for a replayed case
    the whole test body (a launch) per side."""
    if family in REPLAYED:
        return 2 * estimate.case_seconds(family, test, p, s)
    return 2 * 2 * AB_BURST_S


def job_seconds(cases: list[tuple[str, str, dict]], s: Settings, budget_s: float,
                rounds: int) -> float:
    """Estimated wall seconds of an A/B job over these (family, test, params) cases: the
    information tier (config.AB_INFORMATION_FAMILIES) in the first round only."""
    per_trial = budget_s / rounds
    total = rounds * (PROCESS_START_S + estimate.CALIBRATION_S)
    for family, test, p in cases:
        n = 1 if family in AB_INFORMATION_FAMILIES else rounds
        first = min(AB_SET_LIMIT_S, AB_MIN_PAIRS * pair_seconds(family, test, p, s))
        total += n * (estimate.case_seconds(family, test, p, s) + max(per_trial, first))
    return total
