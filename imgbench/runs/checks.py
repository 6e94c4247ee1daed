"""What a stored case must hold before a history reader trusts it: the types the suite writes, and
figures that agree with each other as pytest-benchmark computes them (its median, min and rounds
are those of its per-round times). A file that fails is skipped with one line naming it, so that
one crafted or damaged file can neither stop a command with a traceback nor move a verdict with
numbers no run measured. No torch here."""

from __future__ import annotations

import math

import numpy as np

# extra_info figures that readers turn into numbers (the memory rule, plots, report)
NUMBERS = ("peak_memory_bytes", "images", "images_per_s", "data_stall_share", "copy_share",
           "scaling_efficiency", "comm_share")
# extra_info entries compared and hashed as they are (record.FLAGS: the numeric conditions)
SCALARS = ("threads", "cudnn_benchmark", "tf32", "flush_denormal")
# the contention record's figures (hw.contention.flag)
CONTENTION = ("seconds", "foreign_cpu")
# pytest-benchmark's figures and the ones recomputed here from the same floats agree to the last
# bits; a hand-edited median does not
REL = 1e-9


def number(value) -> bool:
    """A finite JSON number (true is none, nor is the text "1.5")."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def case(b: dict) -> str | None:
    """Why case `b` (one entry of a run's benchmarks) cannot be trusted, or None. Missing keys raise
    KeyError, a case that is not an object TypeError: the caller names them."""
    name, stats = b["name"], b["stats"]
    if not isinstance(name, str):
        return "has a name that is not text (valid: the test id)"
    for key in ("params", "extra_info"):
        if b.get(key) is not None and not isinstance(b[key], dict):
            return f"has {key} {_short(b[key])} (valid: an object)"
    if not isinstance(stats, dict):
        return f"has stats {_short(stats)} (valid: pytest-benchmark's statistics object)"
    return _stats(stats["median"], stats["min"], stats["rounds"], stats.get("data")) or _extra(
        b.get("extra_info") or {})


def _stats(median, low, rounds, data) -> str | None:
    if not number(median) or median <= 0:
        return f"has median {_short(median)} (valid: a positive time in seconds)"
    if not number(low) or not 0 < low <= median:
        return f"has min {_short(low)} with median {median!r} (valid: a positive time up to the " \
               "median)"
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        return f"has rounds {_short(rounds)} (valid: a whole number from 1)"
    if not data:  # pytest-benchmark's saved runs keep no round times unless asked to
        return None
    # at once, not a number at a time: a history of 1,000 runs holds 17 million round times
    times = np.asarray(data) if isinstance(data, list) else None
    if (times is None or times.ndim != 1 or times.dtype.kind not in "fi"
            or not np.all(np.isfinite(times)) or not np.all(times > 0)):
        return ("has round times (stats.data) that are not times in seconds (valid: positive "
                "numbers; a round of 0 s, inf or nan was not measured)")
    if len(data) != rounds:
        return (f"has {len(data)} round times for {rounds} rounds: edited, not as pytest-benchmark "
                "writes them")
    ordered, half = sorted(data), len(data) // 2  # np.median costs 40 us a call
    mid = ordered[half] if len(data) % 2 else (ordered[half - 1] + ordered[half]) / 2
    least = ordered[0]
    if not (math.isclose(mid, median, rel_tol=REL) and math.isclose(least, low, rel_tol=REL)):
        return (f"has median {median!r} and min {low!r}, its round times {mid!r} and {least!r}: "
                "edited, not as pytest-benchmark writes them")
    return None


def _extra(extra: dict) -> str | None:
    for key in NUMBERS:
        if extra.get(key) is not None and not (number(extra[key]) and extra[key] >= 0):
            return f"has extra_info {key} {_short(extra[key])} (valid: a number from 0)"
    for key in SCALARS:
        if isinstance(extra.get(key), list | dict):
            return f"has extra_info {key} {_short(extra[key])} (valid: a text, number or boolean)"
    c = extra.get("contention")
    if c is not None and not (isinstance(c, dict) and all(
            c.get(k) is None or (number(c[k]) and c[k] >= 0) for k in CONTENTION)):
        return (f"has extra_info contention {_short(c)} (valid: an object whose "
                f"{' and '.join(CONTENTION)} are numbers from 0)")
    return None


def _short(value) -> str:
    """A bad value as the message shows it: one line, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
