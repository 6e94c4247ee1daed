"""The one table renderer: aligned plain text for a terminal, or a markdown table for a CI job
summary."""

from __future__ import annotations


def render(head: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def seconds(t: float) -> str:
    """A time in the unit that keeps three significant decimals readable: 1.234 s, 5.678 ms, 12.000
    us."""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3f} {unit}"
    return f"{t / 1e-9:.0f} ns"
