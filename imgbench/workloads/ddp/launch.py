"""The ddp family's launcher: `launch()` starts `torchrun --standalone --nproc_per_node=W -m
imgbench.ddp ...`, or with nodes=N, N torchrun agents on this machine meeting at a c10d rendezvous
(one hosting its store), each with W/N replicas; `worker_env` puts this tree on their PYTHONPATH.
Every agent runs in a process group of its own; past the case limit, once one agent has failed, and
on any way out, every agent's group is killed and so is every process whose command line carries
the launch's --out path (torchrun starts each worker in a session of its own). The workers'
collectives time out at the same limit. A failure is one line: a rank killed by a signal, else a
worker's exception."""

from __future__ import annotations

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
from contextlib import ExitStack, suppress
from pathlib import Path

import imgbench
from imgbench.workloads.ddp.worker import DDPError

# once an agent has failed, the others' time to report their own ranks before they are killed
GRACE_S = 5.0
# torchrun's report
ROOT_CAUSE = re.compile(r"^Root Cause \(first observed failure\):$(.*?)^=+$", re.M | re.S)
SIGNALLED = re.compile(r"Signal \d+ \((SIG\w+)\) received by PID")
EXCEPTION = re.compile(r"^(?:\[rank\d+\]: )?[\w.]*(?:Error|Exception): (.+)$", re.M)


def worker_env(threads: int) -> dict[str, str]:
    """The environment torchrun and its workers get: this one, OMP_NUM_THREADS, and the folder
    holding the imgbench package first on PYTHONPATH, so that `python -m imgbench.ddp` imports this
    tree from a plain checkout whatever the working directory."""
    root = str(Path(imgbench.__file__).resolve().parent.parent)
    path = (os.pathsep.join([root, os.environ["PYTHONPATH"]]) if os.environ.get("PYTHONPATH")
            else root)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agents(world: int, nodes: int) -> list[list[str]]:
    """Each torchrun agent's command: one standalone node, or `nodes` nodes of this machine meeting
    at a c10d rendezvous, the first hosting its store (said outright: every agent here matches
    127.0.0.1)."""
    run = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        return [[*run, "--standalone", f"--nproc_per_node={world}"]]
    meet = [f"--nnodes={nodes}", f"--nproc_per_node={world // nodes}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{_free_port()}", f"--rdzv-id=imgbench-{uuid.uuid4().hex}"]
    return [[*run, *meet, f"--rdzv-conf=is_host={int(i == 0)}"] for i in range(nodes)]


def launch(world: int, out: Path, *, model: str = "kerascnn", device: str = "cpu",
           batch_size: int = 32, images: int = 512, image_size: int | None = None, epochs: int = 3,
           optimizer: str = "adam", threads: int = 1, seed: int = 0,
           save_weights: Path | None = None, timeout: float = 1800, nodes: int = 1) -> dict:
    """Run `world` replicas through torchrun on this machine, as one node or as `nodes` (one agent
    each), and return rank 0's result. DDPError (one line) past `timeout` seconds or when a rank
    fails; either way, and on any other way out, no process of the launch is left."""
    if nodes < 1 or world % nodes:
        raise DDPError(f"{world} replicas do not split into {nodes} nodes: the node count must "
                       "divide the world size")
    out = Path(out).resolve()  # absolute: it marks this launch's processes (_end)
    args = ["-m", "imgbench.ddp", "--model", model, "--device", device,
            "--batch-size", str(batch_size), "--images", str(images), "--epochs", str(epochs),
            "--optimizer", optimizer, "--threads", str(threads), "--seed", str(seed),
            "--timeout", str(timeout), "--out", str(out)]
    if image_size:
        args += ["--image-size", str(image_size)]
    if save_weights:
        args += ["--save-weights", str(save_weights)]
    out.unlink(missing_ok=True)
    with ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+", errors="replace"))
                for _ in range(nodes)]
        procs: list[subprocess.Popen] = []
        try:
            for agent, log in zip(agents(world, nodes), logs, strict=True):
                procs.append(subprocess.Popen([*agent, *args], stdout=log, stderr=subprocess.STDOUT,
                                              env=worker_env(threads), start_new_session=True))
            ended = _wait(procs, timeout)
        except TimeoutError:
            raise DDPError(f"world size {world} ({model} on {device}) did not finish within the "
                           f"case limit of {timeout:g} s (--case-timeout)") from None
        finally:
            _end(procs, out)
        codes = [procs[i].returncode for i in ended]
        if len(ended) < nodes or any(codes) or not out.is_file():
            on = f" on {nodes} nodes" if nodes > 1 else ""
            raise DDPError(f"torchrun with {world} replicas{on} failed "
                           f"(exit {next((c for c in codes if c), 0)}): "
                           f"{_cause(_read(logs, ended))}")
    return json.loads(out.read_text())


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """The agents that ended, by index in the order seen: all of them, or once one has failed, those
    that ended within GRACE_S more. TimeoutError past `timeout` seconds with none failed."""
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
    """The agents' output, the first to end first (a peer's failure follows the rank that
    failed)."""
    text = []
    for i in [*ended, *(i for i in range(len(logs)) if i not in ended)]:
        logs[i].seek(0)
        text.append(logs[i].read())
    return "".join(text)


def _end(procs: list[subprocess.Popen], out: Path) -> None:
    """Kill every agent's process group, then every process whose command line carries this launch's
    --out: torchrun starts each worker in a session of its own, and a worker outlives a killed
    agent."""
    for p in procs:
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    # a killed process takes a moment to go; one forked meanwhile goes on the next pass
    for _ in range(200):
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
    """Why the launch failed, from the agents' output: a rank that torchrun reports as a root cause
    killed by a signal (its peers' errors follow from losing it; a rank torchrun itself stopped is
    no root cause), else a worker's first exception line (torchrun's ChildFailedError report follows
    it), else the last line."""
    for root in ROOT_CAUSE.findall(output):
        if (rank := re.search(r"rank\s*:\s*(\d+)", root)) and (sig := SIGNALLED.search(root)):
            return f"rank {rank[1]} was killed by signal {sig[1]}"
    causes = EXCEPTION.findall(output)
    return causes[0].strip() if causes else (output.strip().splitlines() or ["no output"])[-1]
