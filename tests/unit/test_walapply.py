"""boltfix.walapply: etcd's apply rules, one rule a test, on requests decoded
from bytes the tests' own protobuf encoder wrote (support.protobuf).  (The
rules against the real etcd's revisions: tests/oracle/test_wal_etcd.py and
test_etcd_datadir_repair.py.)"""

from __future__ import annotations

import pytest

from boltfix import raftlog as R
from boltfix import walapply as A
from support.protobuf import ld, vi


def _apply(st: A.Store, data: bytes) -> A.Applied:
    """Apply one InternalRaftRequest (its bytes) at the next index."""
    out = A.Applied(st.rev + 1000, 1, None)
    req = R.decode_normal(data, show_secrets=True)
    out.kind = req["kind"]
    A.apply_request(st, req, out)
    return out


def put(key: bytes, value: bytes = b"v", lease: int = 0) -> bytes:
    return ld(4, ld(1, key) + ld(2, value) + (vi(3, lease) if lease else b""))


def delete(key: bytes, end: bytes = b"") -> bytes:
    return ld(5, ld(1, key) + (ld(2, end) if end else b""))


def txn(compares=(), success=(), failure=()) -> bytes:
    body = b"".join(ld(1, c) for c in compares)
    body += b"".join(ld(2, op) for op in success) + b"".join(ld(3, op) for op in failure)
    return ld(6, body)


def cmp_version(key: bytes, version: int) -> bytes:
    """Compare{result EQUAL, target VERSION, key, version}."""
    return vi(1, 0) + vi(2, 0) + ld(3, key) + vi(4, version)


def op_put(key: bytes, value: bytes = b"t") -> bytes:
    return ld(2, ld(1, key) + ld(2, value))


def test_puts_take_a_revision_each_and_count_versions():
    st = A.Store()
    a = _apply(st, put(b"k", b"1"))
    b = _apply(st, put(b"k", b"2"))
    c = _apply(st, put(b"j"))
    assert (a.revision, b.revision, c.revision) == (1, 2, 3)
    kv = st.live[b"k"]
    assert (kv.create, kv.mod, kv.version, kv.value) == (1, 2, 2, b"2")
    assert a.changes == [(0, b"k", A.PUT)]


def test_a_delete_of_nothing_takes_no_revision_and_a_range_one_with_subs():
    st = A.Store()
    for k in (b"a", b"b", b"c"):
        _apply(st, put(k))
    assert _apply(st, delete(b"zz")).revision is None
    d = _apply(st, delete(b"a", b"c"))
    assert d.revision == 4
    assert d.changes == [(0, b"a", A.DELETE), (1, b"b", A.DELETE)]
    assert sorted(st.live) == [b"c"]
    # range_end "\x00": every key from key on (mkGteRange)
    e = _apply(st, delete(b"\x00", b"\x00"))
    assert e.changes == [(0, b"c", A.DELETE)] and not st.live


def test_txn_branches_and_read_only_txns():
    st = A.Store()
    _apply(st, put(b"k"))
    ok = _apply(st, txn([cmp_version(b"k", 1)], [op_put(b"yes")], [op_put(b"no")]))
    assert ok.revision == 2 and ok.changes == [(0, b"yes", A.PUT)]
    no = _apply(st, txn([cmp_version(b"k", 5)], [op_put(b"yes")], [op_put(b"no"), op_put(b"n2")]))
    assert no.revision == 3 and [c[1] for c in no.changes] == [b"no", b"n2"]
    read_only = _apply(st, txn([cmp_version(b"k", 1)], [ld(1, ld(1, b"k"))]))
    assert read_only.revision is None and read_only.error is None


def test_leases_gate_puts_and_a_revoke_deletes_its_keys_in_one_revision():
    st = A.Store()
    missing = _apply(st, put(b"k", lease=0x42))
    assert missing.revision is None and "not found" in missing.error
    _apply(st, ld(8, vi(1, 60) + vi(2, 0x42)))  # LeaseGrant{TTL 60, ID 0x42}
    _apply(st, put(b"b", lease=0x42))
    _apply(st, put(b"a", lease=0x42))
    _apply(st, put(b"free"))
    r = _apply(st, ld(9, vi(1, 0x42)))  # LeaseRevoke
    assert r.revision == 4
    assert r.changes == [(0, b"a", A.DELETE), (1, b"b", A.DELETE)]
    assert list(st.live) == [b"free"]
    again = _apply(st, ld(9, vi(1, 0x42)))
    assert again.revision is None and again.error


def test_compaction_takes_no_revision_and_refuses_what_etcd_refuses():
    st = A.Store()
    for k in (b"a", b"b"):
        _apply(st, put(k))
    assert _apply(st, ld(7, vi(1, 5))).error  # a future revision
    c = _apply(st, ld(7, vi(1, 1)))
    assert c.revision is None and c.error is None and st.compacted == 1
    assert _apply(st, ld(7, vi(1, 1))).error  # compacted already


def test_a_nospace_alarm_refuses_puts_until_cleared():
    st = A.Store()
    alarm = ld(10, vi(1, 1) + vi(2, 7) + vi(3, 1))  # ACTIVATE NOSPACE
    _apply(st, alarm)
    assert "NOSPACE" in _apply(st, put(b"k")).error
    _apply(st, ld(10, vi(1, 2) + vi(2, 7) + vi(3, 1)))  # DEACTIVATE
    assert _apply(st, put(b"k")).revision == 1


@pytest.mark.parametrize("auth", [False, True])
def test_replay_skips_applied_entries_and_says_when_it_is_not_exact(auth):
    st = A.Store()
    st.auth_enabled = auth
    entries = []
    for i, data in enumerate([put(b"a"), put(b"b"), put(b"c")], start=10):
        e = {"index": i, "term": 2, "type": 0, "data": data}
        entries.append((e, R.decode_entry_payload(e, True)))
    summary = A.Replay()
    got = list(A.replay(st, entries, above=10, summary=summary))
    assert [a.index for a in got] == [11, 12]
    assert A.touched_keys(got) == [(1, [(b"b", A.PUT)]), (2, [(b"c", A.PUT)])]
    assert summary.exact is (not auth)
