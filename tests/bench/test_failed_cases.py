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


def test_a_compile_that_breaks_skips_its_case_naming_the_failure(pytester):
    """torch.compile failing in a compiled case (Triton not finding libcuda.so.1, say) is a skip
    naming it, not a failed run; the same error in an eager case, or any other error, fails."""
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x="""
class InductorError(RuntimeError):
    pass

InductorError.__module__ = "torch._inductor.exc"

def test_compiled(compile, benchmark):
    raise InductorError("RuntimeError: libcuda.so.1 not found\\n(more)")

def test_wrong(compile, benchmark):
    raise KeyError("not a compile failure")
""")
    on = pytester.runpytest("bench_x.py", "--device", "cpu", "--compile", "on", "-rs",
                            "-p", "no:cacheprovider")
    on.assert_outcomes(skipped=1, failed=1)
    on.stdout.fnmatch_lines(["*torch.compile failed on cpu: InductorError: RuntimeError: "
                             "libcuda.so.1 not found*"])
    off = pytester.runpytest("bench_x.py", "--device", "cpu", "--compile", "off",
                             "-p", "no:cacheprovider")
    off.assert_outcomes(failed=2)


def test_the_reference_epoch_names_what_its_device_resolved_to(pytester):
    """Its resolved precision and compile are a parameter: a machine that falls back to eager fp32
    gets another case key than a compiled bf16 one."""
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x="""
def test_reference_epoch(device, reference, benchmark):
    benchmark(lambda: None)
""")
    from imgbench.workloads import cases

    resolved = cases.reference_config("cpu")
    assert resolved in ("bf16-compiled", "bf16-eager", "fp32-compiled", "fp32-eager")
    result = pytester.runpytest("bench_x.py", "--device", "cpu", "--collect-only", "-q",
                                "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([f"bench_x.py::test_reference_epoch[cpu-{resolved}]"])
