"""The package's layers point one way and no modules import each other.

Layers, lowest first: data, models, pid (torch-free), metrics -> methods -> training -> audit ->
experiments -> cli. The imports are read with :mod:`ast` (nothing is executed), including those
inside functions; relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import infodistill

PACKAGE = "infodistill"
ROOT = Path(infodistill.__file__).resolve().parent

#: first name below the package -> layer (lowest first); the package's own __init__ is the lowest.
LAYERS = {
    "": 0,
    "atomic": 0,  # the atomic file write, standard library only: every layer writes files
    "imports": 0,  # import_object for factories, standard library only
    "errors": 0,  # the base class of user errors, standard library only: every layer raises them
    "data": 0,
    "models": 0,
    "pid": 0,
    "metrics": 0,
    "methods": 1,
    "training": 2,
    "audit": 3,
    "layer_map": 3,  # the audit's layer map, pairing and teacher ranking
    "experiments": 4,
    "cli": 5,
    "__main__": 5,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join([PACKAGE, *parts])] = path
    return mods


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, target: str | None) -> str:
    """Absolute name of a relative import ``from <level dots><target> import ...`` in ``module``."""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(module, node.level, node.module) if node.level else (node.module or "")
            # `from pkg import sub` imports the submodule; `from pkg import name` the package itself
            subs = [f"{src}.{alias.name}" for alias in node.names if f"{src}.{alias.name}" in MODULES]
            names = subs if len(subs) == len(node.names) else [src, *subs]
        else:
            continue
        for name in names:
            # `import a.b.c` of a module that is not one: its nearest enclosing module
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE) and name in MODULES and name != module:
                found.add(name)
    return found


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    assert top in LAYERS, f"{module} belongs to no layer: add {top!r} to LAYERS in {__file__}"
    return top or PACKAGE, LAYERS[top]


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_walk_sees_the_package():
    assert f"{PACKAGE}.pid.decompose" in MODULES and f"{PACKAGE}.cli" in MODULES
    assert GRAPH[f"{PACKAGE}.__main__"] == {f"{PACKAGE}.cli"}


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, targets in sorted(GRAPH.items()):
        (mine, lo) = _layer(module)
        for target in sorted(targets):
            (theirs, hi) = _layer(target)
            if hi > lo:
                upward.append(f"{module} ({mine}, layer {lo}) imports {target} ({theirs}, layer {hi})")
    assert not upward, "upward imports:\n  " + "\n  ".join(upward)


def _cycles() -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)

    cycles = []
    for comp in components:
        members = set(comp)
        start = comp[0]
        # shortest path start -> ... -> start inside the component (breadth first)
        prev = {start: None}
        queue = [start]
        end = None
        while queue and end is None:
            v = queue.pop(0)
            for w in sorted(GRAPH[v] & members):
                if w == start:
                    end = v
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        path = []
        while end is not None:
            path.append(end)
            end = prev[end]
        cycles.append([*reversed(path), start])
    return cycles


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)[0] == "pid"))
def test_pid_does_not_import_torch(module):
    tree = ast.parse(MODULES[module].read_text())
    names = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    assert not any(name.split(".")[0] == "torch" for name in names), f"{module} imports torch"


def _underscored_imports(module: str) -> list[str]:
    """``from X import _name`` in ``module`` where X is a package module of another top-level
    package than ``module``'s (within a package, modules share their private helpers)."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        src = _resolve(module, node.level, node.module) if node.level else (node.module or "")
        while src and src not in MODULES:
            src = src.rpartition(".")[0]
        if not src.startswith(PACKAGE) or _layer(src)[0] == _layer(module)[0]:
            continue
        found += [
            f"{module}:{node.lineno} imports {src}.{a.name}"
            for a in node.names
            if a.name.startswith("_") and not a.name.startswith("__")
        ]
    return found


def test_no_private_names_cross_packages():
    """A name with a leading underscore is its package's own: another package that needs it asks
    for a public function instead (e.g. ``training.runs.model_from_config``)."""
    found = [line for module in sorted(MODULES) for line in _underscored_imports(module)]
    assert not found, "private names imported across packages:\n  " + "\n  ".join(found)


def test_the_private_name_check_sees_one(tmp_path, monkeypatch):
    """The check above reads relative and absolute imports alike (a planted case)."""
    module = f"{PACKAGE}.experiments.common"
    fake = tmp_path / "common.py"
    fake.write_text(
        "from ..training.runs import _hidden, shown\n"
        "from infodistill.pid.decompose import _x\n"
        "from .rid import _same_package\n"
    )
    monkeypatch.setitem(MODULES, module, fake)
    found = _underscored_imports(module)
    assert found == [
        f"{module}:1 imports {PACKAGE}.training.runs._hidden",
        f"{module}:2 imports {PACKAGE}.pid.decompose._x",
    ]


def _unexplained_function_imports(module: str) -> list[str]:
    """Imports inside a function of ``module`` with no comment saying why: a comment on a line of
    the block of consecutive imports it belongs to, or on the line above that block."""
    lines = MODULES[module].read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    found = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        nodes = sorted(
            (n for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)), key=lambda n: n.lineno
        )
        first = {}  # an import's first line -> the first line of its block of consecutive imports
        for prev, node in zip([None, *nodes], nodes, strict=False):
            joined = prev is not None and prev.end_lineno + 1 == node.lineno
            first[node.lineno] = first[prev.lineno] if joined else node.lineno
        said = set()  # blocks with a comment on one of their lines
        for node in nodes:
            if any("#" in line for line in lines[node.lineno - 1 : node.end_lineno]):
                said.add(first[node.lineno])
        for node in nodes:
            start = first[node.lineno]
            above = lines[start - 2].strip() if start >= 2 else ""
            if start not in said and not above.startswith("#"):
                found.add(f"{module}:{node.lineno} ({fn.name})")
    return sorted(found)


def test_imports_inside_functions_say_why():
    """An import inside a function keeps the CLI torch-free, an optional dependency optional or a
    fast path fast, and a comment at it says which; anything else belongs at the top of the
    module. The CLI's own modules are exempt: they import the standard library alone at the top
    (tests/cli/test_cli.py), everything else in the command that needs it."""
    found = [
        line
        for module in sorted(MODULES)
        if _layer(module)[0] != "cli"
        for line in _unexplained_function_imports(module)
    ]
    assert not found, "imports inside functions without a comment saying why:\n  " + "\n  ".join(found)


def test_the_import_comment_check_sees_one(tmp_path, monkeypatch):
    """The check above, on a planted module: one unexplained import, three explained ones."""
    module = f"{PACKAGE}.experiments.common"
    fake = tmp_path / "common.py"
    fake.write_text(
        "def f():\n"
        "    import json\n"
        "\n"
        "    # only when a plot is drawn\n"
        "    import matplotlib\n"
        "    import matplotlib.pyplot as plt\n"
        "\n"
        "    import yaml  # optional\n"
    )
    monkeypatch.setitem(MODULES, module, fake)
    assert _unexplained_function_imports(module) == [f"{module}:2 (f)"]
