"""The package's own rules of style (GUIDE.md), held with ``ast``: small
functions and classes, and a docstring on every module and on every public
class, function and method."""

from __future__ import annotations

import ast

import pytest

from support import REPO

SOURCES = sorted((REPO / "boltfix").rglob("*.py"))
#: about 100 lines per function and 400 per class (GUIDE.md): a little slack
MAX_FUNCTION_LINES = 100
MAX_CLASS_LINES = 410


def _definitions():
    """(file, qualified name, node) of every function and class; a function
    defined inside a function is named ``outer.<locals>.inner`` (not public)."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        stack = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = prefix + child.name
                    yield path, name, child
                    inner = ".<locals>." if not isinstance(child, ast.ClassDef) else "."
                    stack.append((child, name + inner))


DEFINITIONS = list(_definitions())


def _lines(node) -> int:
    return node.end_lineno - node.lineno + 1


def test_functions_and_classes_are_small():
    big = [f"{p.relative_to(REPO)}:{n.lineno} {name}: {_lines(n)} lines"
           for p, name, n in DEFINITIONS
           if _lines(n) > (MAX_CLASS_LINES if isinstance(n, ast.ClassDef) else MAX_FUNCTION_LINES)]
    assert not big, "\n".join(big)


def _public(name: str) -> bool:
    return not any(part.startswith(("_", "<")) for part in name.split("."))


def test_every_public_definition_has_a_docstring():
    missing = [f"{p.relative_to(REPO)}:{n.lineno} {name}" for p, name, n in DEFINITIONS
               if _public(name) and not ast.get_docstring(n)]
    missing += [str(p.relative_to(REPO)) for p in SOURCES
                if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, "no docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("src, found", [
    ("def f():\n    pass\n", True),
    ('def f():\n    """Doc."""\n', False),
    ("def _f():\n    pass\n", False),
    ("class C:\n    def m(self):\n        pass\n", True),
])
def test_the_docstring_rule_can_fail(tmp_path, src, found):
    tree = ast.parse(src)
    names = [(n.name, n) for n in ast.walk(tree)
             if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert any(_public(name) and not ast.get_docstring(n) for name, n in names) is found


def _test_module_imports(tree: ast.AST) -> list:
    """The test modules (``test_*``) an AST imports."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[-1].startswith("test_")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            last = node.module.split(".")[-1]
            if last.startswith("test_"):
                out.append(node.module)
    return out


def test_no_test_module_imports_another():
    """Shared test code lives in tests/support (one support package): a
    test module imported by another runs its tests' module code twice and
    ties the two together."""
    found = {}
    for path in list((REPO / "tests").rglob("*.py")) + list((REPO / "benchmarks").glob("*.py")) \
            + list((REPO / "scripts").glob("*.py")):
        names = _test_module_imports(ast.parse(path.read_text()))
        if names:
            found[str(path.relative_to(REPO))] = names
    assert not found, found
    assert _test_module_imports(ast.parse("import test_crash_commits as c\n"
                                          "from test_x import y\nimport support\n")) == \
        ["test_crash_commits", "test_x"]
