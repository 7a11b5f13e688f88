"""boltfix.browse: what buckets, keys and get read."""

from __future__ import annotations

import pytest

from boltfix.browse import bucket_tree, is_user_prefix, key_lists, user_key_filter
from boltfix.etcdkeys import user_key
from boltfix.navigate import open_path
from boltfix.reader import DB
from boltfix.walk import Walker
from support import REPO, oracle

ETCD = REPO / "fixtures" / "etcd" / "etcd-3.5.db"


@pytest.mark.parametrize("shape", ["nested", "deep", "page16k"])
def test_bucket_tree_counts_what_the_walk_yields(shape):
    with DB(oracle.fixture(shape)) as db:
        tree = bucket_tree(db)
        walked = list(Walker(db).walk())
    nodes, stack = {}, [((), n) for n in tree]
    while stack:
        parent, n = stack.pop()
        path = parent + (n["name"],)
        nodes[path] = n
        stack.extend((path, c) for c in n["buckets"])
    buckets = {b.path + (r.key,) for b, r in walked if r.is_bucket}
    assert set(nodes) == buckets
    for path, n in nodes.items():
        assert n["keys"] == sum(1 for b, r in walked if b.path == path and not r.is_bucket)


def test_key_lists_with_a_prefix_are_the_keys_that_start_with_it():
    with DB(oracle.fixture("nested")) as db:
        w = Walker(db)
        for b, r in Walker(db).walk():
            if not b.path or r.is_bucket:
                continue
            bucket, _ = open_path(w, ["0x" + n.hex() for n in b.path])
            every = [k for keys in key_lists(Walker(db), bucket) for k in keys]
            pfx = r.key[:1]
            got = [k for keys in key_lists(Walker(db), bucket, pfx) for k in keys]
            assert got == [k for k in every if k.startswith(pfx)] and got
            break


def test_an_etcd_user_prefix_selects_by_user_key():
    with DB(ETCD) as db:
        w = Walker(db)
        key, _ = open_path(w, ["key"])
        assert is_user_prefix(key, b"/") and not is_user_prefix(key, b"x")
        every = [(k, bytes(v)) for b, r in Walker(db).walk() if b.path == (b"key",)
                 for k, v in [(r.key, r.value)]]
        users = sorted({user_key(v) for _, v in every})
        pfx = users[len(users) // 2][:3]
        want = [k for k, v in every if user_key(v).startswith(pfx)]
        got = [k for keys in key_lists(Walker(db), key, pfx) for k in keys]
        assert got == want and want
        keys, values = user_key_filter([k for k, _ in every], [v for _, v in every], pfx)
        assert keys == want and all(user_key(v).startswith(pfx) for v in values)
