"""A project of one's own (docs/own-model.md): its benches/bench_*.py are collected without it
configuring pytest's python_files (when benches/ is named on the command line), and its
conftest.py files are imported by the command line before any option is checked, so that
`imgbench run --model mine` knows the models it registers (imgbench.register_model) before pytest
starts. pytest imports the same files again when it runs; register_model takes the same
definition seen twice as one."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from fnmatch import fnmatch
from pathlib import Path

from imgbench.core.errors import UserError

BENCHES = "benches"  # the folder a project keeps its benches in (the command line's default)
_LOADED: dict[Path, object] = {}  # conftest path -> its module, imported once per process


def conftests(benches: Path) -> list[Path]:
    """The conftest.py files pytest loads first for `pytest benches`: the project's (the folder
    above benches/) and benches/' own, in that order."""
    benches = Path(benches).resolve()
    return [p for p in (benches.parent / "conftest.py", benches / "conftest.py") if p.is_file()]


def load(benches: Path) -> list[Path]:
    """Import the project's conftest.py files (conftests), each once per process, their folder
    put first on sys.path as pytest's default import mode does; the files imported. A file that
    fails to import is bad input: one line naming it, the line that raised and the error."""
    done = []
    for path in conftests(benches):
        if path not in _LOADED:
            _LOADED[path] = _import(path)
        done.append(path)
    return done


def load_here() -> list[Path]:
    """load() for the working folder, where it holds benches/bench_*.py (`imgbench list`)."""
    benches = Path.cwd() / BENCHES
    return load(benches) if any(benches.glob("bench_*.py")) else []


def _import(path: Path):
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_imgbench_project_conftest_{len(_LOADED)}"  # never pytest's own "conftest"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except UserError as e:  # register_model refused a value: its message says which
        raise UserError(f"{path}: {e}") from None
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise UserError(f"{where}: the project's conftest.py failed to import: "
                        f"{type(e).__name__}: {e} (run `python {path}` to see the traceback)"
                        ) from None
    return module


def pytest_collect_file(file_path: Path, parent):
    """Collect bench_*.py in a benches/ folder named on the command line (`pytest benches`, as the
    command line and the A/B workers run it), where python_files would not (a project that never
    set it): pytest's own collector does when the file matches or was itself named, and a plain
    `pytest` of the project's tests leaves its benches alone."""
    config = parent.config
    if (file_path.suffix != ".py" or not file_path.name.startswith("bench_")
            or parent.session.isinitpath(file_path)
            or any(fnmatch(file_path.name, p) or fnmatch(str(file_path), p)
                   for p in config.getini("python_files"))
            or not _in_named_benches(file_path, config)):
        return None
    hook = parent.session.gethookproxy(file_path)
    return hook.pytest_pycollect_makemodule(module_path=file_path, parent=parent)


def _in_named_benches(file_path: Path, config) -> bool:
    """Whether `file_path` lies in a folder given on the command line that is, or is inside, a
    benches/ folder of the run's root."""
    for arg in config.args:
        given = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if not given.is_dir() or not file_path.resolve().is_relative_to(given):
            continue
        try:
            inside = given.relative_to(config.rootpath.resolve()).parts
        except ValueError:
            inside = ()
        if BENCHES in (given.name, *inside):
            return True
    return False
