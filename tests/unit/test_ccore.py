"""The C core (boltfix/_speedups.c) against the pure-Python walk it mirrors.

The C core only takes pages the Python walk would take without a finding,
so every command must give the same answer with it and without it: check's
findings and stats, dump's bytes (every format, ``--limit``, forensics) and
repair's output, on every fixture, every crafted damage kind and fuzzed
files.  The C functions are also called directly with hostile arguments:
they must raise, never read or write out of bounds.  And the C core must
keep taking the clean pages: a change that silently sends every page back
to Python (5-20x slower, every other test green) fails here.
"""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix import ccore, walk
from boltfix.browse import bucket_tree
from boltfix.check import check
from boltfix.describe import describe, page_rows
from boltfix.dump import DumpOptions, dump
from boltfix.errors import BoltError
from boltfix.leaves import Bucket
from boltfix.reader import DB
from boltfix.repair import repair
from support import damage, fuzz, oracle
from support.purepy import pure_python

C = ccore.speedups
#: the C core against the pure-Python code: the pure-Python pass (which
#: turns the C core off) deselects them (-m "not c_core"); under CI=true a
#: C core that did not build fails them (test_c_core_is_built_under_ci)
def needs_c(test):
    """Mark ``test`` as one of the C core's (skipped without it, locally only)."""
    return pytest.mark.c_core(pytest.mark.skipif(
        C is None and os.environ.get("CI") != "true",
        reason="the C core is not built (no compiler?)")(test))

DUMP_OPTIONS = [
    dict(encoding="hex"),
    dict(encoding="hex", limit=5),
    dict(encoding="hex", limit=1000),
    dict(encoding="auto"),
    dict(fmt="text"),
    dict(encoding="hex", include=("live", "free", "orphan")),
    # --prefix skips whole C runs below it and stops at the first key past it
    dict(encoding="hex", bucket=("nested", "paged"), prefix=b"paged-0003"),
    dict(bucket=("live",), prefix=b"live-0001"),
    dict(bucket=("deep",), prefix=b"deep-key-0000000000050"),
    dict(bucket=("key",), prefix=b"\x00\x00\x00\x00\x00\x00\x00\x03"),
]


@pytest.mark.c_core
def test_c_core_is_built_under_ci():
    """CI must measure and test the C path: a silent build failure fails here."""
    if C is None and os.environ.get("CI") == "true":
        pytest.fail("boltfix._speedups did not build; CI must run the C core")
    if C is None:
        pytest.skip("the C core is not built here (no compiler?)")
    assert callable(C.advance) and callable(C.jsonl)


def everything(path, tmp_path, tag: str) -> dict:
    """What check, dump and repair say about one file."""
    out = {}
    try:
        db = DB(path)
    except BoltError as exc:
        return {"open": str(exc)}
    with db:
        out["check"] = json.dumps(check(db).to_json(), sort_keys=True, default=str)
        out["inspect"] = json.dumps(describe(db), sort_keys=True, default=str)
        out["buckets"] = repr(bucket_tree(db))
        out["pages"] = repr(list(page_rows(db)))
        w = walk.Walker(db)
        root = w.root_bucket()
        if root is not None:
            tops = [w.open_bucket(root, r) for r in w.records(root) if r.is_bucket]
            out["keys"] = [list(w.key_lists(b)) for b in tops if b is not None]
        for i, opts in enumerate(DUMP_OPTIONS):
            stream = io.BytesIO()
            try:
                res = dump(db, DumpOptions(**opts), stream)
                out[f"dump{i}"] = (hashlib.sha256(stream.getvalue()).hexdigest(),
                                   dict(res.records), [f.code for f in res.findings])
            except BoltError as exc:
                out[f"dump{i}"] = str(exc)
    dest = tmp_path / f"repaired-{tag}.db"
    try:
        rep = repair(path, dest, force=True)
        out["repair"] = (hashlib.sha256(dest.read_bytes()).hexdigest(), rep.lost_data)
    except BoltError as exc:
        out["repair"] = str(exc)
    return out


def same_both_ways(path, tmp_path):
    fast = everything(path, tmp_path, "c")
    with pure_python():
        slow = everything(path, tmp_path, "py")
    assert fast == slow
    # runs of 3 leaves: C stops and resumes mid-bucket, --prefix skips whole runs
    saved = walk.RUN_LEAVES
    walk.RUN_LEAVES = 3
    try:
        assert everything(path, tmp_path, "c3") == slow
    finally:
        walk.RUN_LEAVES = saved


@needs_c
@pytest.mark.parametrize("shape", sorted(p.stem for p in damage.FIXTURES.glob("*.db")))
def test_same_on_fixtures(shape, tmp_path):
    same_both_ways(damage.FIXTURES / f"{shape}.db", tmp_path)


@needs_c
@pytest.mark.parametrize("name", ["etcd-3.4", "etcd-3.5", "etcd-13406"])
def test_same_on_etcd_fixtures(name, tmp_path):
    same_both_ways(damage.REPO / "fixtures" / "etcd" / f"{name}.db", tmp_path)


@needs_c
@pytest.mark.parametrize("kind", sorted(damage.KINDS))
def test_same_on_damage(kind, tmp_path):
    k = damage.KINDS[kind]
    path = damage.copy_fixture(k.shape, tmp_path)
    k.apply(path)
    same_both_ways(path, tmp_path)


@needs_c
@settings(max_examples=int(os.environ.get("BOLTFIX_FUZZ_EXAMPLES", "60")),
          derandomize=not os.environ.get("BOLTFIX_FUZZ_RANDOM"), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(fuzz.mutated())
def test_same_on_fuzzed_files(tmp_path, case):
    _, _, data = case
    path = tmp_path / "fuzzed.db"
    path.write_bytes(data)
    same_both_ways(path, tmp_path)


# ---------------------------------------------------------------- direct calls
@needs_c
def test_advance_leaves_an_unclean_frame_alone():
    """A frame C will not take stays on the stack as it was, nothing marked."""
    with DB(oracle.fixture("nested")) as db:
        reached = bytearray(db.pages_in_file)
        frame = (1, None, None, ())  # a meta page: Python must report it
        stack = [frame]
        leaves, last, walked, pages, depth, records, more = C.advance(
            stack, db.buf, reached, db.page_size, db.hwm, db.pages_in_file, None, 10)
        assert stack == [frame] and leaves == [] and walked == 0 and not any(reached)
        assert last is None and not more


@needs_c
def test_advance_takes_a_clean_tree_as_python_does():
    with DB(oracle.fixture("deep")) as db:
        w = walk.Walker(db)
        bucket = next(b for b, batch in w.walk_batches() if b.path)
        ref = [(page, list(keys)) for page, _, _, keys, _ in walk.Walker(db)._tree_leaves(
            Bucket(bucket.path, bucket.root, 0))]
        with pure_python():
            ref_py = [(page, list(keys)) for page, _, _, keys, _ in walk.Walker(db)._tree_leaves(
                Bucket(bucket.path, bucket.root, 0))]
        assert ref == ref_py and len(ref) > 1


PS = 512  # the smallest page size: small random files reach every path
MAYBE_KEY = st.sampled_from([None, None, None]) | st.binary(max_size=3)


@st.composite
def random_pages(draw):
    """Four 512-byte pages: 0-1 anything; 2 a branch or a leaf, 3 a leaf,
    each well formed (sorted keys, bbolt's layout) or not, then a few bytes
    of it changed, so the walk gets deep and meets damage there."""
    import struct

    pages = [draw(st.binary(min_size=PS, max_size=PS)) for _ in range(2)]
    for pgid in (2, 3):
        keys = sorted(set(draw(st.lists(st.binary(min_size=1, max_size=6), min_size=1,
                                        max_size=12))))
        if pgid == 2 and draw(st.booleans()):
            elems = [(k, struct.pack("<Q", draw(st.sampled_from([3, 3, 2, 9])))) for k in keys]
            page = _page(2, 1, [(k, b"") for k, _ in elems], branch_children=[c for _, c in elems])
        else:
            page = _page(pgid, 2, [(k, draw(st.binary(max_size=20))) for k in keys])
        page = bytearray(page[:PS].ljust(PS, b"\0"))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
            off = draw(st.integers(0, PS - 1))
            page[off] = draw(st.integers(0, 255))
        if draw(st.integers(0, 9)) == 0:
            page[12:16] = struct.pack("<I", draw(st.sampled_from([1, 2, 0xFFFFFFFF])))
        pages.append(bytes(page))
    return b"".join(pages)


def _page(pgid, flags, records, branch_children=None):
    """A page in bbolt's layout: header, elements, then keys and values."""
    import struct

    n = len(records)
    head = struct.pack("<QHHI", pgid, flags, n, 0)
    elems, data = b"", b""
    for i, (k, v) in enumerate(records):
        pos = (n - i) * 16 + len(data)
        if branch_children is None:
            elems += struct.pack("<IIII", 0, pos, len(k), len(v))
        else:
            elems += struct.pack("<II", pos, len(k)) + branch_children[i]
        data += k + v
    return head + elems + data


@needs_c
@given(random_pages(), st.sampled_from([2, 2, 2, 3, 0, 5]),
       MAYBE_KEY, MAYBE_KEY, MAYBE_KEY, st.sampled_from([4, 4, 4, 3, 6, 0]), st.sampled_from([4, 4, 4, 3, 6, 0]))
@settings(max_examples=500, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_advance_on_random_pages_never_goes_out_of_bounds(data, pgid, lo, hi, last, hwm, npages):
    """Random elements, ranges, and bounds past the map: an answer or an
    error, never a read or write outside the map (ASan-free, but a wild
    read here segfaults the test run)."""
    reached = bytearray(min(npages, 4))
    stack = [(pgid, lo, hi, ())]
    try:
        leaves, *_ = C.advance(stack, memoryview(data), reached, PS, hwm, npages, last, 4)
    except ValueError:
        return
    for page, count, end in leaves:
        assert end <= len(data) and page < len(reached) and reached[page] == walk.REACHED
    for automatic in (False, True):
        out, nxt, n, python = C.jsonl(memoryview(data), PS, leaves, 0, HEX, automatic,
                                      automatic, 1 << 20, -1)
        assert out.count(b"\n") == n and (nxt == len(leaves) or python)
    # whatever C took, the Python walk takes with no finding, the same way
    if leaves:
        findings = []
        with pure_python():
            w = _bare_walker(data, hwm, npages, findings)
            got = list(w._tree_leaves(Bucket((b"b",), pgid, 0)))
        assert [(p, len(k)) for p, _, _, k, _ in got][:len(leaves)] == \
            [(p, c) for p, c, _ in leaves]


def _bare_walker(data: bytes, hwm: int, npages: int, findings: list) -> walk.Walker:
    """A Walker over raw page bytes, no meta needed."""
    w = walk.Walker.__new__(walk.Walker)
    w.db = None
    w.buf = memoryview(data)
    w.raw = data
    w.page_size = PS
    w.hwm = hwm
    w.pages_in_file = min(npages, len(data) // PS)
    w.reached = bytearray(w.pages_in_file)
    w.report = findings.append
    w.progress = None
    w.pages_walked = w.records_yielded = 0
    return w


@needs_c
def test_advance_rejects_wrong_arguments():
    with pytest.raises(TypeError):
        C.advance([], b"", bytearray(1), 4096, 1, 1, 7, 1)  # last must be bytes/None
    with pytest.raises(BufferError):
        C.advance([], b"", b"read-only", 4096, 1, 1, None, 1)  # reached is written
    with pytest.raises(ValueError):
        C.advance([], b"", bytearray(1), 0, 1, 1, None, 1)


def _leaf_page(records, ps=4096, pgid=2):
    page = _page(pgid, 2, records)
    return page + bytes(ps - len(page))


HEX = (b',"key":', b',"value":', b"<k>", b"<v>", b"@", b">\n")


def jsonl(data, leaves, start=0, automatic=False, budget=1 << 20, limit=-1, pieces=HEX):
    return C.jsonl(data, 4096, leaves, start, pieces, automatic, False, budget, limit)


@needs_c
def test_jsonl_hex_encodes_every_length():
    """Key and value lengths around the 16- and 32-byte vector widths, every byte value."""
    records = [(bytes([i + 1]) * 3, bytes(range(256))[i: i + i * 7 % 70]) for i in range(70)]
    page = bytes(8192) + _leaf_page(records)
    data, nxt, n, python = jsonl(page, [(2, 70, 3 * 4096)])
    want = b"".join(b',"key":"%s","value":"%s"@2>\n' % (k.hex().encode(), v.hex().encode())
                    for k, v in records)
    assert (data, nxt, n, python) == (want, 1, 70, False)
    # a record limit stops mid-page
    data, nxt, n, python = jsonl(page, [(2, 70, 3 * 4096)], limit=7)
    assert n == 7 and data == b"".join(want.splitlines(keepends=True)[:7])


@needs_c
def test_jsonl_auto_is_dumps_auto_encoding():
    """Text where dump's auto encoding says text (with json's escapes), hex
    and its note otherwise; non-ASCII is handed back to Python."""
    values = [b"", b"plain", b'q"uote', b"back\\slash", b"tab\tnl\ncr\r", b"del\x7f",
              b"nul\x00", b"\x1b[0m", b" ~", b"\x01\xff"]
    records = [(b"k%02d" % i, v) for i, v in enumerate(values)]
    page = bytes(8192) + _leaf_page(records)
    data, nxt, n, python = jsonl(page, [(2, len(records), 3 * 4096)], automatic=True)
    assert not python and n == len(records)
    for line, (k, v) in zip(data.splitlines(), records):
        want_v = (json.dumps(v.decode()) if all(0x20 <= b < 0x7f or b in b"\t\n\r" for b in v)
                  else '"%s"<v>' % v.hex())
        assert line.decode() == ',"key":%s,"value":%s@2>' % (json.dumps(k.decode()), want_v)
    # non-ASCII without an ASCII control: Python's Unicode tables decide
    page2 = bytes(8192) + _leaf_page([(b"a", b"x"), (b"b", "é".encode())])
    page2 += _leaf_page([(b"c", b"y")], pgid=3)
    leaves = [(2, 2, 3 * 4096), (3, 1, 4 * 4096)]
    data, nxt, n, python = jsonl(page2, leaves, automatic=True)
    assert (data, nxt, n, python) == (b"", 0, 0, True)
    data, nxt, n, python = jsonl(page2, leaves, start=1, automatic=True)
    assert (nxt, n, python) == (2, 1, False) and data == b',"key":"c","value":"y"@3>\n'


@needs_c
def test_every_call_makes_progress():
    """The callers loop while C says there is more: a zero budget or leaf
    limit must still take a leaf, or they would spin."""
    page = bytes(8192) + _leaf_page([(b"a", b"1")]) + _leaf_page([(b"b", b"2")], pgid=3)
    leaves = [(2, 1, 3 * 4096), (3, 1, 4 * 4096)]
    data, nxt, n, python = jsonl(page, leaves, budget=0)
    assert (nxt, n, python) == (1, 1, False) and data.count(b"\n") == 1
    root = _page(4, 1, [(b"a", b""), (b"b", b"")], branch_children=[
        (2).to_bytes(8, "little"), (3).to_bytes(8, "little")])
    page += root + bytes(4096 - len(root))
    stack = [(4, None, None, ())]
    got = C.advance(stack, page, bytearray(5), 4096, 5, 5, None, 0)
    assert [leaf[0] for leaf in got[0]] == [2] and got[-1] is True and len(stack) == 1


@needs_c
def test_jsonl_refuses_a_leaf_that_does_not_fit():
    page = bytes(8192) + _leaf_page([(b"k", b"v" * 100)])
    for leaf in [(2, 1, 3 * 4096 + 1), (2, 300, 3 * 4096), (3, 1, 3 * 4096), (2, 1, 8192 + 40)]:
        with pytest.raises(ValueError):
            jsonl(page, [leaf])


@needs_c
def test_a_page_that_changed_is_the_librarys_error():
    """A leaf that no longer holds what advance() saw (the file changed under
    the map) is a BoltError naming the page, not a ValueError or a crash."""
    page = bytes(8192) + _leaf_page([(b"k", b"v" * 100)])
    with pytest.raises(BoltError, match="leaf page 2 changed"):
        ccore.call(C.jsonl, page, 4096, [(2, 1, 8192 + 40)], 0, HEX, False, False, 1 << 20, -1)
    with pytest.raises(BoltError, match="leaf page 2 changed"):
        ccore.call(C.etcd_key_suspects, page, 4096, [(2, 1, 8192 + 40)])


def _mixed_file(path):
    """Values of every kind auto encoding meets, through the real writer."""
    from boltfix.writer import BoltWriter

    kinds = [b"ascii text", "ünïcödé".encode(), b"\x00\x01binary", b"tab\tand\nnewline",
             b'"quoted"\\', b"", "\u2028 line sep".encode(), b"\xff\xfe", b"x" * 5000,
             "é".encode() + b"\x00"]
    with open(path, "wb") as f:
        w = BoltWriter(f)
        w.begin_bucket("bücket".encode())
        w.put("ключ".encode(), b"value")
        w.end_bucket()
        w.begin_bucket(b"mixed")
        for i in range(3000):
            w.put(b"key-%06d" % i, kinds[i % len(kinds)] + (b"-%d" % i if i % 3 else b""))
        w.end_bucket()
        w.close()


@needs_c
def test_same_on_mixed_values(tmp_path):
    path = tmp_path / "mixed.db"
    _mixed_file(path)
    for encoding in ("auto", "hex", "utf8", "base64"):
        outs = []
        for mode in ("c", "python"):
            stream = io.BytesIO()
            with DB(path) as db:
                if mode == "python":
                    with pure_python():
                        dump(db, DumpOptions(encoding=encoding), stream)
                else:
                    dump(db, DumpOptions(encoding=encoding), stream)
            outs.append(stream.getvalue())
        assert outs[0] == outs[1] and outs[0].count(b"\n") == 3000 + 2 + 1
        lines = [json.loads(x) for x in outs[0].splitlines()]
        assert {d.get("value_encoding") for d in lines if d["type"] == "kv"} == (
            {None, "hex"} if encoding == "auto" else {None})


# ---------------------------------------------------------------- etcd key records
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def protobuf_fields(draw):
    """A KeyValue-like message: fields 1-6 mostly with their own wire types,
    sometimes others, unknown fields, overlong varints, cut at a random byte."""
    out = b""
    if draw(st.booleans()):  # etcd writes the key first
        out = b"\x0a" + _varint(3) + draw(st.binary(min_size=3, max_size=3))
    for _ in range(draw(st.integers(0, 7))):
        field = draw(st.sampled_from([1, 2, 3, 4, 5, 6] * 3 + [7, 0, 15, 1 << 29]))
        own = {1: 2, 5: 2}.get(field, 0)
        wire = draw(st.sampled_from([own] * 6 + [0, 2, 1, 5, 3, 6]))
        out += _varint(field << 3 | wire)
        if wire == 0:
            out += draw(st.sampled_from([_varint(draw(st.integers(0, (1 << 64) - 1)))] * 4 +
                                        [b"\xff" * 9 + b"\x01", b"\xff" * 9 + b"\x02",
                                         b"\xff" * 10]))
        elif wire == 2:
            payload = draw(st.binary(max_size=12))
            n = len(payload) + draw(st.sampled_from([0] * 6 + [1, 100]))
            out += _varint(n) + payload
        elif wire == 1:
            out += draw(st.binary(min_size=6, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=2, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        out = out[: draw(st.integers(0, len(out)))]
    return out


_REVISION = st.builds(lambda m, s, t: m.to_bytes(8, "big") + b"_" + s.to_bytes(8, "big") + t,
                      st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
                      st.sampled_from([b""] * 4 + [b"t", b"x"]))
REVISION_KEYS = st.integers(0, 9).flatmap(
    lambda i: _REVISION if i else st.binary(min_size=16, max_size=19))


@needs_c
@given(REVISION_KEYS, protobuf_fields())
@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
def test_etcd_key_record_clean_is_check_key_record(key, value):
    """C vouches for a record exactly when the Python check finds nothing
    (one way keeps results identical, the other keeps C useful)."""
    from boltfix import etcd

    assert C.etcd_key_record_clean(key, value) == (etcd.check_key_record(key, value) == [])


@needs_c
def test_same_on_etcd_file_with_bad_records(tmp_path):
    """A key bucket of many pages with a few bad records: only their pages
    go to Python, and check says exactly what it says without C."""
    from boltfix.writer import BoltWriter

    path = tmp_path / "etcdish.db"
    good = lambda i: (b"\x0a\x05/k%03d" % (i % 1000) + b"\x10" + _varint(i) + b"\x18" + _varint(i)
                      + b"\x20\x01\x2a\x40" + bytes(64))
    bad = {37: b"\xff\xff\xff garbage", 400: b"\x0a\x00\x10\x01",  # empty key, not a tombstone
           401: b"\x08\x01", 2500: good(2500)[:-3]}
    with open(path, "wb") as f:
        w = BoltWriter(f)
        w.begin_bucket(b"key")
        for i in range(1, 3000):
            key = i.to_bytes(8, "big") + (b"_" if i != 999 else b"-") + bytes(8)
            w.put(key, bad.get(i, good(i)))
        w.end_bucket()
        w.begin_bucket(b"meta")
        w.put(b"consistent_index", (7).to_bytes(8, "big"))
        w.end_bucket()
        w.close()
    with DB(path) as db:
        fast = check(db).to_json()
        with pure_python():
            slow = check(db).to_json()
    assert fast == slow
    assert sorted(f["code"] for f in fast["findings"]) == (
        ["etcd-bad-key-value"] * 4 + ["etcd-bad-revision-key"])


ETCD_PIECES = (b'{"key":', b',"value":', b',"ke":"hex"', b',"ve":"hex"', b',"page":', b',"etcd":')


@needs_c
@given(REVISION_KEYS, protobuf_fields(), st.booleans())
@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
def test_jsonl_etcd_member_is_decode_record(key, value, automatic):
    """Whenever C writes a `key` record's "etcd" member, it is exactly
    json.dumps(etcd.decode_record(...)) as dump writes it; the record's own
    key and value are dump's encoding of them."""
    from boltfix import etcd
    from boltfix.text import ENCODERS

    page = bytes(8192) + _leaf_page([(key, value)])
    data, nxt, n, python = C.jsonl(page, 4096, [(2, 1, 3 * 4096)], 0, ETCD_PIECES, automatic,
                                   True, 1 << 20, -1)
    if python:
        assert (data, nxt, n) == (b"", 0, 0)
        return
    line = json.loads(data)
    want = etcd.decode_record(b"key", key, value)
    assert "error" not in want and "unknown" not in want
    assert data.decode().endswith(',"etcd":' + json.dumps(want, ensure_ascii=False,
                                                           separators=(",", ":")) + "}\n")
    enc = ENCODERS["auto" if automatic else "hex"]
    assert json.loads(enc(key)[0]) == line["key"] and json.loads(enc(value)[0]) == line["value"]
    assert ("ke" in line) == bool(enc(key)[1]) and ("ve" in line) == bool(enc(value)[1])


@needs_c
def test_jsonl_etcd_member_cases():
    """Tombstones, negative int64s, quotes and hex values in C; non-ASCII
    text and unknown fields handed to Python."""
    from boltfix import etcd

    rev = lambda m, s=0, t=b"": m.to_bytes(8, "big") + b"_" + s.to_bytes(8, "big") + t
    kv = lambda k, v, *ints: (b"\x0a" + _varint(len(k)) + k + b"".join(
        bytes([(f << 3)]) + _varint(x) for f, x in ints) + b"\x2a" + _varint(len(v)) + v)
    c_cases = [(rev(1), kv(b"/a", b"one", (2, 1), (3, 1), (4, 1))),
               (rev(2, 1, b"t"), kv(b"/a", b"", (3, 2))),
               (rev((1 << 64) - 1, 5), kv(b'/q"\\', b"\x00bin", (6, (1 << 64) - 3))),
               (rev(4), b""), (rev(7), b"\x0a\x00")]  # dump decodes an empty key; check warns
    py_cases = [(rev(5), kv("/ü".encode(), b"v")), (rev(6), kv(b"/k", b"v") + b"\x38\x01"),
                (b"not-a-revision!!!", kv(b"/k", b"v"))]
    for key, value in c_cases + py_cases:
        page = bytes(8192) + _leaf_page([(key, value)])
        data, _, n, python = C.jsonl(page, 4096, [(2, 1, 3 * 4096)], 0, ETCD_PIECES, True,
                                     True, 1 << 20, -1)
        assert python == ((key, value) in py_cases)
        if not python:
            want = json.dumps(etcd.decode_record(b"key", key, value), ensure_ascii=False,
                              separators=(",", ":"))
            assert data.decode().endswith(',"etcd":' + want + "}\n")


@needs_c
@given(st.lists(st.one_of(REVISION_KEYS, st.binary(min_size=1, max_size=20)), min_size=1,
                max_size=60, unique=True))
@settings(max_examples=300, deadline=None, database=None, derandomize=True)
def test_etcd_revision_stats_is_inspects_count(keys):
    """inspect's etcd revision facts, counted in C, equal EtcdFacts.see's."""
    from boltfix.describe import EtcdFacts

    records = sorted((k, b"v") for k in keys)
    page = _page(2, 2, records)
    if len(page) > 4096:
        return  # more than a page holds
    page = bytes(8192) + page + bytes(4096 - len(page))
    got = C.etcd_revision_stats(page, 4096, [(2, len(records), 3 * 4096)])
    facts = EtcdFacts()
    for key, value in records:
        facts.see(b"key", key, value)
    assert got == (facts.revisions, facts.tombstones, facts.first_rev, facts.last_rev)


# ---------------------------------------------------------------- the C core keeps taking the pages (was test_core_guards)


# ---------------------------------------------------------------- the C core takes the pages
def _c_share(path) -> float:
    with DB(path) as db:
        w = walk.Walker(db)
        w.count_all()
        assert w.pages_walked > 0
        return w.pages_in_c / w.pages_walked


@needs_c
def test_c_core_takes_the_pages_of_deep_db():
    share = _c_share(oracle.fixture("deep"))
    assert share >= 0.9, f"the C core took only {share:.0%} of deep.db's pages"


@needs_c
def test_c_core_takes_the_pages_of_the_bench_smoke_file(tmp_path):
    # the file benchmarks/bench.py --smoke times (20,000 keys x 1 KB, real bbolt)
    path = oracle.make_shape("big", tmp_path / "smoke.db", "--keys", "20000",
                             "--value-size", "1024")
    share = _c_share(path)
    assert share >= 0.9, f"the C core took only {share:.0%} of the smoke file's pages"


@needs_c
def test_every_command_prints_the_same_with_and_without_c(tmp_path):
    script = damage.REPO / "scripts" / "record_outputs.py"
    env = dict(os.environ)
    env.pop("BOLTFIX_PURE_PYTHON", None)
    runs = {}
    for name, pure in (("c", None), ("python", "1")):
        if pure:
            env["BOLTFIX_PURE_PYTHON"] = pure
        out = tmp_path / name
        subprocess.run([sys.executable, str(script), str(out), "--quick"], check=True,
                       env=env, cwd=damage.REPO, timeout=600)
        runs[name] = out
    diff = filecmp.dircmp(runs["c"], runs["python"])
    problems = []

    def walk_cmp(d, prefix=""):
        problems.extend(prefix + f for f in d.diff_files + d.left_only + d.right_only)
        for sub, dd in d.subdirs.items():
            walk_cmp(dd, prefix + sub + "/")

    walk_cmp(diff)
    assert len(os.listdir(runs["c"])) >= 5
    assert not problems, f"outputs differ with and without the C core: {problems[:10]}"


# ---------------------------------------------------------------- many sub-buckets


# ---------------------------------------------------------------- five finding codes


# ---------------------------------------------------------------- the page map
