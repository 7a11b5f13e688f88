"""boltfix.navigate: a bucket by its typed names, a key, the top level."""

from __future__ import annotations

import pytest

from boltfix.navigate import (
    decode_name,
    find_key,
    open_path,
    top_bucket_batches,
    top_level_names,
)
from boltfix.reader import DB
from boltfix.walk import Walker
from support import oracle


def test_decode_name_tries_the_literal_first():
    assert decode_name("key") == [b"key"]
    assert decode_name("0x6b6579") == [b"0x6b6579", b"key"]
    assert decode_name("0xzz") == [b"0xzz"]
    assert decode_name("0x") == [b"0x"]


@pytest.mark.parametrize("shape", ["nested", "deep", "page16k"])
def test_every_bucket_and_key_is_found_as_the_walk_found_it(shape):
    with DB(oracle.fixture(shape)) as db:
        seen = list(Walker(db).walk())
        assert top_level_names(db) == [r.key for b, r in seen if b.path == () and r.is_bucket]
        for bucket, rec in seen[:400]:
            names = ["0x" + n.hex() for n in bucket.path]
            w = Walker(db)
            got, why = open_path(w, names)
            assert got is not None and why == "" and got.path == bucket.path
            found = find_key(w, got, "0x" + rec.key.hex())
            assert found is not None and bytes(found.value) == bytes(rec.value)


def test_missing_and_plain_names_say_why():
    with DB(oracle.fixture("nested")) as db:
        w = Walker(db)
        top = top_level_names(db)[0].decode()
        assert open_path(w, ["no-such-bucket"]) == (None, "bucket 'no-such-bucket' not found "
                                                          "in the root")
        bucket, _ = open_path(w, [top])
        plain = next(r.key for r in w.records(bucket) if not r.is_bucket)
        got, why = open_path(w, [top, "0x" + plain.hex()])
        assert got is None and why.endswith("is a key, not a bucket")


@pytest.mark.parametrize("shape", ["nested", "page16k"])
def test_top_bucket_batches_are_a_buckets_own_records(shape):
    """Every record directly in the named top-level buckets, in their order,
    none of a sub-bucket's, and a missing name left out."""
    with DB(oracle.fixture(shape)) as db:
        seen = list(Walker(db).walk())
        names = top_level_names(db)
        asked = list(reversed(names)) + [b"no-such-bucket"]
        got = [(name, bytes(k)) for name, batch in top_bucket_batches(db, asked)
               for k in batch.keys]
    want = [(name, r.key) for name in reversed(names) for b, r in seen
            if b.path == (name,) and not r.is_bucket]
    assert got == want and got
