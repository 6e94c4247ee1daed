"""Stored runs -> records, the statistics, and the compare gate (imgbench compare)."""

import json

import numpy as np
import pytest

from imgbench import cli, compare, results, stats

FP = "AMD_EPYC-2c"


def write_run(path, cases, fingerprint=FP, when="2026-11-21T10:00:00", bench=None, meta=None):
    """cases: {(name, params-dict-as-tuple): list of round times}; bench: the bench file's family;
    meta: the run's imgbench settings (profile, dataset, optimizer)."""
    benchmarks = []
    for (name, params), data in cases.items():
        data = list(map(float, data))
        benchmarks.append({"name": name, "params": dict(params), "extra_info": {},
                           **({"fullname": f"benches/bench_{bench}.py::{name}"} if bench else {}),
                           "stats": {"median": float(np.median(data)), "min": min(data), "rounds": len(data),
                                     "data": data}})
    path.write_text(json.dumps({"machine_info": {"fingerprint": fingerprint}, "commit_info": {"id": "abc"},
                                "datetime": when, "benchmarks": benchmarks, **({"imgbench": meta} if meta else {})}))
    return path


def rounds(center, n=30, spread=0.01, seed=0):
    return center * (1 + spread * np.random.default_rng(seed).standard_normal(n))


CASE = ("test_train_step[kerascnn-cpu-bs32]", (("model", "kerascnn"), ("device", "cpu"), ("batch_size", 32)))


def test_records_carry_family_params_and_rounds(tmp_path):
    (r,) = results.load(write_run(tmp_path / "a.json", {CASE: [1.0, 2.0, 3.0]}))
    assert (r.family, r.params["batch_size"], r.median, r.min, r.rounds, r.data) == ("train_step", 32, 2.0, 1.0, 3,
                                                                                     [1.0, 2.0, 3.0])
    assert r.fingerprint == FP and r.commit == "abc"


@pytest.mark.parametrize("text, message", [
    ('{"machine_info": {}, "benchmarks": [', "corrupt or truncated JSON (line 1"),
    ('{"results": []}', "not a pytest-benchmark run"),
    ('[1, 2]', "not a pytest-benchmark run"),
    ('{"machine_info": {}, "benchmarks": [{"name": "t"}]}', "benchmark 0 lacks a readable 'stats'"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(results.RunError) as e:
        results.load(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("median", [0, -1, "NaN", "Infinity"])
def test_a_median_that_is_not_a_positive_time_is_refused(tmp_path, median):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": [{"name": "test_forward[x]", "stats": {
        "median": 1.0, "min": 0, "rounds": 1}}]}).replace('"median": 1.0', f'"median": {median}'))
    with pytest.raises(results.RunError, match=r"benchmark 0 \(test_forward\[x\]\) has median .* \(valid: a pos"):
        results.load(path)


def test_without_rounds_or_history_nothing_is_a_regression(tmp_path):
    base = results.load(write_run(tmp_path / "b.json", {CASE: [1.0]}))
    cand = results.load(write_run(tmp_path / "c.json", {CASE: [1.5]}))
    for r in (*base, *cand):
        object.__setattr__(r, "data", None)  # as saved without --benchmark-save-data
    (v,), _, _ = compare.compare(base, cand)
    assert (v.ci, v.ratio, v.verdict) == (None, 1.5, compare.NOISY)
    assert compare.judge(1.5, None, 1.5, 1.1, 0.05) == compare.REGRESSION  # a history bound decides


def test_a_binary_file_is_one_line_error_naming_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(results.RunError, match="run.json: not a pytest-benchmark run \\(not UTF-8 text\\)"):
        results.load(path)


def test_find_takes_files_and_folders(tmp_path):
    (tmp_path / "x").mkdir()
    a, b = write_run(tmp_path / "x" / "1.json", {}), write_run(tmp_path / "2.json", {})
    assert results.find([tmp_path / "x", b]) == [a, b]
    with pytest.raises(results.RunError, match="no such file or folder"):
        results.find([tmp_path / "missing"])


def test_ratio_and_bootstrap_interval():
    base, cand = rounds(1.0), rounds(1.2, seed=1)
    assert stats.ratio_of_medians(base, cand) == pytest.approx(1.2, rel=0.02)
    lo, hi = stats.bootstrap_ratio_ci(base, cand, alpha=0.01)
    assert lo < 1.2 < hi and lo > 1.1 and hi < 1.3


def test_bootstrap_of_a_huge_run_is_thinned_and_chunked():
    x = rounds(1e-5, n=stats.MAX_ROUNDS * 40, spread=0.01)
    (medians,) = stats.bootstrap_medians([x], resamples=stats.CHUNK * 3 + 1)
    assert medians.shape == (stats.CHUNK * 3 + 1,)
    lo, hi = stats.bootstrap_ratio_ci(x, x * 1.02)
    assert lo < 1.02 < hi and hi - lo < 0.01


def test_mann_whitney_one_sided():
    base = rounds(1.0, n=12, spread=0.02)
    assert stats.mann_whitney_greater(rounds(1.1, n=12, spread=0.02, seed=1), base) < 0.001
    assert stats.mann_whitney_greater(rounds(0.9, n=12, spread=0.02, seed=1), base) > 0.99
    same = stats.mann_whitney_greater(rounds(1.0, n=12, spread=0.02, seed=1), base)
    assert 0.01 < same < 0.99
    assert stats.mann_whitney_greater([1, 1, 1], [1, 1, 1]) == 1.0  # all tied: no evidence


def test_t_quantiles_match_the_tables():
    assert stats.t_quantile(0.99, 2) == pytest.approx(6.965, abs=1e-3)
    assert stats.t_quantile(0.975, 10) == pytest.approx(2.228, abs=1e-3)
    assert stats.t_quantile(0.95, 1000) == pytest.approx(1.646, abs=1e-3)


def test_history_bound_follows_the_run_to_run_spread():
    assert stats.history_bound([1.0, 1.1]) is None
    tight = stats.history_bound([1.00, 1.01, 0.99, 1.00, 1.01, 0.99])
    loose = stats.history_bound([1.00, 1.20, 0.85, 1.10, 0.90, 1.25])
    assert 1 < tight < 1.1 < loose


def test_history_interval_follows_a_skewed_history():
    m = [1.0, 1.0, 1.0, 1.3, 1.35]  # mostly 1.0, sometimes 30% slower: log-ratios average above 0
    lo, hi = stats.history_interval(m)
    logs = np.log(np.array(m))
    half = stats.t_quantile(0.99, 4) * logs.std(ddof=1) * np.sqrt(1 + 1 / 5)
    assert (lo, hi) == pytest.approx((np.exp(logs.mean() - half), np.exp(logs.mean() + half)))
    assert lo * hi > 1.05 and stats.history_bound(m) == hi
    # an improvement must fall below the history's own lower bound, not below 1 / the upper one
    assert compare.judge(0.8, (0.75, 0.85), 0.9, 1.5, 0.05, low=0.95) == compare.IMPROVEMENT
    assert compare.judge(0.8, (0.75, 0.85), 0.9, 1.5, 0.05, low=0.85) != compare.IMPROVEMENT


def judge_pair(tmp_path, base_center, cand_center, history=(), **kw):
    base = results.load(write_run(tmp_path / "base.json", {CASE: rounds(base_center)}))
    cand = results.load(write_run(tmp_path / "cand.json", {CASE: rounds(cand_center, seed=1)}))
    past = [results.load(write_run(tmp_path / f"h{i}.json", {CASE: rounds(m, seed=10 + i)}))
            for i, m in enumerate(history)]
    (v,), _, _ = compare.compare(base, cand, past, **kw)
    return v


def test_verdicts(tmp_path):
    assert judge_pair(tmp_path, 1.0, 1.20).verdict == compare.REGRESSION
    assert judge_pair(tmp_path, 1.0, 0.80).verdict == compare.IMPROVEMENT
    assert judge_pair(tmp_path, 1.0, 1.00).verdict == compare.UNCHANGED
    assert judge_pair(tmp_path, 1.0, 1.02).verdict != compare.REGRESSION  # below the 5% minimum effect
    assert judge_pair(tmp_path, 1.0, 1.08, min_effect=0.10).verdict != compare.REGRESSION
    assert judge_pair(tmp_path, 1.0, 1.08, per_family={"train_step": 0.10}).verdict != compare.REGRESSION


def test_family_effect_is_named_by_the_bench_file(tmp_path):
    loader = ("test_loader[png-w0]", (("source", "png"), ("workers", 0)))
    base = results.load(write_run(tmp_path / "b.json", {loader: rounds(1.0)}, bench="dataloader"))
    cand = results.load(write_run(tmp_path / "c.json", {loader: rounds(1.12, seed=1)}, bench="dataloader"))
    assert (cand[0].family, cand[0].bench) == ("loader", "dataloader")
    (v,), _, _ = compare.compare(base, cand)
    assert v.verdict == compare.REGRESSION and v.min_effect == 0.05
    (v,), _, _ = compare.compare(base, cand, per_family={"dataloader": 0.15})
    assert v.verdict != compare.REGRESSION and v.min_effect == 0.15


@pytest.mark.parametrize("args, message", [
    (["--family-effect", "loader=15"], "unknown family 'loader' (valid: forward, train_step, conv"),
    (["--family-effect", "epoch=-5"], "--family-effect 'epoch=-5': expected FAMILY=PERCENT"),
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


def test_runs_of_another_profile_or_optimizer_are_not_compared_nor_history(tmp_path):
    quick, full = {"profile": "quick", "optimizer": "adam"}, {"profile": "full", "optimizer": "adam"}
    base = results.load(write_run(tmp_path / "b.json", {CASE: rounds(1.0)}, meta=quick))
    with pytest.raises(compare.CompareError, match=r"baseline vs candidate: profile 'quick' vs 'full'\); compare"):
        compare.compare(base, results.load(write_run(tmp_path / "f.json", {CASE: rounds(1.0)}, meta=full)))
    sgd = results.load(write_run(tmp_path / "s.json", {CASE: rounds(1.0)}, meta={**quick, "optimizer": "sgd"}))
    with pytest.raises(compare.CompareError, match="optimizer 'adam' vs 'sgd'"):
        compare.compare(base, sgd)
    unrecorded = results.load(write_run(tmp_path / "u.json", {CASE: rounds(1.0)}))  # older runs: no settings
    assert compare.compare(unrecorded, base)[0][0].verdict == compare.UNCHANGED
    cand = results.load(write_run(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)}, meta=quick))
    steady_full = [results.load(write_run(tmp_path / f"h{i}.json", {CASE: rounds(m * 20, seed=i)}, meta=full))
                   for i, m in enumerate([1.0, 1.01, 0.99, 1.0])]  # 224x224 images: 20x slower, not history
    (v,), _, _ = compare.compare(base, cand, steady_full)
    assert v.history_bound is None and v.verdict == compare.REGRESSION


def test_speedups_and_latest_records_stay_within_one_profile(tmp_path):
    from imgbench import report, speedup

    quick, full = {"profile": "quick"}, {"profile": "full"}
    cpu_quick = results.load(write_run(tmp_path / "1.json", {CASE: rounds(1.0)}, when="2026-11-01T00:00:00",
                                       meta=quick))
    cpu_full = results.load(write_run(tmp_path / "2.json", {CASE: rounds(20.0)}, when="2026-11-21T09:00:00",
                                      meta=full))  # nearer in time, but 224x224 images
    gpu_quick = results.load(write_run(tmp_path / "3.json", {GPU_CASE: rounds(0.1)}, when="2026-11-21T10:00:00",
                                       meta=quick))
    (s,) = speedup.series([cpu_quick, cpu_full, gpu_quick])
    assert (s.cpu.path, s.same_run) == (str(tmp_path / "1.json"), False)
    assert s.speedup == pytest.approx(10, rel=0.02)
    latest = report.latest_records([cpu_quick, cpu_full, gpu_quick])
    assert sorted(r.path for r in latest) == [str(tmp_path / "1.json"), str(tmp_path / "3.json")]


def test_history_spread_vetoes_a_regression_within_past_noise(tmp_path):
    noisy_history = [1.0, 1.25, 0.9, 1.2, 0.95, 1.3]  # this machine moves 30% between runs
    v = judge_pair(tmp_path, 1.0, 1.20, history=noisy_history)
    assert v.history_bound > 1.2 and v.verdict != compare.REGRESSION
    steady_history = [1.0, 1.01, 0.99, 1.0, 1.01, 0.995]
    assert judge_pair(tmp_path, 1.0, 1.20, history=steady_history).verdict == compare.REGRESSION


def test_cases_match_by_params_not_by_id_and_strays_are_listed(tmp_path):
    renamed = ("test_train_step[renamed-id]", CASE[1])
    other = ("test_forward[mlp-cpu-bs8]", (("model", "mlp"), ("device", "cpu"), ("batch_size", 8)))
    gone = ("test_forward[tinyvgg-cpu-bs8]", (("model", "tinyvgg"), ("device", "cpu"), ("batch_size", 8)))
    base = results.load(write_run(tmp_path / "b.json", {CASE: rounds(1.0), gone: rounds(1.0)}))
    cand = results.load(write_run(tmp_path / "c.json", {renamed: rounds(1.0), other: rounds(1.0)}))
    verdicts, only_cand, only_base = compare.compare(base, cand)
    assert [v.name for v in verdicts] == ["test_train_step[renamed-id]"]
    assert only_cand == ["test_forward[mlp-cpu-bs8]"] and only_base == ["test_forward[tinyvgg-cpu-bs8]"]


def test_different_hardware_is_refused(tmp_path):
    base = results.load(write_run(tmp_path / "b.json", {CASE: rounds(1.0)}))
    cand = results.load(write_run(tmp_path / "c.json", {CASE: rounds(1.0)}, fingerprint="Xeon-16c-H100-x1"))
    with pytest.raises(compare.CompareError, match="different hardware: baseline AMD_EPYC-2c vs candidate Xeon"):
        compare.compare(base, cand)


def test_cli_compare_exit_codes_and_output(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    same = write_run(tmp_path / "same.json", {CASE: rounds(1.0, seed=1)})
    slow = write_run(tmp_path / "slow.json", {CASE: rounds(1.3, seed=1)})
    assert cli.main(["compare", str(same), str(base)]) == 0
    assert "0 regression, 0 improvement, 1 unchanged" in capsys.readouterr().out
    assert cli.main(["compare", str(slow), str(base), "--markdown"]) == 1
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


GPU_CASE = ("test_train_step[kerascnn-cuda-bs32]", (("model", "kerascnn"), ("device", "cuda"), ("batch_size", 32)))


def test_speedups_pair_the_same_case_across_devices_within_a_run(tmp_path):
    from imgbench import speedup

    run = results.load(write_run(tmp_path / "r.json", {CASE: rounds(0.020), GPU_CASE: rounds(0.001)}))
    (s,) = speedup.within(run)
    assert s.device == "cuda" and s.case == "train_step[batch_size=32,model=kerascnn]" and s.same_run
    assert s.speedup == pytest.approx(20, rel=0.02)
    assert s.ci[0] < s.speedup < s.ci[1] and s.ci[1] / s.ci[0] < 1.1


def test_speedup_series_takes_the_cpu_time_from_the_nearest_run_of_the_same_machine(tmp_path):
    from imgbench import speedup

    cpu_old = write_run(tmp_path / "1.json", {CASE: rounds(0.030)}, when="2026-11-01T00:00:00")
    cpu_new = write_run(tmp_path / "2.json", {CASE: rounds(0.020)}, when="2026-11-20T00:00:00")
    other = write_run(tmp_path / "3.json", {CASE: rounds(0.005)}, fingerprint="Xeon-16c",
                      when="2026-11-21T00:00:00")
    gpu = write_run(tmp_path / "4.json", {GPU_CASE: rounds(0.001)}, when="2026-11-21T00:00:00")
    (s,) = speedup.series([results.load(p) for p in (cpu_old, cpu_new, other, gpu)])
    assert not s.same_run and s.cpu.path == str(cpu_new)  # nearest in time, same machine class only
    assert s.speedup == pytest.approx(20, rel=0.02)


def test_different_hardware_compares_speedups(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(0.020), GPU_CASE: rounds(0.001)})
    same = write_run(tmp_path / "s.json", {CASE: rounds(0.010, seed=1), GPU_CASE: rounds(0.0005, seed=1)},
                     fingerprint="Xeon-16c-H100-x1")
    worse = write_run(tmp_path / "w.json", {CASE: rounds(0.010, seed=1), GPU_CASE: rounds(0.001, seed=1)},
                      fingerprint="Xeon-16c-H100-x1")
    assert cli.main(["compare", str(same), str(base)]) == 0
    out = capsys.readouterr().out
    assert "different hardware: baseline AMD_EPYC-2c vs candidate Xeon-16c-H100-x1" in out
    assert "cuda/cpu train_step[batch_size=32,model=kerascnn]" in out and "20.00x" in out and "unchanged" in out
    assert cli.main(["compare", str(worse), str(base)]) == 1  # speedup fell from 20x to 10x
    assert "2.000" in capsys.readouterr().out


def test_different_hardware_without_speedups_is_refused(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.0), GPU_CASE: rounds(0.1)}, fingerprint="Xeon-16c")
    assert cli.main(["compare", str(cand), str(base)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the baseline has no case timed on both the CPU and an accelerator" in err[0]


def test_history_of_other_machines_and_empty_history(tmp_path, capsys):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)})
    hist = tmp_path / "hist"
    hist.mkdir()
    for i, m in enumerate([1.0, 1.01, 0.99, 1.0]):  # steady, but another machine's: must not count
        write_run(hist / f"{i}.json", {CASE: rounds(m, seed=i)}, fingerprint="Xeon-16c")
    verdicts, _, _ = compare.compare(results.load(base), results.load(cand),
                                     [results.load(p) for p in results.find([hist])])
    assert verdicts[0].history_bound is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["compare", str(cand), str(base), "--history", str(empty)]) == 1
    assert f"no stored runs in {empty}: judged without a history bound" in capsys.readouterr().out
    assert cli.main(["compare", str(cand), str(base), "--family-effect", "epoch"]) == cli.EXIT_BAD_INPUT
    assert "--family-effect 'epoch': expected FAMILY=PERCENT" in capsys.readouterr().err


def test_the_candidate_saved_into_the_history_is_not_its_own_history(tmp_path):
    base = write_run(tmp_path / "b.json", {CASE: rounds(1.0)})
    cand = write_run(tmp_path / "c.json", {CASE: rounds(1.2, seed=1)}, when="2026-11-21T12:00:00")
    hist = tmp_path / "hist"
    hist.mkdir()
    for i, m in enumerate([1.0, 1.01, 0.99]):
        write_run(hist / f"{i}.json", {CASE: rounds(m, seed=i)}, when=f"2026-11-1{i}T00:00:00")
    (hist / "self.json").write_text(cand.read_text())  # as a main-branch job saves, then judges
    verdicts, _, _ = compare.compare(results.load(base), results.load(cand),
                                     [results.load(p) for p in results.find([hist])])
    assert verdicts[0].verdict == compare.REGRESSION and verdicts[0].history_bound < 1.1
