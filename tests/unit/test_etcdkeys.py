"""Tests for boltfix.etcdkeys: etcd's bucket names and revision keys."""

from __future__ import annotations

import pytest

from boltfix.etcdkeys import (
    decode_revision,
    is_revision,
    is_tombstone,
    leading_user_key,
    main_revision,
    revision_bucket_guess,
    sub_revision,
    user_key,
)
from support.protobuf import key_value, ld, rev_key, vi


# ------------------------------------------------------------------ revisions
class TestRevision:
    def test_revision(self):
        assert decode_revision(rev_key(5, 2)) == {"main": 5, "sub": 2, "tombstone": False}

    def test_tombstone(self):
        assert decode_revision(rev_key(9, 0, True)) == {"main": 9, "sub": 0, "tombstone": True}

    @pytest.mark.parametrize(
        "key",
        [b"", b"foo", rev_key(1, 1)[:16], rev_key(1, 1) + b"x", rev_key(1, 1) + b"tt",
         rev_key(1, 1).replace(b"_", b"-")],
    )
    def test_not_a_revision(self, key):
        assert decode_revision(key) is None
        assert revision_bucket_guess(key) is False

    def test_guess(self):
        assert revision_bucket_guess(rev_key(1, 0))
        assert revision_bucket_guess(rev_key(123456, 3, True))
        assert not revision_bucket_guess(rev_key(0, 0))
        assert not revision_bucket_guess(rev_key(2**63, 0))
        assert not revision_bucket_guess(None)


class TestShapes:
    """The fast shape tests the analyses use agree with decode_revision."""

    @pytest.mark.parametrize("key", [rev_key(5, 2), rev_key(9, 0, True), rev_key(2**63, 1)])
    def test_revision_shapes(self, key):
        assert is_revision(key)
        assert is_tombstone(key) == decode_revision(key)["tombstone"]
        assert main_revision(key) == int.from_bytes(key[:8], "big")
        assert sub_revision(key) == int.from_bytes(key[9:17], "big")

    @pytest.mark.parametrize("key", [b"", b"x" * 17, rev_key(1, 1) + b"x",
                                     rev_key(1, 1).replace(b"_", b"-")])
    def test_not_revisions(self, key):
        assert not is_revision(key)
        assert decode_revision(key) is None
        assert not is_tombstone(key)


class TestUserKey:
    def test_first_field(self):
        kv = key_value(b"/registry/pods/a")
        assert user_key(kv) == leading_user_key(kv) == b"/registry/pods/a"

    def test_long_key_needs_a_longer_length(self):
        kv = key_value(b"k" * 300)  # a two-byte length
        assert user_key(kv) == leading_user_key(kv) == b"k" * 300

    def test_field_1_not_first(self):
        kv = vi(2, 7) + ld(1, b"late")
        assert user_key(kv) == b"late"  # the full decoder finds it
        assert leading_user_key(kv) is None  # etcd writes it first: not a KeyValue of etcd's

    @pytest.mark.parametrize("kv", [b"", b"\x0a", b"\x0a\x05ab", b"\x0a" + b"\xff" * 11, b"\x12\x01a"])
    def test_malformed(self, kv):
        assert leading_user_key(kv) is None
        assert user_key(kv) is None
