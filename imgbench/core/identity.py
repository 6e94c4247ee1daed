"""What a case is, wherever one is named: its test (the test function without `test_`), its family
(the bench file, benches/bench_<family>.py, as config.FAMILIES names them) and its key. Two cases
are the same case when their tests and every param match, not their test ids, which change with the
folder pytest ran from and with how an id is worded."""

from __future__ import annotations

import re
from pathlib import PurePath

# a device among a test id's params: 'cuda', 'cuda:1' or 'mps' between dashes
_ACCELERATOR = re.compile(r"(?:^|-)(?:cuda(?::\d+)?|mps)(?:-|$)")


def test_of(name: str) -> str:
    """'test_train_step[kerascnn-cpu-bs32]' (or the function's name alone) -> 'train_step'."""
    return name.split("[", 1)[0].removeprefix("test_")


def family_of(nodeid: str) -> str:
    """'benches/bench_dataloader.py::test_loader[...]' -> 'dataloader'; '' where no bench file is
    named."""
    file = PurePath(nodeid.split("::", 1)[0]).name
    return (file[len("bench_"):-len(".py")] if file.startswith("bench_") and file.endswith(".py")
            else "")


def case_key(name: str, params: dict | None) -> tuple:
    """The case's identity: its test and every param, each param's value as text (as JSON stores
    it)."""
    return test_of(name), tuple(sorted((k, str(v)) for k, v in (params or {}).items()))


def on_accelerator(name: str) -> bool:
    """Whether a test id's params name an accelerator: 'test_conv[cuda-bs32-...]' yes,
    'test_forward[kerascnn-cpu-bs32]' no."""
    inside = name.partition("[")[2].removesuffix("]")
    return bool(_ACCELERATOR.search(inside))
