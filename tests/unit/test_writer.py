"""BoltWriter against the real bbolt (support/oracle.py) plus layout and streaming checks."""

from __future__ import annotations

import io
import mmap
import os
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix import structs as S
from boltfix.leaves import Record
from boltfix.reader import DB
from boltfix.walk import Walker
from boltfix.writer import BoltWriter
from support import oracle

# ------------------------------------------------------------------ helpers
# A dataset is a list of top-level buckets; a bucket is
# ("bucket", name, sequence, [entries]) and a record is ("kv", key, value).
# Entries are given in any order and sorted when written.


def _sorted(entries):
    return sorted(entries, key=lambda e: e[1])


def write_tree(w: BoltWriter, entries) -> None:
    for e in _sorted(entries):
        if e[0] == "kv":
            w.put(e[1], e[2])
        else:
            w.begin_bucket(e[1], e[2])
            write_tree(w, e[3])
            w.end_bucket()


def expected_dump(entries, path=()) -> list:
    """What oracle_dump returns for a dataset: depth-first, key order."""
    out = []
    for e in _sorted(entries):
        if e[0] == "kv":
            out.append({"path": list(path), "key": e[1], "value": e[2], "type": "kv"})
        else:
            out.append(
                {"path": list(path), "key": e[1], "value": None, "type": "bucket", "sequence": e[2]}
            )
            out.extend(expected_dump(e[3], path + (e[1],)))
    return out


def write_file(path, entries, page_size=4096, **kw):
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size, **kw)
        write_tree(w, entries)
        return w.close()


def walk_raw(path):
    """Walk the file's tree with structs only, asserting bbolt's exact layout.

    Checks: both metas (txid T / T-1, checksums, ids), every page header's id
    equals its page id, elements packed first and data packed after them in
    order, pgid of every child < its parent (pages written as they complete),
    every page below the high-water mark used exactly once, file size.
    Returns {bucket path tuple: root pgid (0 = inline)} and the meta dict.
    """
    data = open(path, "rb").read()
    metas = [S.meta_page.parse(data[i * 4096 : i * 4096 + 80]) for i in (0,)]
    ps = metas[0].meta.pageSize
    metas = [S.meta_page.parse(data[i * ps : i * ps + 80]) for i in (0, 1)]
    for i, m in enumerate(metas):
        assert m.header.id == i and m.header.flags == S.META_PAGE_FLAG
        assert m.meta.magic == S.MAGIC and m.meta.version == 2 and m.meta.flags == 0
        raw = data[i * ps + 16 : i * ps + 16 + S.META_CHECKSUM_SPAN]
        assert m.meta.checksum == S.fnv64a(raw)
    m0, m1 = metas[0].meta, metas[1].meta
    assert m1.txid == m0.txid - 1
    assert (m0.root.root, m0.pgid, m0.freelist) == (m1.root.root, m1.pgid, m1.freelist)
    hwm = m0.pgid
    assert len(data) == hwm * ps
    used = {0: 1, 1: 1}
    if m0.freelist != S.PGID_NO_FREELIST:
        pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(data, m0.freelist * ps)
        assert (pid, flags, count, overflow) == (m0.freelist, S.FREELIST_PAGE_FLAG, 0, 0)
        used[m0.freelist] = 1
    roots = {}

    def leaf_items(buf, base, n):
        off = base + 16 + 16 * n
        for i in range(n):
            e = base + 16 + 16 * i
            flags, pos, ks, vs = S.LEAF_ELEMENT.unpack_from(buf, e)
            assert e + pos == off, "leaf data not packed in element order"
            yield flags, bytes(buf[off : off + ks]), bytes(buf[off + ks : off + ks + vs])
            off += ks + vs

    root_pgids = set()

    def visit_bucket(bpath, root, parent_pgid):
        roots[bpath] = root
        root_pgids.add(root)
        for flags, key, value in walk_page(root, parent_pgid):
            if flags & S.BUCKET_LEAF_FLAG:
                visit_value(bpath + (key,), value, root)

    def visit_value(bpath, value, parent_pgid):
        broot, _seq = S.BUCKET_HEADER.unpack_from(value, 0)
        if broot == 0:
            roots[bpath] = 0
            pid, pflags, n, overflow = S.PAGE_HEADER.unpack_from(value, 16)
            assert (pid, pflags, overflow) == (0, S.LEAF_PAGE_FLAG, 0)
            items = list(leaf_items(value, 16, n))
            end = 16 + 16 + 16 * n + sum(len(k) + len(v) for _, k, v in items)
            assert end == len(value)
            assert not any(f & S.BUCKET_LEAF_FLAG for f, _, _ in items)
            assert len(value) - 16 <= ps // 4
        else:
            visit_bucket(bpath, broot, parent_pgid)

    def walk_page(pgid, parent_pgid):
        assert 2 <= pgid < hwm
        assert pgid < parent_pgid, "child page written after its parent"
        base = pgid * ps
        pid, flags, n, overflow = S.PAGE_HEADER.unpack_from(data, base)
        assert pid == pgid
        for p in range(pgid, pgid + overflow + 1):
            assert p not in used, f"page {p} used twice"
            used[p] = 1
        if flags == S.LEAF_PAGE_FLAG:
            items = list(leaf_items(data, base, n))
            size = 16 + 16 * n + sum(len(k) + len(v) for _, k, v in items)
            assert (size + ps - 1) // ps == overflow + 1
            yield from items
        else:
            # a bucket's root branch has >= 2 children; the last page of a
            # lower level may hold one
            assert flags == S.BRANCH_PAGE_FLAG and n >= (2 if pgid in root_pgids else 1)
            off = base + 16 + 16 * n
            for i in range(n):
                e = base + 16 + 16 * i
                pos, ks, child = S.BRANCH_ELEMENT.unpack_from(data, e)
                assert e + pos == off
                bkey = data[off : off + ks]
                off += ks
                first = True
                for item in walk_page(child, pgid):
                    if first:
                        assert item[1] == bkey, "branch key is not the child's first key"
                        first = False
                    yield item
            assert (off - base + ps - 1) // ps == overflow + 1

    visit_bucket((), m0.root.root, hwm)
    assert sorted(used) == list(range(hwm)), "unreachable pages"
    return roots, m0


def assert_oracle_roundtrip(path, entries):
    res = oracle.oracle_check(path)
    assert res.ok, (res.status, res.messages[:10], res.stderr[-2000:])
    assert oracle.oracle_dump(path) == expected_dump(entries)


def rbytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def kvs(n, klen=16, vlen=8, seed=0, prefix=b""):
    """n sorted records with distinct keys of length klen (>= 4)."""
    rnd = random.Random(seed)
    return [
        ("kv", prefix + i.to_bytes(4, "big") + b"k" * (klen - 4), rnd.randbytes(vlen))
        for i in range(n)
    ]


# ---------------------------------------------------------- known examples
@pytest.mark.parametrize("freelist", ["none", "synced"])
def test_empty_database(tmp_path, freelist):
    p = tmp_path / "empty.db"
    stats = write_file(p, [], freelist=freelist, txid=0)
    assert stats.pgid == (4 if freelist == "synced" else 3)
    assert stats.keys == stats.buckets == 0 and stats.leaf_pages == 1
    roots, m = walk_raw(p)
    assert m.txid == 1 and m.freelist == (2 if freelist == "synced" else S.PGID_NO_FREELIST)
    assert os.path.getsize(p) == stats.pgid * 4096
    assert_oracle_roundtrip(p, [])


def test_metas_like_writeto(tmp_path):
    p = tmp_path / "m.db"
    stats = write_file(
        p, [("bucket", b"a", 5, [])], txid=1234, root_sequence=77, freelist="synced"
    )
    _, m = walk_raw(p)
    assert (m.txid, m.root.sequence, m.pgid, m.root.root) == (1234, 77, stats.pgid, stats.root_pgid)
    assert m.pageSize == 4096 and stats.freelist_pgid == 2
    assert_oracle_roundtrip(p, [("bucket", b"a", 5, [])])


def _deep_dataset():
    """Three-plus branch levels, overflow leaves/branches, inline and empty
    buckets, nesting, binary keys, sequences."""
    huge_keys = [("kv", bytes([i]) * S.MAX_KEY_SIZE, rbytes(i, 10)) for i in range(1, 12)]
    return [
        ("bucket", b"\x00", 0, []),  # empty -> inline, 32-byte value
        ("bucket", b"big-values", 3, [("kv", b"v%03d" % i, rbytes(i, i * 997)) for i in range(40)]),
        ("bucket", b"deep", 2**64 - 1, kvs(3000, klen=700, vlen=5, seed=1)),  # 4+ levels
        ("bucket", b"huge-keys", 1, huge_keys),  # overflow branch pages
        ("bucket", b"many", 0, kvs(25000, seed=2)),  # 3 levels of small keys
        (
            "bucket",
            b"nest\xff",
            9,
            [
                ("kv", b"\x00", b""),
                ("bucket", b"\x01inline", 4, kvs(5, seed=3)),
                ("bucket", b"\x02paged", 5, kvs(400, seed=4)),
                ("bucket", b"\x03parent", 6, [("bucket", b"x", 7, [("bucket", b"y", 8, [])])]),
                ("kv", b"\xff\xff", b"last"),
            ],
        ),
    ]


@pytest.mark.parametrize("page_size", [4096, 16384])
@pytest.mark.parametrize("freelist", ["none", "synced"])
def test_deep_dataset(tmp_path, page_size, freelist):
    entries = _deep_dataset()
    p = tmp_path / "deep.db"
    stats = write_file(p, entries, page_size, freelist=freelist, txid=42)
    roots, _ = walk_raw(p)
    assert stats.keys == 3000 + 40 + 11 + 25000 + 2 + 5 + 400
    assert stats.buckets == 11
    assert roots[(b"\x00",)] == 0 and roots[(b"nest\xff", b"\x01inline")] == 0
    assert roots[(b"nest\xff", b"\x03parent", b"x", b"y")] == 0
    assert roots[(b"nest\xff", b"\x03parent")] != 0  # has a sub-bucket
    assert stats.overflow_pages > 0 and stats.branch_pages > 0
    assert_oracle_roundtrip(p, entries)
    # The depth bbolt itself reports (max branch levels + leaf)
    deep = oracle.info(p)["buckets"][b"deep"]["stats"]
    assert deep["Depth"] >= (4 if page_size == 4096 else 3)
    assert deep["KeyN"] == 3000


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_inline_threshold_matches_bbolt(tmp_path, extra):
    """page header + element + key + value == page_size/4 is inline; one byte
    more is not -- and real bbolt (via Compact) makes the same decision."""
    ps = 4096
    vlen = ps // 4 - 16 - 16 - 3 + extra
    entries = [
        ("bucket", b"b", 0, [("bucket", b"sub", 1, [("kv", b"abc", b"v" * vlen)])]),
        ("bucket", b"c", 0, [("kv", b"k%04d" % i, b"x" * 20) for i in range(20 + extra)]),
    ]
    p = tmp_path / "w.db"
    stats = write_file(p, entries, ps)
    roots, _ = walk_raw(p)
    assert (roots[(b"b", b"sub")] == 0) == (extra <= 0)
    assert_oracle_roundtrip(p, entries)
    compacted = oracle.compact(p, tmp_path / "c.db")
    ours, theirs = oracle.info(p)["buckets"], oracle.info(compacted)["buckets"]
    for name in (b"b", b"c"):
        for field in ("InlineBucketN", "KeyN", "BucketN"):
            assert ours[name]["stats"][field] == theirs[name]["stats"][field], (name, field)
    assert stats.inline_buckets == ours[b"b"]["stats"]["InlineBucketN"] + ours[b"c"]["stats"]["InlineBucketN"]


# -------------------------------------------------------------- hypothesis
_key = st.one_of(
    st.binary(min_size=1, max_size=12),
    st.builds(lambda n, s: bytes([s % 256]) + rbytes(s, n - 1), st.integers(1, S.MAX_KEY_SIZE), st.integers(0, 2**16)),
)
_value = st.one_of(
    st.binary(max_size=40),
    st.builds(rbytes, st.integers(0, 2**16), st.integers(0, 40000)),
)


@st.composite
def _bucket(draw, depth=0):
    entries = {}
    for _ in range(draw(st.integers(0, 8))):
        entries[draw(_key)] = ("kv", draw(_value))
    if draw(st.integers(0, 5)) == 0:  # a run of many keys: branch levels
        n = draw(st.integers(100, 3000))
        klen = draw(st.sampled_from([4, 30, 300, 2000]))
        pre = draw(st.binary(max_size=3))
        for e in kvs(n, klen=klen, vlen=draw(st.integers(0, 30)), seed=n, prefix=pre):
            entries[e[1]] = ("kv", e[2])
    if depth < 3:
        for _ in range(draw(st.integers(0, 3 if depth else 4))):
            entries[draw(_key)] = ("bucket", draw(st.integers(0, 2**64 - 1)), draw(_bucket(depth + 1)))
    return [
        ("kv", k, v[1]) if v[0] == "kv" else ("bucket", k, v[1], v[2]) for k, v in entries.items()
    ]


@st.composite
def _dataset(draw):
    top = {}
    for _ in range(draw(st.integers(0, 4))):
        top[draw(_key)] = (draw(st.integers(0, 2**64 - 1)), draw(_bucket(1)))
    return [("bucket", k, seq, body) for k, (seq, body) in top.items()]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    entries=_dataset(),
    page_size=st.sampled_from([4096, 16384]),
    freelist=st.sampled_from(["none", "synced"]),
    txid=st.integers(0, 2**64 - 1),
    root_sequence=st.integers(0, 2**64 - 1),
)
def test_random_trees_match_bbolt(tmp_path_factory, entries, page_size, freelist, txid, root_sequence):
    p = tmp_path_factory.mktemp("hyp") / "h.db"
    write_file(p, entries, page_size, freelist=freelist, txid=txid, root_sequence=root_sequence)
    walk_raw(p)
    assert_oracle_roundtrip(p, entries)


@settings(max_examples=60, deadline=None)
@given(entries=_dataset(), page_size=st.sampled_from([512, 4096, 16384, 65536]))
def test_random_trees_layout(entries, page_size, tmp_path_factory):
    """No oracle: the structural walk alone, over more examples and page sizes."""
    p = tmp_path_factory.mktemp("lay") / "l.db"
    stats = write_file(p, entries, page_size)
    roots, m = walk_raw(p)
    assert m.pgid == stats.pgid and m.root.root == stats.root_pgid
    assert stats.inline_buckets == sum(1 for r in roots.values() if r == 0)


# ------------------------------------------------------------ ValueErrors
def _writer():
    return BoltWriter(io.BytesIO())


def test_rejects_put_at_top_level():
    w = _writer()
    with pytest.raises(ValueError, match="top level"):
        w.put(b"k", b"v")


@pytest.mark.parametrize("key", [b"", b"x" * (S.MAX_KEY_SIZE + 1)])
def test_rejects_bad_keys(key):
    w = _writer()
    w.begin_bucket(b"b")
    with pytest.raises(ValueError):
        w.put(key, b"v")
    with pytest.raises(ValueError):
        w.begin_bucket(key)
    w.put(b"x" * S.MAX_KEY_SIZE, b"ok")  # the maximum itself is fine


def test_rejects_unordered_keys():
    w = _writer()
    w.begin_bucket(b"b")
    w.put(b"b", b"1")
    for bad in (b"b", b"a", b"", b"\x00"):
        with pytest.raises(ValueError):
            w.put(bad, b"2")
    w.begin_bucket(b"c")  # bucket names share the parent's key order
    w.end_bucket()
    with pytest.raises(ValueError, match="strictly increasing"):
        w.put(b"c", b"dup of the bucket name")
    with pytest.raises(ValueError):
        w.begin_bucket(b"bz")
    w.put(b"d", b"fine")
    w.end_bucket()
    with pytest.raises(ValueError):
        w.begin_bucket(b"b")  # top-level order too
    w.begin_bucket(b"c")
    w.end_bucket()


def test_rejects_too_large_value():
    w = _writer()
    w.begin_bucket(b"b")
    big = mmap.mmap(-1, S.MAX_VALUE_SIZE + 1)  # address space only, never touched
    try:
        with pytest.raises(ValueError, match="at most"):
            w.put(b"k", memoryview(big))
    finally:
        big.close()
    w.put(b"k", b"v")  # state unchanged by the failed put


def test_rejects_misuse():
    with pytest.raises(ValueError):
        BoltWriter(io.BytesIO(), 1000)
    with pytest.raises(ValueError):
        BoltWriter(io.BytesIO(), freelist="sometimes")
    w = _writer()
    with pytest.raises(ValueError):
        w.end_bucket()
    with pytest.raises(TypeError):
        w.begin_bucket("str")
    stats = w.close()
    assert w.close() is stats
    with pytest.raises(ValueError):
        w.begin_bucket(b"late")


def test_close_ends_open_buckets(tmp_path):
    p = tmp_path / "open.db"
    with open(p, "wb") as f:
        w = BoltWriter(f)
        w.begin_bucket(b"a")
        w.begin_bucket(b"b")
        w.put(b"k", b"v")
        w.close()
    entries = [("bucket", b"a", 0, [("bucket", b"b", 0, [("kv", b"k", b"v")])])]
    walk_raw(p)
    assert_oracle_roundtrip(p, entries)


# ------------------------------------------------------ streaming behaviour
class _Recorder(io.RawIOBase):
    """A seekable sink that records every write and drops the data."""

    def __init__(self):
        self.pos = 0
        self.size = 0
        self.writes = []

    def writable(self):
        return True

    def seekable(self):
        return True

    def write(self, b):
        n = memoryview(b).nbytes
        self.writes.append((self.pos, n))
        self.pos += n
        self.size = max(self.size, self.pos)
        return n

    def seek(self, off, whence=0):
        self.pos = off if whence == 0 else (self.pos + off if whence == 1 else self.size + off)
        return self.pos

    def tell(self):
        return self.pos

    def truncate(self, size=None):
        self.size = self.pos if size is None else size
        return self.size


def _stream(n, vlen=100):
    val = b"v" * vlen
    for i in range(n):
        yield b"%012d" % i, val


def _write_stream(sink, n, chunk_size):
    w = BoltWriter(sink, chunk_size=chunk_size)
    w.begin_bucket(b"key")
    for k, v in _stream(n):
        w.put(k, v)
    w.begin_bucket(b"sub")  # a nested level open while the parent streams
    for k, v in _stream(n // 10):
        w.put(k, v)
    w.end_bucket()
    w.end_bucket()
    return w.close()


def test_output_is_sequential():
    sink = _Recorder()
    stats = _write_stream(sink, 50_000, chunk_size=1 << 20)
    ps = 4096
    *body, meta0, meta1 = sink.writes
    # pages are written front to back with no gaps, in large chunks ...
    pos = 0
    for off, n in body:
        assert off == pos
        pos += n
    assert pos == stats.pgid * ps == sink.size
    assert all(n >= 1 << 20 for _, n in body[:-1])
    # ... and only the two metas are written by seeking back
    assert (meta0, meta1) == ((0, ps), (ps, ps))


def _peak(n):
    sink = _Recorder()
    tracemalloc.start()
    try:
        _write_stream(sink, n, chunk_size=1 << 20)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_input():
    small = _peak(20_000)  # ~3 MB of pages
    big = _peak(200_000)  # ~30 MB of pages
    assert big < 4 << 20, big
    assert big < small + (256 << 10), (small, big)


# ---------------------------------------------------------------- batches (put_many, put_inline_buckets)
# BoltWriter.put_many and Walker.walk_batches: the batch forms of put and
# walk must give exactly what the one-at-a-time forms give.


def _write(entries, page_size, batched, rnd):
    """Write a dataset; with ``batched``, runs of records go through put_many
    in random chunk sizes (some empty, some spanning many pages)."""
    f = io.BytesIO()
    w = BoltWriter(f, page_size)

    def tree(entries):
        run = []
        for e in _sorted(entries) + [None]:
            if e is not None and e[0] == "kv":
                run.append(e)
                continue
            while run:
                n = rnd.choice([0, 1, 2, 3, 7, 50, 1000])
                chunk, run = run[:n], run[n:]
                if batched:
                    w.put_many([c[1] for c in chunk], [memoryview(c[2]) for c in chunk])
                else:
                    for c in chunk:
                        w.put(c[1], c[2])
            if e is not None:
                w.begin_bucket(e[1], e[2])
                tree(e[3])
                w.end_bucket()

    tree(entries)
    stats = w.close()
    return f.getvalue(), stats


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=_dataset(), page_size=st.sampled_from([512, 4096, 16384]),
       seed=st.integers(0, 1000))
def test_put_many_writes_the_same_file_as_put(entries, page_size, seed):
    one, s1 = _write(entries, page_size, False, random.Random(seed))
    many, s2 = _write(entries, page_size, True, random.Random(seed))
    assert one == many and s1 == s2


@pytest.mark.parametrize("vlen", [0, 100, 1000, 3000, 5000, 70000])
def test_put_many_page_boundaries_and_overflow(vlen):
    keys = [i.to_bytes(4, "big") for i in range(300)]
    vals = [bytes([i % 251]) * (vlen + i % 7) for i in range(300)]
    for page_size in (512, 4096):
        a, b = io.BytesIO(), io.BytesIO()
        wa, wb = BoltWriter(a, page_size), BoltWriter(b, page_size)
        for w in (wa, wb):
            w.begin_bucket(b"b")
        for k, v in zip(keys, vals):
            wa.put(k, v)
        wb.put_many(keys[:1], vals[:1])
        wb.put_many(keys[1:], vals[1:])
        assert wa.close() == wb.close()
        assert a.getvalue() == b.getvalue()


def test_put_many_errors_name_the_record_and_keep_the_ones_before():
    w = BoltWriter(io.BytesIO())
    w.begin_bucket(b"b")
    w.put(b"b", b"0")
    with pytest.raises(ValueError, match="not greater"):
        w.put_many([b"c", b"d", b"d"], [b"1", b"2", b"3"])
    w.put(b"e", b"4")  # c and d went in; the duplicate did not
    with pytest.raises(ValueError, match="not greater"):
        w.put_many([b"a"], [b"x"])
    with pytest.raises(ValueError, match="empty"):
        w.put_many([b"f", b""], [b"1", b"2"])
    with pytest.raises(TypeError):
        w.put_many([b"g"], ["text"])
    with pytest.raises(ValueError, match="values"):
        w.put_many([b"h", b"i"], [b"1"])
    w.end_bucket()
    with pytest.raises(ValueError, match="top level"):
        w.put_many([b"z"], [b"1"])
    w.close()


def test_put_many_copies_mutable_values():
    f = io.BytesIO()
    w = BoltWriter(f)
    w.begin_bucket(b"b")
    buf = bytearray(b"before")
    w.put_many([b"k"], [memoryview(buf)])
    buf[:] = b"after!"
    w.end_bucket()
    w.close()
    assert b"before" in f.getvalue() and b"after!" not in f.getvalue()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=_dataset(), page_size=st.sampled_from([512, 4096]))
def test_walk_batches_is_walk_grouped(entries, page_size, tmp_path_factory):
    p = tmp_path_factory.mktemp("wb") / "w.db"
    write_file(p, entries, page_size)
    with DB(p) as db:
        want = [(b.path, r.key, bytes(r.value), r.flags, r.page, r.index)
                for b, r in Walker(db).walk()]
        got = []
        for b, batch in Walker(db).walk_batches():
            assert len(batch.keys) == len(batch.values) == len(batch.flags) == len(batch.indexes) > 0
            if batch.bucket_entry is not None:
                r = batch.bucket_entry
                assert isinstance(r, Record) and len(batch.keys) == 1 and r.is_bucket
                got.append((b.path, r.key, bytes(r.value), r.flags, r.page, r.index))
                continue
            assert not any(f & 1 for f in batch.flags)
            for k, v, fl, i in zip(batch.keys, batch.values, batch.flags, batch.indexes):
                got.append((b.path, k, bytes(v), fl, batch.page, i))
    assert got == want
