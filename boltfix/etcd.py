"""Understanding etcd's data inside a bbolt file.

Pure functions, no I/O.  Every input is treated as untrusted bytes from a
possibly damaged file: no public function raises on any ``bytes`` input
(only ``TypeError`` for wrong Python types).  Malformed data is reported as
data, as ``{"error": "... at offset N"}``.

Bucket and record layouts follow etcd's ``server/storage/schema`` (3.5/3.6;
``mvcc/backend`` in 3.4) and the ``.proto`` files of ``mvccpb`` (kv.proto),
``leasepb`` (lease.proto), ``authpb`` (auth.proto) and ``etcdserverpb``
(``AlarmMember`` in rpc.proto).  The protobuf wire format is decoded from the
spec (https://protobuf.dev/programming-guides/encoding/) without a protobuf
library.

Two layers
----------
* ``decode_fields`` and the ``decode_*`` functions return plain Python values:
  protobuf ``bytes`` fields stay ``bytes``.  On failure they return
  ``{"error": message}``.
* ``decode_record`` is the dispatcher used by ``boltfix dump``: it returns a
  JSON-serialisable dict (``json.dumps`` works with default settings and
  yields strict JSON, no NaN), or ``None`` for a bucket etcd does not have.

Conventions of ``decode_record`` output
---------------------------------------
* **Bytes** are rendered by :func:`render_bytes`: a JSON *string* when the
  bytes are valid UTF-8 and every character is printable (``str.isprintable``)
  or one of tab/newline/carriage return; otherwise an object
  ``{"hex": "<lower-case hex>"}``.  So a string always means "these bytes,
  as text", an object with ``hex`` always means "these bytes, not text".
* **Integers** are JSON numbers.  int64 fields are two's-complement signed
  (a 10-byte varint of ``-1`` decodes to ``-1``); uint64 fields are unsigned.
* **Enums** become their name (``"READWRITE"``, ``"NOSPACE"``) when known,
  else the number.
* **Errors**: a dict containing the key ``"error"`` (a message with the byte
  offset inside the value, or naming the part that is wrong) means something
  did not decode.  Other keys may sit beside ``"error"`` with what *did*
  decode (for example the revision of a ``key`` record whose value is
  garbage).  A dict without ``"error"`` decoded cleanly.
* **Unknown protobuf fields** are kept as a list under ``"unknown"`` of
  ``{"field": n, "wire_type": w, "value": ...}``.
* **Secrets**: the ``authUsers`` password (a bcrypt hash) is shown as
  ``"<redacted>"`` unless ``show_secrets``; unknown length-delimited fields of
  a ``User`` are shown only by length, since a damaged tag could turn the
  password field into an "unknown" one.  Callers printing raw bytes must
  also consult :data:`SECRET_BUCKETS`.
* **Kubernetes**: a ``key`` record whose KeyValue holds a Kubernetes object
  gets ``"k8s"`` (:func:`boltfix.k8s.decode_value`); unless
  ``show_secrets``, a Secret's data is masked in the decoded ``value``
  (:func:`boltfix.k8s.mask_kv`).  Callers printing raw ``key`` values must
  mask them with ``mask_kv`` too.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

from boltfix.bigbytes import Span
from boltfix.record import as_text

__all__ = [
    "ETCD_BUCKETS",
    "SECRET_BUCKETS",
    "REDACTED",
    "ProtoError",
    "decode_varint",
    "decode_fields",
    "render_bytes",
    "decode_revision",
    "decode_key_value",
    "decode_lease",
    "decode_user",
    "decode_role",
    "decode_meta",
    "decode_auth",
    "decode_member",
    "decode_member_removed",
    "decode_cluster",
    "decode_alarm",
    "decode_record",
    "looks_like_etcd",
    "guess_etcd_version",
    "check_key_record",
    "revision_bucket_guess",
]

# ------------------------------------------------------------------ buckets
ETCD_BUCKETS: frozenset = frozenset(
    {
        b"key",
        b"meta",
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

#: Buckets whose raw values hold secrets (bcrypt password hashes).  A caller
#: that prints raw value bytes (hexdumps, ``get``) must hide these unless the
#: user asked for secrets.
SECRET_BUCKETS: frozenset = frozenset({b"authUsers"})

REDACTED = "<redacted>"

# ------------------------------------------------------------------ wire format
WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_SGROUP = 3
WIRE_EGROUP = 4
WIRE_FIXED32 = 5

_MAX_FIELD_NO = (1 << 29) - 1
_U64 = 1 << 64


class ProtoError(ValueError):
    """Malformed protobuf wire data; ``offset`` is where the problem starts."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


def _check_bytes(data: Any, name: str = "data") -> bytes:
    if isinstance(data, bytes) or type(data) is Span:  # a Span: a huge value's view
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{name} must be bytes, not {type(data).__name__}")


def decode_varint(data: bytes, pos: int, base: int = 0) -> tuple:
    """Decode a base-128 varint at ``data[pos:]`` -> ``(value, new_pos)``.

    At most 10 bytes; a 10th byte above 1 would overflow 64 bits.  Both are
    rejected, as is a varint cut off by the end of ``data``.  Non-minimal
    encodings (``80 00``) are accepted, as Go's decoders accept them.
    ``base`` is added to offsets in error messages (for nested messages).
    """
    result = 0
    shift = 0
    start = pos
    end = len(data)
    for i in range(10):
        if pos >= end:
            raise ProtoError("truncated varint", base + start)
        b = data[pos]
        pos += 1
        if i == 9:
            if b & 0x80:
                raise ProtoError("varint longer than 10 bytes", base + start)
            if b > 1:
                raise ProtoError("varint overflows 64 bits", base + start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    raise AssertionError("unreachable")  # pragma: no cover


def _iter_fields(data: bytes, base: int = 0) -> list:
    """Like :func:`decode_fields` with a 4th item: the payload's offset."""
    return list(iter_fields(data, base))


def iter_fields(data: bytes, base: int = 0):
    """:func:`_iter_fields` one field at a time (a huge value's fields,
    never all held)."""
    pos = 0
    end = len(data)
    while pos < end:
        tag_pos = pos
        tag = data[pos]
        if tag < 0x80:  # a one-byte varint (nearly every tag): no call
            pos += 1
        else:
            tag, pos = decode_varint(data, pos, base)
        wire_type = tag & 7
        field_no = tag >> 3
        if field_no == 0:
            raise ProtoError("invalid field number 0", base + tag_pos)
        if field_no > _MAX_FIELD_NO:
            raise ProtoError(f"field number {field_no} out of range", base + tag_pos)
        payload = pos
        if wire_type == WIRE_VARINT:
            if pos < end and data[pos] < 0x80:
                value = data[pos]
                pos += 1
            else:
                value, pos = decode_varint(data, pos, base)
        elif wire_type == WIRE_FIXED64:
            if pos + 8 > end:
                raise ProtoError(f"truncated fixed64 field {field_no}", base + pos)
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire_type == WIRE_LEN:
            if pos < end and data[pos] < 0x80:
                length = data[pos]
                pos += 1
            else:
                length, pos = decode_varint(data, pos, base)
            if length > end - pos:
                raise ProtoError(
                    f"length {length} of field {field_no} runs past the end "
                    f"({end - pos} bytes left)",
                    base + payload,
                )
            payload = pos
            value = data[pos : pos + length]
            pos += length
        elif wire_type == WIRE_FIXED32:
            if pos + 4 > end:
                raise ProtoError(f"truncated fixed32 field {field_no}", base + pos)
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire_type in (WIRE_SGROUP, WIRE_EGROUP):
            raise ProtoError(
                f"unsupported group wire type {wire_type} for field {field_no}",
                base + tag_pos,
            )
        else:
            raise ProtoError(
                f"invalid wire type {wire_type} for field {field_no}", base + tag_pos
            )
        yield field_no, wire_type, value, base + payload


def decode_fields(data: bytes, base: int = 0) -> list:
    """Split a protobuf message into ``[(field_no, wire_type, value), ...]``.

    ``value`` is an unsigned ``int`` for varint, fixed64 and fixed32 fields
    and ``bytes`` for length-delimited ones.  Groups (wire types 3 and 4),
    the undefined wire types 6 and 7, field number 0 and field numbers above
    2**29-1 raise :class:`ProtoError`, as does any length running past the
    end.  ``base`` is added to reported offsets.
    """
    data = _check_bytes(data)
    return [item[:3] for item in _iter_fields(data, base)]


def _int64(u: int) -> int:
    u &= _U64 - 1
    return u - _U64 if u >= (1 << 63) else u


def _int32(u: int) -> int:
    """Go's ``int32(varint)``: keep the low 32 bits, signed."""
    u &= 0xFFFFFFFF
    return u - (1 << 32) if u >= (1 << 31) else u


def _wrong_wire(field_no: int, name: str, got: int, want: int, offset: int):
    return ProtoError(
        f"wrong wire type {got} for field {field_no} ({name}), expected {want}",
        offset,
    )


def _decode_schema(data: bytes, schema: dict, base: int = 0) -> tuple:
    """Decode ``data`` against ``{field_no: (name, wire_type, kind)}``.

    Returns ``(known, unknown)`` where ``known`` maps name -> value (last
    occurrence wins for scalars, ``repeated`` kinds collect lists) and
    ``unknown`` is ``[(field_no, wire_type, value, offset)]``.
    """
    known: dict = {}
    unknown: list = []
    for field_no, wt, value, off in _iter_fields(data, base):
        spec = schema.get(field_no)
        if spec is None:
            unknown.append((field_no, wt, value, off))
            continue
        name, want, kind = spec
        if wt != want:
            # proto3 allows packed encoding of repeated scalars, but no field
            # we know is a repeated scalar; everything else is a type error,
            # which gogo-protobuf (what etcd uses) rejects too.
            raise _wrong_wire(field_no, name, wt, want, off)
        if kind == "int64":
            known[name] = _int64(value)
        elif kind == "uint64":
            known[name] = value
        elif kind == "int32":
            known[name] = _int32(value)
        elif kind == "bool":
            known[name] = value != 0
        elif kind == "bytes":
            known[name] = value
        elif kind == "repeated_bytes":
            known.setdefault(name, []).append(value)
        elif kind == "repeated_msg":
            known.setdefault(name, []).append((value, off))
        elif kind == "msg":
            known[name] = (value, off)
        else:  # pragma: no cover - schema typo
            raise AssertionError(kind)
    return known, unknown


def _guard(fn, *args, **kwargs) -> dict:
    """Run a decoder, turning any failure into ``{"error": ...}``."""
    try:
        return fn(*args, **kwargs)
    except TypeError:
        raise
    except ProtoError as exc:
        return {"error": str(exc)}
    except (ValueError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# ------------------------------------------------------------------ rendering
def render_bytes(b: bytes) -> Any:
    """Bytes as a JSON value: text by :func:`boltfix.record.as_text`, else
    ``{"hex": ...}``."""
    b = _check_bytes(b, "value")
    if type(b) is Span:  # a huge payload: written in pieces (boltfix.bigrecord)
        from boltfix.bigrecord import etcd_big

        return etcd_big(b.source())
    s = as_text(b)
    return {"hex": b.hex()} if s is None else s


def _jsonable(value: Any) -> Any:
    """Recursively render bytes inside plain decoder output."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value  # most of a decoded record: nothing to render
    if isinstance(value, (bytes, bytearray, memoryview)):
        return render_bytes(bytes(value))
    if t is Span:
        return render_bytes(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _unknown_list(unknown: list, hide_bytes: bool = False) -> list:
    out = []
    for field_no, wt, value, _off in unknown:
        entry = {"field": field_no, "wire_type": wt}
        if wt == WIRE_LEN and hide_bytes:
            entry["length"] = len(value)
            entry["value"] = REDACTED
        else:
            entry["value"] = value
        out.append(entry)
    return out


_MAX_JSON_DEPTH = 64


def _json_depth_ok(obj: Any) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > _MAX_JSON_DEPTH:
            return False
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return True


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_json(value: bytes) -> tuple:
    """``(True, obj)`` if ``value`` is strict, modestly nested JSON."""
    try:
        text = value.decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None
    if not _json_depth_ok(obj):
        return False, None
    return True, obj


def _be_u64(value: bytes) -> Optional[int]:
    if len(value) != 8:
        return None
    return int.from_bytes(value, "big")


# ------------------------------------------------------------------ key bucket
def decode_revision(key: bytes) -> Optional[dict]:
    """An etcd revision key -> ``{"main", "sub", "tombstone"}``, else ``None``.

    17 bytes: 8-byte big-endian main, ``_``, 8-byte big-endian sub; 18 bytes
    with a trailing ``t`` is a tombstone.  main and sub are read as int64,
    as etcd's ``BytesToRev`` does.
    """
    key = _check_bytes(key, "key")
    if len(key) == 18 and key[17:18] == b"t":
        tombstone = True
    elif len(key) == 17:
        tombstone = False
    else:
        return None
    if key[8:9] != b"_":
        return None
    return {
        "main": _int64(int.from_bytes(key[0:8], "big")),
        "sub": _int64(int.from_bytes(key[9:17], "big")),
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


_KV_SCHEMA = {
    1: ("key", WIRE_LEN, "bytes"),
    2: ("create_revision", WIRE_VARINT, "int64"),
    3: ("mod_revision", WIRE_VARINT, "int64"),
    4: ("version", WIRE_VARINT, "int64"),
    5: ("value", WIRE_LEN, "bytes"),
    6: ("lease", WIRE_VARINT, "int64"),
}


def _decode_key_value(value: bytes) -> dict:
    known, unknown = _decode_schema(value, _KV_SCHEMA)
    out = {
        "key": known.get("key", b""),
        "create_revision": known.get("create_revision", 0),
        "mod_revision": known.get("mod_revision", 0),
        "version": known.get("version", 0),
        "value": known.get("value", b""),
        "lease": known.get("lease", 0),
    }
    if unknown:
        out["unknown"] = _unknown_list(unknown)
    return out


def decode_key_value(value: bytes) -> dict:
    """Decode an ``mvccpb.KeyValue``.

    Returns ``{"key": bytes, "create_revision": int, "mod_revision": int,
    "version": int, "value": bytes, "lease": int}`` (proto3 defaults for
    absent fields), plus ``"unknown"`` when there are unknown fields; or
    ``{"error": ...}``.
    """
    value = _check_bytes(value, "value")
    return _guard(_decode_key_value, value)


# ------------------------------------------------------------------ lease
_LEASE_SCHEMA = {
    1: ("ID", WIRE_VARINT, "int64"),
    2: ("TTL", WIRE_VARINT, "int64"),
    3: ("RemainingTTL", WIRE_VARINT, "int64"),
}


def _decode_lease(key: bytes, value: bytes) -> dict:
    out: dict = {}
    key_id = _be_u64(key)
    out["key_id"] = None if key_id is None else _int64(key_id)
    known, unknown = _decode_schema(value, _LEASE_SCHEMA)
    out["ID"] = known.get("ID", 0)
    out["TTL"] = known.get("TTL", 0)
    out["RemainingTTL"] = known.get("RemainingTTL", 0)
    if unknown:
        out["unknown"] = _unknown_list(unknown)
    if key_id is None:
        out["error"] = f"lease key is {len(key)} bytes, expected 8"
    elif out["key_id"] != out["ID"]:
        out["id_mismatch"] = True
    return out


def decode_lease(key: bytes, value: bytes) -> dict:
    """Decode a ``lease`` record: 8-byte BE lease id -> ``leasepb.Lease``.

    Returns ``{"key_id", "ID", "TTL", "RemainingTTL"}`` (``id_mismatch: True``
    when the key and the ID field disagree), or a dict with ``"error"``.
    """
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    return _guard(_decode_lease, key, value)


# ------------------------------------------------------------------ auth
_USER_SCHEMA = {
    1: ("name", WIRE_LEN, "bytes"),
    2: ("password", WIRE_LEN, "bytes"),
    3: ("roles", WIRE_LEN, "repeated_bytes"),
    4: ("options", WIRE_LEN, "msg"),
}
_USER_OPTIONS_SCHEMA = {1: ("no_password", WIRE_VARINT, "bool")}


def _decode_user(value: bytes, show_secrets: bool) -> dict:
    known, unknown = _decode_schema(value, _USER_SCHEMA)
    out: dict = {"name": known.get("name", b"")}
    password = known.get("password", b"")
    if show_secrets:
        out["password"] = password
    else:
        out["password"] = REDACTED if password else b""
    out["roles"] = known.get("roles", [])
    opts = {"no_password": False}
    if "options" in known:
        data, off = known["options"]
        o_known, o_unknown = _decode_schema(data, _USER_OPTIONS_SCHEMA, off)
        opts["no_password"] = o_known.get("no_password", False)
        if o_unknown:
            opts["unknown"] = _unknown_list(o_unknown, hide_bytes=not show_secrets)
    out["options"] = opts
    if unknown:
        out["unknown"] = _unknown_list(unknown, hide_bytes=not show_secrets)
    return out


def decode_user(value: bytes, show_secrets: bool = False) -> dict:
    """Decode an ``authpb.User``.

    ``{"name": bytes, "password": "<redacted>" | b"" | bytes, "roles":
    [bytes], "options": {"no_password": bool}}``.  The password (a bcrypt
    hash) is returned only when ``show_secrets``; otherwise it is
    ``"<redacted>"`` (or ``b""`` when the user has none), and unknown
    length-delimited fields are shown by length only.  Errors carry offsets,
    never data.
    """
    value = _check_bytes(value, "value")
    return _guard(_decode_user, value, bool(show_secrets))


PERM_TYPES = {0: "READ", 1: "WRITE", 2: "READWRITE"}

_ROLE_SCHEMA = {
    1: ("name", WIRE_LEN, "bytes"),
    2: ("keyPermission", WIRE_LEN, "repeated_msg"),
}
_PERMISSION_SCHEMA = {
    1: ("permType", WIRE_VARINT, "int32"),
    2: ("key", WIRE_LEN, "bytes"),
    3: ("range_end", WIRE_LEN, "bytes"),
}


def _decode_role(value: bytes) -> dict:
    known, unknown = _decode_schema(value, _ROLE_SCHEMA)
    perms = []
    for data, off in known.get("keyPermission", []):
        p_known, p_unknown = _decode_schema(data, _PERMISSION_SCHEMA, off)
        pt = p_known.get("permType", 0)
        perm = {
            "permType": PERM_TYPES.get(pt, pt),
            "key": p_known.get("key", b""),
            "range_end": p_known.get("range_end", b""),
        }
        if p_unknown:
            perm["unknown"] = _unknown_list(p_unknown)
        perms.append(perm)
    out = {"name": known.get("name", b""), "keyPermission": perms}
    if unknown:
        out["unknown"] = _unknown_list(unknown)
    return out


def decode_role(value: bytes) -> dict:
    """Decode an ``authpb.Role``: ``{"name": bytes, "keyPermission": [
    {"permType": "READ"|"WRITE"|"READWRITE"|int, "key": bytes,
    "range_end": bytes}]}``, or ``{"error": ...}``."""
    value = _check_bytes(value, "value")
    return _guard(_decode_role, value)


def _decode_auth(key: bytes, value: bytes) -> dict:
    if key == b"authEnabled":
        if len(value) != 1:
            return {"error": f"authEnabled is {len(value)} bytes, expected 1"}
        if value[0] > 1:
            return {"error": f"authEnabled byte is {value[0]}, expected 0 or 1"}
        return {"value": value[0] == 1}
    if key == b"authRevision":
        rev = _be_u64(value)
        if rev is None:
            return {"error": f"authRevision is {len(value)} bytes, expected 8"}
        return {"value": rev}
    return {"value": value, "unknown_key": True}


def decode_auth(key: bytes, value: bytes) -> dict:
    """Decode an ``auth`` record: ``authEnabled`` -> ``{"value": bool}``,
    ``authRevision`` -> ``{"value": int}``; other keys are kept raw with
    ``"unknown_key": True``."""
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    return _guard(_decode_auth, key, value)


# ------------------------------------------------------------------ meta
_META_U64 = (b"consistent_index", b"term")
_META_REV = (b"scheduledCompactRev", b"finishedCompactRev")


def _decode_meta(key: bytes, value: bytes) -> dict:
    if key in _META_U64:
        n = _be_u64(value)
        if n is None:
            return {"error": f"{key.decode()} is {len(value)} bytes, expected 8"}
        return {"value": n}
    if key in _META_REV:
        rev = decode_revision(value)
        if rev is None or rev["tombstone"]:
            return {
                "error": f"{key.decode()} is not a 17-byte revision "
                f"({len(value)} bytes)"
            }
        return {"value": rev}
    if key == b"confState":
        ok, obj = _parse_json(value)
        if not ok:
            return {"error": "confState is not valid JSON", "value": value}
        return {"value": obj}
    if key == b"storageVersion":
        return {"value": value}
    return {"value": value, "unknown_key": True}


def decode_meta(key: bytes, value: bytes) -> dict:
    """Decode a ``meta`` record.

    ``consistent_index``/``term`` -> int; ``scheduledCompactRev``/
    ``finishedCompactRev`` -> revision dict; ``confState`` -> parsed JSON;
    ``storageVersion`` -> bytes (text); other keys -> raw bytes with
    ``"unknown_key": True``.  Always ``{"value": ...}`` or ``{"error": ...}``.
    """
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    return _guard(_decode_meta, key, value)


# ------------------------------------------------------------------ membership
def _hex_member_id(key: bytes) -> Optional[int]:
    if not 1 <= len(key) <= 16:
        return None
    try:
        text = key.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not all(c in "0123456789abcdefABCDEF" for c in text):
        return None
    return int(text, 16)


def _decode_member(key: bytes, value: bytes) -> dict:
    out: dict = {"member_id": _hex_member_id(key)}
    ok, obj = _parse_json(value)
    if ok:
        out["value"] = obj
    else:
        out["value"] = value
        out["error"] = "member value is not valid JSON"
    if out["member_id"] is None:
        out["error"] = "member key is not a hex id" + (
            "; " + out["error"] if "error" in out else ""
        )
    return out


def decode_member(key: bytes, value: bytes) -> dict:
    """A ``members`` record: hex id key, JSON value ->
    ``{"member_id": int|None, "value": obj}`` (``"error"`` when either is bad)."""
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    return _guard(_decode_member, key, value)


def _decode_member_removed(key: bytes, value: bytes) -> dict:
    out: dict = {"member_id": _hex_member_id(key), "value": value}
    if out["member_id"] is None:
        out["error"] = "removed-member key is not a hex id"
    return out


def decode_member_removed(key: bytes, value: bytes) -> dict:
    """A ``members_removed`` record: ``{"member_id": int|None, "value": bytes}``
    (the value is normally ``removed``)."""
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    return _guard(_decode_member_removed, key, value)


def _decode_cluster(key: bytes, value: bytes) -> dict:
    if key == b"clusterVersion":
        return {"value": value}
    ok, obj = _parse_json(value)
    if key == b"downgrade":
        if not ok:
            return {"error": "downgrade is not valid JSON", "value": value}
        return {"value": obj}
    if ok and isinstance(obj, (dict, list)):
        return {"value": obj, "unknown_key": True}
    return {"value": value, "unknown_key": True}


def decode_cluster(key: bytes, value: bytes) -> dict:
    """A ``cluster`` record: ``clusterVersion`` -> bytes (text), ``downgrade``
    -> parsed JSON; other keys JSON if an object/array, else raw."""
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    return _guard(_decode_cluster, key, value)


ALARM_TYPES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}

_ALARM_SCHEMA = {
    1: ("memberID", WIRE_VARINT, "uint64"),
    2: ("alarm", WIRE_VARINT, "int32"),
}


def _decode_alarm(key: bytes, value: bytes) -> dict:
    known, unknown = _decode_schema(key, _ALARM_SCHEMA)
    a = known.get("alarm", 0)
    out: dict = {"memberID": known.get("memberID", 0), "alarm": ALARM_TYPES.get(a, a)}
    if unknown:
        out["unknown"] = _unknown_list(unknown)
    if value:
        out["unexpected_value"] = value
    return out


def decode_alarm(key: bytes, value: bytes = b"") -> dict:
    """An ``alarm`` record: the *key* is an ``AlarmMember`` protobuf ->
    ``{"memberID": int, "alarm": "NONE"|"NOSPACE"|"CORRUPT"|int}``; a
    non-empty value is reported as ``"unexpected_value"``."""
    key = _check_bytes(key, "key")
    value = _check_bytes(value, "value")
    out = _guard(_decode_alarm, key, value)
    if "error" in out:
        out["error"] = "alarm key: " + out["error"]
    return out


# ------------------------------------------------------------------ dispatcher
def _record_key(key: bytes, value: bytes, show_secrets: bool = False) -> dict:
    from boltfix import k8s  # k8s builds on this module's wire decoder

    rev = decode_revision(key)
    out: dict = {"revision": rev}
    if not show_secrets:
        # a Kubernetes Secret's data, masked at the same length (k8s.mask_kv)
        value = k8s.mask_kv(value) or value
    kv = decode_key_value(value)
    if "error" in kv:
        out["error"] = "KeyValue: " + kv["error"]
    else:
        out.update(kv)
    if "error" not in kv:
        obj = k8s.decode_value(kv["value"], kv["key"])
        if obj is not None:
            out["k8s"] = obj
    if rev is None:
        msg = f"key is not a revision ({len(key)} bytes)"
        out["error"] = msg + ("; " + out["error"] if "error" in out else "")
    return out


def _normalise_name(name: Any) -> bytes:
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape")
    return _check_bytes(name, "bucket")


def decode_record(
    bucket: bytes, key: bytes, value: Optional[bytes], show_secrets: bool = False
) -> Optional[dict]:
    """Decode one etcd record for ``boltfix dump``.

    ``bucket`` is the top-level bucket name, ``key``/``value`` the entry
    (``value`` is ``None`` when the entry is a nested bucket, which etcd
    never creates).  Returns a JSON-serialisable dict (see the module
    docstring for conventions), a dict with ``"error"`` when undecodable,
    or ``None`` when ``bucket`` is not one of :data:`ETCD_BUCKETS`.
    """
    bucket = _normalise_name(bucket)
    key = _check_bytes(key, "key")
    if value is not None:
        value = _check_bytes(value, "value")
    if bucket not in ETCD_BUCKETS:
        return None
    if value is None:
        return {"error": f"unexpected nested bucket in etcd bucket {bucket.decode()!r}"}
    try:
        if bucket == b"key":
            out = _record_key(key, value, show_secrets)
        elif bucket == b"meta":
            out = decode_meta(key, value)
        elif bucket == b"lease":
            out = decode_lease(key, value)
        elif bucket == b"auth":
            out = decode_auth(key, value)
        elif bucket == b"authUsers":
            out = decode_user(value, show_secrets=show_secrets)
            if "error" not in out and out["name"] != key:
                out["name_mismatch"] = True
        elif bucket == b"authRoles":
            out = decode_role(value)
            if "error" not in out and out["name"] != key:
                out["name_mismatch"] = True
        elif bucket == b"members":
            out = decode_member(key, value)
        elif bucket == b"members_removed":
            out = decode_member_removed(key, value)
        elif bucket == b"cluster":
            out = decode_cluster(key, value)
        else:  # alarm
            out = decode_alarm(key, value)
        return _jsonable(out)
    except TypeError:
        raise
    except Exception as exc:  # pragma: no cover - defence in depth
        return {"error": f"internal decoder error: {type(exc).__name__}"}


# ------------------------------------------------------------------ detection
def _name_set(names: Iterable) -> set:
    out = set()
    for n in names:
        if isinstance(n, str):
            out.add(n.encode("utf-8", "surrogateescape"))
        elif isinstance(n, (bytes, bytearray, memoryview)):
            out.add(bytes(n))
        else:
            raise TypeError(f"bucket names must be bytes or str, not {type(n).__name__}")
    return out


def looks_like_etcd(top_level_bucket_names: Iterable) -> bool:
    """True when the root holds etcd's ``key`` and ``meta`` buckets."""
    names = _name_set(top_level_bucket_names)
    return b"key" in names and b"meta" in names


def guess_etcd_version(meta_keys: Iterable) -> str:
    """``"3.6+"`` if ``meta`` has ``storageVersion``, ``"3.5"`` if it has
    ``term``, else ``"3.4 or older"``."""
    keys = _name_set(meta_keys)
    if b"storageVersion" in keys:
        return "3.6+"
    if b"term" in keys:
        return "3.5"
    return "3.4 or older"


# ------------------------------------------------------------------ checks
def check_key_record(key: bytes, value: Optional[bytes]) -> list:
    """etcd warnings for one entry of the ``key`` bucket.

    Returns ``[(code, message), ...]`` with codes:

    * ``etcd-bad-revision-key``: the key is not 17 bytes, or 18 ending in
      ``t``, with ``_`` at byte 8.
    * ``etcd-bad-key-value``: the value is a nested bucket, does not decode
      as ``mvccpb.KeyValue`` (etcd exits fatally at start on this), or is a
      non-tombstone with an empty key.  A tombstone value that decodes is
      fine.
    """
    key = _check_bytes(key, "key")
    problems = []
    rev = decode_revision(key)
    if rev is None:
        if len(key) not in (17, 18):
            why = f"{len(key)} bytes, expected 17 (or 18 ending in 't')"
        elif len(key) == 18 and key[17:18] != b"t":
            why = "18 bytes but the last byte is not 't'"
        else:
            why = f"byte 8 is 0x{key[8]:02x}, expected '_' (0x5f)"
        problems.append(("etcd-bad-revision-key", f"revision key is malformed: {why}"))
    tombstone = rev["tombstone"] if rev else (len(key) == 18 and key[17:18] == b"t")
    if value is None:
        problems.append(("etcd-bad-key-value", "entry is a nested bucket, not a KeyValue"))
        return problems
    value = _check_bytes(value, "value")
    kv = decode_key_value(value)
    if "error" in kv:
        problems.append(
            ("etcd-bad-key-value", f"value does not decode as mvccpb.KeyValue: {kv['error']}")
        )
    elif not tombstone and not kv["key"]:
        problems.append(("etcd-bad-key-value", "KeyValue has an empty key"))
    return problems
