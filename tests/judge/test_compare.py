"""The compare gate (imgbench.compare and `imgbench compare`): a candidate run against a baseline
run and the history of its machine class; across machine classes, GPU-over-CPU speedups instead."""

import json

import pytest

from imgbench import cli
from imgbench.judge import compare, speedup, verdict
from imgbench.runs import history, record
from tests.helpers import (
    CASE,
    GPU_CASE,
    bench_entry,
    records,
    rounds,
    run_file,
    write_json,
    write_run,
)


def judge_pair(tmp_path, base_center, cand_center, history=(), **kw):
    base = records(tmp_path / "base.json", {CASE: rounds(base_center)})
    cand = records(tmp_path / "cand.json", {CASE: rounds(cand_center, seed=1)})
    # recorded before the candidate, or they are not its history
    past = [records(tmp_path / f"h{i}.json", {CASE: rounds(m, seed=10 + i)},
                    when=f"2026-11-{10 + i}T00:00:00")
            for i, m in enumerate(history)]
    (v,), _, _ = compare.compare(base, cand, past, **kw)
    return v


def test_verdicts(tmp_path):
    assert judge_pair(tmp_path, 1.0, 1.20).verdict == verdict.REGRESSION
    assert judge_pair(tmp_path, 1.0, 0.80).verdict == verdict.IMPROVEMENT
    assert judge_pair(tmp_path, 1.0, 1.00).verdict == verdict.UNCHANGED
    # below the 5% minimum effect
    assert judge_pair(tmp_path, 1.0, 1.02).verdict != verdict.REGRESSION
    assert judge_pair(tmp_path, 1.0, 1.08, min_effect=0.10).verdict != verdict.REGRESSION
    assert judge_pair(tmp_path, 1.0, 1.08,
                      per_family={"train_step": 0.10}).verdict != verdict.REGRESSION


def test_without_rounds_or_history_nothing_is_a_regression(tmp_path):
    base = records(tmp_path / "b.json", {CASE: [1.0]})
    cand = records(tmp_path / "c.json", {CASE: [1.5]})
    for r in (*base, *cand):
        object.__setattr__(r, "data", None)  # as saved without --benchmark-save-data
    (v,), _, _ = compare.compare(base, cand)
    assert (v.ci, v.ratio, v.verdict) == (None, 1.5, verdict.NOISY)


def test_family_effect_is_named_by_the_bench_file(tmp_path):
    loader = ("test_loader[png-w0]", (("source", "png"), ("workers", 0)))
    base = records(tmp_path / "b.json", {loader: rounds(1.0)}, bench="dataloader")
    cand = records(tmp_path / "c.json", {loader: rounds(1.12, seed=1)}, bench="dataloader")
    assert (cand[0].test, cand[0].family) == ("loader", "dataloader")
    (v,), _, _ = compare.compare(base, cand)
    assert v.verdict == verdict.REGRESSION and v.min_effect == 0.05
    (v,), _, _ = compare.compare(base, cand, per_family={"dataloader": 0.15})
    assert v.verdict != verdict.REGRESSION and v.min_effect == 0.15


def test_runs_of_another_profile_or_optimizer_are_not_compared_nor_history(tmp_path):
    quick, full = ({"profile": "quick", "optimizer": "adam"},
                   {"profile": "full", "optimizer": "adam"})
    base = records(tmp_path / "b.json", {CASE: rounds(1.0)}, meta=quick)
    with pytest.raises(compare.CompareError,
                       match=r"baseline vs candidate: profile 'quick' vs 'full'\); compare"):
        compare.compare(base, records(tmp_path / "f.json", {CASE: rounds(1.0)}, meta=full))
    sgd = records(tmp_path / "s.json", {CASE: rounds(1.0)}, meta={**quick, "optimizer": "sgd"})
    with pytest.raises(compare.CompareError, match="optimizer 'adam' vs 'sgd'"):
        compare.compare(base, sgd)
    unrecorded = records(tmp_path / "u.json", {CASE: rounds(1.0)})  # older runs: no settings
    assert compare.compare(unrecorded, base)[0][0].verdict == verdict.UNCHANGED
    cand = records(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)}, meta=quick)
    # 224x224 images: 20x slower, not history
    steady_full = [records(tmp_path / f"h{i}.json", {CASE: rounds(m * 20, seed=i)}, meta=full)
                   for i, m in enumerate([1.0, 1.01, 0.99, 1.0])]
    (v,), _, _ = compare.compare(base, cand, steady_full)
    assert v.history_bound is None and v.verdict == verdict.REGRESSION


def test_history_spread_vetoes_a_regression_within_past_noise(tmp_path):
    noisy_history = [1.0, 1.25, 0.9, 1.2, 0.95, 1.3]  # this machine moves 30% between runs
    v = judge_pair(tmp_path, 1.0, 1.20, history=noisy_history)
    assert v.history_bound > 1.2 and v.verdict != verdict.REGRESSION
    steady_history = [1.0, 1.01, 0.99, 1.0, 1.01, 0.995]
    assert judge_pair(tmp_path, 1.0, 1.20, history=steady_history).verdict == verdict.REGRESSION


def test_cases_match_by_params_not_by_id_and_strays_are_listed(tmp_path):
    renamed = ("test_train_step[renamed-id]", CASE[1])
    other = ("test_forward[mlp-cpu-bs8]", (("model", "mlp"), ("device", "cpu"), ("batch_size", 8)))
    gone = ("test_forward[tinyvgg-cpu-bs8]",
            (("model", "tinyvgg"), ("device", "cpu"), ("batch_size", 8)))
    base = records(tmp_path / "b.json", {CASE: rounds(1.0), gone: rounds(1.0)})
    cand = records(tmp_path / "c.json", {renamed: rounds(1.0), other: rounds(1.0)})
    verdicts, only_cand, only_base = compare.compare(base, cand)
    assert [v.name for v in verdicts] == ["test_train_step[renamed-id]"]
    assert (only_cand == ["test_forward[mlp-cpu-bs8]"]
            and only_base == ["test_forward[tinyvgg-cpu-bs8]"])


def test_different_hardware_is_refused(tmp_path):
    base = records(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = records(tmp_path / "c.json", {CASE: rounds(1.0)}, fingerprint="Xeon-16c-H100-x1")
    with pytest.raises(compare.CompareError,
                       match="different hardware: baseline AMD_EPYC-2c vs candidate Xeon"):
        compare.compare(base, cand)


def test_history_of_other_machines_does_not_count(tmp_path):
    hist = [records(tmp_path / f"h{i}.json", {CASE: rounds(m, seed=i)}, fingerprint="Xeon-16c")
            for i, m in enumerate([1.0, 1.01, 0.99, 1.0])]  # steady, but another machine's
    (v,), _, _ = compare.compare(records(tmp_path / "b.json", {CASE: rounds(1.0)}),
                                 records(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)}), hist)
    assert v.history_bound is None


def test_the_candidate_saved_into_the_history_is_not_its_own_history(tmp_path):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)}, when="2026-11-21T12:00:00")
    hist = tmp_path / "hist"
    for i, m in enumerate([1.0, 1.01, 0.99]):
        write_run(hist / f"{i}.json", {CASE: rounds(m, seed=i)}, when=f"2026-11-1{i}T00:00:00")
    (hist / "self.json").write_text(cand.read_text())  # as a main-branch job saves, then judges
    verdicts, _, _ = compare.compare(record.load(base), record.load(cand),
                                     [record.load(p) for p in history.find([hist])])
    assert verdicts[0].verdict == verdict.REGRESSION and verdicts[0].history_bound < 1.1


def speedup_run(path, cpu_s, gpu_s, when, seed=0):
    return records(path, {CASE: rounds(cpu_s, seed=seed), GPU_CASE: rounds(gpu_s, seed=seed + 1)},
                   when=when)


def test_speedup_falls_are_the_points_slower_than_the_same_cases_previous_one(tmp_path):
    other = ("test_forward[mlp-cuda-bs8]",
             (("model", "mlp"), ("device", "cuda"), ("batch_size", 8)))
    other_cpu = ("test_forward[mlp-cpu-bs8]",
                 (("model", "mlp"), ("device", "cpu"), ("batch_size", 8)))
    steady = [speedup_run(tmp_path / f"{i}.json", 0.020, 0.001, f"2026-11-0{i}T00:00:00",
                          seed=2 * i) for i in (1, 2, 3)]  # 20x, 20x, 20x
    runs = [*steady,
            speedup_run(tmp_path / "4.json", 0.020, 0.002, "2026-11-04T00:00:00",
                        seed=8),  # 10x: fell
            speedup_run(tmp_path / "5.json", 0.020, 0.001, "2026-11-05T00:00:00",
                        seed=10),  # 20x: rose
            records(tmp_path / "6.json", {other_cpu: rounds(0.02), other: rounds(0.004)},
                    when="2026-11-06T00:00:00")]  # 5x, another case: not a fall from 20x
    series = speedup.series(runs)
    assert len(series) == 6
    (fell,) = compare.speedup_falls(series)
    assert (fell.accel.path == str(tmp_path / "4.json")
            and fell.speedup == pytest.approx(10, rel=0.02))
    # below 3 earlier points a fall is information only
    assert compare.speedup_falls(speedup.series([steady[0], *runs[3:]])) == []
    # a halving is below a 150% minimum effect
    assert compare.speedup_falls(series, min_effect=1.5) == []


@pytest.mark.parametrize("args, message", [
    (["--family-effect", "loader=15"], "unknown family 'loader' (valid: forward, train_step, conv"),
    (["--family-effect", "epoch=-5"], "--family-effect 'epoch=-5': expected FAMILY=PERCENT"),
    (["--family-effect", "epoch"], "--family-effect 'epoch': expected FAMILY=PERCENT"),
    (["--min-effect", "-100"], "argument --min-effect: '-100' is not a percentage"),
])
def test_bad_effects_are_one_line_exit_2(tmp_path, capsys, args, message):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    try:
        code = cli.main(["compare", str(base), str(base), *args])
    except SystemExit as e:  # argparse's own checks
        code = e.code
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_compare_exit_codes_and_output(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    same = write_run(tmp_path / "same.json", {CASE: rounds(1.0, seed=1)})
    slow = write_run(tmp_path / "slow.json", {CASE: rounds(1.3, seed=1)})
    assert cli.main(["compare", str(same), str(base)]) == 0
    assert "0 regression, 0 improvement, 1 unchanged" in capsys.readouterr().out
    # one pair of runs without a history: information only, unless asked to gate
    assert cli.main(["compare", str(slow), str(base), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| slower (no history: information only) |" in out
    assert ("1 case(s) slower without a history of 3 runs to judge them by: information only "
            "(give --history, or --gate-without-history to fail on them)") in out
    assert cli.main(["compare", str(slow), str(base), "--markdown",
                     "--gate-without-history"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("| case | baseline |") and "| regression |" in out
    before = base.read_bytes()
    (tmp_path / "t.json").write_text('{"machine_info"')
    assert cli.main(["compare", str(tmp_path / "t.json"), str(base)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt or truncated JSON" in err[0]
    assert base.read_bytes() == before  # compare never writes stored runs
    other = write_run(tmp_path / "o.json", {CASE: rounds(1.0)}, fingerprint="Xeon-16c")
    assert cli.main(["compare", str(other), str(base)]) == cli.EXIT_BAD_INPUT
    assert "different hardware" in capsys.readouterr().err


def test_cli_compare_with_an_empty_history_says_so(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["compare", str(cand), str(base), "--history", str(empty)]) == 0
    out = capsys.readouterr().out
    assert f"no stored runs in {empty}: left out of the history" in out
    assert "slower (no history: information only)" in out


def test_cli_compare_names_what_an_older_run_lacks(tmp_path, capsys):
    schema_1 = {"schema": 1, "version": "0.1.0", "profile": "quick", "devices": ["cpu"],
                "threads": 2, "dataset": "synthetic", "optimizer": "adam", "precisions": ["fp32"],
                "memory_formats": ["nchw"], "compile": ["off"], "peaks": {}}
    # as the committed baseline
    older = {k: v for k, v in schema_1.items() if k not in ("schema", "optimizer")}
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)}, meta=older)
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.0, seed=1)}, meta=schema_1)
    assert cli.main(["compare", str(cand), str(base)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{base}: lacks optimizer (run file schema 0): not checked" in lines
    # the current schema lacks nothing
    assert not any(line.startswith(f"{cand}:") for line in lines)


def test_cli_compare_of_a_newer_schema_is_refused_naming_the_file(tmp_path, capsys):
    from imgbench.runs import runfile

    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    newer = write_json(tmp_path / "n.json",
                       run_file([bench_entry(CASE[0], dict(CASE[1]), rounds(1.0))],
                                meta={"schema": runfile.SCHEMA + 1}))
    assert cli.main(["compare", str(newer), str(base)]) == cli.EXIT_BAD_INPUT
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert (err.startswith(f"imgbench compare: error: {newer}: written by a newer imgbench")
            and "upgrade imgbench" in err)


def test_different_hardware_compares_speedups(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(0.020), GPU_CASE: rounds(0.001)})
    same = write_run(tmp_path / "s.json",
                     {CASE: rounds(0.010, seed=1), GPU_CASE: rounds(0.0005, seed=1)},
                     fingerprint="Xeon-16c-H100-x1")
    worse = write_run(tmp_path / "w.json",
                      {CASE: rounds(0.010, seed=1), GPU_CASE: rounds(0.001, seed=1)},
                      fingerprint="Xeon-16c-H100-x1")
    assert cli.main(["compare", str(same), str(base)]) == 0
    out = capsys.readouterr().out
    assert "different hardware: baseline AMD_EPYC-2c vs candidate Xeon-16c-H100-x1" in out
    assert ("cuda/cpu train_step[batch_size=32,model=kerascnn]" in out and "20.00x" in out
            and "unchanged" in out)
    # speedup fell from 20x to 10x: across machine classes there is no history to judge it by
    assert cli.main(["compare", str(worse), str(base)]) == 0
    assert "slower (no history: information only)" in capsys.readouterr().out
    assert cli.main(["compare", str(worse), str(base), "--gate-without-history"]) == 1
    assert "2.000" in capsys.readouterr().out
    # each machine runs with its own cores: 2 threads on the CPU box, 16 on the GPU box, still
    # compared
    for path, threads in ((base, 2), (same, 16)):
        doc = json.loads(path.read_text())
        doc["imgbench"] = {"profile": "quick", "threads": threads}
        for b in doc["benchmarks"]:
            b["extra_info"] = {"threads": threads}
        path.write_text(json.dumps(doc))
    assert cli.main(["compare", str(same), str(base)]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_a_contended_case_gives_no_speedup_verdict_and_no_history(tmp_path, capsys):
    crowded = {"contention": {"foreign_cpu": 0.5, "seconds": 10.0}}
    base = write_run(tmp_path / "b.json", {CASE: rounds(0.020), GPU_CASE: rounds(0.001)})
    worse = write_json(tmp_path / "w.json", run_file(
        [bench_entry(CASE[0], dict(CASE[1]), rounds(0.010, seed=1), extra=crowded),
         bench_entry(GPU_CASE[0], dict(GPU_CASE[1]), rounds(0.001, seed=1))],
        fingerprint="Xeon-16c-H100-x1"))
    # the speedup fell, but its CPU case was crowded
    assert cli.main(["compare", str(worse), str(base)]) == 0
    assert ("cuda/cpu train_step[batch_size=32,model=kerascnn]: measured under contention: other "
            "processes used 50% of the CPUs (limit 10%) in the candidate run"
            in capsys.readouterr().out.splitlines())
    crowded_past = [record.load(write_json(tmp_path / f"h{i}.json", run_file(
        [bench_entry(CASE[0], dict(CASE[1]), rounds(m, seed=i), extra=crowded)],
        when=f"2026-11-0{i + 1}T00:00:00")))
        for i, m in enumerate([1.0, 1.01, 0.99])]
    v = judge_pair(tmp_path, 1.0, 1.0)
    (judged,), _, _ = compare.compare(record.load(tmp_path / "base.json"),
                                      record.load(tmp_path / "cand.json"), crowded_past)
    # contended runs are no history
    assert judged.history_bound is None and judged.verdict == v.verdict


def test_different_hardware_without_speedups_is_refused(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.0), GPU_CASE: rounds(0.1)},
                     fingerprint="Xeon-16c")
    assert cli.main(["compare", str(cand), str(base)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert (len(err) == 1
            and "the baseline has no case timed on both the CPU and an accelerator" in err[0])
