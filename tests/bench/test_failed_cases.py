"""A bench case that fails after its timing returned (a check on its result, its teardown) is no
result: pytest-benchmark writes it to the JSON as if it had passed; the plugin leaves it out and
names it in the run's imgbench block."""

import json

from imgbench.runs import record


def test_a_case_that_raises_after_timing_is_not_written_as_a_result(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x="""
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown failed")

def test_ok(benchmark):
    benchmark(lambda: None)

def test_checked_after(benchmark):
    benchmark(lambda: None)
    assert False, "the result was wrong"

def test_teardown(benchmark, broken_teardown):
    benchmark(lambda: None)
""")
    result = pytester.runpytest("bench_x.py", "--benchmark-json=out.json", "--device", "cpu",
                                "--benchmark-max-time=0.01", "--benchmark-min-rounds=2",
                                "-p", "no:cacheprovider")
    assert result.ret == 1
    doc = json.loads((pytester.path / "out.json").read_text())
    assert [b["name"] for b in doc["benchmarks"]] == ["test_ok"]
    assert doc["imgbench"]["failed"] == ["test_checked_after", "test_teardown"]
    assert [r.name for r in record.load(pytester.path / "out.json")] == ["test_ok"]
