"""The README says what the code does.

* Every finding code the code can emit (the registry, boltfix.findings) is
  in the README's table of codes (repair's own codes in its section).
* The README's dump-format section lists the JSONL keys in the order the
  code writes them (boltfix.record.FIELDS), and its encodings and states;
  and a real dump's lines follow that order.
"""

from __future__ import annotations

import io
import json
import re

from boltfix import findings, record, text
from boltfix.dump import DumpOptions, dump
from boltfix.findings import REPAIR_LOSS as REPAIR_LOSS_CODES
from boltfix.findings import WALK_LOSS as WALK_LOSS_CODES
from boltfix.reader import DB
from support import damage

README = (damage.REPO / "README.md").read_text()


def _emitted_codes() -> set:
    """Every finding code boltfix can emit: the registry (boltfix.findings;
    tests/unit/test_findings.py holds the modules to it)."""
    return set(findings.REGISTRY)


def _section(title: str) -> str:
    start = README.index(title)
    nxt = README.find("\n## ", start + len(title))
    return README[start: nxt if nxt != -1 else len(README)]


def _table_codes() -> set:
    check = _section("## check")
    table = check[check.index("| code | what |"):]
    end = table.find("\n\n")
    table = table[: end if end != -1 else len(table)]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    return set(re.findall(r"`([a-z0-9-]+)`", " ".join(first_cells)))


def test_every_finding_code_is_in_the_readme_table():
    emitted = _emitted_codes()
    assert {"page-cycle", "leaf-empty", "etcd-bad-key-value"} <= emitted  # the scan works
    repair_only = REPAIR_LOSS_CODES - WALK_LOSS_CODES
    missing = emitted - repair_only - _table_codes()
    assert not missing, f"finding codes missing from README's check table: {sorted(missing)}"
    repair = _section("## repair")
    missing = {c for c in repair_only if f"`{c}`" not in repair}
    assert not missing, f"repair's codes missing from README's repair section: {sorted(missing)}"


def test_readme_table_has_no_code_the_code_cannot_emit():
    extra = _table_codes() - _emitted_codes()
    assert not extra, f"README's check table names codes nothing emits: {sorted(extra)}"


def _readme_format_block() -> str:
    sec = _section("### Dump format")
    return sec[sec.index("```") + 3: sec.index("```", sec.index("```") + 3)]


def test_readme_dump_format_lists_the_fields_in_code_order():
    fields = re.findall(r'^\s*\{?"([a-z_]+)":', _readme_format_block(), re.M)
    assert tuple(fields) == record.FIELDS
    # and the module that writes the lines documents the same order
    doc = record.__doc__[record.__doc__.index("JSONL record format"):]
    doc = doc[: doc.index("Encodings")]
    assert tuple(re.findall(r'^\s*\{?"([a-z_]+)":', doc, re.M)) == record.FIELDS


def test_readme_dump_format_names_the_encodings_and_states():
    block = _readme_format_block()
    states = re.search(r'"state": (.*)', block).group(1)
    assert re.findall(r'"([a-z]+)"', states) == list(record.STATES)
    sec = _section("### Dump format")
    for enc in text.ENCODINGS:
        assert f"`{enc}`" in sec or f"`--encoding {enc}`" in sec, enc
    usage = re.search(r"\[--encoding ([a-z0-9|]+)\]", README).group(1)
    assert usage.split("|") == list(text.ENCODINGS)


def _key_order_ok(line: dict) -> bool:
    keys = list(line)
    pos = [record.FIELDS.index(k) for k in keys]
    return pos == sorted(pos)


def test_dump_lines_follow_the_field_order(tmp_path):
    seen = set()
    for path, opts in [
        (damage.FIXTURES / "nested.db", dict(include=("live", "free", "orphan"))),
        (damage.FIXTURES / "freed.db", dict(include=("live", "free", "orphan"))),
        (damage.REPO / "fixtures" / "etcd" / "etcd-3.5.db",
         dict(include=("live", "free", "orphan"))),
    ]:
        out = io.BytesIO()
        with DB(path) as db:
            dump(db, DumpOptions(**opts), out)
        for raw in out.getvalue().splitlines():
            line = json.loads(raw)
            assert _key_order_ok(line), line
            assert set(line) <= set(record.FIELDS)
            seen |= set(line)
    # the fixtures exercise most of the format
    assert {"path", "key", "value", "type", "sequence", "page", "state", "etcd",
            "bucket_guess", "value_redacted"} <= seen
