"""The protobuf wire format, decoded from the spec: the one wire decoder
of boltfix (https://protobuf.dev/programming-guides/encoding/), without a
protobuf library.

Every input is untrusted bytes: malformed data raises :class:`ProtoError`
(a ``ValueError`` with the offset where the problem starts), never
anything else.  A huge value's :class:`~boltfix.bigbytes.Span` is read as
bytes (its slices shorter than ``MIN_SPAN`` are bytes), never copied whole.

* :func:`iter_fields` / :func:`fields` / :func:`decode_fields`: a message's
  fields, with the offset of each payload;
* :func:`decode_schema`: a message against ``{field_no: (name, wire_type,
  kind)}``;
* :func:`decoded`: a decoder's failure as ``{"error": ...}``;
* :func:`parse_json`: strict, modestly nested JSON (values that hold JSON).

Used by :mod:`boltfix.etcd` (etcd's records), :mod:`boltfix.k8s`
(Kubernetes objects) and :mod:`boltfix.secrets`.
"""

from __future__ import annotations

import json
from typing import Any

from boltfix.bigbytes import Span

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


def check_bytes(data: Any, name: str = "data") -> bytes:
    """``data`` as bytes (a huge value's Span stays one); TypeError for anything else."""
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


def fields(data: bytes, base: int = 0) -> list:
    """Like :func:`decode_fields` with a 4th item: the payload's offset."""
    return list(iter_fields(data, base))


def iter_fields(data: bytes, base: int = 0):
    """:func:`fields` one field at a time (a huge value's fields,
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
    data = check_bytes(data)
    return [item[:3] for item in fields(data, base)]


def int64(u: int) -> int:
    """A varint's 64 bits as a signed int64 (two's complement)."""
    u &= _U64 - 1
    return u - _U64 if u >= (1 << 63) else u


def int32(u: int) -> int:
    """Go's ``int32(varint)``: keep the low 32 bits, signed."""
    u &= 0xFFFFFFFF
    return u - (1 << 32) if u >= (1 << 31) else u


def wrong_wire(field_no: int, name: str, got: int, want: int, offset: int):
    """The ProtoError for a field of a known number with the wrong wire type."""
    return ProtoError(
        f"wrong wire type {got} for field {field_no} ({name}), expected {want}",
        offset,
    )


def decode_schema(data: bytes, schema: dict, base: int = 0) -> tuple:
    """Decode ``data`` against ``{field_no: (name, wire_type, kind)}``.

    Returns ``(known, unknown)`` where ``known`` maps name -> value (last
    occurrence wins for scalars, ``repeated`` kinds collect lists) and
    ``unknown`` is ``[(field_no, wire_type, value, offset)]``.
    """
    known: dict = {}
    unknown: list = []
    for field_no, wt, value, off in fields(data, base):
        spec = schema.get(field_no)
        if spec is None:
            unknown.append((field_no, wt, value, off))
            continue
        name, want, kind = spec
        if wt != want:
            # proto3 allows packed encoding of repeated scalars, but no field
            # we know is a repeated scalar; everything else is a type error,
            # which gogo-protobuf (what etcd uses) rejects too.
            raise wrong_wire(field_no, name, wt, want, off)
        if kind == "int64":
            known[name] = int64(value)
        elif kind == "uint64":
            known[name] = value
        elif kind == "int32":
            known[name] = int32(value)
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


def decoded(fn, *args, **kwargs) -> dict:
    """Run a decoder, turning any failure into ``{"error": ...}``."""
    try:
        return fn(*args, **kwargs)
    except TypeError:
        raise
    except ProtoError as exc:
        return {"error": str(exc)}
    except (ValueError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}



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


def parse_json(value: bytes) -> tuple:
    """``(True, obj)`` if ``value`` is strict, modestly nested JSON."""
    try:
        text = value.decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None
    if not _json_depth_ok(obj):
        return False, None
    return True, obj
