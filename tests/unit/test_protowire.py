"""Tests for boltfix.protowire: the protobuf wire format, on bytes built by the
tests' own encoder (support.protobuf)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boltfix.etcd import (
    decode_record,
)
from boltfix.protowire import ProtoError, decode_fields, decode_varint
from support.protobuf import fixed32 as f_fixed32
from support.protobuf import fixed64 as f_fixed64
from support.protobuf import ld as f_bytes
from support.protobuf import (
    tag,
    varint,
)
from support.protobuf import vi as f_varint


# ------------------------------------------------------------------ wire format
class TestWire:
    @pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1])
    def test_varint_roundtrip(self, n):
        data = varint(n)
        assert decode_varint(data, 0) == (n, len(data))

    def test_varint_non_minimal_accepted(self):
        assert decode_varint(b"\x80\x00", 0) == (0, 2)

    def test_varint_truncated(self):
        with pytest.raises(ProtoError) as exc:
            decode_varint(b"\x05\x80\x80", 1)
        assert exc.value.offset == 1
        assert "offset 1" in str(exc.value)

    def test_varint_too_long(self):
        with pytest.raises(ProtoError, match="longer than 10"):
            decode_varint(b"\x80" * 10 + b"\x00", 0)

    def test_varint_overflow_in_tenth_byte(self):
        with pytest.raises(ProtoError, match="overflows"):
            decode_varint(b"\xff" * 9 + b"\x02", 0)

    def test_all_wire_types(self):
        data = f_varint(1, 150) + f_fixed64(2, 7) + f_bytes(3, b"hi") + f_fixed32(4, 9)
        assert decode_fields(data) == [(1, 0, 150), (2, 1, 7), (3, 2, b"hi"), (4, 5, 9)]

    def test_empty_message(self):
        assert decode_fields(b"") == []

    @pytest.mark.parametrize("wire", [3, 4, 6, 7])
    def test_groups_and_bad_wire_types(self, wire):
        with pytest.raises(ProtoError):
            decode_fields(tag(1, wire) + b"\x00" * 8)

    def test_field_zero(self):
        with pytest.raises(ProtoError, match="field number 0"):
            decode_fields(b"\x00\x01")

    def test_length_past_end(self):
        data = f_varint(1, 1) + tag(2, 2) + varint(100) + b"abc"
        with pytest.raises(ProtoError) as exc:
            decode_fields(data)
        assert exc.value.offset == 3  # the length varint

    def test_huge_length(self):
        with pytest.raises(ProtoError):
            decode_fields(tag(1, 2) + varint(2**64 - 1))

    @pytest.mark.parametrize("data", [tag(1, 1) + b"\x00" * 7, tag(1, 5) + b"\x00" * 3])
    def test_truncated_fixed(self, data):
        with pytest.raises(ProtoError, match="truncated"):
            decode_fields(data)

    def test_type_error(self):
        with pytest.raises(TypeError):
            decode_fields("not bytes")
        with pytest.raises(TypeError):
            decode_record(b"key", None, b"")


# ------------------------------------------------------------------ fuzzing


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_decode_fields_only_raises_proto_error(data):
    try:
        fields_ = decode_fields(data)
    except ProtoError as exc:
        assert 0 <= exc.offset <= len(data)
    else:
        assert all(1 <= f <= 2**29 - 1 and w in (0, 1, 2, 5) for f, w, _ in fields_)
