"""The tests' own protobuf encoder, from the wire format spec
(https://protobuf.dev/programming-guides/encoding/): it shares no code with
boltfix (not even its varint), so a decoder bug cannot cancel out."""

from __future__ import annotations

import struct


def varint(n: int) -> bytes:
    """A base-128 varint; a negative int64 as its two's complement (10 bytes)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    """A field's tag: its number and wire type."""
    return varint(field << 3 | wire)


def ld(field: int, payload) -> bytes:
    """A length-delimited field (a str is UTF-8)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return tag(field, 2) + varint(len(payload)) + payload


def vi(field: int, n: int) -> bytes:
    """A varint field."""
    return tag(field, 0) + varint(n)


def fixed64(field: int, n: int) -> bytes:
    """A fixed64 field."""
    return tag(field, 1) + struct.pack("<Q", n)


def fixed32(field: int, n: int) -> bytes:
    """A fixed32 field."""
    return tag(field, 5) + struct.pack("<I", n)


def rev_key(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """An etcd revision key (``key`` bucket)."""
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub) + (b"t" if tombstone else b"")


def key_value(key=b"foo", create=2, mod=3, version=1, value=b"bar", lease=0) -> bytes:
    """An ``mvccpb.KeyValue`` (fields left out when zero, as proto3 does)."""
    out = ld(1, key)
    if create:
        out += vi(2, create)
    if mod:
        out += vi(3, mod)
    if version:
        out += vi(4, version)
    if value:
        out += ld(5, value)
    if lease:
        out += vi(6, lease)
    return out


#: a bcrypt hash as etcd stores a password
BCRYPT = b"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"


def user(name=b"root", password=BCRYPT, roles=(b"root",), no_password=None) -> bytes:
    """An ``authpb.User``."""
    out = ld(1, name)
    if password:
        out += ld(2, password)
    for r in roles:
        out += ld(3, r)
    if no_password is not None:
        out += ld(4, vi(1, int(no_password)))
    return out
