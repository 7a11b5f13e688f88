"""The documentation (README.md and docs/*.md, read together) says what the
code does, and holds together.

* Every finding code the code can emit (the registry, boltfix.findings) is
  in the table of codes (docs/findings.md; repair's own codes in the repair
  page), and every anchor the registry names is a heading of the docs.
* The dump-format section lists the JSONL keys in the order the code writes
  them (boltfix.record.FIELDS), and its encodings and states; and a real
  dump's lines follow that order.
* The README names the real commands and keeps its two one-command blocks.
* Every docs/ page is linked from README.md or docs/README.md, and every
  relative link (and its #anchor) resolves.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from boltfix import findings, record, text
from boltfix.cli import main as cli_main
from boltfix.dump import DumpOptions, dump
from boltfix.findings import REPAIR_LOSS as REPAIR_LOSS_CODES
from boltfix.findings import WALK_LOSS as WALK_LOSS_CODES
from boltfix.reader import DB
from support import damage

README_PATH = damage.REPO / "README.md"
DOCS_DIR = damage.REPO / "docs"
DOC_PATHS = [README_PATH] + sorted(DOCS_DIR.glob("*.md"))
DOCS = {path: path.read_text() for path in DOC_PATHS}
README = DOCS[README_PATH]
#: the union: every check below reads README.md and docs/*.md together
ALL = "\n\n".join(DOCS.values())

_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _headings(doc: str):
    """(level, title, start, end of line) of every heading outside code blocks."""
    fenced = [m.span() for m in _FENCE.finditer(doc)]
    for m in _HEADING.finditer(doc):
        if not any(a <= m.start() < b for a, b in fenced):
            yield len(m.group(1)), m.group(2), m.start(), m.end()


def _slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _section(title: str) -> str:
    """The section under the heading ``title`` (any level) in README.md or a
    docs/ page: up to the next heading of the same or a higher level."""
    for doc in DOCS.values():
        heads = list(_headings(doc))
        for i, (level, name, start, _end) in enumerate(heads):
            if name == title:
                nxt = next((s for lv, _n, s, _e in heads[i + 1:] if lv <= level), len(doc))
                return doc[start:nxt]
    raise AssertionError(f"no heading {title!r} in README.md or docs/")


def _emitted_codes() -> set:
    """Every finding code boltfix can emit: the registry (boltfix.findings;
    tests/unit/test_findings.py holds the modules to it)."""
    return set(findings.REGISTRY)


def _table_codes() -> set:
    codes = _section("The codes")
    table = codes[codes.index("| code | what |"):]
    end = table.find("\n\n")
    table = table[: end if end != -1 else len(table)]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    return set(re.findall(r"`([a-z0-9-]+)`", " ".join(first_cells)))


def test_every_finding_code_is_in_the_readme_table():
    emitted = _emitted_codes()
    assert {"page-cycle", "leaf-empty", "etcd-bad-key-value"} <= emitted  # the scan works
    repair_only = REPAIR_LOSS_CODES - WALK_LOSS_CODES
    missing = emitted - repair_only - _table_codes()
    assert not missing, f"finding codes missing from docs/findings.md's table: {sorted(missing)}"
    repair = _section("repair")
    missing = {c for c in repair_only if f"`{c}`" not in repair}
    assert not missing, f"repair's codes missing from docs/repair.md: {sorted(missing)}"


def test_readme_table_has_no_code_the_code_cannot_emit():
    extra = _table_codes() - _emitted_codes()
    assert not extra, f"docs/findings.md's table names codes nothing emits: {sorted(extra)}"


def _readme_format_block() -> str:
    sec = _section("Dump format")
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
    sec = _section("Dump format")
    for enc in text.ENCODINGS:
        assert f"`{enc}`" in sec or f"`--encoding {enc}`" in sec, enc
    usage = re.search(r"\[--encoding ([a-z0-9|]+)\]", _section("dump")).group(1)
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


def test_every_registry_anchor_is_a_heading():
    slugs = {_slug(title) for doc in DOCS.values() for _lv, title, _s, _e in _headings(doc)}
    missing = {c.anchor for c in findings.REGISTRY.values() if c.anchor[1:] not in slugs}
    assert not missing, f"finding anchors with no heading in README.md or docs/: {sorted(missing)}"


def test_readme_keeps_its_two_commands():
    assert ("```sh\npip install . && boltfix repair fixtures/etcd/etcd-13406.db --out fixed.db"
            " --force; boltfix check fixed.db\n```") in README
    assert "```sh\nbash scripts/test.sh\n```" in README
    assert (damage.REPO / "fixtures" / "etcd" / "etcd-13406.db").is_file()
    assert (damage.REPO / "scripts" / "test.sh").is_file()


def test_readme_names_every_command_and_only_real_ones():
    table = _section("Commands")
    named = set(re.findall(r"`(?:boltfix )?([a-z]+) (?:DB|DIR)\b", table))
    assert named == set(cli_main.commands), (sorted(named), sorted(cli_main.commands))
    used = set()
    for doc in DOCS.values():
        used |= set(re.findall(r"`boltfix ([a-z]+)", doc))
        for block in _FENCE.findall(doc):
            used |= set(re.findall(r"^(?:.*&& )?boltfix ([a-z]+)", block, re.M))
    assert used and not used - set(cli_main.commands), sorted(used - set(cli_main.commands))


def _links(doc: str):
    """Every relative markdown link target of ``doc`` (outside code blocks)."""
    doc = _FENCE.sub("", doc)
    for target in re.findall(r"\]\(([^)\s]+)\)", doc):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_every_docs_page_is_linked_from_an_index():
    linked = set()
    for index in (README_PATH, DOCS_DIR / "README.md"):
        linked |= {(index.parent / target.partition("#")[0]).resolve()
                   for target in _links(DOCS[index]) if target.partition("#")[0]}
    pages = {p.resolve() for p in DOCS_DIR.glob("*.md")} - {(DOCS_DIR / "README.md").resolve()}
    assert (DOCS_DIR / "README.md").resolve() in linked  # the index itself, from the README
    unlinked = sorted(p.name for p in pages - linked)
    assert not unlinked, f"docs/ pages linked from neither README.md nor docs/README.md: {unlinked}"


def test_every_relative_link_resolves():
    broken = []
    for path, doc in DOCS.items():
        for target in _links(doc):
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{path.name}: {target} (no such file)")
                continue
            if anchor and dest.suffix == ".md":
                slugs = {_slug(title) for _lv, title, _s, _e in _headings(dest.read_text())}
                if anchor not in slugs:
                    broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_link_checks_can_fail(tmp_path):
    assert _slug("repair --json") == "repair---json"
    assert _slug("etcd: what etcd will serve from a repaired db") == \
        "etcd-what-etcd-will-serve-from-a-repaired-db"
    assert _slug("Will it start in place?") == "will-it-start-in-place"
    assert list(_links("[a](x.md#b) [c](https://e) `[d](y)`\n```\n[e](z.md)\n```\n")) == \
        ["x.md#b", "y"]
    assert not Path(tmp_path / "x.md").exists()
