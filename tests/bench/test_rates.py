"""Rates from a median (imgbench.measure): the work one call did over the median time of a call, and
how far that is from the device's measured peak; and the time torch.compile took."""

import pytest

from imgbench.bench.rates import compile_seconds, rates
from imgbench.workloads.steps import Workload


def test_each_rate_where_the_workload_counts_its_work():
    w = Workload(lambda: None, images=128, bytes=4_000_000_000, flops=3 * 10**12)
    assert rates(w, 0.5, peak_tflops=12.0) == {
        "images_per_s": 256.0, "bytes": 4_000_000_000, "gb_per_s": 8.0,
        "flops": 3 * 10**12, "tflop_per_s": 6.0, "peak_tflop_per_s": 12.0, "pct_of_peak": 50.0}


def test_no_counted_work_no_rate():
    assert rates(Workload(lambda: None), 0.5) == {}
    assert rates(Workload(lambda: None, images=10), 2.0) == {"images_per_s": 5.0}


def test_without_a_measured_peak_there_is_no_percentage():
    out = rates(Workload(lambda: None, flops=10**12), 0.25)
    assert (out["tflop_per_s"] == 4.0 and out["peak_tflop_per_s"] is None
            and out["pct_of_peak"] is None)


@pytest.mark.parametrize("first, median, compile_s",
                         [(3.5, 0.5, 3.0), (0.5, 0.5, 0.0), (0.4, 0.5, 0.0)])
def test_compile_time_is_the_first_calls_excess_never_negative(first, median, compile_s):
    assert compile_seconds(first, median) == compile_s
