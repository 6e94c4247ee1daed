"""The one-shot GPU check's schedule (imgbench.preflight.plan) against the cost model: every step
fits its share on a 16-core box with one H100 with 20% to spare, and the shares fit the 475 s.

The cases each step would run there are collected for real (pytest in this process, --device cuda
--threads 16) with imgbench.hw.devices seeing one GPU, so the accelerator-only cases (pinned copies,
test_train_step_copy) are counted; ddp sees one GPU too. Nothing runs."""

import dataclasses

import pytest

from imgbench.bench import estimate
from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.preflight import plan
from tests.helpers import ROOT

THREADS = 16
QUICK = dataclasses.replace(config.PROFILES["quick"], max_time=plan.MAX_TIME_S)
FULL = dataclasses.replace(config.PROFILES["full"], long_rounds=plan.SPEEDUP_ROUNDS)


def settings(profile, devices) -> Settings:
    return Settings(devices=devices, batch_sizes=[plan.BATCH_SIZE], models=["all"], profile=profile,
                    threads=THREADS, optimizer="adam", dataset="synthetic", data_root=None)


def collect(args: list[str]) -> list[tuple[str, str, dict]]:
    from imgbench.bench.plugin import params

    got = []

    class Collected:
        def pytest_collection_finish(self, session):
            got.extend((i.path.stem.removeprefix("bench_"), i.originalname, params(i))
                       for i in session.items)

    rc = pytest.main([*args, "--device", "cuda", "--threads", str(THREADS), "--profile", "quick",
                      "--batch-size", str(plan.BATCH_SIZE), "--collect-only", "-q",
                      "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"],
                     plugins=[Collected()])
    assert rc == 0, args
    return got


@pytest.fixture(scope="module")
def cases():
    """Each pytest step's cases on the 16-core one-GPU box."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        mp.setattr("imgbench.hw.devices._gpu_count", lambda: 1)
        mp.setattr("imgbench.workloads.ddp.worlds.unavailable", lambda device: None)
        mp.setattr("imgbench.workloads.ddp.worlds.capacity",
                   lambda device, threads: 1 if device.startswith("cuda") else threads)
        mp.delenv("PYTEST_ADDOPTS", raising=False)
        out = {s.name: collect(s.args()) for s in plan.STEPS if s.kind == "pytest"}
        # ddp's estimate asks its worlds whether a case runs: still one GPU
        out["estimates"] = {s.name: step_estimate(s, out.get(s.name, [])) for s in plan.STEPS}
    return out


def step_estimate(step: plan.Step, cases: list) -> float:
    if step.kind == "doctor":
        return plan.DOCTOR_EST_S
    if step.kind == "summary":
        return plan.SUMMARY_EST_S
    if step.kind == "speedup":
        path = step.name.removeprefix("speedup-")
        cases = [("epoch", "test_epoch", {"model": "kerascnn", "device": d, "batch_size": b,
                                          "path": path})
                 for d in ("cpu", "cuda") for b in plan.SPEEDUP_BATCH_SIZES[path]]
        s = settings(FULL, ["cpu", "cuda"])
    else:
        s = settings(QUICK, ["cuda"])
    return config.PROCESS_START_S + sum(estimate.run_seconds(cases, s).values())


def test_every_step_fits_its_share_with_20_percent_to_spare(cases):
    est = cases["estimates"]
    short = {s.name: (s.share_s, round(est[s.name], 1)) for s in plan.STEPS
             if s.share_s < plan.SPARE * est[s.name]}
    assert not short, f"(share, estimate) under {plan.SPARE}x: {short}"
    assert sum(s.share_s for s in plan.STEPS) <= plan.BUDGET_S == 475
    # the reference epoch's cold compile is in its estimate
    assert est["family-reference"] > estimate.COMPILE_S + config.PROCESS_START_S


def test_the_reference_epoch_has_a_step_of_its_own_and_the_risky_paths_come_first(cases):
    assert [t for _, t, _ in cases["family-reference"]] == ["test_reference_epoch"]
    tests = {(f, t) for f, t, _ in cases["family-cuda"]}
    assert ("epoch", "test_epoch") in tests and ("epoch", "test_reference_epoch") not in tests
    # the cases only an accelerator runs are collected and counted
    pinned = [p for f, _, p in cases["family-cuda"] if f == "h2d" and p.get("memory") == "pinned"]
    assert pinned and ("h2d", "test_train_step_copy") in tests
    assert {f for f, _, _ in cases["family-host"]} == {"ddp", "dataloader", "checkpoint",
                                                       "harness"}
    names = [s.name for s in plan.STEPS]
    assert names[:3] == ["doctor", "family-reference", "family-cuda"] and names[-1] == "summary"
    assert {f for s in plan.STEPS for f in s.families} == set(config.FAMILIES)


def test_the_script_uses_the_plans_max_time():
    script = (ROOT / ".ci" / "gpu-check").read_text()
    assert f"max_time=${{GPU_CHECK_MAX_TIME-{plan.MAX_TIME_S}}}" in script
    assert f"batch_sizes=${{GPU_CHECK_BATCH_SIZES:-{plan.BATCH_SIZE}}}" in script


def test_the_plan_keeps_the_families_asked_for_and_a_step_for_an_unknown_one(capsys):
    assert plan.main(["forward,nosuch"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [line[1] for line in lines] == ["doctor", "family-cuda", "family-nosuch",
                                           "speedup-resident", "speedup-loader", "summary"]
    assert lines[1][3] == "benches/bench_forward.py" and lines[2][2:] == [
        "20", "benches/bench_nosuch.py"]
    assert plan.main(["a", "b"]) == 2
    assert "usage: python3 -m imgbench.preflight.plan [FAMILIES]" in capsys.readouterr().err
