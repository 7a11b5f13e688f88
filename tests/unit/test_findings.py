"""boltfix.findings: one registry of codes, the groups derived from it, and
findings as data."""

from __future__ import annotations

import ast
import re

import pytest

from boltfix import findings as F
from boltfix.findings import ERROR, WARNING, Collector, Finding
from support import REPO


def test_every_constant_is_its_registered_code():
    constants = {k: v for k, v in vars(F).items()
                 if k.isupper() and isinstance(v, str) and v in F.REGISTRY}
    assert set(constants.values()) == set(F.REGISTRY)
    for name, code in constants.items():
        assert name == code.upper().replace("-", "_")


def test_registry_entries_are_well_formed():
    for code, c in F.REGISTRY.items():
        assert c.code == code and re.fullmatch(r"[a-z]+(-[a-z0-9]+)+", code)
        assert c.severity in (ERROR, WARNING) and c.loss in (None, F.WALK, F.REPAIR)
        assert c.anchor.startswith("#")
        assert not (c.broken_pointer and not c.pointer), code


def test_groups_come_from_the_registry():
    assert F.WALK_LOSS == {c for c, e in F.REGISTRY.items() if e.loss == F.WALK}
    assert F.WALK_LOSS < F.REPAIR_LOSS
    assert F.BROKEN_POINTER < F.POINTER
    assert {F.PAGE_CYCLE, F.MULTIPLE_REFERENCES, F.PAGE_OUT_OF_BOUNDS} == F.BROKEN_POINTER
    assert set(F.META_PROBLEMS) < F.NEVER_STOP
    assert F.BBOLT_EQUIVALENT["needs to be"] == F.KEY_ORDER


def test_no_finding_code_is_written_out_of_the_registry():
    """Modules name codes by their constants: a code written as a string
    anywhere but findings.py would escape the registry's groups."""
    found = []
    for path in sorted((REPO / "boltfix").rglob("*.py")):
        if path.name == "findings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in F.REGISTRY:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("code, severity, fails", [
    (F.PAGE_CYCLE, ERROR, True),
    (F.FILE_PARTIAL_PAGE, WARNING, False),  # never stops bbolt
    (F.LEAF_EMPTY, WARNING, True),  # a warning, but records are lost
    (F.META_BAD_MAGIC, ERROR, True),  # the newer meta: an error
])
def test_fails_check(code, severity, fails):
    assert F.fails_check(Finding(code, "m", severity)) is fails


def test_collector_keeps_the_first_and_counts_all():
    c = Collector(limit=2)
    for i in range(5):
        c(Finding(F.KEY_ORDER if i % 2 else F.FILE_PARTIAL_PAGE, str(i),
                  ERROR if i % 2 else WARNING))
    assert [f.message for f in c.findings] == ["0", "1"]
    assert c.total == 5 and c.truncated == 3 and c.failing == 2
    assert c.counts == {F.FILE_PARTIAL_PAGE: 3, F.KEY_ORDER: 2}


def test_finding_json_names_buckets_by_the_text_rule():
    f = Finding(F.KEY_ORDER, "m", page=4, pages=(3, 4), bucket=(b"ok", b"\xff\x00"),
                detail={"key": b"\x01", "index": 2})
    assert f.to_json() == {"code": "key-order", "severity": "error", "page": 4, "path": [3, 4],
                           "bucket": ["ok", "0xff00"], "message": "m",
                           "detail": {"key": "0x01", "index": 2}}
