"""Fuzz ``boltfix repair`` with mutated real fixtures.

Hypothesis mutates the bytes of committed fixtures (bit flips, page header
and element fields, zeroed and copied pages, truncation, meta fields with or
without a fixed checksum) and runs ``boltfix repair --json`` in-process.
Every run must end in one of two ways:

* exit 0 or 1 with a report, and a file that boltfix's own check finds clean
  *and* real bbolt 1.3.6 checks OK; every key/value it holds occurs, byte for
  byte, in the mutated input (nothing invented); exit 1 exactly when the
  report says something was dropped;
* exit 2 (a BoltError: nothing could be written) and no output file.

Either way the input is untouched and no temporary file is left behind.
Derandomized, so a run is reproducible; about a minute.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from boltfix import structs as S
from boltfix.check import check
from boltfix.cli import main as cli_main
from boltfix.errors import BoltError
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.walk import Walker
from support import REPO, oracle

SOURCES = {
    "nested": oracle.fixture("nested"),
    "nofreelist": oracle.fixture("nofreelist"),
    "freed": oracle.fixture("freed"),
    "page16k": oracle.fixture("page16k"),
    "etcd-3.5": REPO / "fixtures" / "etcd" / "etcd-3.5.db",
}
MAX_EXAMPLES = int(os.environ.get("BOLTFIX_FUZZ_EXAMPLES", "800"))
#: BOLTFIX_FUZZ_EXPLORE=1: a random seed per run (for hunting, not for CI)
DERANDOMIZE = not os.environ.get("BOLTFIX_FUZZ_EXPLORE")


def _geometry(data: bytes):
    """(page size, pgid) of the undamaged fixture, trusting its meta 0."""
    ps = S.U64.unpack_from(data, 16 + 8)[0] & 0xFFFFFFFF
    pgid = S.U64.unpack_from(data, 16 + 40)[0]
    return ps, pgid


FIXTURE_BYTES = {name: p.read_bytes() for name, p in SOURCES.items()}

# values that tend to matter: bounds, sentinels, off-by-ones
U64_SPECIAL = [0, 1, 2, 3, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 1 << 63]


def _interesting(draw, limit_bits: int, ps: int, pgid: int):
    mask = (1 << limit_bits) - 1
    return draw(st.one_of(
        st.sampled_from([v & mask for v in U64_SPECIAL]),
        st.sampled_from([pgid - 1, pgid, pgid + 1, ps, ps - 16, ps // 16]).map(lambda v: v & mask),
        st.integers(0, min(mask, 4 * pgid)),
        st.integers(0, mask),
    ))


@st.composite
def mutation(draw, ps: int, pgid: int, size: int):
    kind = draw(st.sampled_from(
        ["bitflip", "header", "element", "zero-page", "copy-page", "truncate", "meta",
         "bytes"]))
    pages = max(pgid, 3)
    page = draw(st.integers(0, pages - 1) | st.integers(2, min(pages, 8)))
    if kind == "bitflip":
        off = page * ps + draw(st.integers(0, 16 + 16 * 8) | st.integers(0, ps - 1))
        return ("bitflip", off, draw(st.integers(0, 7)))
    if kind == "header":
        field = draw(st.sampled_from(["id", "flags", "count", "overflow"]))
        bits = {"id": 64, "flags": 16, "count": 16, "overflow": 32}[field]
        if field == "flags":
            value = draw(st.sampled_from([0, 1, 2, 3, 4, 0x10, 0x12, 0xFFFF]))
        else:
            value = _interesting(draw, bits, ps, pgid)
        return ("header", page, field, value)
    if kind == "element":
        idx = draw(st.integers(0, 12))
        field = draw(st.integers(0, 3))  # which u32 word (branch pgid = words 2-3)
        return ("element", page, idx, field, _interesting(draw, 32, ps, pgid))
    if kind == "zero-page":
        return ("zero-page", page)
    if kind == "copy-page":
        return ("copy-page", draw(st.integers(0, pages - 1)), page)
    if kind == "truncate":
        return ("truncate", draw(st.integers(0, size - 1) | st.integers(0, pages).map(
            lambda n: n * ps)))
    if kind == "meta":
        field = draw(st.sampled_from(["magic", "version", "pageSize", "flags", "root",
                                      "freelist", "pgid", "txid", "checksum"]))
        bits = 32 if field in ("magic", "version", "pageSize", "flags") else 64
        return ("meta", draw(st.integers(0, 1)), field, _interesting(draw, bits, ps, pgid),
                draw(st.booleans()))
    # a few random bytes anywhere in a page
    off = page * ps + draw(st.integers(0, ps - 1))
    return ("bytes", off, draw(st.binary(min_size=1, max_size=16)))


def apply(data: bytearray, ps: int, m) -> bytearray:
    kind = m[0]
    if kind == "bitflip":
        _, off, bit = m
        if off < len(data):
            data[off] ^= 1 << bit
    elif kind == "header":
        _, page, field, value = m
        off = page * ps
        if off + 16 <= len(data):
            hdr = S.page.parse(bytes(data[off:off + 16]))
            hdr[field] = value
            data[off:off + 16] = S.page.build(hdr)
    elif kind == "element":
        _, page, idx, word, value = m
        off = page * ps + 16 + 16 * idx + 4 * word
        if off + 4 <= len(data):
            data[off:off + 4] = value.to_bytes(4, "little")
    elif kind == "zero-page":
        off = m[1] * ps
        data[off:off + ps] = bytes(len(data[off:off + ps]))
    elif kind == "copy-page":
        _, a, b = m
        chunk = bytes(data[a * ps:(a + 1) * ps])
        if chunk and b * ps + len(chunk) <= len(data):
            data[b * ps:b * ps + len(chunk)] = chunk
    elif kind == "truncate":
        del data[m[1]:]
    elif kind == "meta":
        _, index, field, value, fix = m
        off = index * ps + 16
        if off + S.META_SIZE <= len(data):
            meta = S.meta.parse(bytes(data[off:off + S.META_SIZE]))
            if field == "root":
                meta.root.root = value
            else:
                meta[field] = value
            raw = bytearray(S.meta.build(meta))
            if fix and field != "checksum":
                meta.checksum = S.fnv64a(raw[:S.META_CHECKSUM_SPAN])
                raw = bytearray(S.meta.build(meta))
            data[off:off + S.META_SIZE] = raw
    elif kind == "bytes":
        _, off, blob = m
        data[off:off + len(blob)] = blob[:max(0, len(data) - off)]
    return data


@st.composite
def damage_plan(draw):
    """(fixture name, mutations): small enough to print when an example fails."""
    name = draw(st.sampled_from(sorted(SOURCES)))
    original = FIXTURE_BYTES[name]
    ps, pgid = _geometry(original)
    return name, draw(st.lists(mutation(ps, pgid, len(original)), min_size=1, max_size=4))


def damaged_bytes(name, muts) -> bytes:
    original = FIXTURE_BYTES[name]
    ps, _ = _geometry(original)
    data = bytearray(original)
    for m in muts:
        data = apply(data, ps, m)
    return bytes(data)


def _kvs_all_in(out: Path, data: bytes, sample: int, rnd: random.Random) -> None:
    """Sampled output key/values occur in the input as key+value, contiguous,
    as every bbolt leaf element stores them."""
    kvs = [e for e in oracle.oracle_dump(out) if e["type"] == "kv"]
    for e in rnd.sample(kvs, min(sample, len(kvs))):
        assert e["key"] + e["value"] in data, (e["path"], e["key"][:40])


@settings(max_examples=MAX_EXAMPLES, derandomize=DERANDOMIZE, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(damage_plan())
def test_repair_ends_in_a_valid_file_or_writes_nothing(plan):
    name, muts = plan
    data = damaged_bytes(name, muts)
    with tempfile.TemporaryDirectory(prefix="boltfix-fuzz-") as d:
        d = Path(d)
        src = d / "in.db"
        src.write_bytes(data)
        out = d / "out.db"
        result = CliRunner().invoke(cli_main, ["repair", str(src), "--out", str(out), "--json"],
                                    env={"BOLTFIX_DEBUG": "1"})
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            raise AssertionError(f"{name} {muts}: repair raised {type(exc).__name__}") from exc
        assert src.read_bytes() == data, "the input changed"
        code = result.exit_code
        event(f"exit {code}")
        names = sorted(p.name for p in d.iterdir())
        if code == 2:
            assert names == ["in.db"], (muts, names)
            # the library says the same with a BoltError; a file that failed
            # verification is a bug of the writer, not a refusal
            with pytest.raises(BoltError) as info:
                repair(src, out)
            assert "did not pass boltfix's own check" not in str(info.value), (muts, info.value)
            event(f"refused: {type(info.value).__name__}")
            assert sorted(p.name for p in d.iterdir()) == ["in.db"]
            return
        assert code in (0, 1), (muts, code, result.output[-2000:])
        assert names == ["in.db", "out.db"], (muts, names)
        rep = json.loads(result.stdout)
        assert rep["verified"] is True
        assert rep["lost_data"] == (code == 1)
        assert (code == 1) == bool(rep["dropped_counts"] or rep["root_rediscovered"]
                                 or rep["meta_fallback"])
        with DB(out) as db:
            res = check(db)
            # etcd-* warnings are about content copied as is (a value that is
            # no KeyValue); the structure must be clean
            structural = {c: n for c, n in res.counts.items() if not c.startswith("etcd-")}
            assert not structural, (muts, res.counts)
            assert db.page_size == rep["page_size"]
        ores = oracle.oracle_check(out, timeout=20)
        assert ores.ok, (name, muts, ores.status, ores.messages[:3], ores.stderr[-300:])
        _kvs_all_in(out, data, 32, random.Random(len(data)))


# ---------------------------------------------------------------- salvage
# (was tests/test_salvage_fuzz.py)
# Fuzz salvage beyond the reachable tree with random structural damage.
#
# Hypothesis damages real fixtures (bbolt 1.3.6 files and etcd 3.5's db) with
# structural damage only -- page header fields, element fields, zeroed pages,
# page copies, truncation; no bit flips inside values, which nothing can
# detect -- and repairs each twice, with and without salvage.  What salvage
# adds (the records of the first output that the second lacks) must each be a
# record of one of the intact file's two trees (meta 0's and meta 1's), in the
# same bucket with the same value: salvage never invents, never moves a record
# to another bucket, never brings back an older value.  Both outputs pass the
# real bbolt check.
#
# Derandomized; BOLTFIX_SALVAGE_FUZZ_EXAMPLES sets the number of examples.
SALVAGE_EXAMPLES = int(os.environ.get("BOLTFIX_SALVAGE_FUZZ_EXAMPLES", "150"))
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


@settings(max_examples=SALVAGE_EXAMPLES, derandomize=True, deadline=None, database=None,
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
