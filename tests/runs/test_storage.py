"""Where runs live (imgbench.storage): run numbers taken exclusively by processes saving at once,
the previous run of a profile, baselines merged case by case, and folders checked before a run."""

import errno
import json
import multiprocessing
import os

import pytest

from imgbench.core import config
from imgbench.core.options import Settings
from imgbench.runs import storage
from tests.helpers import bench_entry, run_file, write_json

# a save that took its number by listing alone loses runs here in 5 tries of 5
PROCESSES, SAVES = 8, 20


def no_hard_links(src, dst):
    raise OSError(errno.EPERM, "Operation not permitted")  # as on file systems without hard links


def save_runs(folder, writer, barrier, links=True):
    """One process: SAVES saves, each started together with every other process's."""
    if not links:
        os.link = no_hard_links
    for i in range(SAVES):
        barrier.wait(timeout=60)
        with storage.partial(folder, f"run{writer}") as tmp:
            tmp.write_text(json.dumps({"writer": writer, "save": i, "padding": "x" * 50_000}))
            storage.save_run(tmp, folder, "quick")


@pytest.mark.slow
@pytest.mark.parametrize("links", [True, False], ids=["hard_links", "exclusive_create"])
def test_processes_saving_at_once_each_get_their_own_number(tmp_path, links):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch's threads
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=save_runs, args=(tmp_path, w, barrier, links))
             for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    # pytest-benchmark's platform folder; no partial file left beside it
    (sub,) = tmp_path.iterdir()
    assert sub == storage.platform_folder(tmp_path)
    names = sorted(p.name for p in sub.iterdir())
    assert names == [f"{n:04}_quick.json" for n in range(1, PROCESSES * SAVES + 1)]
    saved = [json.loads((sub / name).read_text()) for name in names]  # each whole, none overwritten
    assert sorted((s["writer"], s["save"]) for s in saved) == [
        (w, i) for w in range(PROCESSES) for i in range(SAVES)]


def test_save_run_takes_the_number_after_the_highest(tmp_path):
    sub = storage.platform_folder(tmp_path)
    for name in ("0003_full.json", "0007_quick.json", "notes.json", "12_quick.json"):
        write_json(sub / name, {})
    tmp = write_json(tmp_path / ".run.partial", {"n": 1})
    assert storage.save_run(tmp, tmp_path, "quick") == sub / "0008_quick.json"
    assert not tmp.exists() and json.loads((sub / "0008_quick.json").read_text()) == {"n": 1}


def test_partial_is_hidden_and_removed_whatever_happens(tmp_path):
    with pytest.raises(KeyboardInterrupt), storage.partial(tmp_path, "run") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".run.")
        tmp.write_text("half a run")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def save(folder, name, when, devices=None, profile="quick"):
    """A run of one case (a run of none is no baseline) saved as `name`."""
    meta = {"profile": profile, **({"devices": devices} if devices else {})}
    one = bench_entry("test_forward[mlp]", {"model": "mlp"}, [1.0, 1.1], bench="forward")
    return write_json(folder / name, run_file([one], when=when, meta=meta))


def test_previous_run_is_the_newest_readable_run_of_the_profile_and_devices(tmp_path):
    a, b = tmp_path / "Linux-CPython-3.11-64bit", tmp_path / "Linux-CPython-3.12-64bit"
    oldest = save(a, "0001_quick.json", "2026-11-01T00:00:00", ["cpu"])
    # a new platform folder restarts at 1
    newest = save(b, "0001_quick.json", "2026-11-05T00:00:00", ["cpu"])
    save(a, "0002_quick.json", "2026-11-03T00:00:00", ["cuda"])
    save(a, "0003_full.json", "2026-11-09T00:00:00", ["cpu"], profile="full")
    save(a, "0004_quick.json", "", ["cpu"])                        # no date: cannot be placed
    (a / "0005_quick.json").write_text(
        '{"datetime": "2026-11-10T00:00:00", "benchmarks": [')  # truncated
    save(tmp_path, "0006_quick.json", "2026-11-11T00:00:00", ["cpu"])  # not in a platform folder
    save(a, "quick.json", "2026-11-12T00:00:00", ["cpu"])           # not a numbered run
    assert storage.previous_run(tmp_path, "quick", ["cpu"]) == newest
    assert storage.previous_run(tmp_path, "quick", ["cuda"]) == a / "0002_quick.json"
    assert storage.previous_run(tmp_path, "quick") == newest
    assert storage.previous_run(tmp_path, "quick", ["cpu", "cuda"]) is None
    newest.unlink()
    assert storage.previous_run(tmp_path, "quick", ["cpu"]) == oldest


def case(name, median, device="cpu"):
    return bench_entry(f"test_forward[{name}-{device}]", {"model": name, "device": device},
                       [median], bench="forward")


def write_baseline_run(path, cases, devices, **meta):
    meta = {"profile": "quick", "devices": devices, "precisions": ["fp32"],
            "peaks": {"cpu": {"matmul_tflops": {"fp32": 1.0}}}, **meta}
    return write_json(path, run_file(cases, meta=meta))


def ids(path):
    return [(b["name"], b["stats"]["median"]) for b in json.loads(path.read_text())["benchmarks"]]


def test_a_subset_run_replaces_only_its_cases_of_the_baseline(tmp_path):
    final = storage.baseline_path(tmp_path / "AMD_EPYC-2c", "quick")
    assert final == tmp_path / "AMD_EPYC-2c" / "quick.json"
    first = write_baseline_run(tmp_path / ".a.partial", [case("mlp", 1.0), case("kerascnn", 2.0)],
                               ["cpu"])
    assert storage.save_baseline(first, final) == [] and not first.exists()
    assert ids(final) == [("test_forward[kerascnn-cpu]", 2.0),
                          ("test_forward[mlp-cpu]", 1.0)]  # in test-id order
    assert "merged" not in json.loads(final.read_text())["imgbench"]
    subset = write_baseline_run(tmp_path / ".b.partial",
                                [case("mlp", 1.5), case("mlp", 0.1, "cuda")], ["cuda"],
                                precisions=["bf16"],
                                peaks={"cuda": {"matmul_tflops": {"bf16": 700.0}}})
    assert storage.save_baseline(subset, final) == ["test_forward[mlp-cpu]"]
    assert ids(final) == [("test_forward[kerascnn-cpu]", 2.0), ("test_forward[mlp-cpu]", 1.5),
                          ("test_forward[mlp-cuda]", 0.1)]  # merged, in test-id order
    meta = json.loads(final.read_text())["imgbench"]
    assert meta["devices"] == ["cpu", "cuda"] and meta["precisions"] == ["fp32", "bf16"]
    assert meta["peaks"] == {"cpu": {"matmul_tflops": {"fp32": 1.0}},
                             "cuda": {"matmul_tflops": {"bf16": 700.0}}}
    # where kerascnn-cpu came from
    assert meta["merged"] == [{"datetime": "2026-11-21T10:00:00", "commit": "abc"}]
    assert [p.name for p in final.parent.iterdir()] == ["quick.json"]  # no temporary file left


def test_a_case_is_replaced_by_its_params_even_when_its_test_id_moved(tmp_path):
    final = tmp_path / "quick.json"
    storage.save_baseline(write_baseline_run(tmp_path / ".a", [case("mlp", 1.0)], ["cpu"]), final)
    moved = case("mlp", 2.0)
    # pytest ran from another folder
    moved["fullname"] = "elsewhere/benches/bench_forward.py::" + moved["name"]
    again = write_baseline_run(tmp_path / ".b", [moved], ["cpu"])
    assert storage.save_baseline(again, final) == ["test_forward[mlp-cpu]"]
    assert ids(final) == [("test_forward[mlp-cpu]", 2.0)]


SETTINGS = Settings(devices=["cpu"], batch_sizes=[32], models=["mlp"],
                    profile=config.PROFILES["quick"], threads=2, optimizer="adam",
                    dataset="synthetic", data_root=None)


@pytest.mark.parametrize("recorded, message", [
    ({"optimizer": "sgd"}, "was recorded with optimizer 'sgd', this run has 'adam': record it with "
                           "the same settings, or move quick.json aside to start a new baseline"),
    ({"threads": 16}, "was recorded with threads 16, this run has 2: "),
    ({"dataset": "cifar10"}, "was recorded with dataset 'cifar10', this run has 'synthetic': "),
])
def test_a_baseline_takes_cases_only_from_runs_measured_like_it(tmp_path, recorded, message):
    path = write_baseline_run(tmp_path / "quick.json", [case("mlp", 1.0)], ["cpu"], **recorded)
    with pytest.raises(storage.StorageError) as e:
        storage.check_baseline(path, SETTINGS)
    assert str(e.value).startswith(f"{path} {message}")


def test_a_missing_baseline_or_one_that_recorded_less_is_no_objection(tmp_path):
    storage.check_baseline(tmp_path / "quick.json", SETTINGS)
    # no optimizer
    older = write_baseline_run(tmp_path / "quick.json", [case("mlp", 1.0)], ["cpu"], threads=2)
    storage.check_baseline(older, SETTINGS)


def test_writable_folder_is_made_or_refused_naming_the_option(tmp_path, monkeypatch):
    assert storage.writable_folder(tmp_path / "a" / "b", "--storage") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    blocker = write_json(tmp_path / "file", {})
    with pytest.raises(storage.StorageError,
                       match=f"^--folder: cannot create {blocker}/x: Not a directory$"):
        storage.writable_folder(blocker / "x", "--folder")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user other than root
    with pytest.raises(storage.StorageError, match=f"^--storage: cannot write to {tmp_path}$"):
        storage.writable_folder(tmp_path, "--storage")


def test_numbering_goes_on_past_9999(tmp_path):
    sub = storage.platform_folder(tmp_path)
    save(sub, "9999_quick.json", "2026-11-01T00:00:00")
    for number, day in ((10000, 2), (10001, 3)):
        tmp = save(tmp_path, ".run.partial", f"2026-11-0{day}T00:00:00")
        assert storage.save_run(tmp, tmp_path, "quick") == sub / f"{number}_quick.json"
    assert storage.previous_run(tmp_path, "quick") == sub / "10001_quick.json"


@pytest.mark.parametrize("machine, profile", [
    ("../../../escaped", "quick"), ("/tmp/abs", "quick"), ("..", "quick"), ("a/b", "quick"),
    ("AMD_EPYC-2c", "../../../escaped"), ("AMD_EPYC-2c", "x/../../y"), ("AMD_EPYC-2c", "."),
])
def test_a_judged_run_naming_another_place_is_not_saved_anywhere(tmp_path, machine, profile):
    """The review's finding: machine_info.fingerprint '../../../escaped' sent compare --save-to's
    copy outside the history folder. Such a name, or such a profile, is refused; nothing is
    written."""
    src = write_json(tmp_path / "in" / "run.json", run_file(
        [bench_entry("test_a", {}, [1.0])], fingerprint=machine, meta={"profile": profile}))
    run = storage.runfile.Run(path=src, raw=json.loads(src.read_text()), benchmarks=[],
                              datetime="", commit=None, fingerprint=machine, env={},
                              meta={"profile": profile}, version="5.3.1", schema=0)
    (tmp_path / "box" / "history").mkdir(parents=True)
    with pytest.raises(storage.StorageError, match=r"cannot name a folder or file \(valid: "):
        storage.save_judged(run, tmp_path / "box" / "history", [], "base.json")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [src]


def test_a_judged_run_of_plain_names_is_saved_in_its_machine_class(tmp_path):
    src = write_json(tmp_path / "run.json", run_file([bench_entry("test_a", {}, [1.0])],
                                                     meta={"profile": "quick"}))
    run = storage.runfile.read(src)
    saved = storage.save_judged(run, tmp_path / "h", ["test_a"], "base.json")
    assert saved.parent.parent == tmp_path / "h" / "AMD_EPYC-2c" and saved.name == "0001_quick.json"
    assert json.loads(saved.read_text())["imgbench"]["judged"]["regressions"] == ["test_a"]
