"""The house's layering: every import of imgbench/ (module-level or inside a function) goes to a
lower layer or its own subpackage; the analysis side (core, runs, judge, show, forensics, the
command line) never imports torch; the analysis commands run without it; and no module or function
outgrows the house's limits."""

import ast
import subprocess
import sys

import pytest

from tests.helpers import CASE, GPU_CASE, ROOT, rounds, write_run

PACKAGE = ROOT / "imgbench"
# What each subpackage may import besides itself: the data flow, workloads -> timing -> runs ->
# judge -> show, with forensics driving workers of two trees. The top-level entry points (plugin,
# ddp, __main__) are doors.
LAYERS = {
    "core": set(),
    "hw": {"core"},
    "runs": {"core", "hw"},
    "workloads": {"core", "hw"},
    "bench": {"core", "hw", "runs", "workloads"},
    "judge": {"core", "hw", "runs"},
    "show": {"core", "hw", "runs", "judge"},
    "forensics": {"core", "hw", "runs", "judge"},
    "preflight": {"core", "hw", "runs", "workloads", "judge", "show"},
    "cli": {"core", "hw", "runs", "workloads", "bench", "judge", "show", "forensics", "preflight"},
}
# and hw's contention and machine_class
NO_TORCH = ("core", "runs", "judge", "show", "forensics", "cli")
# copied beside a run, loaded by module names of their own
WORKER_PLUGINS = "imgbench.forensics.workers"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imported(tree: ast.Module, known) -> set[str]:
    """Every imgbench module a module imports, anywhere in it: `from pkg import sub` is an import of
    the module pkg.sub, `from pkg.mod import name` one of pkg.mod."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imgbench"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
            out |= subs or {node.module}
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("imgbench"))
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_every_import_goes_down_the_layers():
    found = modules()
    wrong = []
    for name, tree in found.items():
        here = layer(name)
        if here is None or name.startswith(WORKER_PLUGINS):
            continue
        for target in imported(tree, found):
            there = layer(target) if target in found else None
            if there is not None and there != here and there not in LAYERS[here]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_the_module_graph_has_no_cycle():
    found = modules()
    graph = {n: {t for t in imported(tree, found) if t in found and t != n}
             for n, tree in found.items()}
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                pytest.fail(" -> ".join([*path, n, m]))
            if m not in state:
                visit(m, [*path, n])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [])


@pytest.mark.slow
def test_the_analysis_side_never_imports_torch():
    names = [n for n in modules() if layer(n) in NO_TORCH and not n.startswith(WORKER_PLUGINS)]
    names += ["imgbench.hw.contention", "imgbench.hw.machine_class"]
    code = f"import sys\nfor n in {names!r}:\n    __import__(n)\n" \
           "print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('torch', 'torchvision')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_no_module_or_function_outgrows_the_limits():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES):
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert long == []


CALL = """
import sys
from imgbench import cli
code = cli.main(sys.argv[1:])
print("exit", code)
print(*sorted(sys.modules))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    for i, when in enumerate(["2026-11-20T10:00:00", "2026-11-21T10:00:00"]):
        write_run(folder / "AMD_EPYC-2c" / f"{i + 1:04}_quick.json",
                  {CASE: rounds(0.02, seed=i), GPU_CASE: rounds(0.001, seed=i + 10)}, when=when,
                  bench="train_step")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("command", ["compare", "plot", "report"])
def test_analysis_commands_import_neither_torch_nor_torchvision(runs, tmp_path, command):
    first, second = sorted(runs.rglob("*.json"))
    args = {"compare": [str(second), str(first)],
            "plot": [str(runs), "--out", str(tmp_path / "figures")],
            "report": [str(runs), "--out", str(tmp_path / "report")]}[command]
    proc = subprocess.run([sys.executable, "-c", CALL, command, *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == "exit 0", proc.stdout + proc.stderr  # the command did its work
    modules_loaded = set(lines[-1].split())
    assert {"imgbench.judge.compare", "imgbench.show.report"} & modules_loaded
    assert not {m for m in modules_loaded if m.split(".")[0] in ("torch", "torchvision")}
