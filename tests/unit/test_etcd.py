"""Tests for boltfix.etcd: etcd's record decoders.

Protobuf bytes are built by hand with the tests' own encoder
(support.protobuf, from the wire format spec), so the tests do not depend
on a protobuf library.
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boltfix import etcd
from boltfix.bigrecord import render_bytes
from boltfix.etcd import (
    check_key_record,
    decode_alarm,
    decode_auth,
    decode_key_value,
    decode_lease,
    decode_meta,
    decode_record,
    decode_role,
    decode_user,
    guess_etcd_version,
    looks_like_etcd,
)
from boltfix.etcdkeys import ETCD_BUCKETS
from boltfix.text import REDACTED
from support.protobuf import (
    BCRYPT,
    key_value,
    rev_key,
    user,
    varint,
)
from support.protobuf import fixed32 as f_fixed32
from support.protobuf import fixed64 as f_fixed64
from support.protobuf import ld as f_bytes
from support.protobuf import vi as f_varint

# ------------------------------------------------------------------ wire format


# ------------------------------------------------------------------ revisions


# ------------------------------------------------------------------ KeyValue
class TestKeyValue:
    def test_roundtrip(self):
        kv = decode_key_value(key_value(b"/registry/pods/x", 10, 12, 3, b"\x00\x01", 7587))
        assert kv == {
            "key": b"/registry/pods/x",
            "create_revision": 10,
            "mod_revision": 12,
            "version": 3,
            "value": b"\x00\x01",
            "lease": 7587,
        }

    def test_negative_int64(self):
        kv = decode_key_value(f_bytes(1, b"k") + f_varint(4, -1) + f_varint(6, -(2**63)))
        assert kv["version"] == -1
        assert kv["lease"] == -(2**63)
        assert len(varint(-1)) == 10

    def test_defaults(self):
        assert decode_key_value(b"") == {
            "key": b"", "create_revision": 0, "mod_revision": 0,
            "version": 0, "value": b"", "lease": 0,
        }

    def test_unknown_fields_kept(self):
        kv = decode_key_value(key_value() + f_varint(99, 5) + f_bytes(100, b"zz"))
        assert kv["unknown"] == [
            {"field": 99, "wire_type": 0, "value": 5},
            {"field": 100, "wire_type": 2, "value": b"zz"},
        ]

    def test_wrong_wire_type(self):
        out = decode_key_value(f_varint(1, 5))
        assert "error" in out and "wire type" in out["error"]

    def test_last_occurrence_wins(self):
        kv = decode_key_value(f_varint(2, 1) + f_varint(2, 8) + f_bytes(1, b"a") + f_bytes(1, b"b"))
        assert kv["create_revision"] == 8 and kv["key"] == b"b"

    def test_truncated(self):
        data = key_value()
        for n in range(1, len(data)):
            out = decode_key_value(data[:n])
            # every prefix either decodes (cut at a field boundary) or errors
            assert isinstance(out, dict)
        out = decode_key_value(data[:-1])
        assert "error" in out and "offset" in out["error"]

    def test_record(self):
        out = decode_record(b"key", rev_key(3, 0), key_value(value=b"\xff\x00"))
        assert out["revision"] == {"main": 3, "sub": 0, "tombstone": False}
        assert out["key"] == "foo"
        assert out["value"] == {"hex": "ff00"}
        assert "error" not in out
        json.dumps(out)

    def test_record_tombstone(self):
        out = decode_record(b"key", rev_key(4, 0, True), f_bytes(1, b"foo"))
        assert out["revision"]["tombstone"] is True
        assert out["key"] == "foo"

    def test_record_garbage_value_keeps_revision(self):
        out = decode_record(b"key", rev_key(4, 1), b"\xff\xff")
        assert out["revision"]["main"] == 4
        assert "error" in out

    def test_record_bad_key(self):
        out = decode_record(b"key", b"bogus", key_value())
        assert out["revision"] is None and "error" in out


class TestCheckKeyRecord:
    def test_ok(self):
        assert check_key_record(rev_key(2, 0), key_value()) == []

    def test_tombstone_ok(self):
        assert check_key_record(rev_key(2, 0, True), f_bytes(1, b"foo")) == []
        # a tombstone that decodes to an empty KeyValue is still fine
        assert check_key_record(rev_key(2, 0, True), b"") == []

    def test_bad_key(self):
        for key in (b"short", rev_key(2, 0) + b"x", rev_key(2, 0).replace(b"_", b"!")):
            codes = [c for c, _ in check_key_record(key, key_value())]
            assert codes == ["etcd-bad-revision-key"]

    def test_bad_value(self):
        codes = check_key_record(rev_key(2, 0), b"\x0a\x10ab")
        assert [c for c, _ in codes] == ["etcd-bad-key-value"]
        assert "offset" in codes[0][1]

    def test_bad_tombstone_value(self):
        codes = check_key_record(rev_key(2, 0, True), b"\x07")
        assert [c for c, _ in codes] == ["etcd-bad-key-value"]

    def test_empty_key(self):
        codes = check_key_record(rev_key(2, 0), f_varint(2, 1))
        assert [c for c, _ in codes] == ["etcd-bad-key-value"]

    def test_nested_bucket(self):
        assert [c for c, _ in check_key_record(rev_key(2, 0), None)] == ["etcd-bad-key-value"]

    def test_both(self):
        codes = [c for c, _ in check_key_record(b"x", b"\xff")]
        assert codes == ["etcd-bad-revision-key", "etcd-bad-key-value"]


# ------------------------------------------------------------------ lease
class TestLease:
    def test_roundtrip(self):
        lid = 0x694D77E2BD0C7A0B
        out = decode_lease(struct.pack(">Q", lid), f_varint(1, lid) + f_varint(2, 60) + f_varint(3, -1))
        assert out == {"key_id": lid, "ID": lid, "TTL": 60, "RemainingTTL": -1}

    def test_mismatch_and_bad_key(self):
        assert decode_lease(struct.pack(">Q", 1), f_varint(1, 2))["id_mismatch"] is True
        assert "error" in decode_lease(b"abc", f_varint(1, 2))

    def test_negative_id_key(self):
        out = decode_lease(b"\xff" * 8, f_varint(1, -1))
        assert out["key_id"] == -1 and "id_mismatch" not in out


# ------------------------------------------------------------------ auth
class TestUser:
    def test_redacted(self):
        out = decode_user(user())
        assert out["name"] == b"root"
        assert out["password"] == REDACTED
        assert out["roles"] == [b"root"]
        assert out["options"] == {"no_password": False}

    def test_show_secrets(self):
        assert decode_user(user(), show_secrets=True)["password"] == BCRYPT

    def test_no_password_option(self):
        out = decode_user(user(password=b"", no_password=True))
        assert out["options"]["no_password"] is True
        assert out["password"] == b""

    def test_multiple_roles(self):
        assert decode_user(user(roles=(b"a", b"b")))["roles"] == [b"a", b"b"]

    @pytest.mark.parametrize(
        "value",
        [
            user(),
            user() + f_bytes(77, BCRYPT),  # hash in an unknown field
            f_bytes(1, b"root") + f_bytes(9, BCRYPT),  # tag of password damaged
            f_bytes(1, b"root") + f_bytes(4, f_bytes(2, BCRYPT)),  # inside options
            user()[:-3],  # truncated
            user() + b"\x07",  # trailing garbage
        ],
    )
    def test_hash_never_leaks(self, value):
        out = decode_record(b"authUsers", b"root", value)
        text = json.dumps(out)
        assert BCRYPT.decode() not in text
        assert BCRYPT.hex() not in text
        assert "N9qo8uLOickgx2ZMRZoMye" not in text
        shown = json.dumps(decode_record(b"authUsers", b"root", user(), show_secrets=True))
        assert BCRYPT.decode() in shown

    def test_name_mismatch(self):
        assert decode_record(b"authUsers", b"other", user())["name_mismatch"] is True
        assert "name_mismatch" not in decode_record(b"authUsers", b"root", user())

    def test_bad_options(self):
        out = decode_user(f_bytes(1, b"u") + f_bytes(4, b"\x08"))
        assert "error" in out


class TestRole:
    def test_roundtrip(self):
        perm1 = f_varint(1, 2) + f_bytes(2, b"/a") + f_bytes(3, b"/b")
        perm2 = f_bytes(2, b"/c")
        out = decode_role(f_bytes(1, b"r") + f_bytes(2, perm1) + f_bytes(2, perm2))
        assert out == {
            "name": b"r",
            "keyPermission": [
                {"permType": "READWRITE", "key": b"/a", "range_end": b"/b"},
                {"permType": "READ", "key": b"/c", "range_end": b""},
            ],
        }

    def test_unknown_perm_type(self):
        out = decode_role(f_bytes(1, b"r") + f_bytes(2, f_varint(1, 7)))
        assert out["keyPermission"][0]["permType"] == 7

    def test_nested_error_offset_is_absolute(self):
        bad = f_bytes(1, b"r") + f_bytes(2, b"\x12\x09")
        out = decode_role(bad)
        assert "offset 6" in out["error"]  # the inner length byte


class TestAuth:
    def test_values(self):
        assert decode_auth(b"authEnabled", b"\x01") == {"value": True}
        assert decode_auth(b"authEnabled", b"\x00") == {"value": False}
        assert decode_auth(b"authRevision", struct.pack(">Q", 42)) == {"value": 42}

    @pytest.mark.parametrize(
        "key,value",
        [(b"authEnabled", b""), (b"authEnabled", b"\x02"), (b"authEnabled", b"\x01\x00"),
         (b"authRevision", b"\x00" * 7)],
    )
    def test_bad(self, key, value):
        assert "error" in decode_auth(key, value)


# ------------------------------------------------------------------ meta etc.
class TestMeta:
    def test_u64(self):
        assert decode_meta(b"consistent_index", struct.pack(">Q", 1234)) == {"value": 1234}
        assert decode_meta(b"term", struct.pack(">Q", 2)) == {"value": 2}
        assert "error" in decode_meta(b"term", b"\x02")

    def test_compact_rev(self):
        out = decode_meta(b"finishedCompactRev", rev_key(77, 0))
        assert out == {"value": {"main": 77, "sub": 0, "tombstone": False}}
        assert "error" in decode_meta(b"scheduledCompactRev", b"\x00" * 8)

    def test_conf_state(self):
        raw = b'{"voters":[9372538179322589801],"auto_leave":false}'
        out = decode_meta(b"confState", raw)
        assert out["value"]["voters"] == [9372538179322589801]
        assert "error" in decode_meta(b"confState", b"{nope")
        assert "error" in decode_meta(b"confState", b"NaN")
        deep = decode_record(b"meta", b"confState", b"[" * 100000 + b"]" * 100000)
        assert "error" in deep
        json.dumps(deep)

    def test_text_and_unknown(self):
        assert decode_record(b"meta", b"storageVersion", b"3.6.0") == {"value": "3.6.0"}
        out = decode_record(b"meta", b"mystery", b"\x00\x01")
        assert out == {"value": {"hex": "0001"}, "unknown_key": True}


class TestMembersClusterAlarm:
    def test_member(self):
        raw = (b'{"id":10501334649042878790,"peerURLs":["http://127.0.0.1:2380"],'
               b'"name":"default","clientURLs":["http://127.0.0.1:2379"]}')
        out = decode_record(b"members", b"91bc3c398fb3c146", raw)
        assert out["member_id"] == 0x91BC3C398FB3C146
        assert out["value"]["name"] == "default"
        assert "error" not in out
        assert "error" in decode_record(b"members", b"zz", raw)
        assert "error" in decode_record(b"members", b"1", b"\xff")

    def test_members_removed(self):
        assert decode_record(b"members_removed", b"a", b"removed") == {"member_id": 10, "value": "removed"}

    def test_cluster(self):
        assert decode_record(b"cluster", b"clusterVersion", b"3.5.0") == {"value": "3.5.0"}
        out = decode_record(b"cluster", b"downgrade", b'{"target-version":"","enabled":false}')
        assert out == {"value": {"target-version": "", "enabled": False}}

    def test_alarm(self):
        out = decode_record(b"alarm", f_varint(1, 2**64 - 1) + f_varint(2, 1), b"")
        assert out == {"memberID": 2**64 - 1, "alarm": "NOSPACE"}
        assert decode_alarm(f_varint(2, 2))["alarm"] == "CORRUPT"
        assert decode_alarm(b"")["alarm"] == "NONE"
        assert "error" in decode_alarm(b"\xff")
        assert decode_alarm(f_varint(1, 1), b"x")["unexpected_value"] == b"x"


# ------------------------------------------------------------------ dispatcher
class TestDispatcher:
    def test_unknown_bucket(self):
        assert decode_record(b"notetcd", b"k", b"v") is None
        assert decode_record(b"test", b"k", b"v") is None

    def test_str_bucket_name(self):
        assert decode_record("meta", b"term", struct.pack(">Q", 1)) == {"value": 1}

    def test_nested_bucket_value(self):
        assert "error" in decode_record(b"key", rev_key(1, 0), None)

    def test_render_bytes(self):
        assert render_bytes(b"") == ""
        assert render_bytes(b"hello\nworld") == "hello\nworld"
        assert render_bytes("héllo".encode()) == "héllo"
        assert render_bytes(b"\x00a") == {"hex": "0061"}
        assert render_bytes(b"\xc3") == {"hex": "c3"}


class TestDetection:
    def test_looks_like_etcd(self):
        assert looks_like_etcd([b"key", b"meta", b"lease"])
        assert looks_like_etcd(["key", "meta"])
        assert not looks_like_etcd([b"key"])
        assert not looks_like_etcd([])

    def test_version(self):
        assert guess_etcd_version([b"consistent_index", b"term", b"storageVersion"]) == "3.6+"
        assert guess_etcd_version([b"consistent_index", b"term", b"confState"]) == "3.5"
        assert guess_etcd_version([b"consistent_index"]) == "3.4 or older"
        assert guess_etcd_version([]) == "3.4 or older"

    def test_version_names_the_storage_version(self):
        keys = [b"consistent_index", b"term", b"storageVersion"]
        for sv in (b"3.6.0", b"3.7.0", b"3.10.2"):
            major_minor = sv.decode().rsplit(".", 1)[0]
            assert guess_etcd_version(keys, sv) == \
                f"{major_minor} (storage version {sv.decode()})"
        assert guess_etcd_version(keys, b"").startswith("3.6+ (storage version empty")
        # a value that is no version is not echoed (and never crashes)
        for bad in (b"\xff\x00", b"3.6", b"a.b.c", b"3.6.0.1", b"9" * 40 + b".1.1"):
            assert guess_etcd_version(keys, bad) == "3.6+"
        assert guess_etcd_version([b"term"], b"3.6.0") == "3.5"

    def test_bucket_names(self):
        assert {b"key", b"meta", b"lease", b"auth", b"authUsers", b"authRoles",
                b"members", b"members_removed", b"cluster", b"alarm"} == set(ETCD_BUCKETS)


# ------------------------------------------------------------------ fuzzing
ALL_BUCKETS = sorted(ETCD_BUCKETS)
META_KEYS = [b"consistent_index", b"term", b"scheduledCompactRev", b"finishedCompactRev",
             b"confState", b"storageVersion", b"authEnabled", b"authRevision",
             b"clusterVersion", b"downgrade"]

keys = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(META_KEYS),
    st.builds(rev_key, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.booleans()),
)

# values biased towards protobuf-ish bytes so decoding gets past the first tag
fields = st.one_of(
    st.builds(f_varint, st.integers(1, 20), st.integers(-(2**63), 2**64 - 1)),
    st.builds(f_bytes, st.integers(1, 20), st.binary(max_size=20)),
    st.builds(f_fixed64, st.integers(1, 20), st.integers(0, 2**64 - 1)),
    st.builds(f_fixed32, st.integers(1, 20), st.integers(0, 2**32 - 1)),
    st.binary(max_size=4),
)
values = st.one_of(
    st.binary(max_size=200),
    st.lists(fields, max_size=8).map(b"".join),
    st.lists(fields, max_size=4).map(b"".join).map(lambda b: f_bytes(2, b)),
)


@settings(max_examples=600, deadline=None)
@given(bucket=st.sampled_from(ALL_BUCKETS), key=keys, value=values, secrets=st.booleans())
def test_decode_record_never_raises(bucket, key, value, secrets):
    out = decode_record(bucket, key, value, show_secrets=secrets)
    assert isinstance(out, dict)
    json.loads(json.dumps(out, allow_nan=False))
    if bucket == b"key":
        problems = check_key_record(key, value)
        assert all(code in ("etcd-bad-revision-key", "etcd-bad-key-value") for code, _ in problems)


@settings(max_examples=200, deadline=None)
@given(
    name=st.binary(max_size=10),
    roles=st.lists(st.binary(max_size=8), max_size=3),
    pw=st.binary(min_size=20, max_size=60),
    noise=st.lists(fields, max_size=3).map(b"".join),
    cut=st.integers(0, 200),
)
def test_password_never_leaks(name, roles, pw, noise, cut):
    # a recognisable secret that cannot appear by chance elsewhere
    secret = b"SECRET-" + pw.hex().encode()
    value = (f_bytes(1, name) + f_bytes(2, secret) + b"".join(f_bytes(3, r) for r in roles) + noise)
    for v in (value, value[:cut]):
        text = json.dumps(decode_record(b"authUsers", name, v))
        assert "SECRET-" not in text
        assert secret.hex() not in text


def test_module_has_no_io_imports():
    src = open(etcd.__file__, encoding="utf-8").read()
    for mod in ("import os", "import io", "open("):
        assert mod not in src
