"""Docker's two bbolt files, read in Docker's own terms: the volume store
(``/var/lib/docker/volumes/metadata.db``) and libnetwork's local store
(``/var/lib/docker/network/files/local-kv.db``).

A file is Docker's by its bucket layout, never by its name
(:func:`kind_of`).  The layouts, read in the sources of
``github.com/docker/docker`` v28.5.2+incompatible:

* **volumes** (``volume/service/store.go`` ``NewStore``: the root holds
  one bucket ``volumes``; ``volume/service/db.go`` ``setMeta``,
  ``listMeta``): each volume under its name, the value
  ``json.Marshal(volumeMetadata{Name, Driver, Labels, Options})``.
  ``restore.go`` ``restore()`` reads every record back at the daemon's
  start; a value that is no JSON is logged and skipped (the volume is
  forgotten), a ``Name`` other than the key is restored under the JSON's
  name (:data:`boltfix.findings.DOCKER_VOLUME_NAME_MISMATCH`).
* **libnetwork** (``libnetwork/datastore/datastore.go`` ``New``, ``Key``;
  ``libnetwork/internal/kvstore/boltdb/boltdb.go`` ``Put``,
  ``AtomicPut``, ``List``): the root holds one bucket ``libnetwork``
  (``datastore.DefaultBucket``); keys are ``docker/network/v1.0/<kind>/
  <id>/...`` with a trailing ``/`` (``Key``); each value is an 8-byte
  little-endian index (``libkvmetadatalen``) then the object's JSON, or
  the index alone for a parent key (``ensureParent``).  Kinds:
  ``network/<id>`` (``network.go`` ``MarshalJSON``: name, id,
  networkType, scope, labels, generic (the driver options under
  ``com.docker.network.generic``), ipam...), ``endpoint/<network id>/<id>``
  (``endpoint.go`` ``Key``, ``MarshalJSON``), ``endpoint_count/<network
  id>`` (``endpoint_cnt.go``: unused since v28.1, kept for downgrades, so
  a count that disagrees is not damage), the drivers' own records
  (``bridge``, ``bridge-endpoint``, ``macvlan``, ... in
  ``drivers/*/*_store.go``) and sandboxes (``sandbox_store.go``).
  ``List`` slices ``v[:8]`` without a length check: a value shorter than
  8 bytes panics the daemon (``check`` reports it, repair drops it:
  :func:`unloadable`, :data:`boltfix.findings.DOCKER_KV_VALUE_SHORT`);
  ``UnmarshalJSON`` of a network or endpoint
  fails on bad JSON and the daemon's network restore stops
  (:data:`boltfix.findings.DOCKER_RECORD_UNDECODABLE`).  An endpoint
  whose network is gone is never listed by libnetwork (``store.go``
  ``getEndpointsFromStore`` goes through its network):
  :data:`boltfix.findings.DOCKER_ENDPOINT_NETWORK_MISSING`.

Secrets: a JSON string whose key looks like a credential
(:data:`SECRET_KEY`: a volume's ``password`` option, a label
``com.example.token``, a network driver's ``vpn.password``) and the value
part of a ``name=value`` item whose name does (the local driver's mount
options ``o=addr=...,password=...``, as ``volume/local/local.go``
``getPassword`` finds it) are masked unless ``show_secrets``
(:func:`secret_ranges`).  Every decoder is bounded by the value's length
and never raises.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Iterable, List, Optional, Tuple

from boltfix import findings as F
from boltfix.findings import WARNING, Finding
from boltfix.protowire import parse_json
from boltfix.reader import DB
from boltfix.text import REDACTED, mask_ranges, name_text
from boltfix.walk import Walker

__all__ = [
    "VOLUMES", "LIBNETWORK", "kind_of", "recognise", "name", "decode_record", "secret_ranges",
    "view_secret_ranges", "mask", "DockerFacts", "scan", "check_findings", "unloadable",
    "repair_report", "commit_loss", "evidence_names",
]

VOLUMES = b"volumes"
LIBNETWORK = b"libnetwork"
APPLICATIONS = {VOLUMES: "docker volumes", LIBNETWORK: "docker libnetwork"}
#: libnetwork's key root (``datastore.defaultRootChain``)
ROOT_CHAIN = b"docker/network/v1.0/"
#: ``libkvmetadatalen``: the index before each libnetwork value
INDEX_LEN = 8
#: a key (option, label, driver option) that names a credential
SECRET_KEY = re.compile(r"auth|token|passw|secret|credential|apikey|api-key|api_key|psk",
                        re.IGNORECASE)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_ITEM = re.compile(rb"([A-Za-z0-9_.\-]+)=([^,\"\\]*)")
_ERROR_TEXT = 200
#: names kept for the checks; above, the endpoint check stops
MAX_NAMES = 1_000_000


def _names(top: Iterable) -> set:
    """Top-level bucket names as bytes."""
    return {n.encode("utf-8", "surrogateescape") if isinstance(n, str) else bytes(n)
            for n in top}


def kind_of(top_level_bucket_names: Iterable) -> Optional[bytes]:
    """:data:`VOLUMES` or :data:`LIBNETWORK` when the root holds exactly that
    one bucket (a cheap first test; :func:`recognise` reads a record), else None."""
    names = _names(top_level_bucket_names)
    return next(iter(names)) if len(names) == 1 and names <= set(APPLICATIONS) else None


def recognise(db: DB, tree=None) -> Optional[bytes]:
    """The Docker file's kind, or None: the root must hold only ``volumes``
    (its first record, if any, a JSON object) or only ``libnetwork`` (its
    first key under ``docker/network/v1.0/``).  Never raises."""
    try:
        for top in (VOLUMES, LIBNETWORK):
            w = Walker(db, tree=tree)  # a walker per look: find moves it on
            root = w.root_bucket()
            if root is None:
                return None
            rec = w.find(root, top)
            if rec is None or not rec.is_bucket:
                continue
            b = w.open_bucket(root, rec)
            if b is None:
                return None
            for _bk, batch in w.walk_batches(b):
                for key, value in zip(batch.keys, batch.values):
                    return top if _first_fits(top, bytes(key), bytes(value)) else None
            return top  # an empty bucket, as NewStore / datastore.New leave it
        return None
    except Exception:  # a damaged file: not recognised, never a traceback
        return None


def _first_fits(top: bytes, key: bytes, value: bytes) -> bool:
    """Whether a first record is the layout's."""
    if top == VOLUMES:
        return value[:1] == b"{" or not value
    return key.startswith(ROOT_CHAIN)


def name(kind: bytes) -> str:
    """What ``inspect`` calls the file."""
    return APPLICATIONS.get(kind, "docker")


# ---------------------------------------------------------------- secrets
def _secret_name(text: bytes) -> bool:
    """Whether an option, label or item name looks like a credential."""
    return SECRET_KEY.search(text.decode("utf-8", "replace")) is not None


def secret_ranges(path, key, value) -> List[Tuple[int, int]]:
    """Which bytes of a Docker record's raw value are secret: the contents
    of every JSON string whose key looks like a credential, and the value
    part of each ``name=value`` item of a string whose name does.  Never
    raises (a value it cannot read is masked whole)."""
    try:
        if value is None or not path or bytes(path[0]) not in APPLICATIONS:
            return []
        raw = bytes(value)
        out: List[Tuple[int, int]] = []
        strings = list(_STRING.finditer(raw))
        for i, m in enumerate(strings):
            after = raw[m.end():m.end() + 8].lstrip()
            if after[:1] != b":" or i + 1 >= len(strings):
                continue
            v = strings[i + 1]
            if raw[m.end():v.start()].strip() != b":":
                continue  # the value is no string (an object, a number)
            if _secret_name(m.group()[1:-1]):
                if v.end() - v.start() > 2:
                    out.append((v.start() + 1, v.end() - 1))
                continue
            for item in _ITEM.finditer(raw, v.start() + 1, v.end() - 1):
                if _secret_name(item.group(1)) and item.end(2) > item.start(2):
                    out.append((item.start(2), item.end(2)))
        return out
    except Exception:
        return [(0, len(bytes(value)))]


def view_secret_ranges(key, value) -> List[Tuple[int, int]]:
    """For ``page`` and ``page --hex`` of a Docker file, where a value's
    bucket is unknown: :func:`secret_ranges`' rule (it reads the value's
    JSON alone; a libnetwork value's index is no JSON string)."""
    return secret_ranges((VOLUMES,), key, value)


def mask(path, key, value) -> Tuple[bytes, bool]:
    """``value`` with :func:`secret_ranges` as ``*`` bytes; whether masked."""
    return mask_ranges(value, secret_ranges(path, key, value))


def _mask_obj(obj, depth: int = 0):
    """A decoded JSON value with what :func:`secret_ranges` masks as
    :data:`REDACTED` (the same rule, on the parsed object)."""
    if depth > 64:
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, str) and _secret_name(str(k).encode("utf-8", "replace")):
                out[k] = REDACTED
            else:
                out[k] = _mask_obj(v, depth + 1)
        return out
    if isinstance(obj, list):
        return [_mask_obj(v, depth + 1) for v in obj]
    if isinstance(obj, str) and "=" in obj:
        return _ITEM.sub(lambda m: m.group(1) + b"=" + (REDACTED.encode() if _secret_name(
            m.group(1)) and m.group(2) else m.group(2)),
            obj.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")
    return obj


# ---------------------------------------------------------------- values
def split_key(key: bytes) -> Optional[Tuple[str, List[str]]]:
    """A libnetwork key's kind and ids (``docker/network/v1.0/endpoint/N/E/``
    -> ``("endpoint", ["N", "E"])``), or None outside the root chain."""
    if not key.startswith(ROOT_CHAIN):
        return None
    parts = [p for p in key[len(ROOT_CHAIN):].split(b"/") if p]
    if not parts:
        return "", []
    return name_text(parts[0]), [name_text(p) for p in parts[1:]]


def decode_record(path, key, value, show_secrets: bool = False) -> Optional[dict]:
    """The ``docker`` member of a dump line: a volume's metadata, or a
    libnetwork record's kind, ids, index and JSON; None outside Docker's
    bucket or for a bucket entry.  Never raises."""
    if not path or len(path) != 1 or bytes(path[0]) not in APPLICATIONS or value is None:
        return None
    try:
        if bytes(path[0]) == VOLUMES:
            return _decode_volume(bytes(key), bytes(value), show_secrets)
        return _decode_kv(bytes(key), bytes(value), show_secrets)
    except Exception as exc:  # never raise
        return {"error": f"{type(exc).__name__}: {str(exc)[:_ERROR_TEXT]}"}


def _json(raw: bytes, show: bool):
    """(ok, the parsed object masked unless ``show``)."""
    ok, obj = parse_json(raw)
    if ok and not show:
        obj = _mask_obj(obj)
    return ok, obj


def _decode_volume(key: bytes, value: bytes, show: bool) -> dict:
    """A ``volumes`` record: ``volumeMetadata`` (db.go)."""
    out: dict = {"volume": name_text(key)}
    if not value:
        out["empty"] = True  # listMeta skips it
        return out
    ok, obj = _json(value, show)
    if not ok or not isinstance(obj, dict):
        out["error"] = "not volumeMetadata JSON: Docker's restore logs it and forgets the volume"
        return out
    out.update(name=obj.get("Name"), driver=obj.get("Driver"),
               labels=obj.get("Labels"), options=obj.get("Options"))
    out["name_matches_key"] = obj.get("Name") == name_text(key)
    return out


def _decode_kv(key: bytes, value: bytes, show: bool) -> dict:
    """A ``libnetwork`` record: its kind and ids, the libkv index, the JSON."""
    sk = split_key(key)
    out: dict = {"kind": sk[0], "ids": sk[1]} if sk is not None else {"kind": None}
    if len(value) < INDEX_LEN:
        out["error"] = (f"{len(value)} bytes, shorter than libkv's {INDEX_LEN}-byte index "
                        "(libnetwork's List panics on it)")
        return out
    out["index"] = struct.unpack_from("<Q", value)[0]
    body = value[INDEX_LEN:]
    if not body:
        out["parent"] = True  # ensureParent's marker: the index alone
        return out
    ok, obj = _json(body, show)
    if not ok:
        out["error"] = "the value after the index is no JSON"
        return out
    out["json"] = obj
    return out


# ---------------------------------------------------------------- the whole store
class DockerFacts:
    """Facts about a Docker file, one record at a time."""

    def __init__(self, kind: bytes):
        self.kind = kind
        self.volumes = 0
        self.drivers: dict = {}
        self.labelled = self.with_options = 0
        self.undecodable: list = []  # (key, page, why)
        self.short: list = []  # (key, page, length): libnetwork values libkv panics on
        self.mismatched: list = []  # (key, name, page)
        self.networks: dict = {}  # network id -> {"name", "type", "scope"}
        self.endpoints: list = []  # (network id, endpoint id, name, page)
        self.kinds: dict = {}
        self.endpoint_counts: dict = {}

    def see(self, key: bytes, value: bytes, page: int) -> None:
        """One record of the file's bucket."""
        if self.kind == VOLUMES:
            self._see_volume(key, value, page)
        else:
            self._see_kv(key, value, page)

    def _see_volume(self, key: bytes, value: bytes, page: int) -> None:
        """A ``volumes`` record."""
        if not value:
            return  # listMeta skips it
        ok, obj = parse_json(value)
        if not ok or not isinstance(obj, dict):
            self.undecodable.append((key, page, "no volumeMetadata JSON"))
            return
        self.volumes += 1
        drv = obj.get("Driver") if isinstance(obj.get("Driver"), str) else ""
        self.drivers[drv] = self.drivers.get(drv, 0) + 1
        self.labelled += bool(obj.get("Labels"))
        self.with_options += bool(obj.get("Options"))
        if obj.get("Name") != name_text(key) and len(self.mismatched) < MAX_NAMES:
            self.mismatched.append((key, obj.get("Name"), page))

    def _see_kv(self, key: bytes, value: bytes, page: int) -> None:
        """A ``libnetwork`` record."""
        sk = split_key(key)
        kind, ids = sk if sk is not None else ("", [])
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if len(value) < INDEX_LEN:
            self.short.append((key, page, len(value)))
            return
        body = value[INDEX_LEN:]
        if not body:
            return
        ok, obj = parse_json(body)
        if not ok or not isinstance(obj, dict):
            self.undecodable.append((key, page, "no JSON after the libkv index"))
            return
        if kind == "network" and len(ids) == 1 and len(self.networks) < MAX_NAMES:
            self.networks[ids[0]] = {"name": obj.get("name"), "type": obj.get("networkType"),
                                     "scope": obj.get("scope")}
        elif kind == "endpoint" and len(ids) == 2 and len(self.endpoints) < MAX_NAMES:
            self.endpoints.append((ids[0], ids[1], obj.get("name"), page))
        elif kind == "endpoint_count" and len(ids) == 1:
            self.endpoint_counts[ids[0]] = obj.get("Count")

    def findings(self, report) -> None:
        """What breaks the layout's invariants, as warnings to ``report``."""
        top = VOLUMES if self.kind == VOLUMES else LIBNETWORK
        for key, page, why in self.undecodable:
            report(Finding(F.DOCKER_RECORD_UNDECODABLE,
                           f"docker: {name_text(key)} in {name_text(top)}: {why}",
                           WARNING, page, (), (top,), {"key": name_text(key), "why": why}))
        for key, page, n in self.short:
            why = (f"{n} bytes, shorter than libkv's {INDEX_LEN}-byte index (libnetwork's "
                   "List panics on it; repair drops it)")
            report(Finding(F.DOCKER_RECORD_UNDECODABLE, f"docker: {name_text(key)}: {why}",
                           WARNING, page, (), (LIBNETWORK,),
                           {"key": name_text(key), "why": why, "length": n}))
        for key, nm, page in self.mismatched:
            report(Finding(F.DOCKER_VOLUME_NAME_MISMATCH,
                           f"docker volume record {name_text(key)} holds the metadata of "
                           f"volume {nm!r}", WARNING, page, (), (VOLUMES,),
                           {"volume": name_text(key), "name": nm}))
        for nid, eid, nm, page in self.endpoints:
            if nid not in self.networks:
                report(Finding(F.DOCKER_ENDPOINT_NETWORK_MISSING,
                               f"docker endpoint {nm or eid} ({eid[:12]}) belongs to network "
                               f"{nid[:12]}, which is absent: libnetwork never lists it",
                               WARNING, page, (), (LIBNETWORK,),
                               {"network": nid, "endpoint": eid, "name": nm}))

    def to_json(self) -> dict:
        """The facts as ``inspect --json``'s ``docker`` member."""
        out: dict = {"application": name(self.kind),
                     "undecodable": len(self.undecodable) + len(self.short)}
        if self.kind == VOLUMES:
            out.update(volumes=self.volumes, drivers=dict(sorted(self.drivers.items())),
                       with_labels=self.labelled, with_options=self.with_options,
                       name_mismatches=len(self.mismatched))
            return out
        per: dict = {}
        for nid, _e, _n, _p in self.endpoints:
            per[nid] = per.get(nid, 0) + 1
        scopes: dict = {}
        drivers: dict = {}
        for n in self.networks.values():
            scopes[str(n["scope"])] = scopes.get(str(n["scope"]), 0) + 1
            drivers[str(n["type"])] = drivers.get(str(n["type"]), 0) + 1
        out.update(
            short_values=len(self.short), networks=len(self.networks),
            endpoints=len(self.endpoints),
            scopes=dict(sorted(scopes.items())), drivers=dict(sorted(drivers.items())),
            orphan_endpoints=sum(1 for e in self.endpoints if e[0] not in self.networks),
            by_network={nid: {"name": n["name"], "type": n["type"], "scope": n["scope"],
                              "endpoints": per.get(nid, 0)}
                        for nid, n in sorted(self.networks.items())},
            endpoint_counts=len(self.endpoint_counts),
            kinds=dict(sorted(self.kinds.items())))
        return out


def scan(db: DB, kind: bytes, report=None, tree=None) -> DockerFacts:
    """Walk the file's one bucket (a walk of its own, quiet: the main walk
    reports the tree's findings); findings to ``report``."""
    facts = DockerFacts(kind)
    for key, value, page in _records(Walker(db, tree=tree), kind):
        facts.see(key, value, page)
    if report is not None:
        facts.findings(report)
    return facts


def _records(w: Walker, kind: bytes) -> Iterable[Tuple[bytes, bytes, int]]:
    """(key, value, page) of every record of the file's one bucket, as the
    walker ``w`` reads them (nothing when the bucket cannot be opened)."""
    root = w.root_bucket()
    rec = w.find(root, kind) if root is not None else None
    b = w.open_bucket(root, rec) if rec is not None and rec.is_bucket else None
    if b is None:
        return
    for bk, batch in w.walk_batches(b):
        if len(bk.path) != 1 or batch.bucket_entry is not None:
            continue
        for key, value in zip(batch.keys, batch.values):
            yield bytes(key), bytes(value), batch.page


def unloadable(key, value) -> bool:
    """A ``libnetwork`` value libnetwork cannot load at all: shorter than
    libkv's index (``boltdb.go`` ``List`` slices ``v[:8]`` and panics).
    repair drops it (:data:`boltfix.findings.DOCKER_KV_VALUE_SHORT`)."""
    return value is not None and len(value) < INDEX_LEN


def check_findings(db: DB, kind: bytes, report, tree=None) -> dict:
    """``check``'s Docker findings; the facts for its stats."""
    return scan(db, kind, report, tree).to_json()


# ---------------------------------------------------------------- a commit passed over
def _digests(db: DB, kind: bytes, tree) -> Tuple[dict, bool]:
    """The file's bucket in the tree ``tree``: {key: digest of its value}
    (at most :data:`MAX_NAMES`), and whether some of it could not be read
    (a finding that stops a walk: a damaged tree, as
    :func:`boltfix.commits.newer_commit_loss` counts it)."""
    bad: list = []

    def note(f: Finding) -> None:
        if f.code not in F.NEVER_STOP:
            bad.append(f.code)

    out: dict = {}
    for key, value, _page in _records(Walker(db, note, tree=tree), kind):
        if len(out) < MAX_NAMES and _whole_object(kind, key, value):
            out[key] = hashlib.blake2b(value, digest_size=16).digest()
    return out, bool(bad)


def _whole_object(kind: bytes, key: bytes, value: bytes) -> bool:
    """Whether a record reads as the object its key names (a torn or stale
    page's record is no evidence of one): a volume's JSON whose ``Name`` is
    its key, a network's or endpoint's JSON whose ``id`` is the key's last
    id; any other libnetwork record counts as read."""
    if kind == VOLUMES:
        ok, obj = parse_json(value)
        return ok and isinstance(obj, dict) and obj.get("Name") == name_text(key)
    sk = split_key(key)
    if sk is None or sk[0] not in ("network", "endpoint") or len(value) <= INDEX_LEN:
        return True
    ok, obj = parse_json(value[INDEX_LEN:])
    return ok and isinstance(obj, dict) and bool(sk[1]) and obj.get("id") == sk[1][-1]


def commit_loss(db: DB, kind: bytes, newer, kept) -> Optional[dict]:
    """The commit a rollback passed over, in Docker's terms: the volumes (or
    networks and endpoints) that the newer tree ``newer`` holds and the kept
    tree ``kept`` does not (``created``: Docker forgets them), holds with
    other metadata (``changed``), and lacks (``removed``: back after the
    rollback).  These are evidence, not proof: the newer tree's pages are
    what the crash left (torn, stale, zeroed), so a record counts only when
    it reads as the object its key names (:func:`_whole_object`), and
    ``unread`` says the newer tree could not be read whole or reads as an
    older commit (it lacks several kept objects and adds none, where one
    Docker operation removes one): it may have held more than it names, and
    the kept objects it does not show are ``unknown``, not removed.  Never
    raises."""
    try:
        new, unread = _digests(db, kind, newer)
        old, _ = _digests(db, kind, kept)
    except Exception:  # a damaged tree: nothing named, said so
        return {"unread": True}
    if not unread and old.keys() - new.keys() and not new.keys() - old.keys() \
            and len(old.keys() - new.keys()) > 1:
        unread = True  # one Docker operation removes one object: a stale tree
    gone = sorted(old.keys() - new.keys())
    # a kept record the newer tree may hold on a page it could not read:
    # not known to be removed (commits.newer_commit_loss's "unknown")
    changes = {"created": sorted(new.keys() - old.keys()),
               "changed": sorted(k for k in new.keys() & old.keys() if new[k] != old[k]),
               "removed": [] if unread else gone, "unknown": gone if unread else []}
    out: dict = {"unread": unread}
    if kind == VOLUMES:
        out["volumes"] = {what: [name_text(k) for k in keys][:OBJECTS_SHOWN]
                          for what, keys in changes.items()}
        return out
    out["networks"] = {what: [] for what in changes}
    out["endpoints"] = {what: [] for what in changes}
    out["other_records"] = 0
    for what, keys in changes.items():
        for k in keys:
            sk = split_key(k) or ("", [])
            if sk[0] == "network" and len(sk[1]) == 1:
                _add(out["networks"][what], sk[1][0])
            elif sk[0] == "endpoint" and len(sk[1]) == 2:
                _add(out["endpoints"][what], {"network": sk[1][0], "endpoint": sk[1][1]})
            else:
                out["other_records"] += 1
    return out


# ---------------------------------------------------------------- repair's report
OBJECTS_SHOWN = 50


def repair_report(facts: dict, out_findings: Iterable, dropped: Iterable,
                  rolled_back: Optional[dict] = None, evidence: Iterable = (),
                  bounds: Optional[dict] = None) -> dict:
    """``repair``'s report in Docker's terms: the output's facts (the
    read-back check's ``stats.docker``), ``lost``: the volumes, networks and
    endpoints whose records repair dropped (``dropped``: its loss findings,
    named when the finding names the record's key), the key ranges of
    pages lost whole (``ranges``: a branch page's keys, the only names left
    of the records under them; ``bounds``, {page: (start, end)}, the exact
    keys repair read from the parent pages, else the finding's
    ``key_range``, whose keys are cut to 32 bytes: ``…``), the endpoints
    left without their network in the output, ``evidence``: the objects older copies name in those
    ranges (:func:`evidence_names`), and ``rolled_back``: the commit a
    rollback passed over (:func:`commit_loss`); and ``advice``."""
    lost: dict = {"volumes": [], "networks": [], "endpoints": [], "records_total": 0,
                  "ranges": [], "evidence": list(evidence)[:OBJECTS_SHOWN],
                  "endpoints_without_network": [], "rolled_back": rolled_back}
    dropped = list(dropped)
    for f in dropped:
        path = tuple(bytes(b) for b in f.bucket)
        if not path or path[0] not in APPLICATIONS:
            continue
        lost["records_total"] += 1
        key = _hex((f.detail or {}).get("key"))
        if key is None:
            continue
        if path[0] == VOLUMES:
            _add(lost["volumes"], name_text(key))
        else:
            sk = split_key(key) or ("", [])
            if sk[0] == "network" and sk[1]:
                _add(lost["networks"], sk[1][0])
            elif sk[0] == "endpoint" and len(sk[1]) == 2:
                _add(lost["endpoints"], {"network": sk[1][0], "endpoint": sk[1][1]})
    for lo, hi, cut in _lost_ranges(dropped, bounds):
        _add(lost["ranges"], {"from": None if lo is None else _object_name(lo),
                              "to": None if hi is None else _object_name(hi) + "…" * cut})
    for f in out_findings:
        if f.code == F.DOCKER_ENDPOINT_NETWORK_MISSING:
            _add(lost["endpoints_without_network"], dict(f.detail or {}))
    return {**facts, "lost": lost, "advice": _advice(facts, lost)}


def _bound(text) -> Tuple[Optional[bytes], bool]:
    """A ``key_range`` end as a finding gives it (hex, ``-`` for none, its
    first 32 bytes then ``…`` for a longer key: walk's ``_hex``): (the key
    or its prefix, or None; whether it was cut)."""
    if not isinstance(text, str):
        return None, False
    cut = text.endswith("…")
    return _hex(text[:-1] if cut else text), cut


def _lost_ranges(dropped: Iterable, bounds: Optional[dict] = None) -> List[tuple]:
    """The key ranges (start, end excluded, whether the end was cut to a
    prefix; None open) of the pages repair dropped whole in a Docker file's
    bucket: ``bounds[page]`` (the exact keys, read from the parent pages),
    else the finding's ``key_range``."""
    out = []
    for f in dropped:
        path = tuple(bytes(b) for b in f.bucket)
        kr = (f.detail or {}).get("key_range")
        if not path or path[0] not in APPLICATIONS or (f.detail or {}).get("key") is not None:
            continue
        if bounds and f.page in bounds:
            lo, hi = bounds[f.page]
            cut = False
        elif isinstance(kr, (list, tuple)) and len(kr) == 2:
            (lo, _), (hi, cut) = _bound(kr[0]), _bound(kr[1])
        else:
            continue
        if lo is not None or hi is not None:
            _add(out, (lo, hi, cut))
    return out


def _in_range(key: bytes, lo: Optional[bytes], hi: Optional[bytes], cut: bool) -> bool:
    """Whether ``key`` may lie in [lo, hi) (a cut end: any key it prefixes too)."""
    return (lo is None or key >= lo) and (hi is None or key < hi
                                          or (cut and key.startswith(hi)))


def evidence_names(kind: bytes, dropped: Iterable, evidence: Iterable,
                   bounds: Optional[dict] = None) -> List[dict]:
    """Objects that older copies name inside the ranges of pages lost whole:
    the ranges are :func:`_lost_ranges` (``bounds``: {page: (start, end)});
    ``evidence`` is (page, state, records) of each piece of salvage's
    evidence (what lost+found holds: freed or unreached pages, never placed
    in the output); a record counts when its key falls in a lost range and
    it reads as the object its key names (:func:`_whole_object`).  Each:
    ``{"name", "page", "state"}``, the first :data:`OBJECTS_SHOWN`.  An
    older copy says the object existed at some commit, not that the lost
    page still held it.  Never raises."""
    out: List[dict] = []
    try:
        ranges = _lost_ranges(dropped, bounds)
        if not ranges:
            return out
        for page, state, records in evidence:
            for key, value in records:
                if not isinstance(value, (bytes, bytearray, memoryview)):
                    continue  # a bucket entry: no object
                key = bytes(key)
                if any(_in_range(key, *r) for r in ranges) \
                        and _whole_object(kind, key, bytes(value)):
                    _add(out, {"name": _object_name(key), "page": page, "state": state})
    except Exception:  # evidence of a damaged file: what was named so far
        return out
    return out


def _object_name(key: bytes) -> str:
    """A volume's name, or a libnetwork key without its root chain."""
    sk = split_key(key)
    return name_text(key) if sk is None else "/".join([sk[0], *sk[1]])


def _hex(text) -> Optional[bytes]:
    """A finding's ``detail.key`` (hex) as bytes, or None."""
    try:
        return bytes.fromhex(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _add(into: list, item) -> None:
    """``item`` into ``into``, once, up to :data:`OBJECTS_SHOWN`."""
    if item not in into and len(into) < OBJECTS_SHOWN:
        into.append(item)


def _advice(facts: dict, lost: dict) -> List[str]:
    """What the operator runs, in Docker's terms."""
    out = []
    for v in lost["volumes"]:
        out.append(f"volume {v}: its metadata is gone (the data under "
                   f"/var/lib/docker/volumes/{v}/_data stays): docker volume create "
                   f"--driver <driver> {v} with its options again")
    for n in lost["networks"]:
        out.append(f"network {n[:12]}: docker network create it again, then reconnect "
                   "its containers (docker network connect)")
    for r in lost["ranges"]:
        out.append(f"a page of records from {r['from'] or 'the start'} up to "
                   f"{r['to'] or 'the end'} is lost: check which of those volumes or "
                   "networks Docker lists no more, and create them again")
    for e in lost["evidence"]:
        out.append(f"{e['name'][:64]}: an older copy (page {e['page']}, {e['state']}; "
                   "in lost+found) holds it inside a lost page's range: if Docker lists it "
                   "no more, create it again")
    out.extend(_rollback_advice(lost["rolled_back"]))
    if lost["endpoints_without_network"] or lost["endpoints"]:
        out.append("endpoints whose network is gone are never listed by libnetwork: "
                   "restart the containers (docker restart) to attach them again")
    if facts.get("undecodable"):
        out.append("records that do not decode stop the daemon's restore of networks "
                   "or forget a volume: remove them (repair keeps them byte for byte)")
    return out


def _rollback_advice(rb: Optional[dict]) -> List[str]:
    """What to check after a rollback to the previous commit (the names are
    evidence from the passed-over tree's pages, not proof: conditional)."""
    if not rb:
        return []
    out = []
    for kind, names, rm in (("volume", rb.get("volumes") or {}, "docker volume rm"),
                            ("network", rb.get("networks") or {}, "docker network rm")):
        for v in names.get("created", []) + names.get("changed", []):
            out.append(f"{kind} {v[:64] if kind == 'volume' else v[:12]}: the commit rolled "
                       f"back holds it: if it was created just before the crash, docker "
                       f"{kind} create it again")
        for v in names.get("removed", []):
            out.append(f"{kind} {v[:64] if kind == 'volume' else v[:12]}: the commit rolled "
                       f"back lacks it: if it was removed just before the crash, {rm} it again")
    if rb.get("unread"):
        out.append("the commit rolled back could not be read whole: it may have changed "
                   "more volumes or networks than named")
    return out
