"""Data parallelism on the 2-core box (imgbench.ddp and the ddp family): gloo with 2 CPU processes
through torchrun, as one node or two; a launch's conditions, limit, imports and a lost rank, with
its processes found in /proc by the --out path their command lines carry."""

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from imgbench.hw import conditions
from imgbench.workloads.ddp import launch, worker
from imgbench.workloads.steps import Trainer
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(worker.unavailable("cpu") is not None,
                                reason=str(worker.unavailable("cpu")))
SMALL = {"model": "kerascnn", "batch_size": 8, "images": 64, "image_size": 32, "epochs": 1}


def plain_train(model, batch_size, images, image_size, epochs, optimizer, seed, threads=1):
    """The same training without DDP or processes (one replica's data order): what a one-replica DDP
    run must reproduce. Same conditions as the worker: another thread count splits reductions
    differently, and unflushed denormals could round differently."""
    with conditions.applied("cpu", "fp32", threads):
        net = worker.build(model, image_size, seed)
        ds = worker.dataset(model, images, image_size, seed)
        s = worker.sampler(ds, 1, 0, seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=s, drop_last=True)
        trainer = Trainer(net.train(), optimizer, "fp32", "cpu")
        for epoch in range(1 + epochs):
            s.set_epoch(epoch)
            worker.run_epoch(loader, trainer, torch.device("cpu"))
        return {k: v.detach().clone() for k, v in net.named_parameters()}


@pytest.mark.slow
def test_one_replica_matches_plain_training_with_the_same_seed(tmp_path):
    weights = tmp_path / "w.pt"
    launch.launch(1, tmp_path / "r.json", save_weights=weights, **SMALL)
    got = torch.load(weights, weights_only=True)
    want = plain_train("kerascnn", 8, 64, 32, 1, "adam", 0)
    assert got.keys() == want.keys()
    start = dict(worker.build("kerascnn", 32, 0).named_parameters())
    assert any(not torch.equal(want[k], start[k].detach()) for k in want)  # it trained
    for k in want:  # the stated tolerance: none, with the same thread count on both sides
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


@pytest.mark.slow
def test_a_failed_launch_is_one_line_naming_the_cause(tmp_path):
    with pytest.raises(worker.DDPError,
                       match=r"torchrun with 2 replicas failed \(exit 1\): "
                             r".*batch 64 x 2 replicas > 64 images per epoch: no step"):
        launch.launch(2, tmp_path / "r.json", **{**SMALL, "batch_size": 64})


def test_a_missing_backend_or_distributed_is_a_clear_reason(monkeypatch):
    monkeypatch.setattr(worker.dist, "is_gloo_available", lambda: False)
    assert (worker.unavailable("cpu")
            == f"the gloo backend is not available in torch {torch.__version__} (needed for cpu)")
    monkeypatch.setattr(worker.dist, "is_nccl_available", lambda: False)
    assert "the nccl backend is not available" in worker.unavailable("cuda")
    monkeypatch.setattr(worker.dist, "is_available", lambda: False)
    assert (worker.unavailable("cuda")
            == f"torch.distributed is not available in torch {torch.__version__}")


@pytest.mark.slow
def test_a_world_alone_stores_its_scaling_against_one_replica(tmp_path):
    """Only world 2 selected: two gloo replicas train in lockstep, and the one-replica reference of
    its scaling is launched for it (worlds.one_replica)."""
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benches" / "bench_ddp.py"),
                           "--device", "cpu", "--model", "mlp", "--batch-size", "64",
                           "--threads", "2", "-k", "world2", "-p", "no:cacheprovider",
                           f"--benchmark-json={out}", "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [two] = json.loads(out.read_text())["benchmarks"]
    info, stats = two["extra_info"], two["stats"]
    assert two["name"] == "test_ddp[mlp-cpu-bs64-world2]" and stats["rounds"] == 3
    assert (info["threads_per_rank"] == 1 and info["images_per_epoch"] == 512
            and info["steps"] == 512 // (64 * 2))
    # two gloo replicas trained in lockstep: their weights identical after the timed epochs
    assert (info["backend"] == "gloo" and info["replicas_identical"]
            and info["max_param_diff"] == 0.0)
    assert isinstance(info["nosync_epoch_s"], float)
    assert isinstance(info["scaling_efficiency"], float) and info["scaling_efficiency"] > 0
    assert info["images_per_s"] == pytest.approx(512 / stats["median"])
    assert info["comm_share"] == pytest.approx(
        max(0.0, 1 - info["nosync_epoch_s"] / stats["median"]))
    # the rounds are the workers' own epoch times, replayed (+ the microsecond of the call)
    assert stats["data"] == pytest.approx(info["epoch_s"], abs=1e-4)
    assert stats["median"] == pytest.approx(statistics.median(info["epoch_s"]), abs=1e-4)


def test_an_epoch_reuses_a_bounded_pool_of_uint8_images():
    ds = worker.dataset("kerascnn", worker.POOL + 10, image_size=8, seed=0)
    pool = ds.dataset.tensors[0]
    assert len(ds) == worker.POOL + 10 and len(pool) == worker.POOL and pool.dtype == torch.uint8
    (x0, y0), (x1, y1) = ds[3], ds[worker.POOL + 3]
    assert torch.equal(x0, x1) and y0 == y1 and x0.shape == (3, 8, 8)
    small = worker.dataset("kerascnn", 64, image_size=8, seed=0)
    # the same seeded images
    assert len(small.dataset.tensors[0]) == 64 and torch.equal(small[5][0], ds[5][0])


# --- a launch's life: conditions, limit, imports, nodes, a lost rank ---
# a minute's warm-up epoch
LONG = {"model": "mlp", "batch_size": 32, "images": 400_000, "epochs": 1, "threads": 1}
# what the `conditions` fixture stores
KEYS = ("threads", "cudnn_benchmark", "tf32", "flush_denormal")


def processes(out) -> dict[int, str | None]:
    """The live processes whose command line names `out`, each with its RANK (None: a torchrun
    agent)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(out).encode() in (proc / "cmdline").read_bytes():
                env = dict(v.split(b"=", 1) for v in (proc / "environ").read_bytes().split(b"\0")
                           if b"=" in v)
                found[int(proc.name)] = env[b"RANK"].decode() if b"RANK" in env else None
        except OSError:  # ended meanwhile
            continue
    return found


def sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return sum(os.readlink(fds / fd).startswith("socket:") for fd in os.listdir(fds))
    except OSError:  # ended meanwhile
        return 0


@contextlib.contextmanager
def watching(out, kill_rank: str | None = None, after_s: float = 0.0):
    """Yields {rank: pid} of the workers of the launch writing `out`, filled in while it runs; with
    kill_rank, that rank's worker gets SIGKILL `after_s` seconds after it has connected to its peers
    (the store and gloo: its process group is up, so its next steps are collectives with the other
    rank)."""
    seen, stop = {}, threading.Event()

    def loop():
        connected, killed = None, False
        while not stop.wait(0.2):
            for pid, rank in processes(out).items():
                if rank is not None:
                    seen.setdefault(rank, pid)
            if connected is None and kill_rank in seen and sockets(seen[kill_rank]) >= 2:
                connected = time.monotonic()
            if not killed and connected is not None and time.monotonic() - connected >= after_s:
                os.kill(seen[kill_rank], signal.SIGKILL)
                killed = True

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


@pytest.mark.slow
def test_a_world_1_case_records_the_conditions_of_the_matching_epoch_case(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benches" / "bench_ddp.py"),
                           str(ROOT / "benches" / "bench_epoch.py"), "--device", "cpu",
                           "--model", "mlp", "--batch-size", "32", "--threads", "2",
                           "-k", "world1 or (test_epoch and resident)", "--benchmark-max-time=0.05",
                           "-p", "no:cacheprovider", f"--benchmark-json={out}", "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cases = {b["name"]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    ddp_case, epoch_case = (cases["test_ddp[mlp-cpu-bs32-world1]"],
                            cases["test_epoch[mlp-cpu-bs32-resident]"])
    assert {k: ddp_case[k] for k in KEYS} == {k: epoch_case[k] for k in KEYS}
    assert ddp_case["threads"] == 2 and ddp_case["flush_denormal"] == torch.set_flush_denormal(True)


@pytest.mark.slow
def test_a_launch_past_the_case_limit_is_stopped_with_all_its_processes(tmp_path):
    out = tmp_path / "r.json"
    with watching(out) as seen, pytest.raises(worker.DDPError) as e:
        # workers start in ~2 s here; the epoch takes a minute
        launch.launch(2, out, timeout=10, **LONG)
    assert str(e.value) == ("world size 2 (mlp on cpu) did not finish within the case limit of "
                            "10 s (--case-timeout)")
    assert set(seen) == {"0", "1"}  # the limit stopped running workers, not their start-up
    assert processes(out) == {}


@pytest.mark.slow
def test_an_interrupted_launch_leaves_no_process(tmp_path, monkeypatch):
    out = tmp_path / "r.json"

    def interrupted(procs, timeout):  # Ctrl-C once both workers run
        while len([r for r in processes(out).values() if r is not None]) < 2:
            time.sleep(0.2)
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "_wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        launch.launch(2, out, nodes=2, **LONG)
    assert processes(out) == {}


def test_workers_import_this_tree_from_any_folder(tmp_path):
    env = launch.worker_env(3)
    assert env["OMP_NUM_THREADS"] == "3" and env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    # -S: no site-packages, so an installed imgbench cannot stand in for the PYTHONPATH entry
    proc = subprocess.run([sys.executable, "-S", "-c", "import imgbench; print(imgbench.__file__)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == ROOT / "imgbench" / "__init__.py"


@pytest.mark.slow
def test_two_nodes_on_this_machine_train_in_lockstep(tmp_path):
    out = tmp_path / "r.json"
    r = launch.launch(2, out, nodes=2, **{**SMALL, "model": "mlp", "image_size": None})
    assert (r["world_size"], r["backend"], r["images_per_epoch"]) == (2, "gloo", 64)
    assert r["replicas_identical"] and r["max_param_diff"] == 0.0
    assert processes(out) == {}


def test_nodes_must_divide_the_world(tmp_path):
    with pytest.raises(worker.DDPError,
                       match=r"^3 replicas do not split into 2 nodes: the node count must divide "
                             r"the world size$"):
        launch.launch(3, tmp_path / "r.json", nodes=2)


@pytest.mark.slow
@pytest.mark.parametrize(("nodes", "on"), [(1, ""), (2, " on 2 nodes")],
                         ids=["one-node", "two-nodes"])
def test_a_rank_that_dies_ends_the_launch_at_once_naming_it(tmp_path, nodes, on):
    """Rank 0's gloo all-reduce errors out when its peer's socket closes (seen: "Read error ...
    Connection reset by peer" in backward, within 2 s); rank 0 is stopped by torchrun (one node,
    reported SIGTERM, not a root cause) or ends by itself (two nodes)."""
    out = tmp_path / "r.json"
    start = time.monotonic()
    with watching(out, kill_rank="1", after_s=3) as seen, pytest.raises(worker.DDPError) as e:
        launch.launch(2, out, nodes=nodes, timeout=600, **LONG)
    took = time.monotonic() - start
    assert str(e.value) == (f"torchrun with 2 replicas{on} failed (exit 1): rank 1 was killed by "
                            "signal SIGKILL")
    assert set(seen) == {"0", "1"} and took < 120  # the surviving rank did not wait for the limit
    assert processes(out) == {}
