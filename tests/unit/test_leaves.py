"""Small sub-buckets taken a run at a time (leaves.InlineRun, issue 14).

check, inspect, dump and repair take consecutive entries of small inline
sub-buckets as one item: check counts them, inspect describes or counts
them, dump writes their lines without a Bucket each, repair writes their
values as they stand.
That is only right when the value is byte for byte what the writer writes
for the bucket (leaves.canonical_inline), so every test here holds check's
result, inspect's, dump's and repair's output to the walk a sub-bucket at a time
(walk.INLINE_RUNS off), on files real bbolt wrote, on every damage kind of
the fixtures, and on crafted inline values that break one rule each.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix import ccore, leaves, walk
from boltfix import structs as S
from boltfix.check import check
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.writer import BoltWriter
from support import damage, oracle

C = ccore.speedups


# ---------------------------------------------------------------- helpers
def _check_json(path) -> dict:
    with DB(path) as db:
        return check(db).to_json()


def _repair(src, out, **kw) -> tuple:
    """(output bytes, report JSON without the paths) of one repair."""
    report = repair(str(src), str(out), force=True, **kw).to_json()
    for k in ("input", "output"):
        report.pop(k)
    if report.get("lost_found"):
        report["lost_found"].pop("path", None)
    lf = kw.get("lost_found")
    return out.read_bytes(), report, (open(lf, "rb").read() if lf else None)


def _both_ways(monkeypatch, fn):
    """fn() with runs, then without: both results."""
    with_runs = fn("runs")
    monkeypatch.setattr(walk, "INLINE_RUNS", False)
    try:
        without = fn("plain")
    finally:
        monkeypatch.setattr(walk, "INLINE_RUNS", True)
    return with_runs, without


def _runs_in(path) -> int:
    with DB(path) as db:
        return sum(type(lv) is leaves.InlineRun
                   for _, lv in walk.Walker(db).walk_leaves(inline_runs=True))


def _bucket_tree_of(path) -> tuple:
    from boltfix.browse import bucket_tree

    findings = []
    with DB(path) as db:
        return bucket_tree(db, findings.append), [f.to_json() for f in findings]


def _describe(path) -> dict:
    from boltfix.describe import describe

    with DB(path) as db:
        return describe(db)


def _dumps(path) -> list:
    """dump's bytes in every format and encoding (a few with --limit, with
    --show-secrets, and below one bucket), and its result."""
    import io

    from boltfix.dump import dump

    out = []
    for opts in DUMP_OPTIONS:
        buf = io.BytesIO()
        with DB(path) as db:
            res = dump(db, opts, buf)
        out.append((buf.getvalue(), res.records, res.notes, res.limited))
    return out


_SPECS = [dict(fmt=f, encoding=e) for f in ("jsonl", "text")
          for e in ("auto", "hex", "base64", "utf8")] + [
    dict(limit=7), dict(limit=200, fmt="text"), dict(show_secrets=True),
    dict(bucket=("parent",)), dict(include=("live", "free", "orphan"))]


def _dump_options():
    from boltfix.dump import DumpOptions

    return [DumpOptions(**spec) for spec in _SPECS]


DUMP_OPTIONS = _dump_options()


def _assert_same(monkeypatch, path, tmp_path, **kw):
    """check, inspect, buckets, dump and repair give the same with and
    without runs."""
    c1, c2 = _both_ways(monkeypatch, lambda _: _check_json(path))
    assert c1 == c2
    i1, i2 = _both_ways(monkeypatch, lambda _: _describe(path))
    assert i1 == i2, "inspect differs"
    b1, b2 = _both_ways(monkeypatch, lambda _: _bucket_tree_of(path))
    assert b1 == b2, "buckets differs"
    d1, d2 = _both_ways(monkeypatch, lambda _: _dumps(path))
    for spec, a, b in zip(_SPECS, d1, d2):
        assert a == b, f"dump {spec} differs"
    r1, r2 = _both_ways(monkeypatch, lambda tag: _repair(
        path, tmp_path / f"out-{tag}.db",
        **({"lost_found": str(tmp_path / f"lf-{tag}.db")} if kw.get("lost_found") else {})))
    assert r1[1] == r2[1], "repair reports differ"
    assert r1[0] == r2[0], "repair outputs differ"
    assert r1[2] == r2[2], "lost+found files differ"
    return r1


# ---------------------------------------------------------------- real bbolt
@pytest.fixture(scope="module")
def subs(tmp_path_factory):
    """3,000 sub-buckets of one bucket, written by real bbolt (boltgen's
    "subs": empty ones, several records, sequences, paged ones, nested ones,
    plain keys between them)."""
    path = tmp_path_factory.mktemp("subs") / "subs.db"
    return oracle.make_shape("subs", path, "--keys", "3000")


def test_real_bbolt_sub_buckets_come_in_runs(subs):
    # the file must exercise the path this file tests
    assert _runs_in(subs) > 500


def test_real_bbolt_sub_buckets_same_with_and_without_runs(subs, tmp_path, monkeypatch):
    out, report, _ = _assert_same(monkeypatch, subs, tmp_path)
    assert report["kept"]["buckets"] == 3000 + 3000 // 17 + 1 + 1
    assert oracle.oracle_check(tmp_path / "out-runs.db", 120).status == "ok"
    # what real bbolt reads back is what it wrote
    assert oracle.oracle_dump(tmp_path / "out-runs.db") == oracle.oracle_dump(subs)


@pytest.mark.parametrize("what", ["zeroed-leaf", "swapped-values", "bad-inline-page-id",
                                  "truncated"])
def test_damaged_real_bbolt_sub_buckets_same_with_and_without_runs(
        subs, tmp_path, monkeypatch, what):
    path = damage.copy_fixture(subs, tmp_path, "damaged.db")
    leaves = damage.leaves(path, (b"parent",))
    mid = leaves[len(leaves) // 2]
    if what == "zeroed-leaf":
        damage.zeroed_page(path, (b"parent",))
    elif what == "swapped-values":
        # two inline values trade places: both still canonical, keys intact
        a, b = _value_spans(path, mid.pgid)[:2]
        raw = bytearray(path.read_bytes())
        if a[1] == b[1]:
            raw[a[0]:a[0] + a[1]], raw[b[0]:b[0] + b[1]] = (raw[b[0]:b[0] + b[1]],
                                                            raw[a[0]:a[0] + a[1]])
        path.write_bytes(bytes(raw))
    elif what == "bad-inline-page-id":
        off, _ = _value_spans(path, mid.pgid)[1]
        damage._write(path, off + 16, struct.pack("<Q", 7))
    else:  # cut at 60% of the file: the root and the last leaves are gone
        ps = damage.page_size_of(path)
        os.truncate(path, path.stat().st_size * 3 // 5 // ps * ps)
    _assert_same(monkeypatch, path, tmp_path, lost_found=True)


def _value_spans(path, pgid: int) -> list:
    """(offset, length) of each inline bucket value on leaf page ``pgid``."""
    ps = damage.page_size_of(path)
    hdr = damage.read_header(path, pgid, ps)
    spans = []
    for i in range(hdr.count):
        el = damage.read_leaf_element(path, pgid, i, ps)
        off = damage._element_offset(pgid, i, ps) + el.pos + el.ksize
        if el.flags & S.BUCKET_LEAF_FLAG:
            head = damage._read(path, off, 8)
            if head == bytes(8):  # root 0: inline
                spans.append((off, el.vsize))
    return spans


# ---------------------------------------------------------------- fixtures x damage
_SHAPES_WITH_RUNS = [s for s in ("nested", "nofreelist", "page16k", "deep")
                     if _runs_in(oracle.fixture(s))]


def test_the_fixtures_have_runs():
    assert set(_SHAPES_WITH_RUNS) >= {"nested", "nofreelist", "page16k"}


@pytest.mark.parametrize("kind", [k for k, v in damage.KINDS.items()
                                  if v.shape in _SHAPES_WITH_RUNS])
def test_every_damage_kind_same_with_and_without_runs(kind, tmp_path, monkeypatch):
    k = damage.KINDS[kind]
    path = damage.copy_fixture(k.shape, tmp_path)
    k.apply(path)
    try:
        _assert_same(monkeypatch, path, tmp_path, lost_found=True)
    except Exception as exc:  # nothing recoverable: the same error both ways
        from boltfix.errors import BoltError

        if not isinstance(exc, BoltError):
            raise
        monkeypatch.setattr(walk, "INLINE_RUNS", False)
        with pytest.raises(type(exc)):
            repair(str(path), str(tmp_path / "again.db"), force=True)


# ---------------------------------------------------------------- crafted inline values
def _bucket_file(path, buckets, page_size=4096) -> None:
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size)
        w.begin_bucket(b"parent")
        for i, (seq, records) in enumerate(buckets):
            w.begin_bucket(b"sub-%04d" % i, seq)
            for k, v in records:
                w.put(k, v)
            w.end_bucket()
        w.end_bucket()
        w.close()


_records = st.dictionaries(st.binary(min_size=1, max_size=12), st.binary(max_size=40),
                           max_size=4).map(lambda d: sorted(d.items()))
_buckets = st.lists(st.tuples(st.integers(0, 2**64 - 1), _records), min_size=1, max_size=12)
# (which value, where in it, new byte): one byte of an inline value changed
_patches = st.lists(st.tuples(st.integers(0, 11), st.integers(0, 120), st.integers(0, 255)),
                    max_size=3)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buckets=_buckets, patches=_patches)
def test_crafted_inline_values_same_with_and_without_runs(tmp_path_factory, monkeypatch,
                                                          buckets, patches):
    tmp = tmp_path_factory.mktemp("crafted")
    path = tmp / "in.db"
    _bucket_file(path, buckets)
    with DB(path) as db:
        parent = damage.find_bucket(db, (b"parent",))
    spans = _value_spans(path, parent.root)
    raw = bytearray(path.read_bytes())
    for which, where, byte in patches:
        off, n = spans[which % len(spans)]
        raw[off + where % n] = byte
    path.write_bytes(bytes(raw))
    _assert_same(monkeypatch, path, tmp)


def _inline_value(seq, records, page_size=4096) -> bytes:
    """The value BoltWriter gives a bucket of ``records``, read back."""
    import io

    f = io.BytesIO()
    w = BoltWriter(f, page_size)
    w.begin_bucket(b"p")
    w.begin_bucket(b"s", seq)
    for k, v in records:
        w.put(k, v)
    w.end_bucket()
    w.end_bucket()
    w.close()
    fd, path = tempfile.mkstemp(suffix=".db")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(f.getvalue())
        with DB(path) as db:
            w = walk.Walker(db)
            parent = w.open_bucket(w.root_bucket(), w.find(w.root_bucket(), b"p"))
            return bytes(w.find(parent, b"s").value)
    finally:
        os.unlink(path)


@given(seq=st.integers(0, 2**64 - 1), records=_records,
       where=st.integers(0, 200), byte=st.integers(0, 255))
@settings(max_examples=400, deadline=None)
def test_canonical_inline_is_what_the_writer_writes(seq, records, where, byte):
    value = _inline_value(seq, records)
    ps = 4096
    assert leaves.canonical_inline(value, ps // 4) == len(records)
    changed = bytearray(value)
    changed[where % len(value)] = byte
    got = leaves.canonical_inline(bytes(changed), ps // 4)
    if got >= 0:  # still canonical: then it is the writer's value of what it holds
        recs = _parse_inline(bytes(changed))
        seq2 = struct.unpack_from("<Q", changed, 8)[0]
        assert _inline_value(seq2, recs) == bytes(changed)
        assert got == len(recs)
    if C is not None:
        for v in (value, bytes(changed), value[:-1], value + b"x"):
            assert C.inline_run([1], [b"n"], [v], 0, ps // 4, S.MAX_KEY_SIZE) == \
                leaves._inline_run_py([1], [b"n"], [v], 0, ps // 4)


def _parse_inline(value: bytes) -> list:
    count = struct.unpack_from("<H", value, 26)[0]
    out = []
    for i in range(count):
        _, pos, ks, vs = S.LEAF_ELEMENT.unpack_from(value, 32 + 16 * i)
        k = 32 + 16 * i + pos
        out.append((value[k:k + ks], value[k + ks:k + ks + vs]))
    return out


def test_each_rule_of_canonical_inline_refuses():
    """One value per rule, each breaking only that rule."""
    good = _inline_value(5, [(b"a", b"1"), (b"b", b"22")])
    ps = 4096
    assert leaves.canonical_inline(good, ps // 4) == 2

    def patched(off, fmt, val):
        v = bytearray(good)
        struct.pack_into(fmt, v, off, val)
        return bytes(v)

    bad = {
        "root not 0": patched(0, "<Q", 9),
        "page id not 0": patched(16, "<Q", 1),
        "not a leaf": patched(24, "<H", S.BRANCH_PAGE_FLAG),
        "overflow": patched(28, "<I", 1),
        "element flags": patched(32, "<I", 4),
        "nested bucket": patched(32, "<I", S.BUCKET_LEAF_FLAG),
        "gap before data": patched(36, "<I", 33),
        "empty key": patched(40, "<I", 0),
        "keys out of order": good.replace(b"a1b22", b"b1a22"),
        "trailing byte": good + b"\0",
        "short": good[:-1],
        "count past the value": patched(26, "<H", 200),
    }
    for why, value in bad.items():
        assert leaves.canonical_inline(value, ps // 4) == -1, why
        if C is not None:
            assert C.inline_run([1], [b"n"], [value], 0, ps // 4, S.MAX_KEY_SIZE) == (0, []), why
    # a page of 1,048 bytes: inline at 16 KB pages, over 4096 / 4
    big = _inline_value(0, [(b"k", b"x" * 1000)], page_size=16384)
    assert leaves.canonical_inline(big, ps // 4) == -1
    assert leaves.canonical_inline(big, 16384 // 4) == 1
    # the entry itself: flags exactly 1, a name within bbolt's limit
    py = leaves._inline_run_py
    assert py([3], [b"n"], [good], 0, ps // 4) == (0, [])
    assert py([1], [b"n" * (S.MAX_KEY_SIZE + 1)], [good], 0, ps // 4) == (0, [])
    assert py([1, 1, 0, 1], [b"a", b"b", b"c", b"d"], [good] * 4, 0, ps // 4) == (2, [2, 2])
    if C is not None:
        assert C.inline_run([1, 1, 0, 1], [b"a", b"b", b"c", b"d"], [good] * 4, 1,
                            ps // 4, S.MAX_KEY_SIZE) == (2, [2])
        assert C.inline_run((3,), (b"n",), (good,), 0, ps // 4, S.MAX_KEY_SIZE) == (0, [])
        with pytest.raises(IndexError):
            C.inline_run([1], [b"n"], [good], -1, ps // 4, S.MAX_KEY_SIZE)


def test_writer_put_inline_buckets_is_begin_put_end(tmp_path):
    buckets = [(0, []), (3, [(b"k", b"v")]), (0, [(b"a", b"1"), (b"b", b"")])] * 50
    values = [_inline_value(seq, recs) for seq, recs in buckets]
    _bucket_file(tmp_path / "ref.db", buckets)
    with open(tmp_path / "runs.db", "wb") as f:
        w = BoltWriter(f, 4096)
        w.begin_bucket(b"parent")
        names = [b"sub-%04d" % i for i in range(len(buckets))]
        w.put_inline_buckets(names[:70], values[:70], sum(len(r) for _, r in buckets[:70]))
        w.put_inline_buckets(names[70:], [memoryview(v) for v in values[70:]],
                             sum(len(r) for _, r in buckets[70:]))
        w.end_bucket()
        stats = w.close()
    assert (tmp_path / "runs.db").read_bytes() == (tmp_path / "ref.db").read_bytes()
    assert stats.inline_buckets == len(buckets) and stats.keys == 150
    with open(tmp_path / "bad.db", "wb") as f:
        w = BoltWriter(f, 4096)
        w.begin_bucket(b"parent")
        w.put_inline_buckets([b"b"], [values[0]], 0)
        with pytest.raises(ValueError):
            w.put_inline_buckets([b"a"], [values[0]], 0)  # not after "b"
        with pytest.raises(ValueError):
            w.put_inline_buckets([b"c", b"d"], [values[0]], 0)


def test_etcd_and_json_unchanged_by_runs(tmp_path, monkeypatch):
    """A real etcd file has no runs (its buckets are top-level), and its
    check and repair are the same either way."""
    path = damage.copy_fixture(damage.REPO / "fixtures" / "etcd" / "etcd-3.5.db", tmp_path)
    out = _assert_same(monkeypatch, path, tmp_path)
    assert json.dumps(out[1])


def test_per_bucket_counts_are_those_of_the_first_buckets(subs, tmp_path):
    """repair keeps the counts of the MAX_REPORTED_BUCKETS smallest bucket
    paths only (3,000 sub-buckets here, more than twice that bound, with
    nested ones whose parent's records come after them): each listed count
    is the whole count, as a walk of the output tells it."""
    from collections import Counter

    from boltfix.repair import MAX_REPORTED_BUCKETS

    report = repair(str(subs), str(tmp_path / "out.db")).to_json()
    got = [(tuple(b["path"]), b["records"]) for b in report["kept"]["per_bucket"]]
    counts = Counter()
    with DB(tmp_path / "out.db") as db:
        for bucket, rec in walk.Walker(db).walk():
            if rec.is_bucket:
                counts[bucket.path + (rec.key,)] += 0
            else:
                counts[bucket.path] += 1
    want = [(tuple(p.decode() for p in path), n)
            for path, n in sorted(counts.items())[:MAX_REPORTED_BUCKETS]]
    assert len(counts) > 2 * MAX_REPORTED_BUCKETS
    assert got == want


def test_runs_in_etcd_and_secret_buckets(tmp_path, monkeypatch):
    """Sub-buckets inside etcd's top-level buckets (whose own records are
    decoded and masked: ``key``, ``authUsers``): their records are a
    sub-bucket's, plain, as dump writes them a bucket at a time; entries
    with names and values that need hex."""
    path = tmp_path / "etcdish.db"
    with open(path, "wb") as f:
        w = BoltWriter(f, 4096)
        for top in (b"authUsers", b"key", b"meta"):
            w.begin_bucket(top)
            if top == b"meta":
                w.put(b"consistent_index", bytes(8))
            names = sorted(b"s\xff%02d" % i if i % 3 else b"s%02d" % i for i in range(40))
            for i, name in enumerate(names):
                w.begin_bucket(name, i)
                for j in range(i % 4):
                    w.put(b"k%d" % j, b"$2a$10$" + b"x" * 53 if j == 1 else b"\x00\x01v")
                w.end_bucket()
            w.end_bucket()
        w.close()
    assert _runs_in(path) >= 3
    _assert_same(monkeypatch, path, tmp_path)


@pytest.mark.parametrize("shown", [1, 2, 37, 1000])
def test_inspect_stops_describing_inside_a_run(subs, monkeypatch, shown):
    """inspect's BUCKETS_SHOWN limit falls inside a run: the first ones
    described, the rest counted, as a bucket at a time."""
    from boltfix import describe

    monkeypatch.setattr(describe, "BUCKETS_SHOWN", shown)
    a, b = _both_ways(monkeypatch, lambda _: _describe(subs))
    assert a == b
    assert a["buckets_not_shown"] > 0
