"""The one-shot GPU check's schedule (.ci/gpu-check): its steps in order, what each pytest step
collects and the seconds each may take (its share of the 475 s), in one place that a test checks
against the cost model (tests/preflight/test_plan.py: every share >= 1.2 x its estimate on a
16-core box with one H100).

The risky paths come first: the doctor (fresh interpreters, CUDA init, a cold torch.compile), the
reference epoch (the suite's only CUDA torch.compile + bf16 + channels_last training) in a process
of its own, then the CUDA families; the CPU-bound families and the GPU-over-CPU speedup last. Small
families share one pytest process: each process costs config.PROCESS_START_S before its first case.

    python3 -m imgbench.preflight.plan [FAMILIES]

prints one tab-separated line per step, `kind name share_s pytest-args...`, for the script; FAMILIES
(a comma list) keeps only their files, and a family no step holds gets a step of its own (so that a
misspelt one fails as its own step). No torch import: the script calls it before any step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from imgbench.core.config import PROCESS_START_S

BUDGET_S = 475     # the whole check, the summary included
SPARE = 1.2        # every share >= SPARE x its estimate
# The doctor: two fresh interpreters (torch import, CUDA init) and a cold torch.compile of a small
# function with fresh caches; not a pytest process, so the cost model has no case for it.
DOCTOR_EST_S = 2 * PROCESS_START_S + 20.0
SUMMARY_EST_S = 5.0  # reading the runs, matplotlib's import and one figure
# The family steps' settings (the script's defaults, GPU_CHECK_MAX_TIME and
# GPU_CHECK_BATCH_SIZES): 0.1 s of rounds per case, not 0.2, so that every step fits with its spare.
MAX_TIME_S = 0.1
BATCH_SIZE = 128
# The speedup: kerascnn epochs of 50,000 images (the full profile), 1 warm-up and 3 timed, on the
# CPU and the GPU; the device-resident path at batch 128 and 512, the DataLoader path at 128 only
# (its batch 512 did not fit).
SPEEDUP_ROUNDS = 3
SPEEDUP_BATCH_SIZES = {"resident": (128, 512), "loader": (128,)}

# The test of the reference epoch: its own step, and kept out of the epoch family's.
REFERENCE = "benches/bench_epoch.py::test_reference_epoch"


@dataclass(frozen=True)
class Step:
    kind: str                        # doctor, pytest, speedup or summary
    name: str
    share_s: int
    families: tuple[str, ...] = ()   # bench files (pytest steps)
    select: str = ""                 # a node id instead of the families' files
    deselect: str = ""               # a node id prefix left out

    def args(self) -> list[str]:
        """The pytest arguments that choose the step's cases."""
        if self.kind == "speedup":
            path = self.name.removeprefix("speedup-")
            return ["benches/bench_epoch.py::test_epoch", "-k", path, "--model", "kerascnn",
                    "--batch-size", ",".join(map(str, SPEEDUP_BATCH_SIZES[path])),
                    "--benchmark-min-rounds", str(SPEEDUP_ROUNDS)]
        args = [self.select] if self.select else [f"benches/bench_{f}.py" for f in self.families]
        return args + ([f"--deselect={self.deselect}"] if self.deselect else [])


STEPS = (
    Step("doctor", "doctor", 60),
    Step("pytest", "family-reference", 100, ("epoch",), select=REFERENCE),
    Step("pytest", "family-cuda", 122,
         ("forward", "train_step", "conv", "transfer", "h2d", "epoch"), deselect=REFERENCE),
    Step("pytest", "family-host", 85, ("ddp", "dataloader", "checkpoint", "harness")),
    Step("speedup", "speedup-resident", 51),
    Step("speedup", "speedup-loader", 46),
    Step("summary", "summary", 8),
)


def steps(families: list[str] | None = None) -> list[Step]:
    """The schedule, its pytest steps cut to `families` (all when None); a family no step holds
    gets a step of its own before the speedup."""
    if families is None:
        return list(STEPS)
    known = {f for s in STEPS for f in s.families}
    out = []
    for s in STEPS:
        if s.name == "speedup-resident":
            out += [Step("pytest", f"family-{f}", 20, (f,)) for f in families if f not in known]
        if s.kind != "pytest":
            out.append(s)
        elif kept := tuple(f for f in s.families if f in families):
            out.append(Step(s.kind, s.name, s.share_s, kept, s.select, s.deselect))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python3 -m imgbench.preflight.plan [FAMILIES] (a comma list; got "
              f"{len(args)} arguments)", file=sys.stderr)
        return 2
    families = [f for f in args[0].replace(",", " ").split() if f] if args else None
    for s in steps(families):
        print("\t".join([s.kind, s.name, str(s.share_s), *s.args()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
