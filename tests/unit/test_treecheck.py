"""boltfix.treecheck: the checks of one tree (what check runs on the meta in
use and commits on every tree it judges), on files written by boltfix's
writer and changed in one known way each."""

from __future__ import annotations

import struct

from boltfix import findings as F
from boltfix import structs as S
from boltfix.etcdkeys import META_BUCKET
from boltfix.reader import DB
from boltfix.treecheck import check_freelist, key_too_long, walk_everything
from boltfix.walk import Walker
from boltfix.writer import BoltWriter
from support import etcdfiles


def _run(path):
    """(stats, findings) of walk_everything and check_freelist on ``path``."""
    found = []
    with DB(path) as db:
        walker = Walker(db, found.append)
        stats = walk_everything(db, walker, found.append)
        check_freelist(db, walker, found.append, stats)
    return stats, found


def _write(path, buckets: dict) -> None:
    """Top-level buckets of (key, value) records; a value that is a dict is
    a sub-bucket of its own records."""
    with open(path, "wb") as f:
        w = BoltWriter(f, 4096)

        def put_all(items):
            for k in sorted(items):
                v = items[k]
                if isinstance(v, dict):
                    w.begin_bucket(k)
                    put_all(v)
                    w.end_bucket()
                else:
                    w.put(k, v)
        put_all(buckets)
        w.close()


def test_an_etcd_tree_keeps_its_meta_values_and_highest_revision(tmp_path):
    p = tmp_path / "etcd.db"
    recs = etcdfiles.key_records()
    etcdfiles.write_etcd(p, key_recs=recs)
    stats, found = _run(p)
    assert stats["etcd"] is True
    assert stats["etcd_meta"]["consistent_index"] == 7
    highest = max(int.from_bytes(k[:8], "big") for k, _ in recs)
    assert stats["etcd_meta"]["max_revision"] == highest
    assert stats["keys"] == sum(1 for _ in recs) + 2 + len(etcdfiles.USERS) + 1
    # key_records' last value is no KeyValue: etcd's loader panics on it
    assert [f.code for f in found] == [F.ETCD_BAD_KEY_VALUE]
    assert found[0].detail["key"] == recs[-1][0].hex()


def test_an_etcd_file_without_consistent_index_is_warned(tmp_path):
    p = tmp_path / "noci.db"
    _write(p, {b"key": {}, b"meta": {b"term": struct.pack(">Q", 2)}})
    stats, found = _run(p)
    assert stats["etcd"] is True
    codes = [f.code for f in found]
    assert codes == [F.ETCD_MISSING_CONSISTENT_INDEX]
    assert found[0].bucket == META_BUCKET


def test_a_bucket_nested_in_an_etcd_bucket_is_reported(tmp_path):
    p = tmp_path / "nested.db"
    rev = (5).to_bytes(8, "big") + b"_" + bytes(8)
    _write(p, {b"key": {b"\x00" * 17: {b"x": b"y"}},
               b"meta": {b"consistent_index": struct.pack(">Q", 3)}, b"lease": {}})
    _, found = _run(p)
    nested = [f for f in found if f.code == F.ETCD_NESTED_BUCKET]
    assert len(nested) == 1 and nested[0].bucket == (b"key",)
    # the same bucket in a file that is not etcd's is normal
    q = tmp_path / "plain.db"
    _write(q, {b"things": {rev: {b"x": b"y"}}})
    stats, found = _run(q)
    assert stats["etcd"] is False and found == []


def test_a_file_that_is_not_etcds_counts_buckets_and_keys(tmp_path):
    p = tmp_path / "plain.db"
    _write(p, {b"a": {b"k%03d" % i: b"v" for i in range(300)}, b"b": {b"sub": {b"x": b"1"}}})
    stats, found = _run(p)
    assert stats["etcd"] is False
    assert stats["buckets"] == 3
    assert stats["keys"] == 301
    assert found == []


def test_key_too_long_is_one_rule():
    assert key_too_long(b"k" * S.MAX_KEY_SIZE, 5, (b"a",), 0, False) is None
    f = key_too_long(b"k" * (S.MAX_KEY_SIZE + 1), 5, (b"a",), 3, True)
    assert f.code == F.KEY_TOO_LONG and f.page == 5
    assert f.detail == {"index": 3, "bucket_entry": True}


def test_freelist_state_of_the_writers_file(tmp_path):
    """boltfix's writer syncs its freelist; every page is either reached or
    free, so the freelist check finds nothing and counts the free pages."""
    p = tmp_path / "plain.db"
    _write(p, {b"a": {b"k%04d" % i: b"v" * 50 for i in range(2000)}})
    stats, found = _run(p)
    with DB(p) as db:
        synced = db.meta.freelist != S.PGID_NO_FREELIST
    assert stats["freelist"] == ("synced" if synced else "not synced")
    assert isinstance(stats["free_pages"], int) and stats["free_pages"] >= 0
    assert [f.code for f in found] == []
