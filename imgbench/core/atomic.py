"""Atomic writes: a stored file is either the old one or the whole new one, never half of either."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written(dest: str | Path) -> Iterator[Path]:
    """Yields a hidden temporary path beside `dest` to write; renamed over `dest` only when the
    block ends normally. An exception or Ctrl-C inside the block leaves `dest` as it was and no
    temporary file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
