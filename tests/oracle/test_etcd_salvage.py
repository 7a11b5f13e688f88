"""The real etcd 3.4, 3.5, 3.6 and 3.7 starts from a db whose root salvage
rebuilt (rule 4), restored as a snapshot (3.6/3.7: a db their real etcd
writes in this run, support.etcddbs)."""

from __future__ import annotations

import shutil

import pytest

from boltfix.repair import repair
from support import etcddbs
from support.salvage import (
    tree_records,
    zero_roots,
)


# ---------------------------------------------------------------- real etcd starts from it
@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_etcd_starts_from_a_root_lost_salvage(version, tmp_path):
    from support.etcdtools import EtcdServer, require_etcd, restore_snapshot

    require_etcd(version)
    src = tmp_path / "damaged.db"
    shutil.copyfile(etcddbs.etcd_db(version), src)
    zero_roots(src)
    fixed = tmp_path / "fixed.db"
    repair(src, fixed)
    want = {}
    from boltfix.etcd import decode_key_value
    from boltfix.etcdkeys import decode_revision

    for (b, k), (v, _) in sorted(tree_records(fixed).items()):
        if b == (b"key",):
            rev, kv = decode_revision(k), decode_key_value(v)
            want[kv["key"].decode()] = None if rev["tombstone"] else kv["value"].decode()
    want = {k: v for k, v in want.items() if v is not None}
    assert want
    # the root's loss may be repaired by salvage (the key bucket only: auth
    # is gone) or by rolling back to an older commit's whole tree (commits
    # rule 4: the fixture's root user with it)
    auth = tree_records(fixed).get(((b"auth",), b"authEnabled"), (b"",))[0] == b"\x01"
    user = "root:boltfix-root" if auth else None
    dd = tmp_path / "datadir"
    try:
        port = restore_snapshot(fixed, dd, version)
        with EtcdServer(dd, version, peer_port=port, health_user=user) as srv:
            got = {kv["key"]: kv["value"] for kv in srv.get_kvs("", "--from-key", user=user)}
            srv.ctl("put", "/boltfix/after-salvage", "ok", user=user)
            assert srv.get("/boltfix/after-salvage", user=user) == "ok"
    finally:
        shutil.rmtree(dd, ignore_errors=True)
    got.pop("/boltfix/after-salvage", None)
    assert got == want
    expected = etcddbs.expected(version)
    for k, v in got.items():
        assert v == expected["keys"].get(k) or v in expected["history"].get(k, []), k
