"""boltfix.layers: imports point down only, and there is no import circle.

Every module's imports are read with ``ast`` (top-level and inside
functions, ``import boltfix.x``, ``from boltfix import x``, ``from
boltfix.x import y`` and relative imports alike), so the rule holds without
importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from boltfix import layers
from support import REPO

PACKAGE = REPO / "boltfix"
#: the optional C core, loaded by boltfix.ccore only
C_MODULES = ("boltfix._speedups", "boltfix._guard")


def _modules() -> dict:
    """``boltfix.x[.y]`` -> its file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts]
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(["boltfix", *parts])] = path
    return out


MODULES = _modules()


def _top(module: str) -> str:
    """The table's name of a module: its first name under boltfix."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path):
    """(imported boltfix module, line, inside a function) of one module."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    local = {id(n) for f in funcs for n in ast.walk(f) if isinstance(n, (ast.Import,
                                                                         ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # `from boltfix import x` imports the module boltfix.x when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in (*MODULES, *C_MODULES) else base
                     for a in node.names]
        else:
            continue
        for name in names:
            if name == "boltfix" or name.startswith("boltfix."):
                yield name, node.lineno, id(node) in local


def _graph() -> dict:
    return {m: sorted({(i, line, lazy) for i, line, lazy in _imports(m, p)})
            for m, p in MODULES.items()}


GRAPH = _graph()


def test_every_module_is_in_the_layer_table():
    missing = sorted({_top(m) for m in MODULES} - set(layers.LEVEL))
    assert not missing, f"add these modules to boltfix/layers.py: {missing}"
    gone = sorted(set(layers.LEVEL) - {_top(m) for m in MODULES})
    assert not gone, f"boltfix/layers.py names modules that do not exist: {gone}"


def test_no_import_points_up():
    upward = []
    for module, imports in GRAPH.items():
        here = layers.LEVEL[_top(module)]
        for target, line, _lazy in imports:
            if target in C_MODULES:
                continue  # the C core: see test_only_ccore_loads_the_c_core
            there = layers.LEVEL[_top(target)]
            if there > here:
                upward.append(f"{module}:{line} imports {target} "
                              f"({layers.LAYERS[here][0]} -> {layers.LAYERS[there][0]})")
    assert not upward, "\n".join(upward)


def _cycle(graph: dict):
    """One import circle of ``graph`` (module -> modules), or None."""
    state: dict = {}
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(graph[start]))]
        state[start] = 1
        path = [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(graph.get(nxt, ()))))
    return None


def test_no_import_circle():
    # module level imports only: a lazy import in the CLI runs after every
    # module it names is loaded
    graph = {m: sorted({t for t, _, lazy in imports if not lazy and t in MODULES and t != m})
             for m, imports in GRAPH.items()}
    # a package's __init__ may import its own modules (its API); they must not
    # import the package back
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_one():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a"]}) is None


def test_no_function_local_import_of_boltfix_but_in_the_front():
    allowed = {i for i, (name, _) in enumerate(layers.LAYERS)
               if name in layers.LAZY_IMPORTS_ALLOWED}
    local = [f"{m}:{line} imports {t}" for m, imports in GRAPH.items()
             for t, line, lazy in imports
             if lazy and layers.LEVEL[_top(m)] not in allowed and t not in C_MODULES]
    assert not local, "\n".join(local)


def test_only_ccore_loads_the_c_core():
    loaders = sorted({m for m, imports in GRAPH.items() for t, _, _ in imports
                      if t in C_MODULES})
    assert loaders == ["boltfix.ccore"], loaders


@pytest.mark.parametrize("src, target, expected", [
    ("from boltfix import walk\n", "boltfix.x", "boltfix.walk"),
    ("from boltfix.walk import Walker\n", "boltfix.x", "boltfix.walk"),
    ("import boltfix.reader\n", "boltfix.x", "boltfix.reader"),
    ("from . import resident\n", "boltfix.x", "boltfix.resident"),
    ("from .plan import Plan\n", "boltfix.salvage.x", "boltfix.salvage.plan"),
    ("def f():\n    from boltfix import dump\n", "boltfix.x", "boltfix.dump"),
])
def test_imports_are_read_in_every_form(tmp_path, src, target, expected):
    path = tmp_path / "x.py"
    path.write_text(src)
    assert [i for i, _, _ in _imports(target, path)] == [expected]
