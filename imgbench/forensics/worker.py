"""The worker processes of a paired run (ab, bisect, explain, gate-check): one pytest process per
side running that side's own tree's benches under a worker plugin (forensics/workers/), each
connected to the coordinator by a socket of its own. Both sides start at once (each takes seconds to
import torch and collect), and each is stopped with everything it started."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Listener
from pathlib import Path

from imgbench.core.errors import CouldNotRun, UserError

START_S = 600        # a worker that has not reached its first case by then is stuck
WORKER_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",  # an idle worker's OpenMP threads sleep instead of spinning
    # A fixed malloc: no dynamic mmap threshold, no trimming. Else each process settles into its own
    # allocation pattern (page faults per call or none), which biased measured pairs of processes by
    # 10-25%. (Threads bound to cores, OMP_PROC_BIND, also steadied pairs, but pins forked
    # DataLoader workers and torchrun ranks to the first core: not the workload a run times.)
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647",
}
# The share of each GPU's memory a worker may hold (workers/ab_worker.py), where the run's devices
# may include an accelerator: both workers of a pair share one GPU, and the caching allocator of
# one keeps what it freed, so the other, bursting after it, would run out; capped, each frees its
# own cache at its half (an out-of-memory there is that side's failed case, named).
GPU_SHARE_ENV, GPU_SHARE = "IMGBENCH_AB_GPU_SHARE", 0.5
# pytest's "E   SyntaxError: ..." line
EXCEPTION = re.compile(r"^E\s+(\w[\w.]*(?:Error|Exception)\b.*)")
# the A/B worker plugin's module name beside a run (workers/ab_worker.py)
AB_PLUGIN = "imgbench_abworker"


class ABError(UserError):
    pass


@dataclass(frozen=True)
class Side:
    name: str       # "base" or "candidate"
    tree: Path      # checkout whose benches/ run
    python: str


def python_of(path: str | None) -> str:
    if path is None:
        return sys.executable
    if not Path(path).is_file() or not os.access(path, os.X_OK):
        raise ABError(f"--base-python {path!r} is not an executable file "
                      "(give the python executable of the other environment)")
    return path


class Worker:
    """One pytest process running one side's tree, connected to the coordinator by its own
    socket."""

    def __init__(self, side: Side, args: list[str], folder: Path, plugin: str = AB_PLUGIN):
        self.side, self.args, self.folder, self.plugin = side, args, folder, plugin
        self.name = f"{side.name} worker"
        self.log = folder / f"{side.name}.log"
        key = secrets.token_bytes(16)
        self.listener = Listener(str(folder / f"{side.name}.sock"), family="AF_UNIX", authkey=key)
        env = {**os.environ, **WORKER_ENV, "PYTHONPATH": os.pathsep.join(
            [str(side.tree), str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "IMGBENCH_AB_ADDRESS": self.listener.address, "IMGBENCH_AB_KEY": key.hex()}
        if accelerated(args):
            env[GPU_SHARE_ENV] = str(GPU_SHARE)
        cmd = [side.python, "-m", "pytest", str(side.tree / "benches"), *args, "-p", plugin, "-q",
               "-p", "no:cacheprovider", "-p", "no:xdist"]
        try:
            with open(self.log, "w") as log:
                # Its own process group: stopping it stops what it started too
                # (torchrun, loader workers).
                self.proc = subprocess.Popen(cmd, cwd=side.tree, env=env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self.listener.close()
            raise ABError(f"the {side.name} worker could not start {side.python}: "
                          f"{e.strerror or e}") from None
        self.conn, self.finished = None, False

    def connect(self):
        """Wait until the worker has collected its cases and called back."""
        accepted: list = []

        def accept():
            with suppress(OSError):  # the listener closed under it: the worker stopped first
                accepted.append(self.listener.accept())
        waiter = threading.Thread(target=accept, daemon=True)
        waiter.start()
        deadline = time.monotonic() + START_S
        while waiter.is_alive() and self.proc.poll() is None and time.monotonic() < deadline:
            waiter.join(0.2)
        if not accepted:
            raise WorkerStopped(self, "before it collected its cases")
        self.conn = accepted[0]

    def send(self, *msg):
        self.put(list(msg))

    def put(self, obj):
        """`obj` to the worker as JSON (never pickles: the worker runs the bench's code)."""
        self.conn.send_bytes(json.dumps(obj).encode())

    def recv(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.conn.poll(0.5):
            if self.proc.poll() is not None or (deadline and time.monotonic() > deadline):
                raise WorkerStopped(self, "while serving")
        try:
            return json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            raise WorkerStopped(self, "while serving") from None
        except ValueError:  # not JSON: not our worker plugin speaking
            raise ABError(f"the {self.name} sent something that is not JSON: out of step"
                          ) from None

    def tail(self) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else "no output"

    def kill(self):
        """Its whole process group, at once (also from another thread: the main one then sees it
        gone)."""
        with suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self):
        self.kill()
        self.proc.wait()
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def accelerated(args: list[str]) -> bool:
    """Whether a worker's pytest arguments may put a case on an accelerator: a --device other than
    the CPU alone (auto included, as it takes every GPU present)."""
    spec = "auto"
    for i, a in enumerate(args):
        if a == "--device" and i + 1 < len(args):
            spec = args[i + 1]
        elif a.startswith("--device="):
            spec = a.split("=", 1)[1]
    return any(part.strip() != "cpu" for part in spec.split(","))


class WorkerStopped(CouldNotRun):
    """A worker that ended before its work was done: the tool could not run (exit 4), whatever the
    case's own code did. Its log lies in the run's temporary folder until `keep` copies it out."""

    def __init__(self, worker: Worker, when: str):
        code = worker.proc.poll()
        self.worker, self.code, self.log = worker, code, worker.log
        self.said = f"the {worker.name} stopped {when} (exit {code}): {worker.tail()}"
        super().__init__(f"{self.said} (log: {self.log})")

    def keep(self, dest: Path) -> WorkerStopped:
        """The log copied to `dest` (which outlives the temporary folder) and named by the
        message; where it cannot be copied, the message says so."""
        if dest != self.log:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.log, dest)
                self.log = dest
                self.args = (f"{self.said} (log: {dest})",)
            except OSError as e:
                self.args = (f"{self.said} (its log could not be kept at {dest}: "
                             f"{e.strerror or e})",)
        return self


def unknown_options(worker: Worker) -> list[str]:
    """The arguments pytest refused ("unrecognized arguments: ..."), from a worker that stopped."""
    for line in worker.log.read_text(errors="replace").splitlines():
        if "unrecognized arguments:" in line:
            return line.split("unrecognized arguments:", 1)[1].split()
    return []


def without(args: list[str], refused: list[str]) -> list[str]:
    """`args` less the refused ones, matched in order (as pytest lists them), so that a value equal
    to a refused one elsewhere (`--model all` beside a refused `--cases all`) stays."""
    out, j = [], 0
    for a in args:
        if j < len(refused) and a == refused[j]:
            j += 1
        else:
            out.append(a)
    return out


def connect(workers: list[Worker], i: int, note: Callable[[str], None]) -> None:
    """Wait until workers[i] has collected its cases. A base whose pytest does not know options of
    its arguments (exit 4, "unrecognized arguments": e.g. one the candidate's own conftest adds) is
    started again without them, in its place in `workers`, with a note. A worker that fails is
    stopped."""
    while True:
        w = workers[i]
        try:
            w.connect()
            return
        except BaseException as e:
            w.stop()
            stopped = isinstance(e, WorkerStopped) and e.code == 4 and w.side.name == "base"
            refused = unknown_options(w) if stopped else []
            if not refused or not set(refused) <= set(w.args):
                raise
            note(f"the base does not know {' '.join(refused)}: dropped for the base")
            workers[i] = Worker(w.side, without(w.args, refused), w.folder, w.plugin)


def start(sides: list[Side], args: list[str], folder: Path, note: Callable[[str], None],
          plugin: str = AB_PLUGIN, workers: list[Worker] | None = None) -> list[Worker]:
    """One worker per side on `args`, all started at once, returned once each has connected; if any
    fails, every one is stopped. `workers`: the list to fill as they start (a watchdog may stop
    them)."""
    workers = [] if workers is None else workers
    try:
        for side in sides:
            workers.append(Worker(side, args, folder, plugin))
        for i in range(len(workers)):
            connect(workers, i, note)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    return workers


def collection_error(side: Side, args: list[str]) -> str:
    """Why pytest collects no case at `side`'s tree: the first error of a collection-only run."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(side.tree),
                                                        os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run([side.python, "-m", "pytest", str(side.tree / "benches"), *args,
                               "--collect-only", "-q", "-p", "no:cacheprovider"],
                              cwd=side.tree, env=env, capture_output=True, text=True,
                              timeout=START_S)
    except subprocess.TimeoutExpired:
        return "its collection did not finish"
    lines = proc.stdout.splitlines()
    where = next((ln for ln in lines if ln.startswith("ERROR ")), "no collection error")
    what = next((m.group(1) for ln in lines if (m := EXCEPTION.match(ln))), None)
    return f"{where}: {what}" if what else where
