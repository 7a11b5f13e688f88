"""Kubernetes objects inside etcd values, and masking their secrets.

Pure functions, no I/O; every input is untrusted bytes.  No public function
raises on ``bytes`` input: a malformed value gives ``{"error": "... at
offset N"}`` (the offset counted from the start of the value).  The
protobuf wire format is read with :mod:`boltfix.protowire` (one wire
decoder in the project).

Facts used (from Kubernetes' own sources, no schema vendored):

* ``k8s.io/apimachinery/pkg/runtime/serializer/protobuf``: a protobuf value
  is the magic ``k8s\\x00`` and a ``runtime.Unknown``
  (``pkg/runtime/generated.proto``): 1 typeMeta {1 apiVersion, 2 kind},
  2 raw (the object), 3 contentEncoding, 4 contentType.
* every top-level kind has field 1 ``ObjectMeta``
  (``pkg/apis/meta/v1/generated.proto``): 1 name, 2 generateName,
  3 namespace, 5 uid, 6 resourceVersion, 7 generation, 8 creationTimestamp,
  9 deletionTimestamp ({1 seconds, 2 nanos}), 11 labels, 12 annotations
  (map entries {1 key, 2 value}), 13 ownerReferences {1 kind, 3 name, 4 uid,
  5 apiVersion, 6 controller}, 14 finalizers.
* ``core/v1`` ``Secret``: 1 metadata, 2 data (map string -> bytes), 3 type,
  4 stringData (map string -> string; write-only, masked if ever stored),
  5 immutable.
* JSON values (custom resources, old clusters): an object with
  ``apiVersion``, ``kind`` and ``metadata``.
* encryption at rest (``apiserver/pkg/storage/value/encrypt``): the value
  starts ``k8s:enc:<provider>:<v1|v2>:<name>:``, then ciphertext.
* keys (``apiserver/pkg/registry/generic/registry/store.go``):
  ``/registry/<resource>/[<namespace>/]<name>``; custom resources
  ``/registry/<group>/<resource>/...``; exceptions
  (``kubeapiserver``'s ``SpecialDefaultResourcePrefixes``): Services under
  ``/registry/services/specs/``, Endpoints under
  ``/registry/services/endpoints/``, Nodes under ``minions``,
  ReplicationControllers under ``controllers``, Ingresses under
  ``ingress``, PodSecurityPolicies under ``podsecuritypolicy``.

What is secret (masked by :mod:`boltfix.secrets` unless the caller asks
for secrets; see docs/dump.md):

* a Secret (user key under ``/registry/secrets/``, or decoded kind
  ``Secret``): the values of ``data`` and ``stringData``, and the
  ``kubectl.kubernetes.io/last-applied-configuration`` annotation (which
  holds a copy of the whole Secret when it was created by ``kubectl
  apply``).  Name, namespace, labels, other annotations and the data *keys*
  stay visible.  A Secret whose structure does not decode, or that is
  encrypted, is masked whole (after the envelope's header).
* OpenShift OAuth tokens (resources ``oauthaccesstokens``,
  ``oauthauthorizetokens``, ``useroauthaccesstokens``) and k3s' bootstrap
  data (user key under ``/bootstrap/``, the cluster's CA keys): the whole
  value.
"""

from __future__ import annotations

import datetime
import functools
from typing import Any

from boltfix.bigbytes import Span, keep_span
from boltfix.bigrecord import render_bytes
from boltfix.etcdkeys import is_tombstone, user_key
from boltfix.protowire import (
    WIRE_LEN,
    WIRE_VARINT,
    ProtoError,
    fields,
    int32,
    int64,
    parse_json,
)
from boltfix.text import REDACTED, name_text

__all__ = [
    "ENC_PREFIX",
    "MAGIC",
    "decode_object",
    "decode_value",
    "parse_key",
    "summary",
]

MAGIC = b"k8s\x00"
ENC_PREFIX = b"k8s:enc:"
REGISTRY = b"/registry/"
#: where Kubernetes keeps its objects: the apiserver's default
#: ``--etcd-prefix``, and the prefixes OpenShift 3 used
REGISTRY_PREFIXES = (REGISTRY, b"/kubernetes.io/", b"/openshift.io/")
LAST_APPLIED = b"kubectl.kubernetes.io/last-applied-configuration"
#: resources whose whole value is a credential (OpenShift OAuth tokens)
WHOLE_SECRET_RESOURCES = frozenset({"oauthaccesstokens", "oauthauthorizetokens",
                                    "useroauthaccesstokens"})
#: user-key prefixes whose whole value is a credential (k3s bootstrap data)
WHOLE_SECRET_PREFIXES = (b"/bootstrap/",)
#: storage prefixes that are not the resource's name (Kubernetes'
#: SpecialDefaultResourcePrefixes; services/specs and services/endpoints
#: are two parts, read apart in parse_key)
_PREFIX_RESOURCES = {"minions": "nodes", "controllers": "replicationcontrollers",
                     "ingress": "ingresses", "podsecuritypolicy": "podsecuritypolicies"}
_MAX_DEPTH = 32  # decode_raw-style nesting; deeper is shown as hex
_MAX_ITEMS = 10000  # labels, annotations, owners: more is damage


# ------------------------------------------------------------------ keys
def parse_key(user_key: bytes) -> dict | None:
    """``/registry/...`` -> ``{"resource", "group"?, "namespace"?, "name"}``.

    ``None`` for a key outside :data:`REGISTRY_PREFIXES`.  One part after the resource
    is a cluster-scoped name, two are namespace and name; a first part with
    a dot is an API group (custom resources, ``apiregistration.k8s.io``).
    """
    if not isinstance(user_key, (bytes, bytearray, memoryview)):
        return None
    key = bytes(user_key)
    if not key.startswith(REGISTRY_PREFIXES):
        return None
    parts = key[key.index(b"/", 1) + 1:].decode("utf-8", "replace").split("/")
    out: dict = {}
    if parts[0] == "services" and len(parts) > 1 and parts[1] in ("specs", "endpoints"):
        out["resource"] = "services" if parts[1] == "specs" else "endpoints"
        rest = parts[2:]
    elif "." in parts[0] and len(parts) > 1:
        out["group"] = parts[0]
        out["resource"] = parts[1]
        rest = parts[2:]
    else:
        out["resource"] = _PREFIX_RESOURCES.get(parts[0], parts[0])
        rest = parts[1:]
    if len(rest) == 1:
        out["name"] = rest[0]
    elif len(rest) >= 2:
        out["namespace"] = rest[0]
        out["name"] = "/".join(rest[1:])
    return out


def key_secrecy(user_key: bytes | None, info: dict | None = None) -> str:
    """``"secret"`` (mask data), ``"whole"`` (mask all) or ``""``;
    ``info``: the key's :func:`parse_key` answer when the caller has it."""
    if not user_key:
        return ""
    if user_key.startswith(WHOLE_SECRET_PREFIXES):
        return "whole"
    if info is None:
        info = parse_key(user_key)
    if info is None:
        return ""
    if info["resource"] == "secrets" and "group" not in info:
        return "secret"
    if info["resource"] in WHOLE_SECRET_RESOURCES:
        return "whole"
    return ""


# ------------------------------------------------------------------ protobuf
def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _timestamp(data: bytes, base: int) -> Any:
    secs = nanos = 0
    for no, wt, val, _off in fields(data, base):
        if no == 1 and wt == WIRE_VARINT:
            secs = int64(val)
        elif no == 2 and wt == WIRE_VARINT:
            nanos = int32(val)
    t = _time_text(secs, nanos)
    return dict(t) if isinstance(t, dict) else t  # (the cache's own dict stays its own)


@functools.lru_cache(maxsize=1024)  # objects made together share their second
def _time_text(secs: int, nanos: int) -> Any:
    try:
        t = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return {"seconds": secs, "nanos": nanos}
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        s += f".{nanos:09d}".rstrip("0")
    return s + "Z"


def map_entry(data: bytes, base: int) -> tuple[bytes, bytes, int]:
    """A map entry {1 key, 2 value} -> (key, value, value's offset)."""
    # the usual entry, as Go marshals it: 0a <len> key 12 <len> value, each
    # length one byte, nothing else (the full decoder gives the same answer)
    n = len(data)
    if n >= 4 and data[0] == 0x0A and data[1] < 0x80:
        j = 2 + data[1]
        if j + 2 <= n and data[j] == 0x12 and data[j + 1] < 0x80 and j + 2 + data[j + 1] == n:
            return data[2:j], data[j + 2:], base + j + 2
    k, v, voff = b"", b"", base
    for no, wt, val, off in fields(data, base):
        if wt != WIRE_LEN:
            continue
        if no == 1:
            k = val
        elif no == 2:
            v, voff = val, off
    return k, v, voff


def _owner(data: bytes, base: int) -> dict:
    names = {1: "kind", 3: "name", 4: "uid", 5: "apiVersion"}
    out: dict = {}
    for no, wt, val, _off in fields(data, base):
        if no in names and wt == WIRE_LEN:
            out[names[no]] = _text(val)
        elif no == 6 and wt == WIRE_VARINT:
            out["controller"] = val != 0
    return out


_META_STRINGS = {1: "name", 2: "generateName", 3: "namespace", 4: "selfLink", 5: "uid",
                 6: "resourceVersion"}


def _object_meta(data: bytes, base: int, secret: bool) -> dict:
    """ObjectMeta's fields as the JSON serializer shows them: Go's protobuf
    marshaller writes every string, the generation and the creation time
    even when empty or zero (``12 00``, ``38 00``, ``42 00``), the JSON one
    leaves those out (``omitempty``, ``omitzero``), and so does this."""
    out: dict = {}
    for no, wt, val, off in fields(data, base):
        if no in _META_STRINGS and wt == WIRE_LEN:
            if val:
                out[_META_STRINGS[no]] = _text(val)
        elif no == 7 and wt == WIRE_VARINT:
            if val:
                out["generation"] = int64(val)
        elif no in (8, 9) and wt == WIRE_LEN:
            if val:  # an empty Timestamp is Go's zero time (metav1.Time.Marshal)
                out["creationTimestamp" if no == 8 else "deletionTimestamp"] = \
                    _timestamp(val, off)
        elif no in (11, 12) and wt == WIRE_LEN:
            k, v, _ = map_entry(val, off)
            if secret and k == LAST_APPLIED:
                v = REDACTED.encode()
            d = out.setdefault("labels" if no == 11 else "annotations", {})
            if len(d) < _MAX_ITEMS:
                d[_text(k)] = _text(v)
        elif no == 13 and wt == WIRE_LEN:
            owners = out.setdefault("ownerReferences", [])
            if len(owners) < _MAX_ITEMS:
                owners.append(_owner(val, off))
        elif no == 14 and wt == WIRE_LEN:
            out.setdefault("finalizers", []).append(_text(val))
    return out


def unknown_parts(value: bytes) -> dict:
    """``runtime.Unknown`` after the magic -> its parts (raw with offset)."""
    out: dict = {"raw": (b"", len(MAGIC))}
    for no, wt, val, off in fields(value[len(MAGIC):], len(MAGIC)):
        if wt != WIRE_LEN:
            continue
        if no == 1:
            for tno, twt, tval, _toff in fields(val, off):
                if tno in (1, 2) and twt == WIRE_LEN:
                    out["apiVersion" if tno == 1 else "kind"] = _text(tval)
        elif no == 2:
            out["raw"] = (val, off)
        elif no == 3:
            out["contentEncoding"] = _text(val)
        elif no == 4:
            out["contentType"] = _text(val)
    return out


def _decode_protobuf(value: bytes, secret_by_key: bool) -> dict:
    u = unknown_parts(value)
    raw, roff = u.pop("raw")
    out: dict = {"encoding": "protobuf"}
    out.update({k: v for k, v in u.items() if v})
    secret = secret_by_key or u.get("kind") == "Secret"
    if u.get("contentEncoding"):
        return out  # not decodable without its encoding; nothing claimed
    for no, wt, val, off in fields(raw, roff):
        if no == 1 and wt == WIRE_LEN:
            out.update(_object_meta(val, off, secret))
        elif secret and no in (2, 4) and wt == WIRE_LEN:
            k, v, _ = map_entry(val, off)
            part = "data" if no == 2 else "stringData"
            out.setdefault("secret", {}).setdefault(part, {})[_text(k)] = len(v)
        elif secret and no == 3 and wt == WIRE_LEN:
            out.setdefault("secret", {})["type"] = _text(val)
    return out


# ------------------------------------------------------------------ JSON
def _decode_json(value: bytes, secret_by_key: bool) -> dict | None:
    ok, obj = parse_json(value)
    if not ok or not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        return None
    out: dict = {"encoding": "json", "apiVersion": obj.get("apiVersion"), "kind": obj["kind"]}
    meta = obj.get("metadata")
    secret = secret_by_key or obj["kind"] == "Secret"
    if isinstance(meta, dict):
        for name in ("name", "generateName", "namespace", "uid", "resourceVersion",
                     "generation", "creationTimestamp", "deletionTimestamp", "labels",
                     "annotations", "ownerReferences", "finalizers"):
            if name in meta:
                out[name] = meta[name]
        ann = out.get("annotations")
        if secret and isinstance(ann, dict) and LAST_APPLIED.decode() in ann:
            out["annotations"] = dict(ann, **{LAST_APPLIED.decode(): REDACTED})
    if secret:
        sec: dict = {}
        if isinstance(obj.get("type"), str):
            sec["type"] = obj["type"]
        for part in ("data", "stringData"):
            data = obj.get(part)
            if isinstance(data, dict):
                sec[part] = {k: len(v) if isinstance(v, str) else None for k, v in data.items()}
        out["secret"] = sec
    return out


# ------------------------------------------------------------------ envelope
def _decode_encrypted(value: bytes) -> dict:
    head = bytes(value[len(ENC_PREFIX):len(ENC_PREFIX) + 512]).split(b":", 3)
    out: dict = {"encoding": "encrypted"}
    if len(head) < 4:
        out["error"] = f"encryption envelope header is cut off at offset {len(value)}"
        return out
    out["provider"] = _text(head[0])
    out["envelope_version"] = _text(head[1])
    out["key_name"] = _text(head[2])
    return out


def decode_value(value: bytes, user_key: bytes | None = None) -> dict | None:
    """A Kubernetes value (KeyValue.value) -> what it says, or ``None``.

    ``{"encoding": "protobuf"|"json"|"encrypted", "apiVersion", "kind",
    "namespace", "name", "uid", "creationTimestamp", "labels",
    "annotations", ...}`` (empty strings and zeros left out, as the JSON
    serializer does); a Secret adds ``"secret": {"type", "data": {key:
    length}, "stringData"?: {key: length}}`` (lengths only: the values are
    never in this dict).  With
    ``user_key`` under ``/registry/`` the key's ``resource`` (and ``group``,
    namespace, name) are added.  A value that is no Kubernetes object (not
    :data:`MAGIC`, :data:`ENC_PREFIX` or a JSON object with a ``kind``)
    gives ``None`` (what the key says is in the key; the C core writes such
    records, ``_speedups.c``'s k8s_candidate), unless the key names a
    credential (a Secret, an OAuth token: its value may be masked whole),
    which gives the key's facts alone.  A malformed protobuf value gives
    ``"error"`` with its offset.
    """
    if not isinstance(value, (bytes, bytearray, memoryview, Span)):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    value = keep_span(value)
    key = bytes(user_key) if user_key is not None else None
    keyinfo = parse_key(key) if key is not None else None
    by_key = key_secrecy(key, keyinfo) == "secret"
    try:
        if value.startswith(MAGIC):
            out = _decode_protobuf(value, by_key)
        elif value.startswith(ENC_PREFIX):
            out = _decode_encrypted(value)
        elif value[:1] == b"{":
            out = _decode_json(value, by_key)
        else:
            out = None
    except ProtoError as exc:
        out = {"encoding": "protobuf", "error": str(exc)}
    except (ValueError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        out = {"encoding": "protobuf", "error": f"{type(exc).__name__}: {exc}"}
    if keyinfo is not None and (out is not None or _names_credential(keyinfo)):
        out = dict(keyinfo, **(out or {}))
    return out


def _names_credential(keyinfo: dict) -> bool:
    """Whether a parsed key names one Secret or OAuth token.  (Such a key
    spells out one of :data:`boltfix.secrets.QUICK_MARKERS`, so the C core hands its
    record back.)"""
    res = keyinfo["resource"]
    return "name" in keyinfo and ((res == "secrets" and "group" not in keyinfo)
                                  or res in WHOLE_SECRET_RESOURCES)


def summary(d: dict) -> str:
    """A one-line summary of :func:`decode_value`'s answer, for text output."""
    kind = d.get("kind") or d.get("resource", "?")
    ns, name = d.get("namespace"), d.get("name", "?")
    parts = [str(kind), f"{ns}/{name}" if ns else str(name)]
    if d.get("apiVersion"):
        parts.append(str(d["apiVersion"]))
    if d.get("encoding") == "encrypted":
        parts.append(f"encrypted ({d.get('provider')}, key {d.get('key_name')})")
    if d.get("uid"):
        parts.append(f"uid={d['uid']}")
    if d.get("creationTimestamp"):
        parts.append(f"created={d['creationTimestamp']}")
    sec = d.get("secret")
    if sec is not None:
        parts.append(f"type={sec.get('type', '?')} data keys: "
                     + (",".join(sec.get("data") or {}) or "none"))
    if d.get("error"):
        parts.append(f"error: {d['error']}")
    # names come from the file: no control character reaches a terminal raw
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(parts))


# ------------------------------------------------------------------ decode_raw
def _raw_message(data: bytes, base: int, depth: int, budget: list) -> Any:
    out: dict = {}
    for no, wt, val, off in fields(data, base):
        if wt == WIRE_LEN:
            val = _raw_bytes(val, off, depth + 1, budget)
        out.setdefault(str(no), []).append(val)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _raw_bytes(b: bytes, off: int, depth: int, budget: list) -> Any:
    """protoc --decode_raw's guess: a message if it parses, else text, else hex.

    ``budget`` (bytes still to parse, shared) keeps the work linear in the
    value's size whatever its nesting: past it, bytes stay bytes."""
    text = render_bytes(b)
    # (a huge payload's rendering is a Big whose text flag is the rule's answer)
    if (isinstance(text, str) or getattr(text, "text", False)) and (not b or b[0] >= 0x20):
        return text
    if depth < _MAX_DEPTH and b and budget[0] >= len(b):
        budget[0] -= len(b)
        try:
            return _raw_message(b, off, depth, budget)
        except (ProtoError, RecursionError):
            pass
    return text


_META_NAMES = {str(k): v for k, v in _META_STRINGS.items()}
_META_NAMES.update({"7": "generation", "8": "creationTimestamp", "9": "deletionTimestamp",
                    "11": "labels", "12": "annotations", "13": "ownerReferences",
                    "14": "finalizers", "17": "managedFields"})


def decode_object(value: bytes) -> Any:
    """The whole object, for ``dump --k8s-object``: JSON values as parsed
    JSON; protobuf ones the way ``protoc --decode_raw`` prints them (field
    numbers as keys; repeated fields as lists; ``metadata`` named), with
    ``typeMeta`` first.  Call it on masked bytes to keep secrets masked.
    ``None`` for a value that is neither; ``{"error"}`` when malformed."""
    value = keep_span(value)
    try:
        if value.startswith(MAGIC):
            u = unknown_parts(value)
            raw, roff = u.pop("raw")
            obj = _raw_message(raw, roff, 0, [4 * len(raw) + (64 << 10)]) if raw else {}
            if "1" in obj and isinstance(obj["1"], dict):
                meta = obj.pop("1")
                meta = {_META_NAMES.get(k, k): v for k, v in meta.items()}
                obj = {"metadata": meta, **obj}
            return {"apiVersion": u.get("apiVersion"), "kind": u.get("kind"), **obj}
        if value[:1] == b"{":
            ok, obj = parse_json(value)
            return obj if ok else {"error": "value is not valid JSON"}
    except ProtoError as exc:
        return {"error": str(exc)}
    except (ValueError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return None


# ------------------------------------------------------------------ etcd records
def inventory(records) -> dict | None:
    """Objects per resource and namespaces, from ``(revision key, KeyValue)``
    pairs of etcd's ``key`` bucket in key (= revision) order: each user key's
    newest revision counts, a tombstone ends it.  ``None`` when no key is
    under ``/registry/``."""
    latest: dict = {}
    for rev_key, kv in records:
        ukey = user_key(kv)
        if ukey is None or not ukey.startswith(REGISTRY_PREFIXES):
            continue
        if is_tombstone(rev_key):
            latest.pop(ukey, None)
        else:
            latest[ukey] = None
    if not latest:
        return None
    per_resource: dict = {}
    per_namespace: dict = {}
    for ukey in latest:
        info = parse_key(ukey) or {}
        res = info.get("resource", "?")
        if "group" in info:
            res = f"{info['group']}/{res}"
        per_resource[res] = per_resource.get(res, 0) + 1
        if "namespace" in info:
            per_namespace[info["namespace"]] = per_namespace.get(info["namespace"], 0) + 1
    return {"objects": dict(sorted(per_resource.items())),
            "namespaces": len(per_namespace),
            "objects_per_namespace": dict(sorted(per_namespace.items()))}


#: distinct (group, resource, namespace) groups a :class:`ResourceCounter`
#: keeps apart; the keys of further groups are counted, as ``other``
MAX_SUMMARY_GROUPS = 1000
_TEXT_RESOURCES = 8  # resources named in a summary line (the most keys first)
_TEXT_NAMESPACES = 3  # namespaces named per resource


def resource_label(info: dict) -> str:
    """``pods``, or ``example.com/widgets`` for a resource of an API group
    (the key's own layout, as ``inspect`` names them)."""
    return info["resource"] if "group" not in info else f"{info['group']}/{info['resource']}"


def key_object(info: dict) -> dict:
    """:func:`parse_key`'s answer as a report gives it per key: resource,
    namespace and name always (``None`` when the key has none; a
    cluster-scoped object has no namespace), group when there is one."""
    out = {"resource": info["resource"], "namespace": info.get("namespace"),
           "name": info.get("name")}
    if "group" in info:
        out["group"] = info["group"]
    return out


class ResourceCounter:
    """Kubernetes objects among the user keys a report names (lost, at risk),
    counted per (group, resource, namespace).

    Every key is counted, none is kept: memory is bounded by
    ``max_groups`` distinct groups (the keys of groups beyond it count in
    ``other``), whatever the number of keys.  Keys outside
    :data:`REGISTRY_PREFIXES` are not counted."""

    def __init__(self, max_groups: int | None = None):
        self.max_groups = MAX_SUMMARY_GROUPS if max_groups is None else max_groups
        self.counts: dict = {}  # (group or "", resource, namespace or None) -> keys
        self.total = 0
        self.other = 0
        self._by_prefix: dict = {}  # key prefix -> its group (a cache, bounded)

    def add(self, user_key) -> None:
        """Count one key (a key outside :data:`REGISTRY_PREFIXES` is not)."""
        key = bytes(user_key)
        if not key.startswith(REGISTRY_PREFIXES):
            return
        # the group of a key whose prefix (up to its last '/') holds two
        # parts or more below /registry/ is its prefix's: resource and
        # namespace (or group and resource, or services/specs) lie in the
        # prefix, the last part is always in the name (parse_key's layout).
        # So such a prefix is parsed once: with the tail open, every key of
        # the file is at risk and comes here.
        prefix = key[:key.rfind(b"/") + 1]
        group = self._by_prefix.get(prefix)
        if group is None:
            info = parse_key(key)
            group = (info.get("group", ""), info["resource"], info.get("namespace"))
            if (prefix.count(b"/") >= 4  # "/registry/" and two parts
                    and len(self._by_prefix) < 4 * self.max_groups):
                self._by_prefix[prefix] = group
        self.total += 1
        n = self.counts.get(group)
        if n is None and len(self.counts) >= self.max_groups:
            self.other += 1
        else:
            self.counts[group] = (n or 0) + 1

    def __bool__(self) -> bool:
        return self.total > 0

    def groups(self) -> list:
        """The groups, most keys first."""
        return sorted(self.counts.items(), key=lambda g: (-g[1], g[0][0], g[0][1], g[0][2] or ""))

    def to_json(self) -> dict:
        """The counts as a report's JSON gives them."""
        rows = []
        for (grp, res, ns), n in self.groups():
            row = {"resource": res, "namespace": ns, "count": n}
            if grp:
                row["group"] = grp
            rows.append(row)
        return {"objects": self.total, "by_resource_namespace": rows,
                "other": self.other, "text": self.text()}

    def text(self) -> str:
        """One line for people: ``15 pods (12 in kube-system, 3 in default),
        3 deployments in default, 2 nodes, ...``: resources by most keys, a
        few namespaces each; names shown by the project's one rule for text."""
        per: dict = {}  # resource label -> [keys, {namespace: keys}]
        for (grp, res, ns), n in self.counts.items():
            label = res if not grp else f"{grp}/{res}"
            slot = per.setdefault(label, [0, {}])
            slot[0] += n
            slot[1][ns] = slot[1].get(ns, 0) + n
        ranked = sorted(per.items(), key=lambda r: (-r[1][0], r[0]))
        shown = _TEXT_RESOURCES if len(ranked) > _TEXT_RESOURCES + 1 else len(ranked)
        parts = [_resource_text(name_text(label.encode()), n, spaces, name_text)
                 for label, (n, spaces) in ranked[:shown]]
        rest = ranked[shown:]
        if rest:
            parts.append(f"{sum(r[1][0] for r in rest):,} more of {len(rest):,} other resources")
        if self.other:
            parts.append(f"{self.other:,} more in groups past the first {self.max_groups:,}")
        return ", ".join(parts)


def _resource_text(label: str, n: int, spaces: dict, name_text) -> str:
    def where(ns):
        return "not namespaced" if ns is None else f"in {name_text(ns.encode())}"

    if len(spaces) == 1:
        (ns,) = spaces
        return f"{n:,} {label}" + ("" if ns is None else f" {where(ns)}")
    ranked = sorted(spaces.items(), key=lambda s: (-s[1], s[0] or ""))
    shown = _TEXT_NAMESPACES if len(ranked) > _TEXT_NAMESPACES + 1 else len(ranked)
    inner = [f"{k:,} {where(ns)}" for ns, k in ranked[:shown]]
    rest = ranked[shown:]
    if rest:
        inner.append(f"{sum(k for _, k in rest):,} in {len(rest):,} more namespaces")
    return f"{n:,} {label} ({', '.join(inner)})"


def resource_summary(user_keys) -> dict:
    """For reports naming etcd keys (lost, at risk): the Kubernetes objects
    among them, ``{"objects": [key_object ...], "text": "3 deployments, 12
    pods in kube-system, ..."}``; keys outside :data:`REGISTRY_PREFIXES` are
    left out.  (Keeps every object: for a bounded list; the reports use
    :class:`ResourceCounter` over all keys.)"""
    counter = ResourceCounter()
    objects = []
    for key in user_keys:
        counter.add(key)
        info = parse_key(bytes(key))
        if info is not None:
            objects.append(key_object(info))
    return {"objects": objects, "text": counter.text()}
