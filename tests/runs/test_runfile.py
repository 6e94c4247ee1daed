"""The run file (imgbench.runfile): the imgbench block written under a schema version, runs of a
newer schema refused, older ones read with the fields they lack named."""

import json

import pytest

from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.runs import record, runfile
from tests.helpers import ROOT, bench_entry, run_file, write_json

BASELINE = ROOT / "baselines" / "AMD_EPYC-f25m17-2c" / "quick.json"
SETTINGS = Settings(devices=["cpu", "cuda"], batch_sizes=[32], models=["mlp"],
                    profile=config.PROFILES["full"], threads=4, optimizer="sgd",
                    dataset="cifar10", data_root="/data", precisions=["fp32", "bf16"],
                    memory_formats=["channels_last"], compile=["on"])
PEAKS = {"cpu": {"matmul_tflops": {"fp32": 0.2}, "conv_tflops": {"fp32": 0.25}}}
CASES = [bench_entry("test_forward[mlp-cpu-bs32]",
                     {"model": "mlp", "device": "cpu", "batch_size": 32}, [1.0])]


def test_the_block_holds_every_schema_field_under_the_current_schema():
    block = runfile.block("0.2.0", SETTINGS, PEAKS)
    assert block == {"schema": runfile.SCHEMA, "version": "0.2.0", "profile": "full",
                     "devices": ["cpu", "cuda"], "threads": 4, "dataset": "cifar10",
                     "optimizer": "sgd", "precisions": ["fp32", "bf16"],
                     "memory_formats": ["channels_last"], "compile": ["on"], "peaks": PEAKS}
    assert set(block) == {"schema", *runfile.FIELDS}


def test_a_written_run_reads_back_lacking_nothing(tmp_path):
    env = {"fingerprint": "Xeon-16c", "torch": "2.14.1", "threads": 4}
    path = write_json(tmp_path / "run.json",
                      run_file(CASES, machine=runfile.machine_info(env), version="5.3.1",
                               meta=runfile.block("0.2.0", SETTINGS, PEAKS)))
    run = runfile.read(path)
    assert (run.schema, run.missing, run.profile, run.devices) == (
        runfile.SCHEMA, [], "full", ["cpu", "cuda"])
    assert (run.fingerprint, run.env, run.version, run.commit) == ("Xeon-16c", env, "5.3.1", "abc")
    assert run.benchmarks == CASES and run.path == path


def test_a_newer_schema_is_refused_in_one_line_naming_the_file(tmp_path):
    path = write_json(tmp_path / "new.json", run_file(CASES, meta={"schema": runfile.SCHEMA + 1}))
    with pytest.raises(runfile.RunError) as e:
        runfile.read(path)
    message = str(e.value)
    assert message.startswith(f"{path}: written by a newer imgbench "
                              f"(run file schema {runfile.SCHEMA + 1}; ")
    assert message.endswith("upgrade imgbench to read it") and "\n" not in message


@pytest.mark.parametrize("schema", ["1", -1, 1.5, None, True])
def test_a_schema_that_is_not_a_version_number_is_refused(tmp_path, schema):
    path = write_json(tmp_path / "odd.json", run_file(CASES, meta={"schema": schema}))
    with pytest.raises(runfile.RunError,
                       match=rf"odd.json: imgbench schema .* is not a version number \(valid: 0 to "
                             rf"{runfile.SCHEMA}\)"):
        runfile.read(path)


def test_an_older_run_reads_as_schema_0_naming_what_it_lacks(tmp_path):
    block = runfile.block("0.1.0", SETTINGS, PEAKS)
    older = {k: v for k, v in block.items() if k not in ("schema", "optimizer")}
    run = runfile.read(write_json(tmp_path / "old.json", run_file(CASES, meta=older)))
    assert (run.schema, run.missing, run.profile) == (0, ["optimizer"], "full")
    # plain pytest-benchmark
    bare = runfile.read(write_json(tmp_path / "bare.json", run_file(CASES)))
    assert (bare.schema, bare.missing, bare.profile, bare.devices, bare.env) == (
        0, list(runfile.FIELDS), "", None, {})


def test_the_committed_baseline_reads_lacking_only_the_optimizer():
    run = runfile.read(BASELINE)
    assert (run.schema, run.missing) == (0, ["optimizer"])
    # where it is kept
    assert (run.fingerprint, run.profile) == (BASELINE.parent.name, BASELINE.stem)
    records = record.of_run(run)
    assert (len(records) == len(run.benchmarks)
            == len(json.loads(BASELINE.read_text())["benchmarks"]) > 0)
    # every round's time, for the gate
    assert all(r.data and r.rounds == len(r.data) for r in records)
    # no run-wide field: training cases name theirs
    assert {r.optimizer for r in records} == {"", "adam"}


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "cannot read: No such file or directory"),
    (lambda p: p.mkdir(), "cannot read: Is a directory"),
])
def test_an_unreadable_path_is_one_line_naming_it(tmp_path, make, message):
    path = tmp_path / "run.json"
    make(path)
    with pytest.raises(runfile.RunError) as e:
        runfile.read(path)
    assert str(e.value) == f"{path}: {message}"
