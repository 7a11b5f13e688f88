"""BoltWriter.put_many and Walker.walk_batches: the batch forms of put and
walk must give exactly what the one-at-a-time forms give."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix.reader import DB
from boltfix.walk import Record, Walker
from boltfix.writer import BoltWriter
from test_writer import _dataset, _sorted, write_file


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
