"""Fuzz salvage beyond the reachable tree with random structural damage.

Hypothesis damages real fixtures (bbolt 1.3.6 files and etcd 3.5's db) with
structural damage only -- page header fields, element fields, zeroed pages,
page copies, truncation; no bit flips inside values, which nothing can
detect -- and repairs each twice, with and without salvage.  What salvage
adds (the records of the first output that the second lacks) must each be a
record of one of the intact file's two trees (meta 0's and meta 1's), in the
same bucket with the same value: salvage never invents, never moves a record
to another bucket, never brings back an older value.  Both outputs pass the
real bbolt check.

Derandomized; BOLTFIX_SALVAGE_FUZZ_EXAMPLES sets the number of examples.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_repair_fuzz import FIXTURE_BYTES, SOURCES, _geometry, apply, mutation

import oracle
from boltfix import structs as S
from boltfix.errors import BoltError
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.walk import Walker

MAX_EXAMPLES = int(os.environ.get("BOLTFIX_SALVAGE_FUZZ_EXAMPLES", "150"))
STRUCTURAL = ("header", "element", "zero-page", "copy-page", "truncate")


def records(path, meta=None) -> set:
    with DB(path, meta=meta) as db:
        return {(b.path, r.key, bytes(r.value)) for b, r in Walker(db).walk()
                if not r.is_bucket}


INTACT = {}


def intact(name) -> set:
    if name not in INTACT:
        INTACT[name] = records(SOURCES[name], 0) | records(SOURCES[name], 1)
    return INTACT[name]


def tree_pages(name):
    """(branch pages, leaf pages, root pages) of the intact fixture."""
    with DB(SOURCES[name]) as db:
        w = Walker(db)
        w.count_all()
        branches, leaves = [], []
        for n in range(2, db.page_limit):
            if w.reached[n] == 1:
                flags = db.page(n).flags
                (branches if flags == 0x01 else leaves).append(n)
        return branches, leaves, sorted({m.root for m in db.metas})


TREE = {name: tree_pages(name) for name in SOURCES}


@st.composite
def targeted(draw, name, ps, pgid):
    """Damage aimed at the tree: what salvage is for."""
    branches, leaves, roots = TREE[name]
    pool = branches or leaves
    kind = draw(st.sampled_from(["zero-branch", "zero-root", "pointer", "truncate-root",
                                 "copy-leaf"]))
    if kind == "zero-branch":
        return ("zero-page", draw(st.sampled_from(pool)))
    if kind == "zero-root":
        return ("zero-page", draw(st.sampled_from(roots)))
    if kind == "pointer":
        page = draw(st.sampled_from(pool))
        return ("element", page, draw(st.integers(0, 8)), 2,
                draw(st.sampled_from([0, 1, pgid, pgid + 5, page, 1 << 31])))
    if kind == "truncate-root":
        return ("truncate", draw(st.integers(2, max(2, min(roots)))) * ps)
    return ("copy-page", draw(st.sampled_from(leaves)), draw(st.sampled_from(leaves)))


def _structural(original: bytes, ps: int, m) -> bool:
    """An element mutation must hit an element header of a branch or leaf
    page: past the element array it would write into keys or values."""
    if m[0] != "element":
        return True
    page, idx = m[1], m[2]
    if (page + 1) * ps > len(original):
        return False
    _, flags, count, _ = S.PAGE_HEADER.unpack_from(original, page * ps)
    return flags in (0x01, 0x02) and idx < count


@st.composite
def structural_plan(draw):
    name = draw(st.sampled_from(sorted(SOURCES)))
    original = FIXTURE_BYTES[name]
    ps, pgid = _geometry(original)
    one = st.one_of(targeted(name, ps, pgid), mutation(ps, pgid, len(original)).filter(
        lambda m: m[0] in STRUCTURAL and _structural(original, ps, m)))
    return name, draw(st.lists(one, min_size=1, max_size=3))


def _repair(src, out, **kw):
    try:
        return repair(src, out, **kw)
    except BoltError:
        return None


@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example, HealthCheck.filter_too_much])
@given(structural_plan())
def test_salvage_adds_only_records_of_the_intact_trees(plan):
    name, muts = plan
    ps, _ = _geometry(FIXTURE_BYTES[name])
    data = bytearray(FIXTURE_BYTES[name])
    for m in muts:
        data = apply(data, ps, m)
    with tempfile.TemporaryDirectory(prefix="boltfix-salvage-fuzz-") as d:
        d = Path(d)
        src = d / "in.db"
        src.write_bytes(bytes(data))
        with_salvage = _repair(src, d / "a.db", lost_found=d / "lf.db")
        without = _repair(src, d / "b.db", beyond_tree=False)
        if with_salvage is None:
            event("refused")
            return
        a = records(d / "a.db")
        b = records(d / "b.db") if without is not None else set()
        added = a - b
        event(f"salvaged {'some' if added else 'none'}")
        stray = added - intact(name)
        assert not stray, (name, muts, sorted(stray)[:3])
        for out in (d / "a.db", d / "lf.db"):
            res = oracle.oracle_check(out, timeout=20)
            assert res.ok, (name, muts, out.name, res.status, res.messages[:3])
