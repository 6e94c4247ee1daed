"""The one-shot GPU check (.ci/gpu-check) and its summary (imgbench.preflight.gpucheck): at most 8
files of at most 16 MiB, a line for every step that failed or left a broken file, and the script
going on past a failed step."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from imgbench.preflight import checkfiles, collected, gpucheck
from imgbench.runs import record
from tests.helpers import ROOT, bench_entry, run_file, write_json

GPU = "NVIDIA H100 80GB HBM3"
MACHINE = {"imgbench": {"gpus": [{"name": GPU, "memory_gib": 79.1}], "torch": "2.11.0+cu130",
                        "cuda": "13.0", "cudnn": 91000, "driver": "580.65.06", "python": "3.12.3",
                        "torchvision": "0.26.0",
                        "cpu": {"brand": "Intel Xeon Platinum 8480+", "cores": 16}}}
META = {"schema": 1, "profile": "quick", "devices": ["cuda"], "threads": 16}
CUDA_MS = {"model": "kerascnn", "device": "cuda", "batch_size": 128}


def run(cases: list[dict]) -> dict:
    return run_file(cases, fingerprint="Xeon-16c-H100x1", machine=MACHINE, meta=META)


def case(name: str, median: float, cross: float | None = None, bench: str = "forward",
         params=None) -> dict:
    extra = ({"cross_check": {"clock": "cuda_event", "median_s": cross, "calls": 20}}
             if cross else {})
    return bench_entry(name, params or CUDA_MS, np.full(7, median), bench=bench, extra=extra)


def junit(passed=(), failed=(), skipped=(), bench="forward", time=0.0) -> str:
    head = f'<testcase classname="benches.bench_{bench}" time="{time}" name='
    cases = [f'{head}"{n}" />' for n in passed]
    cases += [f'{head}"{n}"><failure message="{m}">trace</failure></testcase>' for n, m in failed]
    cases += [f'{head}"{n}"><skipped type="pytest.skip" message="{m}" /></testcase>'
              for n, m in skipped]
    return f'<testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>'


def epoch(device: str, batch: int, median: float) -> dict:
    params = {"model": "kerascnn", "device": device, "batch_size": batch, "path": "resident"}
    return bench_entry(f"test_epoch[kerascnn-{device}-bs{batch}-resident]", params,
                       np.full(3, median), bench="epoch", extra={"images_per_s": 50_000 / median})


def work_folder(tmp_path):
    """What the script leaves: a doctor that passed, two family runs (one with a failed case), a
    family timed out with a truncated JSON, 2 of its 5 cases done, a family whose bench file does
    not exist, and a speedup run."""
    w = tmp_path / "work"
    w.mkdir()
    (w / "steps.tsv").write_text("doctor\t0\t45\t30.4\nfamily-forward\t0\t15\t12.25\n"
                                 "family-conv\t1\t30\t25\nfamily-h2d\t124\t40\t41\n"
                                 "family-nosuch\t4\t15\t2\nspeedup-resident\t0\t40\t35\n")
    (w / "doctor.log").write_text("ok    cuda      NVIDIA H100: 79 of 80 GiB free\n"
                                  "FAIL  /dev/shm  too small\n")
    write_json(w / "family-forward.json", run([case("test_forward[kerascnn-cuda-bs128]", 0.002,
                                                     cross=0.00202),
                                                case("test_forward[mlp-cuda-bs128]", 0.0004,
                                                     params={**CUDA_MS, "model": "mlp"})]))
    (w / "family-forward.xml").write_text(junit(passed=["test_forward[kerascnn-cuda-bs128]",
                                                        "test_forward[mlp-cuda-bs128]"], time=1.5))
    write_json(w / "family-conv.json",
               run([case("test_conv[cuda-bs128-k3]", 0.0015, cross=0.0018, bench="conv",
                         params={"device": "cuda", "batch_size": 128, "layer": "k3"})]))
    (w / "family-conv.xml").write_text(junit(
        passed=["test_conv[cuda-bs128-k3]"],
        failed=[("test_conv[cuda-bs128-k7]", "RuntimeError: CUDA error: out of memory&#10;"
                                             "CUDA kernel errors might be reported later")],
        skipped=[("test_conv[cuda-bs128-conv1d]", "channels_last 4-D only")], bench="conv",
        time=2.0))
    (w / "family-h2d.json").write_text('{"machine_info": {}, "benchmarks": [{"name": ')
    (w / "family-h2d.log").write_text("....\n!!! KeyboardInterrupt !!!\n")
    copies = [f"test_copy[cuda-{size}]"
              for size in ("cifar_batch", "16MiB", "256MiB", "1GiB", "2GiB")]
    (w / "family-h2d.xml").write_text(junit(passed=copies[:2], bench="h2d", time=9.0))
    (w / "family-h2d.collected").write_text("".join(f"benches/bench_h2d.py::{c}\n"
                                                    for c in copies))
    (w / "family-nosuch.log").write_text("no tests ran in 0.00s\n"
                                         "ERROR: file or directory not found: "
                                         "benches/bench_nosuch.py\n\n")
    write_json(w / "speedup-resident.json", run([epoch("cpu", 128, 4.0), epoch("cpu", 512, 3.0),
                                                epoch("cuda", 128, 0.5), epoch("cuda", 512, 0.25)]))
    return w


def table_rows(summary: str, first: str) -> list[list[str]]:
    """The rows of the first markdown table whose header starts with `first`, as lists of cells."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split(" | ")]


def by_first(rows: list[list[str]]) -> dict[str, list[str]]:
    return {r[0]: r for r in rows}


def test_summarize_writes_at_most_eight_files_and_says_what_each_step_did(tmp_path):
    out = tmp_path / "out"
    written = gpucheck.summarize(work_folder(tmp_path), out)
    names = {"summary.md", "runs.json", "speedup.json", "speedup.png", "log.txt", "doctor.txt"}
    assert {p.name for p in written} == names == {p.name for p in out.iterdir()}
    assert all(p.stat().st_size <= 16 * 2**20 for p in out.iterdir())
    summary = (out / "summary.md").read_text()
    assert "3 of 6 steps failed: family-conv, family-h2d, family-nosuch." in summary
    assert (f"GPU: {GPU} (79.1 GiB); driver 580.65.06" in summary
            and "torch 2.11.0+cu130, CUDA 13.0" in summary)
    assert ("FAIL  /dev/shm  too small" in summary
            and "too small" in (out / "doctor.txt").read_text())

    steps = by_first(table_rows(summary, "step"))
    # wall less the cases' junit times: 12.25 - 2 x 1.5 s
    assert steps["family-forward"][1:9] == ["passed", "12", "2", "0", "0", "2", "9.2", ""]
    assert steps["family-conv"][1:8] == ["exit 1", "25", "1", "1", "1", "1", "19.0"]
    assert steps["doctor"][2] == "30" and steps["doctor"][7] == ""
    assert steps["family-h2d"][1] == "timed out after 40 s"
    assert steps["family-h2d"][8] == ("interrupted at its limit after 2 of 5 cases: 3 not reached "
                                      "(listed below); the cases that finished are kept")
    assert ("Cases not reached (3):\n- family-h2d: `benches/bench_h2d.py::test_copy[cuda-256MiB]`\n"
            in summary and "`benches/bench_h2d.py::test_copy[cuda-2GiB]`" in summary)
    # the cut step's wall holds the case it cut: not a start-up
    assert ("median 14.1 s of 2 steps (9.2 to 19.0 s); the schedule assumes 15 s" in summary)
    assert (steps["family-nosuch"][1] == "exit 4"
            and "file or directory not found" in steps["family-nosuch"][8])
    assert ("- family-conv: `test_conv[cuda-bs128-k7]`: RuntimeError: CUDA error: out of memory\n"
            in summary)
    assert "- 1 x channels_last 4-D only" in summary
    # a line, no traceback
    assert "- family-h2d: " in summary and "corrupt or truncated JSON" in summary

    speedups = table_rows(summary, "case")  # the first table headed "case" is the speedup's
    assert [r[3:6] for r in speedups] == [["8.0x", "resident", "128"], ["12.0x", "resident", "512"]]
    assert (speedups[0][1] == "4.000 s (12,500 images/s)"
            and speedups[0][2] == "500.000 ms (100,000 images/s)")
    assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert "2 cases cross-checked; 1 differ by more than 5%." in summary
    cross = by_first([cells(line) for line in summary.splitlines() if line.startswith("| `test_")])
    assert cross["`test_conv[cuda-bs128-k3]`"][2:] == ["1.500 ms", "1.800 ms", "1.200", "20",
                                                       "**differs by 20%**"]
    assert cross["`test_forward[kerascnn-cuda-bs128]`"][4:] == ["1.010", "20", ""]

    merged = json.loads((out / "runs.json").read_text())
    assert [b["name"] for b in merged["benchmarks"]] == ["test_forward[kerascnn-cuda-bs128]",
                                                        "test_forward[mlp-cuda-bs128]",
                                                        "test_conv[cuda-bs128-k3]"]
    assert merged["machine_info"]["imgbench"]["driver"] == "580.65.06"
    assert len(record.load(out / "runs.json")) == 3  # readable by compare, plot and report
    log = (out / "log.txt").read_text()
    assert "== family-nosuch\nno tests ran in 0.00s\nERROR: file or directory not found" in log


def test_summarize_of_an_empty_work_folder_says_so_and_removes_files_of_an_earlier_check(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "speedup.png").write_bytes(b"old")
    written = gpucheck.summarize(tmp_path / "missing", out)
    assert {p.name for p in written} == {"summary.md", "log.txt"} == {p.name for p in out.iterdir()}
    summary = (out / "summary.md").read_text()
    assert "no step records" in summary and "Machine unknown" in summary
    assert "No speedup run: no speedup step ran." in summary


def test_the_command_line_names_its_usage_on_bad_arguments(capsys):
    assert gpucheck.main(["summarise", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert (err.count("\n") == 1
            and "usage: python3 -m imgbench.preflight.gpucheck summarize WORKDIR OUTDIR" in err)
    assert "got: summarise a b" in err


@pytest.mark.slow
def test_a_run_over_16_mib_loses_its_rounds_and_the_summary_says_so(tmp_path):
    w = tmp_path / "work"
    rounds = np.random.default_rng(0).uniform(0.001, 0.002, 250_000)
    cases = [bench_entry(f"test_forward[m{i}-cuda-bs128]", {"model": f"m{i}", "device": "cuda"},
                         rounds, bench="forward") for i in range(4)]
    write_json(w / "family-forward.json", run(cases))
    assert (w / "family-forward.json").stat().st_size > 16 * 2**20
    (w / "steps.tsv").write_text("family-forward\t0\t15\t12\n")
    out = tmp_path / "out"
    gpucheck.summarize(w, out)
    assert (out / "runs.json").stat().st_size <= 16 * 2**20
    kept = json.loads((out / "runs.json").read_text())["benchmarks"]
    assert len(kept) == 4 and all("data" not in b["stats"] for b in kept)
    assert kept[0]["stats"]["median"] == cases[0]["stats"]["median"]
    assert "runs.json: per-round times (stats.data) dropped" in (out / "summary.md").read_text()


def test_a_run_still_too_large_without_rounds_keeps_the_cases_that_fit(monkeypatch):
    doc = run([case(f"test_forward[m{i}-cuda-bs128]", 0.001) for i in range(10)])
    monkeypatch.setattr(checkfiles, "MAX_BYTES",
                        len(json.dumps({**doc, "benchmarks": doc["benchmarks"][:4]})))
    text, notes = checkfiles.fit(doc, "runs.json")
    assert len(text) <= checkfiles.MAX_BYTES and len(json.loads(text)["benchmarks"]) == 4
    assert notes[-1] == ("runs.json: still over the limit without rounds: "
                         "the last 6 of 10 cases left out")


DOCTOR_STAND_IN = (f"""#!{sys.executable}
# python as .ci/gpu-check calls it, but for `-m imgbench doctor` (run for real """
                   f"""in test_doctor.py: its real
# torch.compile alone takes 20 s here), which answers with two lines as doctor does.
import os, sys
if sys.argv[1:4] == ["-m", "imgbench", "doctor"]:
    print("info  python  stand-in\\nok    compile cpu  stand-in")
    sys.exit(0)
os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])
""")


@pytest.mark.slow
def test_the_check_on_a_cpu_goes_on_past_a_failed_step_and_exits_1(tmp_path):
    """The real script, shrunk: one family that runs, one whose bench file does not exist, the
    speedup steps in the quick profile (CPU only: no pairs); doctor stood in for."""
    out = tmp_path / "out"
    python = tmp_path / "python"
    python.write_text(DOCTOR_STAND_IN)
    python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(python), "GPU_CHECK_DEVICE": "cpu",
           "GPU_CHECK_MODELS": "mlp", "GPU_CHECK_FAMILIES": "forward,nosuchfamily",
           "GPU_CHECK_BATCH_SIZES": "8", "GPU_CHECK_SPEEDUP_PROFILE": "quick"}
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check"), str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "family-nosuchfamily" in proc.stdout.splitlines()[-1]
    names = {p.name for p in out.iterdir()}
    assert ({"summary.md", "runs.json", "speedup.json", "log.txt", "doctor.txt"} <= names
            and len(names) <= 8)
    summary = (out / "summary.md").read_text()
    steps = by_first(table_rows(summary, "step"))
    # the forward family runs in the CUDA families' step; the doctor's lines are shown as they come
    assert list(steps) == ["doctor", "family-cuda", "family-nosuchfamily", "speedup-resident",
                           "speedup-loader"]
    assert "ok    compile cpu  stand-in" in proc.stdout.splitlines()[1]
    assert steps["family-cuda"][1:4:2] == ["passed", "1"]
    assert 0 < float(steps["family-cuda"][7]) < float(steps["family-cuda"][2]) + 1
    assert steps["family-nosuchfamily"][1] == "exit 4"
    assert "file or directory not found" in steps["family-nosuchfamily"][8]
    # each pytest step that ended with its junit XML (the missing file's too: pytest wrote one)
    assert re.search(r"Start-up per pytest process .*: median \d+\.\d s of 4 steps", summary)
    assert steps["speedup-resident"][1] == steps["speedup-loader"][1] == "passed"
    assert "No GPU-over-CPU pairs" in summary and "devices: cpu" in summary
    assert [r.name for r in record.load(out / "runs.json")] == ["test_forward[mlp-cpu-bs8]"]
    assert sorted(r.name for r in record.load(out / "speedup.json")) == [
        "test_epoch[kerascnn-cpu-bs128-loader]", "test_epoch[kerascnn-cpu-bs128-resident]",
        "test_epoch[kerascnn-cpu-bs512-resident]"]


CUT_SHORT = """
def test_a():
    pass

def test_b():
    raise KeyboardInterrupt  # what SIGINT at the step's limit does

def test_c():
    pass
"""


def test_a_step_cut_short_names_the_cases_it_collected_and_did_not_reach(pytester, monkeypatch):
    """Real pytest with the check's plugin: the collected list and junit's names match up."""
    pytester.mkdir("benches")
    (pytester.path / "benches" / "bench_x.py").write_text(CUT_SHORT)
    work = pytester.path / "work"
    monkeypatch.setenv(collected.ENV, str(work / "family-x.collected"))
    result = pytester.runpytest_subprocess(
        "benches/bench_x.py", "-p", "imgbench.preflight.collected",
        f"--junitxml={work / 'family-x.xml'}", "-p", "no:cacheprovider")
    assert result.ret == 2  # interrupted
    assert (work / "family-x.collected").read_text() == "".join(
        f"benches/bench_x.py::test_{c}\n" for c in "abc")
    (work / "steps.tsv").write_text("family-x\t124\t20\t21.5\n")
    gpucheck.summarize(work, pytester.path / "out")
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert by_first(table_rows(summary, "step"))["family-x"][8].startswith(
        "interrupted at its limit after 1 of 3 cases: 2 not reached")
    assert ("Cases not reached (2):\n- family-x: `benches/bench_x.py::test_b`\n"
            "- family-x: `benches/bench_x.py::test_c`\n") in summary
