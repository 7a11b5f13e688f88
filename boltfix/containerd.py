"""containerd's metadata database (``/var/lib/containerd/io.containerd.
metadata.v1.bolt/meta.db``), read in its own terms: the content layer of
issue 23.

A file is containerd's by its bucket layout, never by its name
(:func:`recognise`).  The layout, read in the sources of
``github.com/containerd/containerd/v2`` v2.4.2:

* ``core/metadata/buckets.go`` (the schema comment and the ``bucketKey*``
  names): one top-level bucket ``v1`` (``schemaVersion``, ``db.go``) holding
  the key ``version`` (``dbVersion``, 4 in v2.4.2, written by ``encodeInt``:
  ``binary.PutVarint``) and one bucket per namespace; a namespace holds
  ``labels``, ``images/<name>`` (``createdat``, ``updatedat``,
  ``target/{digest,mediatype,size}``, ``labels``),
  ``containers/<id>`` (``createdat``, ``updatedat``, ``spec``, ``image``,
  ``snapshotter``, ``snapshotKey``, ``sandboxid``, ``runtime/{name,options}``,
  ``extensions/<name>``, ``labels``),
  ``snapshots/<snapshotter>/<key>`` (``name``, ``parent``, ``children``,
  ``createdat``, ``updatedat``, ``labels``), ``content/blob/<digest>``
  (``createdat``, ``updatedat``, ``size``, ``labels``),
  ``content/ingests/<ref>`` (``ref``, ``expireat``, ``expected``),
  ``leases/<id>`` (``createdat``, ``labels``, ``snapshots``, ``content``,
  ``ingests``) and ``sandboxes/<id>`` (as a container, with ``sandboxer``).
* ``core/metadata/boltutil/helpers.go``: times are Go's
  ``time.MarshalBinary`` bytes (``WriteTimestamps``); ``spec``,
  ``runtime/options`` and each extension are a marshalled protobuf
  ``google.protobuf.Any`` (``WriteAny``, ``WriteExtensions``); a non-proto
  type such as the OCI runtime spec (``types.containerd.io/opencontainers/
  runtime-spec/1/Spec``) carries JSON in the Any's value (``typeurl``).
* ``core/metadata/images.go``, ``content.go``: ``size`` is a signed varint.
* ``core/snapshots/storage/bolt.go``: the snapshotter's own ``metadata.db``
  also has a single ``v1`` bucket, but with ``snapshots`` and ``parents``
  in it and no ``version`` key: it is not this file (generic bbolt).

What :func:`check_findings` flags, by containerd's garbage collector
(``core/metadata/gc.go``: an image's target and a container's snapshot are
references that keep their objects, a snapshot's ``parent`` keeps its
parent): an image target naming a blob absent from the namespace's
``content/blob``; a container whose ``snapshotKey`` names no snapshot of its
``snapshotter``; a snapshot whose ``parent`` is absent.  A container whose
image is gone is normal (images may be removed under running containers) and
is not flagged.

Label values whose key looks like a credential (:data:`SECRET_LABEL`) and
the values of the OCI spec's ``process.env`` are masked unless
``show_secrets`` (:func:`secret_ranges` says which bytes of the raw value).
Every decoder is bounded by the value's length and never raises.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Iterable, List, Optional, Tuple

from boltfix import findings as F
from boltfix.findings import WARNING, Finding
from boltfix.protowire import WIRE_LEN, ProtoError, decode_varint, fields, parse_json
from boltfix.raftboltdb import go_time
from boltfix.reader import DB
from boltfix.text import REDACTED, json_str, mask_ranges, name_text
from boltfix.walk import Walker

__all__ = [
    "APPLICATION", "V1", "recognise", "looks_like_containerd", "decode_record",
    "secret_ranges", "view_secret_ranges", "ContainerdFacts", "scan", "check_findings",
    "OBJECTS", "repair_report", "decode_json",
]

APPLICATION = "containerd metadata"
V1 = b"v1"
VERSION = b"version"
#: namespace bucket -> the object name used in facts and the ``containerd`` member
OBJECTS = {b"images": "image", b"containers": "container", b"snapshots": "snapshot",
           b"leases": "lease", b"sandboxes": "sandbox"}
TIME_KEYS = (b"createdat", b"updatedat", b"expireat")
ANY_KEYS = (b"spec", b"options")
#: a label (or annotation) key that names a credential: its value is masked
SECRET_LABEL = re.compile(rb"auth|token|passw|secret|credential|apikey|api-key|api_key",
                          re.IGNORECASE)
#: the Any type of the OCI runtime spec (JSON inside)
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
#: names kept per namespace for the reference checks; above, the checks stop
MAX_NAMES = 1_000_000
_ERROR_TEXT = 200


def _names(top: Iterable) -> set:
    return {n.encode("utf-8", "surrogateescape") if isinstance(n, str) else bytes(n)
            for n in top}


def looks_like_containerd(top_level_bucket_names: Iterable) -> bool:
    """The root holds exactly the one bucket ``v1`` (a cheap first test;
    :func:`recognise` reads ``v1/version``)."""
    return _names(top_level_bucket_names) == {V1}


def _varint(value: bytes) -> Optional[int]:
    """A Go ``binary.PutVarint`` value (zig-zag), the whole of ``value``, or None."""
    try:
        u, pos = decode_varint(bytes(value), 0)
    except (ProtoError, IndexError):
        return None
    if pos != len(value):
        return None
    return (u >> 1) ^ -(u & 1)


def recognise(db: DB, tree=None) -> Optional[int]:
    """containerd's metadata schema version (``v1/version``), or None when
    the file is not containerd's metadata: the root must hold only ``v1``,
    ``v1`` a ``version`` varint and no ``snapshots``/``parents`` pair (the
    snapshotter's own metadata.db)."""
    try:
        w = Walker(db, tree=tree)
        root = w.root_bucket()
        if root is None:
            return None
        rec = w.find(root, V1)
        if rec is None or not rec.is_bucket:
            return None
        v1 = w.open_bucket(root, rec)
        if v1 is None:
            return None
        ver = w.find(v1, VERSION)
        if ver is None or ver.is_bucket:
            return None
        n = _varint(bytes(ver.value))
        return n if n is not None and 0 <= n < 1 << 20 else None
    except Exception:  # a damaged file: not recognised, never a traceback
        return None


def name(version: int) -> str:
    """What ``inspect`` calls the file."""
    return f"{APPLICATION} (schema v1, version {version})"


# ---------------------------------------------------------------- values
def _decode_any(value: bytes, show: bool) -> dict:
    """A marshalled ``google.protobuf.Any``: its type URL and its value, as
    JSON when the type carries JSON (the OCI spec, ``process.env`` values
    masked unless ``show``), else its protobuf fields (number, wire type,
    value)."""
    type_url, payload = "", b""
    for no, wt, v, _off in fields(value):
        if no == 1 and wt == WIRE_LEN:
            type_url = bytes(v).decode("utf-8", "replace")
        elif no == 2 and wt == WIRE_LEN:
            payload = bytes(v)
    out: dict = {"type_url": type_url, "length": len(payload)}
    ok, obj = parse_json(payload) if payload[:1] == b"{" else (False, None)
    if ok:
        if not show:
            _mask_env(obj)
        out["json"] = obj
    else:
        out["fields"] = _proto_fields(payload)
    return out


def _mask_env(spec) -> None:
    """The spec's ``process.env`` values as :data:`REDACTED` (names kept)."""
    proc = spec.get("process") if isinstance(spec, dict) else None
    env = proc.get("env") if isinstance(proc, dict) else None
    if isinstance(env, list):
        proc["env"] = [e.split("=", 1)[0] + "=" + REDACTED if isinstance(e, str) else REDACTED
                       for e in env]


def _proto_fields(payload: bytes, limit: int = 50) -> list:
    """A protobuf message's fields, generic: ``[no, wire type, value]``
    (a length-delimited value as text or hex)."""
    try:
        out = []
        for no, wt, v, _off in fields(payload):
            out.append([no, wt, name_text(bytes(v)) if wt == WIRE_LEN else v])
            if len(out) >= limit:
                break
        return out
    except ProtoError as exc:
        return [["error", str(exc)[:_ERROR_TEXT]]]


def _label_secret(key) -> bool:
    return SECRET_LABEL.search(bytes(key)) is not None


@functools.lru_cache(maxsize=4096)
def _where_cached(rel: Tuple[bytes, ...]) -> Tuple[Tuple[str, str], ...]:
    """:func:`_where`, remembered: a bucket's records share their path."""
    return tuple(_where_of(rel).items())


def _where(rel: Tuple[bytes, ...]) -> dict:
    """The namespace, object kind and object name a record belongs to."""
    return dict(_where_cached(rel))


def _where_of(rel: Tuple[bytes, ...]) -> dict:
    """:func:`_where`, worked out."""
    out: dict = {}
    if rel:
        out["namespace"] = name_text(rel[0])
    if len(rel) >= 2:
        kind = rel[1]
        if kind == b"content" and len(rel) >= 3:
            out["object"] = {b"blob": "blob", b"ingests": "ingest"}.get(rel[2], name_text(rel[2]))
            if len(rel) >= 4:
                out["id"] = name_text(rel[3])
        elif kind == b"snapshots" and len(rel) >= 3:
            out["object"] = "snapshot"
            out["snapshotter"] = name_text(rel[2])
            if len(rel) >= 4:
                out["id"] = name_text(rel[3])
        else:
            out["object"] = OBJECTS.get(kind, "labels" if kind == b"labels" else name_text(kind))
            if len(rel) >= 3 and kind != b"labels":
                out["id"] = name_text(rel[2])
    return out


def decode_record(path: Tuple[bytes, ...], key, value, show_secrets: bool = False
                  ) -> Optional[dict]:
    """The ``containerd`` member of a dump line: a record under ``v1``
    decoded (where it belongs, its field, the value in containerd's terms),
    None outside ``v1``.  ``value`` None is a bucket entry.  Never raises."""
    if not path or path[0] != V1:
        return None
    try:
        return _decode(tuple(bytes(p) for p in path[1:]), bytes(key),
                       None if value is None else bytes(value), show_secrets)
    except Exception as exc:  # protowire's own errors, and any other: never raise
        return {"error": f"{type(exc).__name__}: {str(exc)[:_ERROR_TEXT]}"}


def _decode(rel, key: bytes, value: Optional[bytes], show: bool) -> dict:
    if value is None:  # a bucket entry: what it is
        return _where(rel + (key,))
    out = _where(rel)
    out["field"] = name_text(key)
    if not rel and key == VERSION:
        out["schema_version"] = _varint(value)
    elif rel and rel[-1] in (b"labels", b"annotations"):
        out["label"] = name_text(key)
        out["value"] = REDACTED if _label_secret(key) and not show else name_text(value)
    elif key in TIME_KEYS:
        out["time"] = go_time(value)
    elif key == b"size":
        out["size"] = _varint(value)
    elif key in ANY_KEYS or (len(rel) >= 1 and rel[-1] == b"extensions"):
        out["any"] = _decode_any(value, show)
    elif len(rel) >= 2 and rel[-1] == b"children" or (len(rel) >= 3 and rel[1] == b"leases"):
        out["reference"] = True  # a child or lease reference: the key is all
    else:
        out["value"] = name_text(value)
    return out


# ---------------------------------------------------------------- values as JSON
# dump writes a record's ``containerd`` member as JSON.  decode_json gives
# the bytes json.dumps(decode_record(...)) gives (tests/unit/
# test_containerd_decoder.py holds it to them on every record of the
# fixtures and on hostile bytes), without a dict per record: a bucket's
# records share their place (the JSON of :func:`_where`, worked out once
# per bucket), their keys repeat (``createdat``, a label's name) and so do
# many values (a runtime's options, an extension, a spec): those are
# written once and looked up.
_JSON_SEP = (",", ":")
#: entries each cache below keeps before it is emptied, and the most bytes
#: of input (a path, a key, a value) an entry is made for: bounded memory
#: (a few MB at most), whatever the file holds
_CACHE_ENTRIES = 1024
_CACHE_BYTES = 4096
#: what a record's decoding is, by its key outside a labels bucket
_KIND_TIME, _KIND_SIZE, _KIND_ANY, _KIND_VALUE = range(4)
_KEY_KINDS = {**{k: _KIND_TIME for k in TIME_KEYS}, b"size": _KIND_SIZE,
              **{k: _KIND_ANY for k in ANY_KEYS}}


def _dumps(obj) -> str:
    """``obj`` as dump writes a member (compact, not ASCII-escaped)."""
    return json.dumps(obj, ensure_ascii=False, separators=_JSON_SEP)


#: how :func:`_where` of a path differs from its parent's (:func:`_where_change`)
_WHERE_SAME, _WHERE_ID, _WHERE_NEW = range(3)


def _where_change(rel: Tuple[bytes, ...]) -> int:
    """How :func:`_where_of` of ``rel`` differs from that of ``rel[:-1]``:
    the same (below an object, a labels bucket's children), the parent's
    with the object's ``id`` added last, or otherwise (worked out anew)."""
    n = len(rel)
    if n < 2:
        return _WHERE_NEW
    kind = rel[1]
    # the deepest name _where_of reads, by the kind (rel[1])
    deep = 4 if kind in (b"content", b"snapshots") else (2 if kind == b"labels" else 3)
    if n > deep:
        return _WHERE_SAME
    return _WHERE_ID if n == deep and kind != b"labels" else _WHERE_NEW


class _Place:
    """One bucket's records below ``v1`` (``rel``: its path below ``v1``),
    as :func:`_decode` treats them: the JSON of their place, and which of
    :func:`_decode`'s branches the bucket itself decides."""

    __slots__ = ("rel", "json", "head", "label", "extension", "reference")

    def __init__(self, rel: Tuple[bytes, ...], parent: Optional["_Place"] = None):
        self.rel = rel
        change = _WHERE_NEW if parent is None else _where_change(rel)
        if change == _WHERE_SAME:
            self.json, self.head = parent.json, parent.head
        elif change == _WHERE_ID:
            self.head = f'{parent.head}"id":{json_str(name_text(rel[-1]))},'
            self.json = self.head[:-1] + "}"
        else:
            # _dumps(_where(rel)): its members are all text
            members = ",".join(f'"{k}":{json_str(v)}' for k, v in _where_of(rel).items())
            #: the place's JSON: its bucket entry's member
            self.json = "{" + members + "}"
            #: ``{`` and the place's members, then the separator before ``field``
            self.head = "{" + members + "," if members else "{"
        last = rel[-1] if rel else None
        self.label = last in (b"labels", b"annotations")
        self.extension = last == b"extensions"
        self.reference = (len(rel) >= 2 and last == b"children") or \
            (len(rel) >= 3 and rel[1] == b"leases")


#: path (the whole tuple a dump hands over) -> its _Place
_PLACES: dict = {}
#: key -> '"field":' and its text (a label's key: also its '"label":' member)
_FIELDS: dict = {}
#: (value, show) -> the JSON of an Any's decoding
_ANYS: dict = {}


def _remember(cache: dict, key, size: int, make):
    """``cache[key]``, made by ``make()`` when missing (and kept when
    ``size``, the bytes of input it stands for, is small)."""
    got = cache.get(key)
    if got is None:
        got = make()
        if size <= _CACHE_BYTES:
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[key] = got
    return got


def _place(path: tuple, rel: Optional[tuple] = None, parent: Optional[_Place] = None
           ) -> _Place:
    """The :class:`_Place` of the records of the bucket at ``path`` (which
    starts with ``v1``; ``rel``: its bytes below ``v1`` when known;
    ``parent``: its parent bucket's place when known), remembered."""
    got = _PLACES.get(path)
    if got is not None:
        return got
    if rel is None:
        rel = tuple(bytes(p) for p in path[1:])
    return _remember(_PLACES, path, sum(map(len, rel)), lambda: _Place(rel, parent))


def _make_field(key: bytes) -> Tuple[str, str, bool]:
    """:func:`_field`, worked out."""
    text = json_str(name_text(key))
    return '"field":' + text, text, _label_secret(key)


def _field(key: bytes) -> Tuple[str, str, bool]:
    """The JSON of a key's ``field`` member, its text as a JSON string, and
    whether a label of that name is masked, remembered."""
    got = _FIELDS.get(key)
    return got if got is not None else _remember(_FIELDS, key, len(key),
                                                 lambda: _make_field(key))


def _any_json(value: bytes, show: bool) -> str:
    """:func:`_decode_any` as JSON, remembered for a value seen before."""
    return _remember(_ANYS, (value, show), len(value),
                     lambda: _dumps(_decode_any(value, show)))


def decode_json(path: tuple, key: bytes, value: Optional[bytes], show_secrets: bool = False
                ) -> Optional[str]:
    """:func:`decode_record` as the JSON dump writes (``json.dumps``,
    compact, not ASCII-escaped), the same bytes; ``key`` and ``value``
    are bytes.  Never raises."""
    if not path or path[0] != V1:
        return None
    try:
        place = _PLACES.get(path) or _place(path)
        if value is None:  # a bucket entry: the place of the records below it
            return _place(path + (key,), place.rel + (key,), place).json
        return _member(place, key, value, show_secrets)
    except Exception:  # the dict's way, which says what went wrong as decode_record does
        return _dumps(decode_record(path, key, value, show_secrets))


_REDACTED_JSON = json_str(REDACTED)


def _text_json(value: bytes) -> str:
    """``json_str(name_text(value))``, in one step (the value's text when
    printable UTF-8, else ``0x`` and its hex)."""
    if value:
        try:
            s = value.decode("utf-8")
        except UnicodeDecodeError:
            s = ""
        if s and s.isprintable():
            return json_str(s)
    return '"0x' + value.hex() + '"'


def _member(place: _Place, key: bytes, value: bytes, show: bool) -> str:
    """:func:`_decode` of a kv record as JSON (its branches, in its order)."""
    field, text, secret = _FIELDS.get(key) or _field(key)
    if place.label:
        v = _REDACTED_JSON if secret and not show else _text_json(value)
        return f'{place.head}{field},"label":{text},"value":{v}}}'
    if not place.rel and key == VERSION:
        return f'{place.head}{field},"schema_version":{_dumps(_varint(value))}}}'
    kind = _KEY_KINDS.get(key, _KIND_VALUE)
    if kind == _KIND_TIME:
        t = go_time(value)
        return f'{place.head}{field},"time":{"null" if t is None else json_str(t)}}}'
    if kind == _KIND_SIZE:
        n = _varint(value)  # an int's JSON is its repr
        return f'{place.head}{field},"size":{"null" if n is None else repr(n)}}}'
    if kind == _KIND_ANY or place.extension:
        return f'{place.head}{field},"any":{_any_json(value, show)}}}'
    if place.reference:
        return f'{place.head}{field},"reference":true}}'
    return f'{place.head}{field},"value":{_text_json(value)}}}'


def secret_ranges(path: Tuple[bytes, ...], key, value) -> List[Tuple[int, int]]:
    """Which bytes of a record's raw value ``dump`` masks: a credential-like
    label's whole value; in a spec, each ``process.env`` entry's value part
    (the whole Any payload when the env cannot be placed).  Never raises."""
    try:
        if not path or path[0] != V1 or value is None:
            return []
        raw = bytes(value)
        if path[-1] in (b"labels", b"annotations"):
            return [(0, len(raw))] if _label_secret(key) and raw else []
        if bytes(key) == b"spec" or (path[-1] == b"runtime" and bytes(key) == b"options"):
            return _env_ranges(raw)
        return []
    except Exception:
        return [(0, len(bytes(value)))]


def _env_ranges(raw: bytes) -> List[Tuple[int, int]]:
    """The ``process.env`` values of a spec Any, as byte ranges of ``raw``."""
    payload, start = b"", 0
    for no, wt, v, off in fields(raw):
        if no == 2 and wt == WIRE_LEN:
            payload, start = bytes(v), off
    if not payload.startswith(b"{"):
        return []
    ok, obj = parse_json(payload)
    if not ok:
        return [(start, start + len(payload))]
    proc = obj.get("process") if isinstance(obj, dict) else None
    env = proc.get("env") if isinstance(proc, dict) else None
    if not isinstance(env, list):
        return []
    out, pos = [], 0
    for e in env:
        enc = json.dumps(e, ensure_ascii=False).encode("utf-8") if isinstance(e, str) else b""
        at = payload.find(enc, pos) if enc else -1
        if at < 0:
            return [(start, start + len(payload))]
        eq = enc.find(b"=")
        lo = at + (eq + 1 if eq >= 0 else 1)
        hi = at + len(enc) - 1  # before the closing quote
        if hi > lo:
            out.append((start + lo, start + hi))
        pos = at + len(enc)
    return out


def view_secret_ranges(key, value) -> List[Tuple[int, int]]:
    """For ``page`` and ``page --hex`` of a containerd metadata file, where a
    value's bucket is unknown: the value of a credential-like key
    (:data:`SECRET_LABEL`, as a label's) whole, and a ``spec``'s or an
    ``options``' environment values (:func:`secret_ranges`' rules, judged
    by the key alone).  Never raises (masks the value whole instead)."""
    try:
        raw, k = bytes(value), bytes(key)
        if _label_secret(k):
            return [(0, len(raw))] if raw else []
        if k in ANY_KEYS:
            return _env_ranges(raw)
        return []
    except Exception:
        return [(0, len(bytes(value)))]


def mask(path, key, value) -> Tuple[bytes, bool]:
    """``value`` with :func:`secret_ranges` as ``*`` bytes; whether masked."""
    return mask_ranges(value, secret_ranges(path, key, value))


# ---------------------------------------------------------------- the whole store
class _Namespace:
    """What one namespace holds (counts, and the names the checks need)."""

    def __init__(self):
        self.counts = {k: 0 for k in ("images", "containers", "snapshots", "blobs", "ingests",
                                      "leases", "sandboxes", "labels")}
        self.blobs: set = set()
        self.snapshots: set = set()  # (snapshotter, key)
        self.targets: list = []  # (image, digest, page)
        self.container_snaps: list = []  # (container, snapshotter, key, page)
        self.parents: list = []  # (snapshotter, key, parent, page)
        self.containers: dict = {}  # id -> {"snapshotter", "snapshotKey"}
        self.overflow = False


class ContainerdFacts:
    """Facts about a containerd metadata database, one record at a time."""

    def __init__(self, version: Optional[int]):
        self.version = version
        self.namespaces: dict = {}
        self.unknown = 0

    def ns(self, name: bytes) -> _Namespace:
        """The namespace ``name``'s tally, made on first sight."""
        got = self.namespaces.get(name)
        if got is None:
            got = self.namespaces[name] = _Namespace()
        return got

    def see_entry(self, rel: tuple, key: bytes) -> None:
        """A bucket entry under ``v1`` (``rel``: its parent's path below ``v1``)."""
        if not rel:
            self.ns(key)
            return
        n = self.ns(rel[0])
        if len(rel) == 2 and rel[1] in OBJECTS and rel[1] != b"snapshots":
            n.counts[rel[1].decode()] += 1
        elif len(rel) == 3 and rel[1] == b"snapshots":
            n.counts["snapshots"] += 1
            self._keep(n, n.snapshots, (rel[2], key))
        elif len(rel) == 3 and rel[1:] == (b"content", b"blob"):
            n.counts["blobs"] += 1
            self._keep(n, n.blobs, key)
        elif len(rel) == 3 and rel[1:] == (b"content", b"ingests"):
            n.counts["ingests"] += 1

    @staticmethod
    def _keep(n: _Namespace, into: set, item) -> None:
        if len(into) < MAX_NAMES:
            into.add(item)
        else:
            n.overflow = True

    def see_kv(self, rel: tuple, key: bytes, value: bytes, page: int) -> None:
        """A plain record under ``v1``."""
        if len(rel) < 2:
            return
        n = self.ns(rel[0])
        if len(rel) == 2 and rel[1] == b"labels":
            n.counts["labels"] += 1
        elif len(rel) == 4 and rel[1] == b"images" and rel[3] == b"target" and key == b"digest":
            n.targets.append((rel[2], value, page)) if len(n.targets) < MAX_NAMES else None
        elif len(rel) == 3 and rel[1] == b"containers" and key in (b"snapshotter", b"snapshotKey"):
            c = n.containers.setdefault(rel[2], {"page": page})
            c[key.decode()] = value
        elif len(rel) == 4 and rel[1] == b"snapshots" and key == b"parent" and value:
            n.parents.append((rel[2], rel[3], value, page)) if len(n.parents) < MAX_NAMES else None

    def findings(self, report) -> None:
        """The broken references, as warnings to ``report``."""
        for ns, n in sorted(self.namespaces.items()):
            if n.overflow:
                continue
            for image, digest, page in n.targets:
                if digest not in n.blobs:
                    report(Finding(F.CONTAINERD_IMAGE_TARGET_MISSING,
                                   f"containerd image {name_text(image)} in namespace "
                                   f"{name_text(ns)} names content {name_text(digest)}, absent "
                                   "from content/blob", WARNING, page, (),
                                   (V1, ns, b"images", image),
                                   {"namespace": name_text(ns), "image": name_text(image),
                                    "digest": name_text(digest)}))
            for cid, c in sorted(n.containers.items()):
                key, sn = c.get("snapshotKey", b""), c.get("snapshotter", b"")
                if key and (sn, key) not in n.snapshots:
                    report(Finding(F.CONTAINERD_SNAPSHOT_MISSING,
                                   f"containerd container {name_text(cid)} in namespace "
                                   f"{name_text(ns)} names snapshot {name_text(key)} of "
                                   f"snapshotter {name_text(sn)}, which is absent",
                                   WARNING, c["page"], (), (V1, ns, b"containers", cid),
                                   {"namespace": name_text(ns), "container": name_text(cid),
                                    "snapshotter": name_text(sn), "snapshot": name_text(key)}))
            for sn, key, parent, page in n.parents:
                if (sn, parent) not in n.snapshots:
                    report(Finding(F.CONTAINERD_PARENT_MISSING,
                                   f"containerd snapshot {name_text(key)} ({name_text(sn)}, "
                                   f"namespace {name_text(ns)}) has parent {name_text(parent)}, "
                                   "which is absent", WARNING, page, (),
                                   (V1, ns, b"snapshots", sn, key),
                                   {"namespace": name_text(ns), "snapshotter": name_text(sn),
                                    "snapshot": name_text(key), "parent": name_text(parent)}))

    def to_json(self) -> dict:
        """The facts as ``inspect --json``'s ``containerd`` member."""
        return {
            "application": APPLICATION,
            "schema": "v1",
            "version": self.version,
            "namespaces": {name_text(k): dict(v.counts)
                           for k, v in sorted(self.namespaces.items())},
        }


def scan(db: DB, version: Optional[int], report=None, tree=None) -> ContainerdFacts:
    """Walk ``v1`` (a walk of its own, quiet: the main walk reports the
    tree's findings) a page of records at a time; findings to ``report``."""
    facts = ContainerdFacts(version)
    w = Walker(db, tree=tree)
    root = w.root_bucket()
    rec = w.find(root, V1) if root is not None else None
    v1 = w.open_bucket(root, rec) if rec is not None and rec.is_bucket else None
    if v1 is None:
        return facts
    for b, batch in w.walk_batches(v1):
        rel = tuple(bytes(p) for p in b.path[1:])
        if batch.bucket_entry is not None:
            facts.see_entry(rel, bytes(batch.bucket_entry.key))
            continue
        for key, value in zip(batch.keys, batch.values):
            facts.see_kv(rel, bytes(key), bytes(value), batch.page)
    if report is not None:
        facts.findings(report)
    return facts


def check_findings(db: DB, version: Optional[int], report) -> dict:
    """``check``'s containerd findings (broken references); the facts for its stats."""
    return scan(db, version, report).to_json()


# ---------------------------------------------------------------- repair's report
#: objects named by the report (all are counted)
OBJECTS_SHOWN = 50


def repair_report(facts: dict, out_findings: Iterable, dropped: Iterable) -> dict:
    """``repair``'s report in containerd's terms: ``inspect``'s facts of the
    output (``facts``: the read-back check's ``stats.containerd``), and
    ``lost``: the objects whose records repair dropped (``dropped``: its
    loss findings; an object below ``v1/<ns>/<kind>/<id>`` is named, a
    loss higher up names the kind), the broken references the output holds
    (``out_findings``: the read-back check's findings), and ``advice``: what
    to run.  containerd rebuilds none of it: its garbage collector
    (``core/metadata/gc.go``, ``content.go``, ``snapshot.go``) removes the
    content files and snapshots whose metadata is gone, so what lost its
    metadata comes back only by pulling or creating it again."""
    objects, kinds, total = [], set(), 0
    for f in dropped:
        path = tuple(bytes(b) for b in f.bucket)
        if not path or path[0] != V1 or len(path) < 2:
            continue
        where = _where(path[1:])
        if "id" in where:
            item = {k: where[k] for k in ("namespace", "object", "id") if k in where}
            if item not in objects:
                total += 1
                if len(objects) < OBJECTS_SHOWN:
                    objects.append(item)
        else:
            kinds.add((where.get("namespace", ""), where.get("object", "namespace")))
    pull, recreate, unpack = [], [], []
    for f in out_findings:
        d = f.detail or {}
        if f.code == F.CONTAINERD_IMAGE_TARGET_MISSING:
            pull.append({"namespace": d.get("namespace"), "image": d.get("image")})
        elif f.code == F.CONTAINERD_SNAPSHOT_MISSING:
            recreate.append({"namespace": d.get("namespace"), "container": d.get("container")})
        elif f.code == F.CONTAINERD_PARENT_MISSING:
            unpack.append({"namespace": d.get("namespace"), "snapshot": d.get("snapshot")})
    lost = {"objects": objects, "objects_total": total,
            "kinds": [{"namespace": ns, "object": k} for ns, k in sorted(kinds)],
            "images_to_pull": pull, "containers_without_snapshot": recreate,
            "snapshots_without_parent": unpack}
    return {**facts, "lost": lost, "advice": _advice(lost)}


def _advice(lost: dict) -> List[str]:
    """What the operator runs, in containerd's terms."""
    out = []
    for p in lost["images_to_pull"][:OBJECTS_SHOWN]:
        out.append(f"pull again: ctr -n {p['namespace']} images pull {p['image']}"
                   + (" (or crictl pull)" if p["namespace"] == "k8s.io" else ""))
    for c in lost["containers_without_snapshot"][:OBJECTS_SHOWN]:
        out.append(f"container {c['container']} has no root filesystem: ctr -n "
                   f"{c['namespace']} containers rm {c['container']}, then create it again"
                   + (" (kubelet recreates a pod's containers)"
                      if c["namespace"] == "k8s.io" else ""))
    if lost["snapshots_without_parent"]:
        out.append("snapshots whose parent is gone cannot be mounted: remove them and "
                   "unpack the image again (ctr images pull re-unpacks)")
    if lost["objects"] or lost["kinds"]:
        out.append("objects whose metadata was dropped are gone for containerd: its garbage "
                   "collector removes their content and snapshots on its next run; pull the "
                   "images and create the containers again")
    return out
