"""The contention sentinel (imgbench.contention) and where it is wired: recorded per case by the
plugin, read by results, no verdict in compare and report for a contended case, the warning before a
run."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgbench import cli
from imgbench.bench import runner
from imgbench.hw import contention
from imgbench.hw.contention import Snapshot
from imgbench.judge import compare, verdict
from imgbench.runs import history, record
from imgbench.show import report
from tests.helpers import CASE, bench_entry, rounds, run_file, skip_when_busy, write_json

linux = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
CROWDED = {"foreign_cpu": 0.5, "steal": 0.0, "psi_some": 0.4, "load1": 2.1, "seconds": 12.0}
REASON = "measured under contention: other processes used 50% of the CPUs (limit 10%)"


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(contention, "TICK", 100)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_between_is_the_foreign_share_of_all_cpus(two_cpus):
    a = Snapshot(wall=10.0, busy=1000, steal=10, own=400, psi_some_us=0)
    b = Snapshot(wall=12.0, busy=1300, steal=30, own=500, psi_some_us=400_000)
    out = contention.between(a, b)  # capacity: 2 s x 100 ticks x 2 CPUs = 400 ticks
    assert {k: out[k] for k in ("seconds", "foreign_cpu", "steal", "psi_some")} == {
        "seconds": 2.0, "foreign_cpu": 0.5, "steal": 0.05, "psi_some": 0.2}
    assert "unmeasured" not in out
    # our tree took more than it all
    ours = Snapshot(wall=12.0, busy=1300, steal=10, own=800, psi_some_us=0)
    assert contention.between(a, ours)["foreign_cpu"] == 0.0


def test_between_names_what_it_could_not_measure(two_cpus, monkeypatch):
    def no_load():
        raise OSError

    monkeypatch.setattr(os, "getloadavg", no_load)
    a = Snapshot(wall=0.0, busy=None, steal=None, own=5, psi_some_us=None)
    out = contention.between(a, Snapshot(wall=1.0, busy=None, steal=None, own=9, psi_some_us=None))
    assert out == {"seconds": 1.0, "unmeasured": ["foreign_cpu", "steal", "psi_some", "load1"]}
    assert contention.flag(out) is None  # unmeasured: no flag


def test_flag_above_the_limit_only_and_beyond_tick_jitter(two_cpus):
    assert contention.flag({"foreign_cpu": 0.5, "seconds": 12.0}) == REASON
    assert contention.flag({"foreign_cpu": 0.10, "seconds": 12.0}) is None
    assert contention.flag({"seconds": 1.0}) is None and contention.flag(None) is None
    # 0.05 s on 2 CPUs is 10 ticks: 15% is a tick and a half, within the counters' jitter
    assert contention.flag({"foreign_cpu": 0.15, "seconds": 0.05}) is None
    assert contention.flag({"foreign_cpu": 0.15, "seconds": 5.0}) is not None
    # under the record's millisecond a tick of any process reads as whole CPUs: no verdict
    assert contention.flag({"foreign_cpu": 5.0, "seconds": 0.0}) is None


def _spin(seconds: float, clock: str = "monotonic") -> str:
    return f"import time\nt = time.{clock}()\nwhile time.{clock}() - t < {seconds}: pass\n"


@pytest.mark.slow
@linux
def test_a_child_of_ours_is_our_own_cpu_time():
    a = contention.snapshot()
    time.sleep(0.5)
    control = contention.between(a, contention.snapshot())  # is anyone else busy right now?
    a = contention.snapshot()
    # a second of CPU
    subprocess.run([sys.executable, "-c", _spin(1.0, "process_time")], check=True)
    b = contention.snapshot()
    assert b.own - a.own >= 0.8 * contention.TICK  # the child's second of CPU counted as ours
    if contention.flag(control):
        skip_when_busy(f"cannot check a quiet window: {contention.flag(control)} before it")
    out = contention.between(a, b)
    assert out["foreign_cpu"] < contention.FOREIGN_LIMIT and contention.flag(out) is None


@pytest.mark.slow
@linux
def test_a_cpu_hog_outside_our_tree_is_flagged():
    # Hogs on half the CPUs, started by a shell that exits at once: they are re-parented away from
    # our tree, as another job's processes would be.
    n = max(1, (os.cpu_count() or 1) // 2)
    hog = f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!; ' * n
    started = subprocess.run(["sh", "-c", hog, _spin(4.0)], capture_output=True, text=True,
                             check=True)
    hogs = [int(pid) for pid in started.stdout.split()]
    try:
        time.sleep(0.2)
        assert all(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                   != os.getpid() for pid in hogs)
        a = contention.snapshot()
        time.sleep(1.0)
        out = contention.between(a, contention.snapshot())
        # about half the CPUs; the scheduler decides how much
        assert out["foreign_cpu"] > contention.FOREIGN_LIMIT
        assert contention.flag(out).startswith("measured under contention: other processes used ")
        assert contention.busy(0.5).startswith("the machine is busy: other processes used ")
    finally:
        for pid in hogs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_plugin_records_contention_per_case_into_the_json(pytester):
    pytester.makeconftest('pytest_plugins = ["imgbench.plugin"]')
    pytester.makepyfile(bench_x="def test_noop(benchmark):\n    benchmark(lambda: None)\n",
                        test_y="def test_plain(benchmark):\n    benchmark(lambda: None)\n")
    result = pytester.runpytest("bench_x.py", "test_y.py", "--benchmark-json=out.json",
                                "--benchmark-max-time=0.01", "--benchmark-min-rounds=2",
                                "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    out = pytester.path / "out.json"
    by_file = {b["fullname"].split("::")[0]: b["extra_info"]
               for b in json.loads(out.read_text())["benchmarks"]}
    # set after the call, written at the session's end
    recorded = by_file["bench_x.py"]["contention"]
    assert recorded["seconds"] > 0
    assert all(k in recorded or k in recorded.get("unmeasured", ())
               for k in ("foreign_cpu", "steal", "psi_some"))
    assert "contention" not in by_file["test_y.py"]  # not a bench: left alone
    assert sorted(r.contention == recorded for r in record.load(out)) == [False, True]


def write_pair(tmp_path, cand_extra=None, base_extra=None):
    name, params = CASE[0], dict(CASE[1])
    base = write_json(tmp_path / "base.json",
                      run_file([bench_entry(name, params, rounds(1.0), extra=base_extra)]))
    cand = write_json(tmp_path / "cand.json",
                      run_file([bench_entry(name, params, rounds(2.0, seed=1), extra=cand_extra)]))
    return cand, base


def test_a_contended_run_gets_no_verdict_and_exit_0(tmp_path, capsys):
    cand, base = write_pair(tmp_path, cand_extra={"contention": CROWDED})
    assert record.load(cand)[0].contention == CROWDED and record.load(base)[0].contention is None
    assert cli.main(["compare", str(cand), str(base)]) == 0
    out = capsys.readouterr().out
    assert f"{CASE[0]}: {REASON} in the candidate run" in out.splitlines()
    assert ("0 regression, 0 improvement, 0 unchanged, 0 too noisy to say, "
            "1 measured under contention") in out
    # the same times, no contention recorded (an older run): judged
    cand, base = write_pair(tmp_path)
    assert cli.main(["compare", str(cand), str(base), "--gate-without-history"]) == 1
    assert "1 regression" in capsys.readouterr().out


def test_a_contended_baseline_counts_too_and_both_are_named(tmp_path, capsys):
    quiet = {"contention": {**CROWDED, "foreign_cpu": 0.02}}
    cand, base = write_pair(tmp_path, cand_extra=quiet, base_extra={"contention": CROWDED})
    (v,), _, _ = compare.compare(record.load(base), record.load(cand))
    assert (v.verdict, v.why, v.ratio > 1.9) == (verdict.CONTENDED,
                                                 f"{REASON} in the baseline run", True)
    cand, base = write_pair(tmp_path, cand_extra={"contention": CROWDED},
                            base_extra={"contention": CROWDED})
    assert cli.main(["compare", str(cand), str(base)]) == 0
    assert (f"{CASE[0]}: {REASON} in the candidate run; {REASON} in the baseline run"
            in capsys.readouterr().out)


def test_report_lists_a_contended_case_with_its_reason(tmp_path):
    name, params = CASE[0], dict(CASE[1])
    for i, (center, extra) in enumerate([(1.0, None), (2.0, {"contention": CROWDED})]):
        write_json(tmp_path / "runs" / f"{i}.json",
                   run_file([bench_entry(name, params, rounds(center, seed=i), extra=extra)],
                            when=f"2026-11-0{i + 1}T00:00:00", meta={"profile": "quick"}))
    rendered = report.render(history.load([tmp_path / "runs"]), tmp_path / "out")
    (m,) = rendered.machines
    assert [v.verdict for v in m.comparison.verdicts] == [verdict.CONTENDED]
    assert "latest vs baseline" not in m.figures  # nothing decided, nothing drawn
    md = report.markdown(rendered, tmp_path / "out")
    assert ("0 regression, 0 improvement, 0 unchanged, 0 too noisy to say, "
            "1 measured under contention.") in md
    assert "**Regressions**" not in md
    assert (f"**Measured under contention** (no verdict)\n\n- {name}: "
            f"{REASON} in the candidate run\n") in md


def test_run_warns_before_pytest_when_the_machine_is_busy(monkeypatch, capsys):
    import pytest as pytest_module

    calls = []
    monkeypatch.setattr(runner, "BUSY_SAMPLE_S", 0.01)
    monkeypatch.setattr(contention, "between",
                        lambda a, b: calls.append("busy") or {**CROWDED, "foreign_cpu": 0.48})
    monkeypatch.setattr(pytest_module, "main", lambda args, plugins: calls.append("pytest") or 0)
    assert runner.run([], Path("out.json")) == (0, True)
    assert calls == ["busy", "pytest"]
    assert capsys.readouterr().err == ("imgbench: warning: the machine is busy: other processes "
                                       "used 48% of the CPUs (limit 10%); numbers measured now are "
                                       "flagged and get no verdict\n")
    monkeypatch.setattr(contention, "between", lambda a, b: {**CROWDED, "foreign_cpu": 0.01})
    assert runner.run([], Path("out.json")) == (0, True)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
@linux
def test_a_real_run_beside_a_cpu_hog_is_flagged_and_judged_no_regression(tmp_path, capsys):
    """Two real runs of one case: a quiet one, then one beside a CPU-bound process outside our tree
    (half of this box's CPUs, more on a bigger one). The busy run is flagged; compare gives it no
    verdict and exits 0, where the tick-quantised times would otherwise read as a regression."""
    from imgbench.forensics import gatecheck
    from tests.helpers import ROOT

    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benches" / "bench_forward.py"),
           "--device", "cpu", "--model", "mlp", "--batch-size", "4", "-q", "-p", "no:cacheprovider",
           "--benchmark-max-time=0.5"]
    quiet, busy = tmp_path / "quiet.json", tmp_path / "busy.json"
    subprocess.run([*cmd, f"--benchmark-json={quiet}"], check=True, capture_output=True,
                   timeout=300)
    q = record.load(quiet)[0].contention
    if contention.flag(q):
        skip_when_busy(f"the machine was busy during the quiet run: {contention.flag(q)}")
    with contextlib.ExitStack() as hogs:
        for _ in range(max(1, (os.cpu_count() or 2) // 2)):
            hogs.enter_context(gatecheck.hog(True))
        subprocess.run([*cmd, f"--benchmark-json={busy}"], check=True, capture_output=True,
                       timeout=300)
    b = record.load(busy)[0].contention
    # The hog's share varies with the scheduler (30-50% on 2 cores); what matters is that it crosses
    # the limit.
    assert contention.flag(b) is not None and b["foreign_cpu"] > contention.FOREIGN_LIMIT
    assert cli.main(["compare", str(busy), str(quiet)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("test_forward[mlp-cpu-bs4]"))
    assert verdict.CONTENDED in row and "in the candidate run" in out
