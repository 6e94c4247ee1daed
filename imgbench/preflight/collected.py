"""A pytest plugin for .ci/gpu-check only (`-p imgbench.preflight.collected`): at the end of
collection it writes the node ids of the cases the process will run, one a line, to the file that
GPU_CHECK_COLLECTED names (whole or not at all), so that the summary of a step cut at its limit can
name the cases it did not reach (those collected minus those its junit XML recorded)."""

from __future__ import annotations

import os
from pathlib import Path

from imgbench.core import atomic

ENV = "GPU_CHECK_COLLECTED"


def pytest_collection_finish(session) -> None:
    if not (path := os.environ.get(ENV)):
        return
    with atomic.written(Path(path)) as tmp:
        tmp.write_text("".join(f"{item.nodeid}\n" for item in session.items), encoding="utf-8")
