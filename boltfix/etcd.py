"""Understanding etcd's data inside a bbolt file.

Pure functions, no I/O.  Every input is treated as untrusted bytes from a
possibly damaged file: no public function raises on any ``bytes`` input
(only ``TypeError`` for wrong Python types).  Malformed data is reported as
data, as ``{"error": "... at offset N"}``.

Bucket and record layouts follow etcd's ``server/storage/schema`` (3.5/3.6;
``mvcc/backend`` in 3.4) and the ``.proto`` files of ``mvccpb`` (kv.proto),
``leasepb`` (lease.proto), ``authpb`` (auth.proto) and ``etcdserverpb``
(``AlarmMember`` in rpc.proto).  The protobuf wire format is decoded from the
spec by :mod:`boltfix.protowire`; bucket names and revision keys are
:mod:`boltfix.etcdkeys`'.

Two layers
----------
* the ``decode_*`` functions return plain Python values:
  protobuf ``bytes`` fields stay ``bytes``.  On failure they return
  ``{"error": message}``.
* ``decode_record`` is the dispatcher used by ``boltfix dump``: it returns a
  JSON-serialisable dict (``json.dumps`` works with default settings and
  yields strict JSON, no NaN), or ``None`` for a bucket etcd does not have.

Conventions of ``decode_record`` output
---------------------------------------
* **Bytes** are rendered by :func:`boltfix.bigrecord.render_bytes`: a JSON *string* when the
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
  also consult :data:`boltfix.secrets.SECRET_BUCKETS`.
* **Kubernetes**: a ``key`` record whose KeyValue holds a Kubernetes object
  gets ``"k8s"`` (:func:`boltfix.k8s.decode_value`); unless
  ``show_secrets``, a Secret's data is masked in the decoded ``value``
  (:func:`boltfix.secrets.mask_kv`).  Callers printing raw ``key`` values
  must mask them with ``mask_kv`` too.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from boltfix import findings as F
from boltfix import k8s, secrets
from boltfix.bigrecord import jsonable
from boltfix.etcdkeys import ETCD_BUCKETS, KEY, META, decode_revision
from boltfix.protowire import (
    WIRE_LEN,
    WIRE_VARINT,
    check_bytes,
    decode_schema,
    decoded,
    int64,
    parse_json,
)
from boltfix.text import REDACTED

__all__ = [
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
]


def _unknown_list(unknown: list, hide_bytes: bool = False) -> list:
    """Unknown fields as the output shows them (length only when hidden)."""
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


def _be_u64(value: bytes) -> Optional[int]:
    if len(value) != 8:
        return None
    return int.from_bytes(value, "big")


# ------------------------------------------------------------------ key bucket
_KV_SCHEMA = {
    1: ("key", WIRE_LEN, "bytes"),
    2: ("create_revision", WIRE_VARINT, "int64"),
    3: ("mod_revision", WIRE_VARINT, "int64"),
    4: ("version", WIRE_VARINT, "int64"),
    5: ("value", WIRE_LEN, "bytes"),
    6: ("lease", WIRE_VARINT, "int64"),
}


def _decode_key_value(value: bytes) -> dict:
    known, unknown = decode_schema(value, _KV_SCHEMA)
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
    value = check_bytes(value, "value")
    return decoded(_decode_key_value, value)


# ------------------------------------------------------------------ lease
_LEASE_SCHEMA = {
    1: ("ID", WIRE_VARINT, "int64"),
    2: ("TTL", WIRE_VARINT, "int64"),
    3: ("RemainingTTL", WIRE_VARINT, "int64"),
}


def _decode_lease(key: bytes, value: bytes) -> dict:
    out: dict = {}
    key_id = _be_u64(key)
    out["key_id"] = None if key_id is None else int64(key_id)
    known, unknown = decode_schema(value, _LEASE_SCHEMA)
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
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    return decoded(_decode_lease, key, value)


# ------------------------------------------------------------------ auth
_USER_SCHEMA = {
    1: ("name", WIRE_LEN, "bytes"),
    2: ("password", WIRE_LEN, "bytes"),
    3: ("roles", WIRE_LEN, "repeated_bytes"),
    4: ("options", WIRE_LEN, "msg"),
}
_USER_OPTIONS_SCHEMA = {1: ("no_password", WIRE_VARINT, "bool")}


def _decode_user(value: bytes, show_secrets: bool) -> dict:
    known, unknown = decode_schema(value, _USER_SCHEMA)
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
        o_known, o_unknown = decode_schema(data, _USER_OPTIONS_SCHEMA, off)
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
    value = check_bytes(value, "value")
    return decoded(_decode_user, value, bool(show_secrets))


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
    known, unknown = decode_schema(value, _ROLE_SCHEMA)
    perms = []
    for data, off in known.get("keyPermission", []):
        p_known, p_unknown = decode_schema(data, _PERMISSION_SCHEMA, off)
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
    value = check_bytes(value, "value")
    return decoded(_decode_role, value)


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
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    return decoded(_decode_auth, key, value)


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
        ok, obj = parse_json(value)
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
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    return decoded(_decode_meta, key, value)


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
    ok, obj = parse_json(value)
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
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    return decoded(_decode_member, key, value)


def _decode_member_removed(key: bytes, value: bytes) -> dict:
    out: dict = {"member_id": _hex_member_id(key), "value": value}
    if out["member_id"] is None:
        out["error"] = "removed-member key is not a hex id"
    return out


def decode_member_removed(key: bytes, value: bytes) -> dict:
    """A ``members_removed`` record: ``{"member_id": int|None, "value": bytes}``
    (the value is normally ``removed``)."""
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    return decoded(_decode_member_removed, key, value)


def _decode_cluster(key: bytes, value: bytes) -> dict:
    if key == b"clusterVersion":
        return {"value": value}
    ok, obj = parse_json(value)
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
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    return decoded(_decode_cluster, key, value)


ALARM_TYPES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}

_ALARM_SCHEMA = {
    1: ("memberID", WIRE_VARINT, "uint64"),
    2: ("alarm", WIRE_VARINT, "int32"),
}


def _decode_alarm(key: bytes, value: bytes) -> dict:
    known, unknown = decode_schema(key, _ALARM_SCHEMA)
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
    key = check_bytes(key, "key")
    value = check_bytes(value, "value")
    out = decoded(_decode_alarm, key, value)
    if "error" in out:
        out["error"] = "alarm key: " + out["error"]
    return out


# ------------------------------------------------------------------ dispatcher
def _record_key(key: bytes, value: bytes, show_secrets: bool = False) -> dict:
    rev = decode_revision(key)
    out: dict = {"revision": rev}
    if not show_secrets:
        # a Kubernetes Secret's data, masked at the same length (secrets.mask_kv)
        value = secrets.mask_kv(value) or value
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
    return check_bytes(name, "bucket")


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
    key = check_bytes(key, "key")
    if value is not None:
        value = check_bytes(value, "value")
    if bucket not in ETCD_BUCKETS:
        return None
    if value is None:
        return {"error": f"unexpected nested bucket in etcd bucket {bucket.decode()!r}"}
    try:
        if bucket == KEY:
            out = _record_key(key, value, show_secrets)
        elif bucket == META:
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
        return jsonable(out)
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
    return KEY in names and META in names


def guess_etcd_version(meta_keys: Iterable, storage_version: Optional[bytes] = None) -> str:
    """The etcd version a db was last run by, from its ``meta`` keys.

    3.6+ writes ``meta/storageVersion`` (``server/storage/schema``; 3.6.x
    writes ``3.6.0``, 3.7.x ``3.7.0``; empty while a 3.5 db is being
    upgraded): ``"3.6 (storage version 3.6.0)"`` when its value
    ``storage_version`` is given and reads ``3.N.M``, else ``"3.6+"``.
    ``"3.5"`` if ``meta`` has ``term`` (written since 3.5), else
    ``"3.4 or older"``."""
    keys = _name_set(meta_keys)
    if b"storageVersion" in keys:
        text = bytes(storage_version or b"").decode("ascii", "replace")
        parts = text.split(".")
        if len(parts) == 3 and all(p.isdigit() and len(p) <= 6 for p in parts):
            return f"{parts[0]}.{parts[1]} (storage version {text})"
        if storage_version is not None and not text:
            return "3.6+ (storage version empty: a 3.5 db being upgraded)"
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
    key = check_bytes(key, "key")
    problems = []
    rev = decode_revision(key)
    if rev is None:
        if len(key) not in (17, 18):
            why = f"{len(key)} bytes, expected 17 (or 18 ending in 't')"
        elif len(key) == 18 and key[17:18] != b"t":
            why = "18 bytes but the last byte is not 't'"
        else:
            why = f"byte 8 is 0x{key[8]:02x}, expected '_' (0x5f)"
        problems.append((F.ETCD_BAD_REVISION_KEY, f"revision key is malformed: {why}"))
    tombstone = rev["tombstone"] if rev else (len(key) == 18 and key[17:18] == b"t")
    if value is None:
        problems.append((F.ETCD_BAD_KEY_VALUE, "entry is a nested bucket, not a KeyValue"))
        return problems
    value = check_bytes(value, "value")
    kv = decode_key_value(value)
    if "error" in kv:
        problems.append(
            (F.ETCD_BAD_KEY_VALUE, f"value does not decode as mvccpb.KeyValue: {kv['error']}")
        )
    elif not tombstone and not kv["key"]:
        problems.append((F.ETCD_BAD_KEY_VALUE, "KeyValue has an empty key"))
    return problems
