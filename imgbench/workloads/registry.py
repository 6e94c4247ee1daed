"""What the model and dataset registries share: the names they accept, and how a project's
registration is told apart from a second one. pytest imports a project's conftest.py after the
command line already did, so the same definition seen again replaces itself, while another holding
the name is refused (as torchvision's register_model refuses it: the second would silently replace
the first)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from imgbench.core.errors import UserError

NAME = re.compile(r"[a-z][a-z0-9_]*")  # a case id part and a comma-list item: no '-', ',', '['


def check_name(call: str, name, reserved: str) -> None:
    """`reserved`: the word the option uses for something else (--model all, --dataset
    synthetic)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == reserved:
        raise UserError(f"{call}: the name {name!r} must be lower-case letters, digits and '_', "
                        f"starting with a letter, and not {reserved!r} (it becomes part of case "
                        "ids and of option lists)")


def caller() -> str:
    """The file that called a register_* function (the first frame outside imgbench's package),
    resolved: the command line and pytest may reach one file by two paths (a symlinked /tmp)."""
    here = Path(__file__).resolve().parents[1]
    frame = sys._getframe(1)
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(here):
        frame = frame.f_back
    return str(Path(frame.f_code.co_filename).resolve()) if frame is not None else "<unknown>"


def place(table: dict, origins: dict[str, str], kind: str, name: str, value,
          origin: str | None) -> None:
    """Put `value` in `table` under `name`. A name already taken is refused, unless `origin` (the
    registering file; None for imgbench's own) registered it before."""
    if name in table and not (origin is not None and origins.get(name) == origin):
        raise UserError(f"{kind} {name!r} is already registered ({table[name].summary})")
    table[name] = value
    if origin is not None:
        origins[name] = origin
