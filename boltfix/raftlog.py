"""etcd's raft log records as values: the content layer of the WAL and snapshots.

Pure functions, bytes in, values out; no I/O.  Every input is untrusted:
a malformed message raises :class:`ProtoError` (with an offset) from the
``decode_*`` functions, and the ``*_or_error`` helpers turn that into
``{"error": ...}``.  Nothing here allocates more than its input.

Messages (field numbers read in each version's ``.proto``; etcd's repo, tags
v3.4.23, v3.5.21, v3.6.14, v3.7.1):

* ``walpb.Record{type=1 int64, crc=2 uint32, data=3 bytes}`` and
  ``walpb.Snapshot{index=1, term=2, conf_state=3 (3.5+)}``:
  ``wal/walpb/record.proto`` (3.4), ``server/wal/walpb/record.proto`` (3.5),
  ``server/storage/wal/walpb/record.proto`` (3.6, 3.7).  Record types
  (``wal/wal.go``): 1 metadata, 2 entry, 3 state, 4 crc, 5 snapshot.
* ``raftpb.Entry{Type=1, Term=2, Index=3, Data=4}``, ``HardState{term=1,
  vote=2, commit=3}``, ``ConfState{voters=1, learners=2,
  voters_outgoing=3, learners_next=4, auto_leave=5}``,
  ``SnapshotMetadata{conf_state=1, index=2, term=3}``, ``Snapshot{data=1,
  metadata=2}``, ``ConfChange{id=1, type=2, node_id=3, context=4}``,
  ``ConfChangeV2{transition=1, changes=2 {type=1, node_id=2}, context=3}``:
  ``raft/raftpb/raft.proto`` (3.4, 3.5; ``go.etcd.io/raft/v3`` from 3.6).
* ``snappb.Snapshot{crc=1 uint32, data=2}``:
  ``etcdserver/api/snap/snappb/snap.proto``.
* ``etcdserverpb.Metadata{NodeID=1, ClusterID=2}`` (the WAL's metadata
  record) and the v2 ``Request{ID=1, Method=2, Path=3, Val=4, Dir=5,
  PrevValue=6, PrevIndex=7, PrevExist=8, Expiration=9, Wait=10, Since=11,
  Recursive=12, Sorted=13, Quorum=14, Time=15, Stream=16, Refresh=17}``:
  ``etcdserverpb/etcdserver.proto``.
* ``etcdserverpb.InternalRaftRequest`` (``raft_internal.proto``): header=100
  ``RequestHeader{ID=1, username=2, auth_revision=3}``, ID=1, v2=2 (3.4-3.6;
  reserved in 3.7), range=3, put=4, delete_range=5, txn=6, compaction=7,
  lease_grant=8, lease_revoke=9, alarm=10, lease_checkpoint=11 (3.4+),
  auth_enable=1000, auth_disable=1011, authenticate=1012, auth_status=1013
  (3.5+), auth_user_add=1100 .. auth_role_list=1107, auth_role_add=1200 ..
  auth_role_revoke_permission=1204, cluster_version_set=1300,
  cluster_member_attr_set=1301, downgrade_info_set=1302 (3.5+),
  downgrade_version_test=9900 (3.6+).  The request bodies are in
  ``rpc.proto`` (``PutRequest{key=1, value=2, lease=3, prev_kv=4,
  ignore_value=5, ignore_lease=6}``, ``DeleteRangeRequest{key=1,
  range_end=2, prev_kv=3}``, ``TxnRequest{compare=1, success=2, failure=3}``,
  ``RequestOp{request_range=1, request_put=2, request_delete_range=3,
  request_txn=4}``, ``Compare{result=1, target=2, key=3, version=4,
  create_revision=5, mod_revision=6, value=7, lease=8, range_end=64}``,
  ``AuthUserAddRequest{name=1, password=2, options=3, hashedPassword=4
  (3.5+)}``, ``AuthUserChangePasswordRequest{name=1, password=2,
  hashedPassword=3 (3.5+)}`` ...) and ``membershippb``'s
  ``membership.proto`` (3.5+).

Secrets (masked unless ``show_secrets``): the passwords and hashed passwords
of ``auth_user_add`` and ``auth_user_change_password``, ``authenticate``'s
password and simple token, and unknown length-delimited fields of those
messages (a damaged tag could turn the password field into one);
Kubernetes Secret data in a put's value or a compare's value
(:func:`boltfix.k8s.mask_value`, the one masking rule).

The protobuf wire format is read with the project's one wire decoder,
through the single import point below.
"""

from __future__ import annotations

from typing import Any, Optional

from boltfix import secrets
from boltfix.protowire import WIRE_LEN, WIRE_VARINT, ProtoError, decode_varint
from boltfix.protowire import int64 as _int64
from boltfix.protowire import iter_fields as _iter_fields
from boltfix.text import REDACTED

#: walpb record types (wal/wal.go: metadataType .. snapshotType)
METADATA, ENTRY, STATE, CRC, SNAPSHOT = 1, 2, 3, 4, 5
RECORD_TYPES = {METADATA: "metadata", ENTRY: "entry", STATE: "state", CRC: "crc",
                SNAPSHOT: "snapshot"}

#: raftpb.EntryType
ENTRY_NORMAL, ENTRY_CONF_CHANGE, ENTRY_CONF_CHANGE_V2 = 0, 1, 2
ENTRY_TYPES = {ENTRY_NORMAL: "normal", ENTRY_CONF_CHANGE: "conf_change",
               ENTRY_CONF_CHANGE_V2: "conf_change_v2"}
CONF_CHANGE_TYPES = {0: "ConfChangeAddNode", 1: "ConfChangeRemoveNode",
                     2: "ConfChangeUpdateNode", 3: "ConfChangeAddLearnerNode"}

#: a txn nested deeper than this is refused (etcd sets no limit, but each
#: level costs a frame here; real requests nest one or two levels)
MAX_TXN_DEPTH = 64

_U32 = 0xFFFFFFFF


# ---------------------------------------------------------------- small helpers
def _fields(data: bytes, schema: dict, base: int = 0) -> dict:
    """``{name: value}`` of ``data`` against ``{no: (name, wire, kind)}``.

    gogo-protobuf's rules, as etcd's generated ``Unmarshal`` applies them:
    unknown fields are skipped (kept under ``"_unknown"``), a known field of
    the wrong wire type is an error, the last occurrence of a scalar wins,
    repeated fields collect (a repeated varint may also come packed).
    Kinds: uint64, int64, uint32, int32, bool, bytes, msg (``(bytes,
    offset)``), rep_msg, rep_bytes, rep_uint64.
    """
    out: dict = {}
    for no, wt, value, off in _iter_fields(data, base):
        spec = schema.get(no)
        if spec is None:
            out.setdefault("_unknown", []).append((no, wt, value))
            continue
        name, want, kind = spec
        if kind == "rep_uint64" and wt == WIRE_LEN:  # packed
            out.setdefault(name, []).extend(_packed_varints(value, off))
            continue
        if wt != want:
            raise ProtoError(f"wrong wire type {wt} for field {no} ({name})", off)
        if kind == "uint64":
            out[name] = value
        elif kind == "int64":
            out[name] = _int64(value)
        elif kind == "uint32":
            out[name] = value & _U32
        elif kind == "int32":
            v = value & _U32
            out[name] = v - (1 << 32) if v >= 1 << 31 else v
        elif kind == "bool":
            out[name] = value != 0
        elif kind == "bytes":
            out[name] = value
        elif kind == "msg":
            out[name] = (value, off)
        elif kind == "rep_msg":
            out.setdefault(name, []).append((value, off))
        elif kind == "rep_bytes":
            out.setdefault(name, []).append(value)
        elif kind == "rep_uint64":
            out.setdefault(name, []).append(value)
        else:  # pragma: no cover - schema typo
            raise AssertionError(kind)
    return out


def _packed_varints(data: bytes, base: int) -> list:

    out, pos = [], 0
    while pos < len(data):
        v, pos = decode_varint(data, pos, base)
        out.append(v)
    return out


def _unknown(fields: dict, hide: bool) -> Optional[list]:
    items = fields.get("_unknown")
    if not items:
        return None
    out = []
    for no, wt, value in items:
        if wt == WIRE_LEN and hide:
            out.append({"field": no, "wire_type": wt, "length": len(value), "value": REDACTED})
        else:
            out.append({"field": no, "wire_type": wt, "value": value})
    return out


def _put_unknown(out: dict, fields: dict, hide: bool = False) -> dict:
    u = _unknown(fields, hide)
    if u:
        out["unknown"] = u
    return out


# ---------------------------------------------------------------- walpb / raftpb
_RECORD = {1: ("type", WIRE_VARINT, "int64"), 2: ("crc", WIRE_VARINT, "uint32"),
           3: ("data", WIRE_LEN, "bytes")}


def decode_record(data: bytes) -> dict:
    """``walpb.Record`` -> ``{"type": int, "crc": int, "data": bytes}``."""
    f = _fields(data, _RECORD)
    return {"type": f.get("type", 0), "crc": f.get("crc", 0), "data": f.get("data", b"")}


_ENTRY = {1: ("type", WIRE_VARINT, "int32"), 2: ("term", WIRE_VARINT, "uint64"),
          3: ("index", WIRE_VARINT, "uint64"), 4: ("data", WIRE_LEN, "bytes")}


def decode_entry(data: bytes) -> dict:
    """``raftpb.Entry`` -> ``{"term", "index", "type", "data"}`` (type a number)."""
    f = _fields(data, _ENTRY)
    return {"term": f.get("term", 0), "index": f.get("index", 0), "type": f.get("type", 0),
            "data": f.get("data", b"")}


_HARD_STATE = {1: ("term", WIRE_VARINT, "uint64"), 2: ("vote", WIRE_VARINT, "uint64"),
               3: ("commit", WIRE_VARINT, "uint64")}


def decode_hard_state(data: bytes) -> dict:
    """``raftpb.HardState`` -> ``{"term", "vote", "commit"}``."""
    f = _fields(data, _HARD_STATE)
    return {k: f.get(k, 0) for k in ("term", "vote", "commit")}


_CONF_STATE = {1: ("voters", WIRE_VARINT, "rep_uint64"),
               2: ("learners", WIRE_VARINT, "rep_uint64"),
               3: ("voters_outgoing", WIRE_VARINT, "rep_uint64"),
               4: ("learners_next", WIRE_VARINT, "rep_uint64"),
               5: ("auto_leave", WIRE_VARINT, "bool")}


def decode_conf_state(data: bytes, base: int = 0) -> dict:
    """raftpb.ConfState: voter and learner ids in hex."""
    f = _fields(data, _CONF_STATE, base)
    out = {k: [f"{v:x}" for v in f.get(k, [])]
           for k in ("voters", "learners", "voters_outgoing", "learners_next")}
    out["auto_leave"] = f.get("auto_leave", False)
    return out


_WAL_SNAPSHOT = {1: ("index", WIRE_VARINT, "uint64"), 2: ("term", WIRE_VARINT, "uint64"),
                 3: ("conf_state", WIRE_LEN, "msg")}


def decode_wal_snapshot(data: bytes) -> dict:
    """``walpb.Snapshot`` -> ``{"index", "term", "conf_state"?}``."""
    f = _fields(data, _WAL_SNAPSHOT)
    out = {"index": f.get("index", 0), "term": f.get("term", 0)}
    if "conf_state" in f:
        out["conf_state"] = decode_conf_state(*f["conf_state"])
    return out


_METADATA = {1: ("node_id", WIRE_VARINT, "uint64"), 2: ("cluster_id", WIRE_VARINT, "uint64")}


def decode_metadata(data: bytes) -> dict:
    """``etcdserverpb.Metadata`` -> ``{"node_id", "cluster_id"}`` (ints)."""
    f = _fields(data, _METADATA)
    return {"node_id": f.get("node_id", 0), "cluster_id": f.get("cluster_id", 0)}


_SNAP_FILE = {1: ("crc", WIRE_VARINT, "uint32"), 2: ("data", WIRE_LEN, "bytes")}
_RAFT_SNAPSHOT = {1: ("data", WIRE_LEN, "bytes"), 2: ("metadata", WIRE_LEN, "msg")}
_SNAP_META = {1: ("conf_state", WIRE_LEN, "msg"), 2: ("index", WIRE_VARINT, "uint64"),
              3: ("term", WIRE_VARINT, "uint64")}


def decode_snap_file(data: bytes) -> dict:
    """A ``member/snap/*.snap`` file: ``snappb.Snapshot{crc, data}`` whose data
    is a ``raftpb.Snapshot`` -> ``{"crc", "crc_ok", "index", "term",
    "conf_state", "data_bytes"}``.  etcd's ``snap.Read`` refuses an empty
    file, empty data or crc 0 (``ErrEmptySnapshot``) and a CRC-32C mismatch
    (``ErrCRCMismatch``): those are ``"error"`` here, with what decoded."""
    from crc32c import crc32c

    f = _fields(data, _SNAP_FILE)
    inner = f.get("data", b"")
    out: dict = {"crc": f.get("crc", 0), "data_bytes": len(inner)}
    if not data or not inner or not out["crc"]:
        out["error"] = "empty snapshot (no data or crc 0)"
        return out
    out["crc_ok"] = crc32c(inner) == out["crc"]
    snap = _fields(inner, _RAFT_SNAPSHOT)
    meta = {}
    if "metadata" in snap:
        meta = _fields(snap["metadata"][0], _SNAP_META, snap["metadata"][1])
    out["index"] = meta.get("index", 0)
    out["term"] = meta.get("term", 0)
    out["conf_state"] = decode_conf_state(*meta["conf_state"]) if "conf_state" in meta else None
    if not out["crc_ok"]:
        out["error"] = "CRC-32C mismatch"
    return out


_CONF_CHANGE = {1: ("id", WIRE_VARINT, "uint64"), 2: ("type", WIRE_VARINT, "int32"),
                3: ("node_id", WIRE_VARINT, "uint64"), 4: ("context", WIRE_LEN, "bytes")}
_CONF_CHANGE_V2 = {1: ("transition", WIRE_VARINT, "int32"), 2: ("changes", WIRE_LEN, "rep_msg"),
                   3: ("context", WIRE_LEN, "bytes")}
_CONF_CHANGE_SINGLE = {1: ("type", WIRE_VARINT, "int32"), 2: ("node_id", WIRE_VARINT, "uint64")}


def decode_conf_change(data: bytes) -> dict:
    """``raftpb.ConfChange`` -> ``{"id", "type" (name), "node_id" (hex), "context"}``."""
    f = _fields(data, _CONF_CHANGE)
    t = f.get("type", 0)
    return {"id": f.get("id", 0), "type": CONF_CHANGE_TYPES.get(t, t),
            "node_id": f"{f.get('node_id', 0):x}", "context": f.get("context", b"")}


def decode_conf_change_v2(data: bytes) -> dict:
    """raftpb.ConfChangeV2: its transition and changes."""
    f = _fields(data, _CONF_CHANGE_V2)
    changes = []
    for raw, off in f.get("changes", []):
        c = _fields(raw, _CONF_CHANGE_SINGLE, off)
        t = c.get("type", 0)
        changes.append({"type": CONF_CHANGE_TYPES.get(t, t), "node_id": f"{c.get('node_id', 0):x}"})
    return {"transition": f.get("transition", 0), "changes": changes,
            "context": f.get("context", b"")}


# ---------------------------------------------------------------- requests
_HEADER = {1: ("ID", WIRE_VARINT, "uint64"), 2: ("username", WIRE_LEN, "bytes"),
           3: ("auth_revision", WIRE_VARINT, "uint64")}
_RANGE = {1: ("key", WIRE_LEN, "bytes"), 2: ("range_end", WIRE_LEN, "bytes"),
          3: ("limit", WIRE_VARINT, "int64"), 4: ("revision", WIRE_VARINT, "int64"),
          5: ("sort_order", WIRE_VARINT, "int32"), 6: ("sort_target", WIRE_VARINT, "int32"),
          7: ("serializable", WIRE_VARINT, "bool"), 8: ("keys_only", WIRE_VARINT, "bool"),
          9: ("count_only", WIRE_VARINT, "bool"),
          10: ("min_mod_revision", WIRE_VARINT, "int64"),
          11: ("max_mod_revision", WIRE_VARINT, "int64"),
          12: ("min_create_revision", WIRE_VARINT, "int64"),
          13: ("max_create_revision", WIRE_VARINT, "int64")}
_PUT = {1: ("key", WIRE_LEN, "bytes"), 2: ("value", WIRE_LEN, "bytes"),
        3: ("lease", WIRE_VARINT, "int64"), 4: ("prev_kv", WIRE_VARINT, "bool"),
        5: ("ignore_value", WIRE_VARINT, "bool"), 6: ("ignore_lease", WIRE_VARINT, "bool")}
_DELETE = {1: ("key", WIRE_LEN, "bytes"), 2: ("range_end", WIRE_LEN, "bytes"),
           3: ("prev_kv", WIRE_VARINT, "bool")}
_TXN = {1: ("compare", WIRE_LEN, "rep_msg"), 2: ("success", WIRE_LEN, "rep_msg"),
        3: ("failure", WIRE_LEN, "rep_msg")}
_REQUEST_OP = {1: ("range", WIRE_LEN, "msg"), 2: ("put", WIRE_LEN, "msg"),
               3: ("delete_range", WIRE_LEN, "msg"), 4: ("txn", WIRE_LEN, "msg")}
_COMPARE = {1: ("result", WIRE_VARINT, "int32"), 2: ("target", WIRE_VARINT, "int32"),
            3: ("key", WIRE_LEN, "bytes"), 4: ("version", WIRE_VARINT, "int64"),
            5: ("create_revision", WIRE_VARINT, "int64"),
            6: ("mod_revision", WIRE_VARINT, "int64"), 7: ("value", WIRE_LEN, "bytes"),
            8: ("lease", WIRE_VARINT, "int64"), 64: ("range_end", WIRE_LEN, "bytes")}
COMPARE_RESULTS = {0: "EQUAL", 1: "GREATER", 2: "LESS", 3: "NOT_EQUAL"}
COMPARE_TARGETS = {0: "VERSION", 1: "CREATE", 2: "MOD", 3: "VALUE", 4: "LEASE"}
_COMPACTION = {1: ("revision", WIRE_VARINT, "int64"), 2: ("physical", WIRE_VARINT, "bool")}
_LEASE_GRANT = {1: ("TTL", WIRE_VARINT, "int64"), 2: ("ID", WIRE_VARINT, "int64")}
_LEASE_REVOKE = {1: ("ID", WIRE_VARINT, "int64")}
_LEASE_CHECKPOINTS = {1: ("checkpoints", WIRE_LEN, "rep_msg")}
_LEASE_CHECKPOINT = {1: ("ID", WIRE_VARINT, "int64"), 2: ("remaining_TTL", WIRE_VARINT, "int64")}
_ALARM = {1: ("action", WIRE_VARINT, "int32"), 2: ("memberID", WIRE_VARINT, "uint64"),
          3: ("alarm", WIRE_VARINT, "int32")}
ALARM_ACTIONS = {0: "GET", 1: "ACTIVATE", 2: "DEACTIVATE"}
ALARM_TYPES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}
_NAME = {1: ("name", WIRE_LEN, "bytes")}
_ROLE = {1: ("role", WIRE_LEN, "bytes")}
_EMPTY: dict = {}
_USER_ADD = {1: ("name", WIRE_LEN, "bytes"), 2: ("password", WIRE_LEN, "bytes"),
             3: ("options", WIRE_LEN, "msg"), 4: ("hashedPassword", WIRE_LEN, "bytes")}
_USER_OPTIONS = {1: ("no_password", WIRE_VARINT, "bool")}
_CHANGE_PASSWORD = {1: ("name", WIRE_LEN, "bytes"), 2: ("password", WIRE_LEN, "bytes"),
                    3: ("hashedPassword", WIRE_LEN, "bytes")}
_AUTHENTICATE = {1: ("name", WIRE_LEN, "bytes"), 2: ("password", WIRE_LEN, "bytes"),
                 3: ("simple_token", WIRE_LEN, "bytes")}
_USER_ROLE = {1: ("user", WIRE_LEN, "bytes"), 2: ("role", WIRE_LEN, "bytes")}
_USER_REVOKE_ROLE = {1: ("name", WIRE_LEN, "bytes"), 2: ("role", WIRE_LEN, "bytes")}
_GRANT_PERMISSION = {1: ("name", WIRE_LEN, "bytes"), 2: ("perm", WIRE_LEN, "msg")}
_PERMISSION = {1: ("permType", WIRE_VARINT, "int32"), 2: ("key", WIRE_LEN, "bytes"),
               3: ("range_end", WIRE_LEN, "bytes")}
PERM_TYPES = {0: "READ", 1: "WRITE", 2: "READWRITE"}
_REVOKE_PERMISSION = {1: ("role", WIRE_LEN, "bytes"), 2: ("key", WIRE_LEN, "bytes"),
                      3: ("range_end", WIRE_LEN, "bytes")}
_VERSION_SET = {1: ("ver", WIRE_LEN, "bytes")}
_MEMBER_ATTR_SET = {1: ("member_ID", WIRE_VARINT, "uint64"),
                    2: ("member_attributes", WIRE_LEN, "msg")}
_ATTRIBUTES = {1: ("name", WIRE_LEN, "bytes"), 2: ("client_urls", WIRE_LEN, "rep_bytes")}
_DOWNGRADE_SET = {1: ("enabled", WIRE_VARINT, "bool"), 2: ("ver", WIRE_LEN, "bytes")}
_V2_REQUEST = {1: ("ID", WIRE_VARINT, "uint64"), 2: ("Method", WIRE_LEN, "bytes"),
               3: ("Path", WIRE_LEN, "bytes"), 4: ("Val", WIRE_LEN, "bytes"),
               5: ("Dir", WIRE_VARINT, "bool"), 6: ("PrevValue", WIRE_LEN, "bytes"),
               7: ("PrevIndex", WIRE_VARINT, "uint64"), 8: ("PrevExist", WIRE_VARINT, "bool"),
               9: ("Expiration", WIRE_VARINT, "int64"), 10: ("Wait", WIRE_VARINT, "bool"),
               11: ("Since", WIRE_VARINT, "uint64"), 12: ("Recursive", WIRE_VARINT, "bool"),
               13: ("Sorted", WIRE_VARINT, "bool"), 14: ("Quorum", WIRE_VARINT, "bool"),
               15: ("Time", WIRE_VARINT, "int64"), 16: ("Stream", WIRE_VARINT, "bool"),
               17: ("Refresh", WIRE_VARINT, "bool")}

#: InternalRaftRequest field -> (request name, body schema); the order of
#: this table is the order ``kind`` picks when several are set (never in
#: what etcd writes: exactly one is)
REQUESTS = {
    2: ("v2", _V2_REQUEST), 3: ("range", _RANGE), 4: ("put", _PUT),
    5: ("delete_range", _DELETE), 6: ("txn", _TXN), 7: ("compaction", _COMPACTION),
    8: ("lease_grant", _LEASE_GRANT), 9: ("lease_revoke", _LEASE_REVOKE),
    10: ("alarm", _ALARM), 11: ("lease_checkpoint", _LEASE_CHECKPOINTS),
    1000: ("auth_enable", _EMPTY), 1011: ("auth_disable", _EMPTY),
    1012: ("authenticate", _AUTHENTICATE), 1013: ("auth_status", _EMPTY),
    1100: ("auth_user_add", _USER_ADD), 1101: ("auth_user_delete", _NAME),
    1102: ("auth_user_get", _NAME), 1103: ("auth_user_change_password", _CHANGE_PASSWORD),
    1104: ("auth_user_grant_role", _USER_ROLE), 1105: ("auth_user_revoke_role", _USER_REVOKE_ROLE),
    1106: ("auth_user_list", _EMPTY), 1107: ("auth_role_list", _EMPTY),
    1200: ("auth_role_add", _NAME), 1201: ("auth_role_delete", _ROLE),
    1202: ("auth_role_get", _ROLE), 1203: ("auth_role_grant_permission", _GRANT_PERMISSION),
    1204: ("auth_role_revoke_permission", _REVOKE_PERMISSION),
    1300: ("cluster_version_set", _VERSION_SET),
    1301: ("cluster_member_attr_set", _MEMBER_ATTR_SET),
    1302: ("downgrade_info_set", _DOWNGRADE_SET),
    9900: ("downgrade_version_test", {1: ("ver", WIRE_LEN, "bytes")}),
}
REQUEST_NAMES = tuple(name for name, _ in REQUESTS.values())
#: requests whose fields hold credentials: masked, and unknown
#: length-delimited fields shown by length only
SECRET_REQUESTS = {"auth_user_add": ("password", "hashedPassword"),
                   "auth_user_change_password": ("password", "hashedPassword"),
                   "authenticate": ("password", "simple_token")}
_IRR = {no: (name, WIRE_LEN, "msg") for no, (name, _) in REQUESTS.items()}
_IRR[100] = ("header", WIRE_LEN, "msg")
_IRR[1] = ("ID", WIRE_VARINT, "uint64")


def _secret(value: bytes, show: bool) -> Any:
    return value if show or not value else REDACTED


def _mask_kv_value(out: dict, key: bytes, show: bool) -> None:
    """A put's (or a compare's) value with Kubernetes Secret data masked."""
    if show or not out.get("value"):
        return

    masked = secrets.mask_value(out["value"], key)
    if masked is not None:
        out["value"] = masked
        out["value_redacted"] = True


def _body(name: str, schema: dict, raw: bytes, off: int, show: bool, depth: int) -> dict:
    f = _fields(raw, schema, off)
    if name == "txn":
        return _txn(f, show, depth)
    out: dict = {}
    for _no, (field, _wt, kind) in schema.items():
        if field not in f:
            continue
        v = f[field]
        if kind == "msg":
            v = _sub_message(name, field, v, show)
        out[field] = v
    secrets = SECRET_REQUESTS.get(name)
    if secrets:
        for field in secrets:
            if field in out:
                out[field] = _secret(out[field], show)
    if name == "put":
        _mask_kv_value(out, out.get("key", b""), show)
    elif name == "lease_checkpoint":
        out["checkpoints"] = [_fields(r, _LEASE_CHECKPOINT, o) for r, o in
                              f.get("checkpoints", [])]
        for c in out["checkpoints"]:
            c.pop("_unknown", None)
    elif name == "alarm":
        out["action"] = ALARM_ACTIONS.get(out.get("action", 0), out.get("action", 0))
        out["alarm"] = ALARM_TYPES.get(out.get("alarm", 0), out.get("alarm", 0))
    return _put_unknown(out, f, hide=bool(secrets) and not show)


def _sub_message(name: str, field: str, v, show: bool) -> Any:
    raw, off = v
    if field == "options":
        return {k: x for k, x in _fields(raw, _USER_OPTIONS, off).items() if k != "_unknown"}
    if field == "perm":
        p = _fields(raw, _PERMISSION, off)
        pt = p.get("permType", 0)
        return {"permType": PERM_TYPES.get(pt, pt), "key": p.get("key", b""),
                "range_end": p.get("range_end", b"")}
    if field == "member_attributes":
        a = _fields(raw, _ATTRIBUTES, off)
        return {"name": a.get("name", b""), "client_urls": a.get("client_urls", [])}
    return raw  # pragma: no cover - every msg field is named above


def _txn(f: dict, show: bool, depth: int) -> dict:
    if depth >= MAX_TXN_DEPTH:
        raise ProtoError(f"txn nested deeper than {MAX_TXN_DEPTH} levels", 0)
    out: dict = {"compare": [], "success": [], "failure": []}
    for raw, off in f.get("compare", []):
        c = _fields(raw, _COMPARE, off)
        cmp = {"result": COMPARE_RESULTS.get(c.get("result", 0), c.get("result", 0)),
               "target": COMPARE_TARGETS.get(c.get("target", 0), c.get("target", 0)),
               "key": c.get("key", b"")}
        if "range_end" in c:
            cmp["range_end"] = c["range_end"]
        for t in ("version", "create_revision", "mod_revision", "value", "lease"):
            if t in c:
                cmp[t] = c[t]
        _mask_kv_value(cmp, cmp["key"], show)
        out["compare"].append(cmp)
    for branch in ("success", "failure"):
        for raw, off in f.get(branch, []):
            out[branch].append(_request_op(raw, off, show, depth))
    return _put_unknown(out, f)


_OP_SCHEMAS = {"range": _RANGE, "put": _PUT, "delete_range": _DELETE, "txn": _TXN}


def _request_op(raw: bytes, off: int, show: bool, depth: int) -> dict:
    op = _fields(raw, _REQUEST_OP, off)
    for name in ("range", "put", "delete_range", "txn"):
        if name in op:
            body_raw, body_off = op[name]
            return {name: _body(name, _OP_SCHEMAS[name], body_raw, body_off, show, depth + 1)}
    return {}  # an empty RequestOp: etcd's apply skips it


def decode_request(data: bytes, show_secrets: bool = False) -> dict:
    """``etcdserverpb.InternalRaftRequest`` -> ``{"kind": name | None, "ID",
    "header"?, name: body}``; raises :class:`ProtoError` where gogo's
    ``Unmarshal`` fails too (so that :func:`decode_normal` can tell a v2
    ``Request`` apart as etcd does)."""
    f = _fields(data, _IRR)
    out: dict = {"kind": None}
    if "ID" in f:
        out["ID"] = f["ID"]
    if "header" in f:
        h = _fields(f["header"][0], _HEADER, f["header"][1])
        h.pop("_unknown", None)
        out["header"] = h
    for no, (name, schema) in REQUESTS.items():
        if name in f:
            raw, off = f[name]
            out[name] = _body(name, schema, raw, off, show_secrets, 0)
            if out["kind"] is None:
                out["kind"] = name
    return _put_unknown(out, f)


def decode_normal(data: bytes, show_secrets: bool = False) -> dict:
    """The data of a normal entry as etcd's ``applyEntryNormal`` reads it
    (``server.go``, every version): empty -> ``{"kind": "empty"}`` (raft's
    no-op at a leader's election); else an ``InternalRaftRequest`` if it
    unmarshals (``pbutil.MaybeUnmarshal``), else a v2 ``Request``
    (``{"kind": "v2_request"}``, 3.4-3.6), else ``{"kind": "unknown",
    "error": ...}`` (etcd's ``MustUnmarshal`` would panic)."""
    if not data:
        return {"kind": "empty"}
    try:
        return decode_request(data, show_secrets)
    except ProtoError as exc:
        first = str(exc)
    try:
        f = _fields(data, _V2_REQUEST)
    except ProtoError as exc:
        return {"kind": "unknown", "error": f"neither InternalRaftRequest ({first}) "
                                            f"nor a v2 Request ({exc})"}
    f.pop("_unknown", None)
    return {"kind": "v2_request", "v2_request": f}


def decode_entry_payload(entry: dict, show_secrets: bool = False) -> dict:
    """What an entry carries, by its type: ``decode_normal`` for normal
    entries, the conf change for the others; never raises."""
    t = entry["type"]
    try:
        if t == ENTRY_NORMAL:
            return decode_normal(entry["data"], show_secrets)
        if t == ENTRY_CONF_CHANGE:
            return {"kind": "conf_change", "conf_change": decode_conf_change(entry["data"])}
        if t == ENTRY_CONF_CHANGE_V2:
            return {"kind": "conf_change_v2",
                    "conf_change_v2": decode_conf_change_v2(entry["data"])}
    except ProtoError as exc:
        return {"kind": "unknown", "error": str(exc)}
    return {"kind": "unknown", "error": f"unknown entry type {t}"}


# ---------------------------------------------------------------- what a request writes
def written_keys(payload: dict) -> list:
    """The user keys (and ranges) a decoded request may write, for people:
    ``[(op, key, range_end)]`` with op ``put`` or ``delete``; a txn's
    success and failure branches both (which one runs depends on the
    store: :mod:`boltfix.walapply` decides).  Lease revokes delete the keys
    attached to the lease, which only the store knows: not listed here."""
    out: list = []
    stack = [payload]
    while stack:
        p = stack.pop()
        if "put" in p:
            out.append(("put", p["put"].get("key", b""), None))
        if "delete_range" in p:
            d = p["delete_range"]
            out.append(("delete", d.get("key", b""), d.get("range_end") or None))
        if "txn" in p:
            for branch in ("failure", "success"):
                stack.extend(reversed(p["txn"][branch]))
    return out


def is_error(d: Any) -> bool:
    """A decoder's result that says it could not decode."""
    return isinstance(d, dict) and "error" in d
