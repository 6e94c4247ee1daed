"""The cgroup v2 CPU quota (hw.cgroup) and the contention sentinel under it: a container's quota
is measured against its cgroup, not the host's /proc/stat, and anything unreadable falls back to
the machine's counters without an error. Fake cgroup trees in tmp_path."""

import os

import pytest

from imgbench.hw import cgroup, contention
from imgbench.hw.cgroup import Usage
from imgbench.hw.contention import Snapshot


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A cgroup mount at tmp_path/fs with our process in /kubepods/pod1/box, nothing written yet."""
    root, me = tmp_path / "fs", tmp_path / "fs" / "kubepods" / "pod1" / "box"
    me.mkdir(parents=True)
    (tmp_path / "self").write_text("0::/kubepods/pod1/box\n")
    monkeypatch.setattr(cgroup, "ROOT", root)
    monkeypatch.setattr(cgroup, "SELF", tmp_path / "self")
    return me


def stat(folder, usage, throttled=None):
    lines = [f"usage_usec {usage}", "user_usec 1", "system_usec 1", "nr_periods 9"]
    if throttled is not None:
        lines += ["nr_throttled 3", f"throttled_usec {throttled}"]
    (folder / "cpu.stat").write_text("\n".join(lines) + "\n")


def test_the_smallest_quota_from_our_cgroup_up_binds(tree):
    assert cgroup.quota() is None and cgroup.usage() is None  # no cpu.max anywhere
    (tree / "cpu.max").write_text("max 100000\n")
    assert cgroup.cpus() is None
    (tree.parent / "cpu.max").write_text("150000 100000\n")  # the pod's quota
    (tree.parent.parent / "cpu.max").write_text("400000 100000\n")
    assert cgroup.quota() == (tree.parent, 1.5) and cgroup.cpus() == 1.5
    stat(tree.parent, 7_000_000, 250_000)
    assert cgroup.usage() == Usage(str(tree.parent), 1.5, 7_000_000, 250_000)
    (tree / "cpu.max").write_text("50000 100000\n")
    stat(tree, 10)  # no throttled_usec line
    assert cgroup.usage() == Usage(str(tree), 0.5, 10, None)


def test_a_namespaced_container_reads_the_mount_itself(tree, tmp_path):
    root = cgroup.ROOT
    (root / "cpu.max").write_text("200000 100000\n")
    for own in ("0::/\n", "12:cpu:/docker/x\n", "0::/../../elsewhere\n"):
        (tmp_path / "self").write_text(own)
        assert cgroup.quota() == (root, 2.0), own
    (tmp_path / "self").unlink()
    assert cgroup.cpus() == 2.0


@pytest.mark.parametrize("cpu_max, cpu_stat", [
    ("garbage", "usage_usec 5\n"),
    ("100000 0\n", "usage_usec 5\n"),
    ("-1 100000\n", "usage_usec 5\n"),
    ("\xff\xfe", "usage_usec 5\n"),
    ("100000 100000\n", "usage_usec lots\n"),
    ("100000 100000\n", "user_usec 5\n"),
    ("100000 100000\n", None),
])
def test_unreadable_or_garbled_files_mean_no_cgroup_never_an_error(tree, cpu_max, cpu_stat):
    (tree / "cpu.max").write_bytes(cpu_max.encode("latin-1"))
    if cpu_stat is not None:
        (tree / "cpu.stat").write_text(cpu_stat)
    assert cgroup.usage() is None
    snap = contention.snapshot()
    assert snap.cgroup is None
    assert contention.between(snap, contention.snapshot()).get("source", "machine") == "machine"


@pytest.fixture
def two_host_cpus(monkeypatch):
    monkeypatch.setattr(contention, "TICK", 100)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's, in a container


def snap(wall, busy, own, usage=None, throttled=None, where="/fs/box", cpus=2.0):
    cg = None if usage is None else Usage(where, cpus, usage, throttled)
    return Snapshot(wall=wall, busy=busy, steal=0, own=own, psi_some_us=0, cgroup=cg)


def test_under_a_quota_the_foreign_share_is_of_the_cgroup(two_host_cpus):
    # 2 s on a 2-CPU quota: 4 CPU-s. The cgroup used 3 s, our tree 1 s (100 ticks): 2 s foreign.
    # The host was busy with other tenants (6000 ticks of 64 CPUs): not ours to count.
    a = snap(10.0, 1000, 400, usage=5_000_000, throttled=0)
    b = snap(12.0, 7000, 500, usage=8_000_000, throttled=100_000)
    out = contention.between(a, b)
    assert {k: out[k] for k in ("source", "cpus", "foreign_cpu", "throttled", "seconds")} == {
        "source": "cgroup", "cpus": 2.0, "foreign_cpu": 0.5, "throttled": 0.05, "seconds": 2.0}
    assert contention.flag(out) == ("measured under contention: other processes used 50% of the "
                                    "cgroup's CPU quota (2 CPUs) (limit 10%)")
    # only ours in the cgroup: quiet, however busy the host
    quiet = contention.between(a, snap(12.0, 7000, 500, usage=6_000_000, throttled=0))
    assert (quiet["foreign_cpu"], quiet["throttled"]) == (0.0, 0.0)
    assert contention.flag(quiet) is None


def test_a_throttled_case_is_flagged(two_host_cpus):
    a = snap(0.0, 0, 0, usage=0, throttled=0)
    # our 16 threads on a 2-CPU quota: all of it ours, held back 1.5 CPU-s per second
    out = contention.between(a, snap(2.0, 0, 400, usage=4_000_000, throttled=3_000_000))
    assert (out["foreign_cpu"], out["throttled"]) == (0.0, 1.5)
    assert contention.flag(out) == ("measured under contention: the cgroup's CPU quota throttled "
                                    "it for 1.50 CPU-s per second (limit 0.10)")
    assert contention.flag({**out, "throttled": 0.1}) is None
    # the pre-run warning says the same of the machine now
    assert contention.flag({"seconds": 1.0, "throttled": 0.2}).startswith(
        "measured under contention: the cgroup's CPU quota throttled")
    # a hand-edited value is no number: not flagged, no error
    assert contention.flag({"seconds": 1.0, "throttled": "lots", "cpus": "two"}) is None


def test_the_jitter_allowance_is_of_the_quota_not_the_host(two_host_cpus):
    # 0.5 s on 1 CPU is 50 ticks: 2 ticks of jitter are 4%; of the host's 64 CPUs 0.06%
    assert contention.flag({"foreign_cpu": 0.13, "seconds": 0.5, "cpus": 1.0}) is None
    assert contention.flag({"foreign_cpu": 0.13, "seconds": 0.5}) is not None
    assert contention.flag({"foreign_cpu": 0.15, "seconds": 0.5, "cpus": 1.0}) is not None


def test_without_a_quota_the_machine_is_measured_as_before(two_host_cpus):
    # either end without the cgroup, or two different cgroups: the machine's counters
    a, b = snap(10.0, 1000, 400), snap(12.0, 7400, 500)
    for pair in [(a, b), (snap(10.0, 1000, 400, usage=1), b),
                 (snap(10.0, 1000, 400, usage=1), snap(12.0, 7400, 500, usage=9, where="/other"))]:
        out = contention.between(*pair)  # (6400 - 100) ticks of 2 s x 100 x 64 CPUs
        assert (out["source"], out["foreign_cpu"]) == ("machine", 0.4922)
        assert "cpus" not in out and "throttled" not in out
    assert contention.flag(out) == ("measured under contention: other processes used 49% of the "
                                    "CPUs (limit 10%)")


def test_snapshot_reads_the_cgroup_it_runs_in(tree):
    (tree / "cpu.max").write_text("100000 100000\n")
    stat(tree, 1_000_000, 0)
    a = contention.snapshot()
    stat(tree, 1_000_000, 0)
    out = contention.between(a, contention.snapshot())
    assert a.cgroup == Usage(str(tree), 1.0, 1_000_000, 0)
    assert (out["source"], out["cpus"], out["foreign_cpu"], out["throttled"]) == (
        "cgroup", 1.0, 0.0, 0.0)
