"""etcd's bucket names and revision keys: how boltfix recognises etcd's
data, in one place.

Bucket names follow etcd's ``server/storage/schema`` (3.5/3.6;
``mvcc/backend`` in 3.4).  A revision key (``key`` bucket) is 17 bytes:
8-byte big-endian main revision, ``_``, 8-byte big-endian sub revision; 18
with a trailing ``t`` is a tombstone (``revToBytes``/``BytesToRev``).  The
value of a ``key`` record is an ``mvccpb.KeyValue``, whose field 1 is the
user key.
"""

from __future__ import annotations

from typing import Optional

from boltfix.protowire import WIRE_LEN, ProtoError, check_bytes, decode_varint, int64, iter_fields

# ------------------------------------------------------------------ buckets
KEY = b"key"
META = b"meta"
#: bucket paths of etcd's top-level ``key`` and ``meta`` buckets
KEY_BUCKET = (KEY,)
META_BUCKET = (META,)

ETCD_BUCKETS: frozenset = frozenset(
    {
        KEY,
        META,
        b"lease",
        b"auth",
        b"authUsers",
        b"authRoles",
        b"members",
        b"members_removed",
        b"cluster",
        b"alarm",
    }
)


# ------------------------------------------------------------------ revision keys
def decode_revision(key: bytes) -> Optional[dict]:
    """An etcd revision key -> ``{"main", "sub", "tombstone"}``, else ``None``.

    17 bytes: 8-byte big-endian main, ``_``, 8-byte big-endian sub; 18 bytes
    with a trailing ``t`` is a tombstone.  main and sub are read as int64,
    as etcd's ``BytesToRev`` does.
    """
    key = check_bytes(key, "key")
    if len(key) == 18 and key[17:18] == b"t":
        tombstone = True
    elif len(key) == 17:
        tombstone = False
    else:
        return None
    if key[8:9] != b"_":
        return None
    return {
        "main": int64(int.from_bytes(key[0:8], "big")),
        "sub": int64(int.from_bytes(key[9:17], "big")),
        "tombstone": tombstone,
    }


def revision_bucket_guess(key: bytes) -> bool:
    """Whether a leaf key looks like an etcd revision key.

    Stricter than :func:`decode_revision`: also requires main >= 1 and
    sub >= 0, as every real revision has.  Used to attribute orphan leaf
    pages to the ``key`` bucket.
    """
    if not isinstance(key, (bytes, bytearray, memoryview)):
        return False
    rev = decode_revision(bytes(key))
    return rev is not None and rev["main"] >= 1 and rev["sub"] >= 0


def is_revision(key) -> bool:
    """The shape of a revision key (17 bytes, or 18 ending in ``t``, with
    ``_`` at byte 8), without decoding it: the hot path of the analyses."""
    return (len(key) == 17 or (len(key) == 18 and key[17] == 0x74)) and key[8] == 0x5F


def is_tombstone(key) -> bool:
    """A tombstone's key: 18 bytes ending in ``t``."""
    return len(key) == 18 and key[17:18] == b"t"


def main_revision(key) -> int:
    """The main revision of a revision key, unsigned (the bytes' own order,
    in which the bucket sorts them)."""
    return int.from_bytes(key[:8], "big")


def sub_revision(key) -> int:
    """The sub revision of a revision key, unsigned."""
    return int.from_bytes(key[9:17], "big")


# ------------------------------------------------------------------ user keys
def user_key(kv) -> Optional[bytes]:
    """The user key (field 1) of a raw ``mvccpb.KeyValue``, or ``None``.

    etcd marshals field 1 first, so the usual case reads one tag and one
    length; anything else goes through the full wire decoder."""
    kv = memoryview(kv)
    if len(kv) >= 2 and kv[0] == 0x0A and kv[1] < 0x80:
        n = kv[1]
        if 2 + n <= len(kv):
            return bytes(kv[2:2 + n])
    try:
        for no, wt, val, _off in iter_fields(bytes(kv)):
            if no == 1 and wt == WIRE_LEN:
                return val
    except ProtoError:
        return None
    return None


def leading_user_key(value) -> Optional[bytes]:
    """The user key of a KeyValue whose first field is field 1 (as etcd
    writes every one), else None: stricter than :func:`user_key`, which
    looks further.  What the served-state analysis keys its verdicts by."""
    if len(value) < 2 or value[0] != 0x0A:
        return None
    try:
        n, pos = decode_varint(value, 1)
    except ProtoError:
        return None
    if pos + n > len(value):
        return None
    return bytes(value[pos:pos + n])
