"""The one table renderer: aligned plain text for a terminal, or a markdown table for a CI job
summary. Cells may hold text from run files (case names): a line break never starts a row of its own
(each becomes a space), and in markdown a '|' is escaped, so no cell can shift another into a
column it does not belong to (a regression read as "unchanged")."""

from __future__ import annotations

import re

BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines splits at


def cell(text: str, markdown: bool = False) -> str:
    """`text` as one cell: on one line, and in markdown with its '|' (and the backslash that could
    unescape one) escaped."""
    text = BREAKS.sub(" ", str(text))
    return text.replace("\\", "\\\\").replace("|", "\\|") if markdown else text


def render(head: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    head = [cell(x, markdown) for x in head]
    rows = [[cell(x, markdown) for x in r] for r in rows]
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
