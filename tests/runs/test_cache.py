"""The index of stored runs (imgbench.index): light records equal to the parsed ones but for the
rounds and the trimmed extra_info; changed, removed and unreadable files; a corrupt or unusable
cache; copies counted once; report from the index as from the runs. Histories are written by
make_history from a small template."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from imgbench.runs import cache, history, record
from imgbench.show import report
from tests.helpers import GPU_FP, ROOT, bench_entry, rounds, run_file, write_history, write_json
from tools.make_history import make

EXTRA = {"contention": {"foreign_cpu": 0.01, "seconds": 2.0}, "peak_memory_bytes": 1 << 20,
         "threads": 2, "cudnn_benchmark": None, "tf32": None, "flush_denormal": True, "images": 32,
         "warmup_calls": 2}
KEPT = {k: EXTRA[k] for k in ("contention", "peak_memory_bytes", "threads", "cudnn_benchmark",
                              "tf32", "flush_denormal")}


RACY_NS = cache.RACY_NS


@pytest.fixture(autouse=True)
def db(tmp_path, monkeypatch):
    """The test's own cache. Files are cached however recently they changed: a file's ctime, which
    the cache compares too, cannot be set back as age() sets back its mtime."""
    monkeypatch.setenv("IMGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)
    return tmp_path / "cache" / "runs.sqlite"


def template(folder):
    """A run of two cases, one of them judged a regression when it was saved, as the suite
    stores it."""
    benches = [bench_entry(f"test_train_step[kerascnn-cpu-bs{bs}]",
                           {"model": "kerascnn", "device": "cpu", "batch_size": bs},
                           rounds(1e-3 * bs, n=20, seed=bs), bench="train_step", extra=EXTRA)
               for bs in (32, 64)]
    meta = {"schema": 1, "version": "0.1.0", "profile": "quick", "devices": ["cpu"], "threads": 2,
            "dataset": "synthetic", "optimizer": "adam", "precisions": ["fp32"],
            "memory_formats": ["nchw"], "compile": ["off"], "peaks": {},
            "judged": {"regressions": ["test_train_step[kerascnn-cpu-bs64]"]}}
    return write_json(folder / "template.json",
                      run_file(benches, when="2026-11-01T00:00:00", meta=meta,
                               machine={"imgbench": {"torch": "2.14.1"}}, version="5.3.1"))


def age(*paths, seconds=3600):
    """Older than cache.RACY_NS: a file just written is read but not cached (its mtime may not
    move again)."""
    for p in paths:
        for f in (p.rglob("*.json") if p.is_dir() else [p]):
            os.utime(f, ns=(time.time_ns() - seconds * 10**9,) * 2)


def stored(tmp_path, runs=4):
    paths, _ = make(tmp_path / "runs", runs, template(tmp_path))
    age(tmp_path / "runs")
    return tmp_path / "runs", paths


@pytest.fixture
def reads(monkeypatch):
    """The files the index parsed (not taken from the cache), per call."""
    parsed = []
    read = cache.read
    monkeypatch.setattr(cache, "read", lambda f: parsed.append(f) or read(f))
    return parsed


def test_light_records_equal_the_parsed_ones_but_rounds_and_trimmed_extra(tmp_path, reads, db):
    folder, paths = stored(tmp_path)
    full = history.load([folder])
    for attempt in ("builds the index", "reads it"):
        light = history.load([folder], rounds=False)
        assert (light.skipped == full.skipped == []
                and light.versions == full.versions == {"5.3.1"}), attempt
        assert ([[replace(r, data=None, extra=KEPT) for r in run] for run in full.runs]
                == light.runs), attempt
    assert reads == paths  # the second read parsed nothing
    assert all(r.data and len(r.data) == 20 and r.extra == EXTRA for run in full.runs for r in run)
    assert [r.regressed for r in light.runs[0]] == [False, True] and light.runs[0][0].threads == 2
    # in the cache folder, never the history's
    assert db.is_file() and not list(folder.rglob("*.sqlite"))


def test_many_files_are_parsed_in_parallel_into_the_same_records(tmp_path, monkeypatch):
    folder, _ = stored(tmp_path, runs=5)
    full = history.load([folder])
    monkeypatch.setattr(cache, "PARALLEL", 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    light = history.load([folder], rounds=False)
    assert (light.runs == [[cache.light(r) for r in run] for run in full.runs]
            and light.notes == full.notes)
    assert history.load([folder], rounds=False).runs == light.runs


def test_a_rewritten_file_is_read_again(tmp_path, reads):
    folder, paths = stored(tmp_path)
    history.load([folder], rounds=False)
    text = paths[1].read_text()
    paths[1].write_text(text.replace('"datetime": "2026-11-01T01:00:00"',
                                     '"datetime": "2026-11-01T01:00:09"'))
    assert paths[1].stat().st_size == len(text)  # same size, same inode: only the mtime tells
    age(paths[1], seconds=1800)
    h = history.load([folder], rounds=False)
    assert h.runs[1][0].datetime == "2026-11-01T01:00:09"
    assert reads[len(paths):] == [paths[1]]


def test_a_file_changed_within_its_mtime_tick_is_never_served_from_the_cache(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(cache, "RACY_NS", RACY_NS)
    folder, paths = stored(tmp_path, runs=2)
    paths[1].write_text(paths[1].read_text().replace("2026-11-01T01:00:00", "2026-11-01T01:00:08"))
    stamp = paths[1].stat().st_mtime_ns
    history.load([folder], rounds=False)  # fresh: read, not cached
    paths[1].write_text(paths[1].read_text().replace("01:00:08", "01:00:07"))
    # rewritten within the same tick: size, mtime and inode unchanged
    os.utime(paths[1], ns=(stamp, stamp))
    assert history.load([folder], rounds=False).runs[1][0].datetime == "2026-11-01T01:00:07"


def test_a_removed_file_disappears_and_its_rows_with_it(tmp_path, db):
    folder, paths = stored(tmp_path)
    assert len(history.load([folder], rounds=False).runs) == 4
    paths[2].unlink()
    h = history.load([folder], rounds=False)
    assert [run[0].path for run in h.runs] == [str(p) for p in (paths[0], paths[1], paths[3])]
    with sqlite3.connect(db) as con:
        assert sorted(p for (p,) in con.execute("SELECT path FROM files")) == sorted(
            str(p.resolve()) for p in (paths[0], paths[1], paths[3]))


def test_a_corrupt_file_is_skipped_with_its_line_also_when_read_from_the_cache(tmp_path, reads):
    folder, paths = stored(tmp_path, runs=2)
    bad = folder / "broken.json"
    bad.write_text('{"machine_info": {}, "benchmarks": [')
    age(bad)
    line = f"{bad}: corrupt or truncated JSON (line 1, column 37: Expecting value)"
    assert history.load([folder]).skipped == [line]
    for _ in range(2):
        h = history.load([folder], rounds=False)
        assert h.skipped == [line] and len(h.runs) == 2
    assert reads.count(bad) == 1
    relative = os.path.relpath(bad)  # the line names the file as it was found this time
    assert history.load([relative, paths[0]], rounds=False).skipped == [
        line.replace(str(bad), relative)]


def test_a_corrupt_cache_database_is_rebuilt(tmp_path, db, reads):
    folder, paths = stored(tmp_path, runs=2)
    expected = history.load([folder], rounds=False).runs
    db.write_bytes(b"this is not a database" * 100)
    h = history.load([folder], rounds=False)
    assert h.runs == expected
    assert (len(h.notes) == 1 and h.notes[0].startswith(f"cache {db} was corrupt (")
            and "rebuilt" in h.notes[0])
    again = history.load([folder], rounds=False)
    # rebuilt once, then used
    assert again.runs == expected and again.notes == [] and len(reads) == 2 * len(paths)


def test_an_unusable_cache_folder_costs_a_note_not_the_command(tmp_path, monkeypatch):
    folder, _ = stored(tmp_path, runs=2)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("IMGBENCH_CACHE", str(blocker / "cache"))  # cannot be created
    h = history.load([folder], rounds=False)
    assert h.runs == history.load([folder], rounds=False).runs and len(h.runs) == 2
    assert h.notes == [f"cache {blocker / 'cache' / 'runs.sqlite'} not usable (cannot create "
                       f"{blocker / 'cache'}: Not a directory): runs read from their files"]
    assert blocker.read_text() == "x"


def test_copies_of_a_run_count_once(tmp_path):
    folder, paths = stored(tmp_path, runs=3)
    shutil.copyfile(paths[0], tmp_path / "artifact.json")
    h = history.load([folder, tmp_path / "artifact.json"], rounds=False)
    assert len(h.runs) == 3 and h.runs[0][0].path == str(paths[0])


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGBENCH_CACHE", str(tmp_path / "c"))
    assert cache.location() == tmp_path / "c" / "runs.sqlite"
    monkeypatch.delenv("IMGBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.location() == tmp_path / "xdg" / "imgbench" / "runs.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.location() == tmp_path / "home" / ".cache" / "imgbench" / "runs.sqlite"


@pytest.mark.slow
def test_report_from_the_index_equals_report_from_the_runs(tmp_path):
    """More GPU runs than report.RECENT: only the newest RECENT points of a speedup series get their
    interval from the rounds, and what the report says is the same as from the runs read whole."""
    write_history(tmp_path / "runs", gpu_runs=report.RECENT + 2, cpu_runs=3)
    age(tmp_path / "runs")
    full = report.render(history.load([tmp_path / "runs"]), tmp_path / "full")
    history.load([tmp_path / "runs"], rounds=False)
    light = report.render(history.load([tmp_path / "runs"], rounds=False), tmp_path / "light")
    assert (report.markdown(light, tmp_path / "light").replace("/light/", "/full/")
            == report.markdown(full, tmp_path / "full"))
    gpu = next(m for m in light.machines if m.fingerprint == GPU_FP)
    series = [s for s in gpu.speedups if s.case == "train_step[batch_size=32,model=kerascnn]"]
    assert [s.ci is not None for s in series] == [False] * 2 + [True] * report.RECENT


def imgbench(*args):
    return subprocess.run([sys.executable, "-m", "imgbench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_cli_report_reads_the_index_and_says_when_it_cannot(tmp_path, db, monkeypatch):
    folder, paths = stored(tmp_path, runs=3)
    time.sleep(RACY_NS / 1e9)  # their ctime, which cannot be set back, old enough to be cached
    first = imgbench("report", str(folder), "--out", str(tmp_path / "a"))
    second = imgbench("report", str(folder), "--out", str(tmp_path / "b"))
    assert first.returncode == second.returncode == 0, first.stderr
    assert (first.stdout.replace(str(tmp_path / "a"), "")
            == second.stdout.replace(str(tmp_path / "b"), ""))
    assert str(db) not in first.stderr + second.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM files").fetchone() == (3,)
    db.write_bytes(b"garbage" * 100)
    rebuilt = imgbench("report", str(folder), "--out", str(tmp_path / "c"))
    assert rebuilt.returncode == 0
    assert (f"imgbench report: cache {db} was corrupt (file is not a database): rebuilt"
            in rebuilt.stderr)
    monkeypatch.setenv("IMGBENCH_CACHE", str(paths[0] / "x"))  # a file in the way
    direct = imgbench("report", str(folder), "--out", str(tmp_path / "d"))
    assert direct.returncode == 0 and (direct.stdout.replace(str(tmp_path / "d"), "")
                                       == first.stdout.replace(str(tmp_path / "a"), ""))
    assert "Traceback" not in direct.stderr and "not usable" in direct.stderr


def test_processes_building_one_index_at_once_leave_it_whole(tmp_path, db):
    folder, paths = stored(tmp_path, runs=6)
    code = ("import sys; from imgbench.runs import cache, history; cache.RACY_NS = 0; "
            "h = history.load([sys.argv[1]], rounds=False); print(len(h.runs), len(h.notes))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                              text=True)
             for _ in range(3)]
    assert [p.communicate(timeout=600)[0] for p in procs] == ["6 0\n"] * 3
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM files").fetchone() == (6,)
        assert con.execute("SELECT count(*) FROM cases").fetchone() == (12,)


def medians(h) -> list[float]:
    return [r.median for run in h.runs for r in run]


@pytest.mark.parametrize("edit", [
    "UPDATE cases SET record = json_set(record, '$.median', json_extract(record, '$.median') * 3)",
    "UPDATE cases SET record = json_set(record, '$.regressed', json('false'))",
    "UPDATE files SET error = ': crafted in the cache'",
    "DELETE FROM cases WHERE pos = 1",
    "UPDATE files SET run = json_set(run, '$.fingerprint', 'another-class')",
])
def test_rows_edited_in_the_index_are_not_believed(tmp_path, db, reads, edit):
    """The review's finding: medians multiplied by 3 in the index, every JSON run unchanged, turned
    2x regressions into improvements. Rows edited in any way fail their check: the runs are read
    from their files again, with one note, and cached again."""
    folder, paths = stored(tmp_path)
    truth = history.load([folder], rounds=False)
    with sqlite3.connect(db) as con:
        assert con.execute(edit).rowcount > 0
    again = history.load([folder], rounds=False)
    assert again.runs == truth.runs and medians(again) == medians(truth) and again.skipped == []
    assert reads == paths + paths and again.notes == [
        f"cache: the rows of {len(paths)} run file(s) failed their check (edited in the cache, "
        f"e.g. {paths[0]}): read from the files again"]
    third = history.load([folder], rounds=False)
    assert third.runs == truth.runs and third.notes == [] and reads == paths + paths


def test_rows_made_with_another_key_are_not_believed(tmp_path, db, reads):
    """Forging rows takes the key beside the database: a new key (a crafted runs.key) fails every
    row's check."""
    folder, paths = stored(tmp_path, runs=2)
    history.load([folder], rounds=False)
    (db.parent / "runs.key").write_bytes(os.urandom(32))
    assert history.load([folder], rounds=False).notes[0].startswith("cache: the rows of 2 run")
    assert reads == paths + paths
    (db.parent / "runs.key").write_bytes(b"short")  # damaged: made again, the rows read again
    assert len(history.load([folder], rounds=False).notes) == 1 and reads == paths * 3
    assert len((db.parent / "runs.key").read_bytes()) == 32


def test_an_edit_in_place_that_restores_size_and_mtime_is_seen(tmp_path, reads):
    """Only the file's ctime, which no one can set back, tells: the run is read again."""
    folder, paths = stored(tmp_path, runs=2)
    st = paths[1].stat()
    text = paths[1].read_text()
    assert history.load([folder], rounds=False).runs[1][0].datetime == "2026-11-01T01:00:00"
    with open(paths[1], "r+") as f:  # same inode, same size
        f.write(text.replace('"datetime": "2026-11-01T01:00:00"',
                             '"datetime": "2026-11-01T01:00:09"'))
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (paths[1].stat().st_size, paths[1].stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = history.load([folder], rounds=False)
    assert reads[len(paths):] == [paths[1]]
    assert after.runs[1][0].datetime == "2026-11-01T01:00:09"
    assert after.runs == [[cache.light(r) for r in record.load(p)] for p in paths]


@pytest.mark.slow
def test_compare_gives_the_same_verdict_after_the_index_is_edited(tmp_path, db):
    """The review's scenario end to end: a 2x regression against a history of 6 runs, then every
    median in the index multiplied by 3."""
    hist, base = tmp_path / "h", tmp_path / "base.json"
    write_json(base, run_file([bench_entry("test_t[a]", {"m": "a"}, rounds(1.0, seed=9))],
                              when="2026-11-01T00:00:00"))
    for i in range(6):
        write_json(hist / f"{i}.json", run_file([bench_entry("test_t[a]", {"m": "a"},
                                                             rounds(1.0, seed=i))],
                                                when=f"2026-11-0{i + 2}T00:00:00"))
    cand = write_json(tmp_path / "cand.json", run_file(
        [bench_entry("test_t[a]", {"m": "a"}, rounds(2.0, seed=20))], when="2026-11-20T00:00:00"))
    time.sleep(RACY_NS / 1e9)  # their ctime, which cannot be set back, old enough to be cached
    first = imgbench("compare", str(cand), str(base), "--history", str(hist))
    with sqlite3.connect(db) as con:
        assert con.execute("UPDATE cases SET record = json_set(record, '$.median', "
                           "json_extract(record, '$.median') * 3)").rowcount == 6
    second = imgbench("compare", str(cand), str(base), "--history", str(hist))
    assert first.returncode == second.returncode == 1, first.stdout + first.stderr
    assert "regression" in first.stdout.splitlines()[1] and (
        first.stdout.splitlines()[1] == second.stdout.splitlines()[1])
    assert "failed their check" in second.stdout + second.stderr
