"""boltfix.raftlog: etcd's raft log messages, decoded from bytes written by
the tests' own protobuf encoder (tests/support/protobuf.py, which shares no
code with boltfix), and every byte string refused cleanly or decoded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boltfix import raftlog as R
from boltfix.protowire import ProtoError
from boltfix.text import REDACTED
from support import k8sbytes as K
from support.protobuf import ld, vi


def _entry(term: int, index: int, data: bytes, type_: int = 0) -> bytes:
    return vi(1, type_) + vi(2, term) + vi(3, index) + ld(4, data)


def _put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    body = ld(1, key) + ld(2, value) + (vi(3, lease) if lease else b"")
    return vi(1, 77) + ld(4, body)


def test_entry_and_hard_state_fields():
    e = R.decode_entry(_entry(3, 1234, b"xyz"))
    assert e == {"term": 3, "index": 1234, "type": 0, "data": b"xyz"}
    assert R.decode_hard_state(vi(1, 5) + vi(2, 0x8e9e05c52164694d) + vi(3, 99)) == {
        "term": 5, "vote": 0x8e9e05c52164694d, "commit": 99}
    # absent fields are protobuf's zero
    assert R.decode_hard_state(b"") == {"term": 0, "vote": 0, "commit": 0}


def test_put_request_and_its_written_key():
    d = R.decode_normal(_put(b"/a/b", b"v1", lease=0x42))
    assert d["kind"] == "put"
    assert d["ID"] == 77
    assert d["put"] == {"key": b"/a/b", "value": b"v1", "lease": 0x42}
    assert R.written_keys(d) == [("put", b"/a/b", None)]


def test_txn_branches_are_both_written_keys_in_order():
    put_op = ld(2, ld(1, b"k1") + ld(2, b"v"))
    del_op = ld(3, ld(1, b"a") + ld(2, b"z"))
    cmp = ld(1, vi(1, 0) + vi(2, 2) + ld(3, b"k1") + vi(6, 7))
    txn = cmp + ld(2, put_op) + ld(3, del_op)
    d = R.decode_normal(vi(1, 1) + ld(6, txn))
    assert d["kind"] == "txn"
    assert d["txn"]["compare"] == [{"result": "EQUAL", "target": "MOD", "key": b"k1",
                                    "mod_revision": 7}]
    assert R.written_keys(d) == [("put", b"k1", None), ("delete", b"a", b"z")]


def test_txn_nesting_is_bounded():
    inner = b""
    for _ in range(R.MAX_TXN_DEPTH + 2):
        inner = ld(4, inner)          # RequestOp{request_txn: TxnRequest{success: [..]}}
        inner = ld(2, inner)
    with pytest.raises(ProtoError, match="nested deeper"):
        R.decode_request(vi(1, 1) + ld(6, inner))


@pytest.mark.parametrize("name,field_no,fields", [
    ("auth_user_add", 1100, (2, 4)),
    ("auth_user_change_password", 1103, (2, 3)),
    ("authenticate", 1012, (2, 3)),
])
def test_credentials_are_masked_unless_asked(name, field_no, fields):
    body = ld(1, b"root") + b"".join(ld(f, b"s3cret-%d" % f) for f in fields)
    data = vi(1, 9) + ld(field_no, body)
    masked = R.decode_normal(data)
    shown = R.decode_normal(data, show_secrets=True)
    assert masked["kind"] == shown["kind"] == name
    names = {f: R.REQUESTS[field_no][1][f][0] for f in fields}
    for f, field in names.items():
        assert masked[name][field] == REDACTED
        assert shown[name][field] == b"s3cret-%d" % f
    assert b"s3cret" not in repr(masked).encode()


def test_kubernetes_secret_data_in_a_put_is_masked():
    value = K.secret("db-pass", "default", {"password": b"hunter2-hunter2"})
    d = R.decode_normal(_put(b"/registry/secrets/default/db-pass", value))
    assert d["put"].get("value_redacted") is True
    assert b"hunter2-hunter2" not in d["put"]["value"]
    assert len(d["put"]["value"]) == len(value)
    shown = R.decode_normal(_put(b"/registry/secrets/default/db-pass", value), True)
    assert shown["put"]["value"] == value


def test_empty_entry_v2_request_and_garbage():
    assert R.decode_normal(b"") == {"kind": "empty"}
    # a v2 Request (Method=2, Path=3) does not unmarshal as an InternalRaftRequest
    # only when a field clashes; a wire error in both says "unknown"
    bad = b"\x0a\xff\xff\xff\xff\x0f"  # field 1 as bytes, length past the end
    d = R.decode_normal(bad)
    assert d["kind"] == "unknown" and "error" in d and R.is_error(d)


def test_conf_change_entry():
    cc = vi(1, 5) + vi(2, 1) + vi(3, 0xabc)
    p = R.decode_entry_payload({"type": R.ENTRY_CONF_CHANGE, "data": cc})
    assert p["kind"] == "conf_change"
    assert p["conf_change"]["type"] == "ConfChangeRemoveNode"
    assert p["conf_change"]["node_id"] == "abc"
    assert R.decode_entry_payload({"type": 9, "data": b""})["kind"] == "unknown"


def test_wal_snapshot_with_conf_state():
    cs = vi(1, 1) + vi(1, 2) + vi(2, 3)
    d = R.decode_wal_snapshot(vi(1, 2001) + vi(2, 4) + ld(3, cs))
    assert d["index"] == 2001 and d["term"] == 4
    assert d["conf_state"]["voters"] == ["1", "2"]
    assert d["conf_state"]["learners"] == ["3"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_say_why(data):
    for fn in (R.decode_entry, R.decode_hard_state, R.decode_record, R.decode_metadata):
        try:
            assert isinstance(fn(data), dict)
        except ProtoError:
            pass
    p = R.decode_entry_payload({"type": 0, "data": data})
    assert isinstance(p, dict) and "kind" in p
