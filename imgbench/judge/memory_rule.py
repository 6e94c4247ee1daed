"""The memory rule, apart from the time verdicts: per case, the candidate's peak memory
(`extra_info.peak_memory_bytes`) against the baseline's. A regression is a peak that grew by more
than the effect (default 1%) AND by more than the floor (default 1 MiB); an improvement the mirror
image. A case without a figure in either run is "not measured", never judged. The CUDA figure (the
allocator's peak growth over the case) moves with cuDNN autotuning, which picks per process an
algorithm and its workspace: it is shown, and gated only against a history that holds at least
config.MEMORY_HISTORY_RUNS earlier runs of the case on the machine class, as growth past the highest
of them, with a floor sized for workspaces (config.MEMORY_FLOOR_MIB_CUDA). The CPU figure (growth of
the process's peak RSS over the case) also depends on what earlier cases of the process freed and
the C allocator kept resident: over 10 runs of one commit on a 2-core Xeon box (2026-11-30), 18 of
43 CPU cases moved, by up to 310 MiB (the reference epoch 143-453 MiB, resnet50 train step bs32
36-223, speednet train step bs128 0-120), and this rule failed 42 of the 45 pairs of those runs; a
256 MiB floor still failed 4. So the CPU figure is shown but not gated unless asked (`gate_cpu`:
with one case per process it reads alike run after run). Memory is not judged across machine classes
(another GPU, other workspace choices). No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from imgbench.core import config, table
from imgbench.judge.verdict import IMPROVEMENT, REGRESSION, UNCHANGED
from imgbench.judge.verdict import counts as count_verdicts
from imgbench.runs.record import Record

MIB = 1 << 20
# growth beyond both is a regression
EFFECT, FLOOR_MIB = config.MEMORY_EFFECT, config.MEMORY_FLOOR_MIB
NOT_MEASURED, NOT_GATED = "not measured", "not gated"
VERDICTS = (REGRESSION, IMPROVEMENT, UNCHANGED, NOT_GATED, NOT_MEASURED)
CPU_SPREAD = ("the CPU figure (peak RSS growth) moves with what earlier cases left resident: by up "
              "to 310 MiB between runs of one commit (--memory-cpu gates it)")
CUDA_SPREAD = ("the CUDA figure moves with the workspace cuDNN autotuning picks per process: gated "
               f"once the history holds {config.MEMORY_HISTORY_RUNS} runs of the case")


def judge(base: int, cand: int, effect: float = EFFECT, floor_mib: float = FLOOR_MIB) -> str:
    """Regression when the peak grew by more than `effect` and by more than `floor_mib`; improvement
    when it shrank by as much (the baseline's peak over the candidate's beyond 1 + effect); else
    unchanged."""
    floor = floor_mib * MIB
    if cand > base * (1 + effect) and cand - base > floor:
        return REGRESSION
    if base > cand * (1 + effect) and base - cand > floor:
        return IMPROVEMENT
    return UNCHANGED


@dataclass(frozen=True)
class MemoryVerdict:
    name: str
    device: str
    base: int | None        # peak bytes in the baseline run; None where not measured
    cand: int | None
    effect: float
    floor_mib: float
    why_not_gated: str | None = None  # the figure is shown but cannot fail the gate, and why
    bound: int | None = None          # judged against this instead of `base`: the history's highest

    @property
    def change(self) -> str:
        """What the rule says of the figures, gated or not."""
        if self.base is None or self.cand is None:
            return NOT_MEASURED
        return judge(self.base if self.bound is None else self.bound, self.cand, self.effect,
                     self.floor_mib)

    @property
    def verdict(self) -> str:
        return NOT_GATED if self.why_not_gated and self.change != NOT_MEASURED else self.change

    @property
    def growth(self) -> float | None:
        """Candidate peak / baseline peak; None without both figures or from a zero baseline."""
        return self.cand / self.base if self.base and self.cand is not None else None


def peak(r: Record) -> int | None:
    value = r.extra.get("peak_memory_bytes")
    return int(value) if isinstance(value, int | float) and value >= 0 else None


def compare(base: list[Record], cand: list[Record], effect: float = EFFECT,
            floor_mib: float = FLOOR_MIB, gate_cpu: bool = False,
            past: list[list[Record]] = ()) -> list[MemoryVerdict]:
    """One MemoryVerdict per case in both runs (matched by Record.key), in the order of the keys.
    `past`: the history's runs; a CUDA case is gated against its earlier peaks there (those not
    marked regressed) once they are enough, else shown only."""
    by_base, by_cand = {r.key: r for r in base}, {r.key: r for r in cand}
    across = {r.fingerprint for r in base} != {r.fingerprint for r in cand}
    out = []
    for key in sorted(by_base.keys() & by_cand.keys()):
        b, c = by_base[key], by_cand[key]
        device = str(c.params.get("device", "cpu"))  # the measure fixture's default
        floor, bound, why = floor_mib, None, None
        if device.startswith("cuda"):
            floor = max(floor_mib, config.MEMORY_FLOOR_MIB_CUDA)
            seen = [p for run in past for r in run if r.key == key and not r.regressed
                    and r.fingerprint == c.fingerprint and (p := peak(r)) is not None]
            bound = max(seen) if len(seen) >= config.MEMORY_HISTORY_RUNS else None
            why = CUDA_SPREAD if bound is None else None
        elif device == "cpu" and not gate_cpu:
            why = CPU_SPREAD
        why = "runs of different machine classes" if across else why
        out.append(MemoryVerdict(c.name, device, peak(b), peak(c), effect, floor, why, bound))
    return out


def counts(verdicts: list[MemoryVerdict]) -> dict[str, int]:
    return count_verdicts(verdicts, VERDICTS)


def _mib(x: int | None) -> str:
    return "-" if x is None else f"{x / MIB:.1f} MiB"


def _growth(v: MemoryVerdict) -> str:
    return (f"{(v.cand - v.base) / MIB:+.1f} MiB"
            + (f" (x{v.growth:.3f})" if v.growth is not None else ""))


def render(verdicts: list[MemoryVerdict], markdown: bool = False) -> str:
    """The table of the given cases: both peaks, the growth and the verdict."""
    rows = [[v.name, _mib(v.base), _mib(v.cand), _growth(v) if v.change != NOT_MEASURED else "-",
             v.verdict] for v in verdicts]
    return table.render(["case", "baseline peak", "candidate peak", "growth", "memory verdict"],
                        rows, markdown)


def describe(verdicts: list[MemoryVerdict], markdown: bool = False) -> str:
    """What compare prints: the cases whose peak moved beyond the rule (judged or not) and a count
    per verdict; one line when none did."""
    if not verdicts:
        return "memory: no case to compare"
    n = counts(verdicts)
    tally = ", ".join(f"{n[k]} {k}" for k in VERDICTS if n[k])
    rule = f"by more than {verdicts[0].effect * 100:g}% and {verdicts[0].floor_mib:g} MiB"
    moved = [v for v in verdicts if v.change in (REGRESSION, IMPROVEMENT)]
    if not moved:
        return f"memory: no case's peak moved {rule} ({tally})"
    reasons = dict.fromkeys(v.why_not_gated for v in moved if v.verdict == NOT_GATED)
    gap = [""] if markdown else []  # a markdown table needs blank lines around it
    return "\n".join([*gap, render(moved, markdown), *gap,
                      f"memory: {tally} (a peak that grew {rule} is a regression)",
                      *(f"not gated: {why}" for why in reasons)])
