"""Synchronous data-parallel training, one process per replica: the ddp family's worker and launcher.

`launch()` starts `torchrun --standalone --nproc_per_node=W -m imgbench.ddp ...`, or with nodes=N,
N torchrun agents on this machine meeting at a c10d rendezvous (one hosting its store), each with
W/N replicas; `worker_env` puts this tree on their PYTHONPATH. Every agent runs in a process group
of its own; past the case limit, once one agent has failed, and on any way out, every agent's group
is killed and so is every process whose command line carries the launch's --out path (torchrun
starts each worker in a session of its own). The workers' collectives time out at the same limit.
A failure is one line: a rank killed by a signal, else a worker's exception.

Every rank runs under the suite's conditions (conditions.applied, fp32, as the epoch family's cases)
and builds the same seeded model and data; DistributedDataParallel all-reduces the gradients every
step (NCCL on GPUs, gloo on CPU processes); a DistributedSampler gives each rank its share of the epoch.
After a warm-up epoch, each timed epoch starts at a barrier and ends when the slowest rank ends.
Then every replica's parameters are gathered and compared, and last, one epoch runs under no_sync
(no gradient all-reduce; the replicas drift apart, so it comes after the check): the synchronised
epoch's excess over it is the communication the backward pass did not hide. Rank 0 writes a JSON,
with the conditions its epochs ran under."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, nullcontext, suppress
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import imgbench
from imgbench.core import atomic as files
from imgbench.hw import conditions, devices, timing
from imgbench.workloads import data, models, steps as workloads


class DDPError(RuntimeError):
    pass


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def unavailable(device: str) -> str | None:
    """Why this torch cannot run data parallelism on `device`, or None."""
    if not dist.is_available():
        return f"torch.distributed is not available in torch {torch.__version__}"
    backend = backend_for(device)
    if not (dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()):
        return f"the {backend} backend is not available in torch {torch.__version__} (needed for {device})"
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imgbench.ddp", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="kerascnn")
    p.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per rank: LOCAL_RANK)")
    p.add_argument("--batch-size", type=int, default=32, help="per replica")
    p.add_argument("--images", type=int, default=512, help="images per epoch, all replicas together")
    p.add_argument("--image-size", type=int, default=None, help="default: the model's")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800, help="seconds a collective may wait (the case limit)")
    p.add_argument("--out", required=True, help="rank 0 writes the result JSON here")
    p.add_argument("--save-weights", help="rank 0 saves the parameters after the timed epochs here")
    return p


POOL = 4096  # distinct images per rank; a full-profile ResNet epoch as float32 would take 30 GB a rank


def dataset(model: str, images: int, image_size: int | None, seed: int) -> torch.utils.data.Subset:
    """`images` uint8 images drawn in turn from a pool of at most POOL seeded ones."""
    c, size, _ = models.spec(model).input_shape
    size = image_size or size
    pool = min(images, POOL)
    x, y = data.synthetic_uint8(pool, (c, size, size), models.spec(model).num_classes, seed)
    return torch.utils.data.Subset(torch.utils.data.TensorDataset(x, y), [i % pool for i in range(images)])


def build(model: str, image_size: int | None, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    c, size, _ = models.spec(model).input_shape
    return models.build(model, models.spec(model).num_classes, c, image_size or size)


def sampler(ds, world: int, rank: int, seed: int):
    return torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                               drop_last=True)


def run_epoch(loader, trainer: workloads.Trainer, device: torch.device, sync_grads: bool = True) -> torch.Tensor:
    loss = torch.zeros((), device=device)
    for x, y in loader:
        # uint8 over the wire (a quarter of float32's bytes), scaled on the device
        x, y = x.to(device, non_blocking=True).float().div_(255), y.to(device, non_blocking=True)
        with nullcontext() if sync_grads else trainer.model.no_sync():
            loss = trainer.step(x, y)
    return loss


def plain_train(model: str, batch_size: int, images: int, image_size: int | None, epochs: int, optimizer: str,
                seed: int, threads: int = 1) -> dict[str, torch.Tensor]:
    """The same training without DDP or processes (one replica's data order): what a one-replica
    DDP run must reproduce. Same conditions as the worker: another thread count splits reductions
    differently, and unflushed denormals could round differently."""
    with conditions.applied("cpu", "fp32", threads):
        return _plain(model, batch_size, images, image_size, epochs, optimizer, seed)


def _plain(model, batch_size, images, image_size, epochs, optimizer, seed) -> dict[str, torch.Tensor]:
    net = build(model, image_size, seed)
    ds = dataset(model, images, image_size, seed)
    s = sampler(ds, 1, 0, seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=s, drop_last=True)
    trainer = workloads.Trainer(net.train(), optimizer, "fp32", "cpu")
    for epoch in range(1 + epochs):
        s.set_epoch(epoch)
        run_epoch(loader, trainer, torch.device("cpu"))
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def worker(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if args.device.startswith("cuda") else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # the case limit: a collective waiting on a stuck or lost peer ends by itself
    dist.init_process_group(backend_for(args.device), timeout=timedelta(seconds=args.timeout))
    try:
        with conditions.applied(args.device, "fp32", args.threads) as record:  # as the epoch family's cases
            result = train(args, device, local)
        if dist.get_rank() == 0:
            with files.atomic(args.out) as tmp:
                tmp.write_text(json.dumps({**result, "conditions": record}))
        return 0
    finally:
        dist.destroy_process_group()


def train(args: argparse.Namespace, device: torch.device, local: int) -> dict:
    """The warm-up, timed, checked and no_sync epochs of this rank; the result rank 0 writes."""
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = dataset(args.model, args.images, args.image_size, args.seed)
    s = sampler(ds, world, rank, args.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=s, drop_last=True,
                                         pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise DDPError(f"batch {args.batch_size} x {world} replicas > {args.images} images per epoch: no step")
    net = build(args.model, args.image_size, args.seed).to(device).train()
    ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local] if device.type == "cuda" else None)
    trainer = workloads.Trainer(ddp, args.optimizer, "fp32", device.type)
    sync = devices.synchronizer(str(device))

    def timed_epoch(epoch: int, sync_grads: bool = True) -> float:
        s.set_epoch(epoch)
        sync()
        dist.barrier()  # every rank idle and here: the clocks start together
        seconds = timing.clocked(lambda: run_epoch(loader, trainer, device, sync_grads), sync)
        took = torch.tensor([seconds], dtype=torch.float64, device=device)
        dist.all_reduce(took, op=dist.ReduceOp.MAX)  # the epoch ends with its slowest rank
        return float(took.item())

    timed_epoch(0)  # warm-up: allocator, DDP buckets, the first all-reduces
    epoch_s = [timed_epoch(e) for e in range(1, 1 + args.epochs)]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    everyone = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(everyone, flat)
    max_diff = max(float((w - everyone[0]).abs().max()) for w in everyone)
    if rank == 0 and args.save_weights:
        with files.atomic(args.save_weights) as tmp:
            torch.save({k: v.detach().cpu() for k, v in net.named_parameters()}, tmp)
    nosync_s = timed_epoch(1 + args.epochs, sync_grads=False)
    steps = len(loader)
    return {"world_size": world, "backend": dist.get_backend(), "device": args.device, "model": args.model,
            "batch_size": args.batch_size, "steps": steps, "images_per_epoch": steps * args.batch_size * world,
            "threads_per_rank": args.threads, "epoch_s": epoch_s, "nosync_epoch_s": nosync_s,
            "max_param_diff": max_diff, "replicas_identical": max_diff == 0.0}


GRACE_S = 5.0  # once an agent has failed, the others' time to report their own ranks before they are killed
ROOT_CAUSE = re.compile(r"^Root Cause \(first observed failure\):$(.*?)^=+$", re.M | re.S)  # torchrun's report
SIGNALLED = re.compile(r"Signal \d+ \((SIG\w+)\) received by PID")
EXCEPTION = re.compile(r"^(?:\[rank\d+\]: )?[\w.]*(?:Error|Exception): (.+)$", re.M)


def worker_env(threads: int) -> dict[str, str]:
    """The environment torchrun and its workers get: this one, OMP_NUM_THREADS, and the folder holding the
    imgbench package first on PYTHONPATH, so that `python -m imgbench.ddp` imports this tree from a plain
    checkout whatever the working directory."""
    root = str(Path(imgbench.__file__).resolve().parent.parent)
    path = os.pathsep.join([root, os.environ["PYTHONPATH"]]) if os.environ.get("PYTHONPATH") else root
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agents(world: int, nodes: int) -> list[list[str]]:
    """Each torchrun agent's command: one standalone node, or `nodes` nodes of this machine meeting at a
    c10d rendezvous, the first hosting its store (said outright: every agent here matches 127.0.0.1)."""
    run = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        return [[*run, "--standalone", f"--nproc_per_node={world}"]]
    meet = [f"--nnodes={nodes}", f"--nproc_per_node={world // nodes}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{_free_port()}", f"--rdzv-id=imgbench-{uuid.uuid4().hex}"]
    return [[*run, *meet, f"--rdzv-conf=is_host={int(i == 0)}"] for i in range(nodes)]


def launch(world: int, out: Path, *, model: str = "kerascnn", device: str = "cpu", batch_size: int = 32,
           images: int = 512, image_size: int | None = None, epochs: int = 3, optimizer: str = "adam",
           threads: int = 1, seed: int = 0, save_weights: Path | None = None, timeout: float = 1800,
           nodes: int = 1) -> dict:
    """Run `world` replicas through torchrun on this machine, as one node or as `nodes` (one agent each),
    and return rank 0's result. DDPError (one line) past `timeout` seconds or when a rank fails; either
    way, and on any other way out, no process of the launch is left."""
    if nodes < 1 or world % nodes:
        raise DDPError(f"{world} replicas do not split into {nodes} nodes: the node count must divide the world size")
    out = Path(out).resolve()  # absolute: it marks this launch's processes (_end)
    args = ["-m", "imgbench.ddp", "--model", model, "--device", device, "--batch-size", str(batch_size),
            "--images", str(images), "--epochs", str(epochs), "--optimizer", optimizer, "--threads", str(threads),
            "--seed", str(seed), "--timeout", str(timeout), "--out", str(out)]
    if image_size:
        args += ["--image-size", str(image_size)]
    if save_weights:
        args += ["--save-weights", str(save_weights)]
    out.unlink(missing_ok=True)
    with ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+", errors="replace")) for _ in range(nodes)]
        procs: list[subprocess.Popen] = []
        try:
            for agent, log in zip(agents(world, nodes), logs, strict=True):
                procs.append(subprocess.Popen([*agent, *args], stdout=log, stderr=subprocess.STDOUT,
                                              env=worker_env(threads), start_new_session=True))
            ended = _wait(procs, timeout)
        except TimeoutError:
            raise DDPError(f"world size {world} ({model} on {device}) did not finish within the case limit of "
                           f"{timeout:g} s (--case-timeout)") from None
        finally:
            _end(procs, out)
        codes = [procs[i].returncode for i in ended]
        if len(ended) < nodes or any(codes) or not out.is_file():
            on = f" on {nodes} nodes" if nodes > 1 else ""
            raise DDPError(f"torchrun with {world} replicas{on} failed (exit {next((c for c in codes if c), 0)}): "
                           f"{_cause(_read(logs, ended))}")
    return json.loads(out.read_text())


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """The agents that ended, by index in the order seen: all of them, or once one has failed, those that
    ended within GRACE_S more. TimeoutError past `timeout` seconds with none failed."""
    deadline, failed, ended = time.monotonic() + timeout, None, []
    while True:
        ended += [i for i, p in enumerate(procs) if i not in ended and p.poll() is not None]
        now = time.monotonic()
        if len(ended) == len(procs) or (failed is not None and now > failed + GRACE_S):
            return ended
        if failed is None and any(procs[i].returncode for i in ended):
            failed = now
        elif failed is None and now > deadline:
            raise TimeoutError
        time.sleep(0.1)


def _read(logs: list, ended: list[int]) -> str:
    """The agents' output, the first to end first (a peer's failure follows the rank that failed)."""
    text = []
    for i in [*ended, *(i for i in range(len(logs)) if i not in ended)]:
        logs[i].seek(0)
        text.append(logs[i].read())
    return "".join(text)


def _end(procs: list[subprocess.Popen], out: Path) -> None:
    """Kill every agent's process group, then every process whose command line carries this launch's
    --out: torchrun starts each worker in a session of its own, and a worker outlives a killed agent."""
    for p in procs:
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    for _ in range(200):  # a killed process takes a moment to go; one forked meanwhile goes on the next pass
        if not (pids := launched(out)):
            break
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for p in procs:
        p.wait()


def launched(out: Path) -> list[int]:
    """The live processes of the launch writing `out`: agents and workers, read from /proc."""
    mark = f"--out\0{out}\0".encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with suppress(OSError):  # ended meanwhile, or not ours to read
            if mark in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return pids


def _cause(output: str) -> str:
    """Why the launch failed, from the agents' output: a rank that torchrun reports as a root cause killed
    by a signal (its peers' errors follow from losing it; a rank torchrun itself stopped is no root cause),
    else a worker's first exception line (torchrun's ChildFailedError report follows it), else the last
    line."""
    for root in ROOT_CAUSE.findall(output):
        if (rank := re.search(r"rank\s*:\s*(\d+)", root)) and (sig := SIGNALLED.search(root)):
            return f"rank {rank[1]} was killed by signal {sig[1]}"
    causes = EXCEPTION.findall(output)
    return causes[0].strip() if causes else (output.strip().splitlines() or ["no output"])[-1]


if __name__ == "__main__":
    sys.exit(worker())
