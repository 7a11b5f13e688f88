"""Which revisions etcd gives the WAL entries it applies: etcd's apply rules.

Given the keyspace a backend holds (its ``key`` bucket at its
``consistent_index`` C) and the WAL entries above C, :func:`replay` says,
entry by entry, which main revision each takes and which user keys it
writes (sub revision, key, put or delete), or why it takes none.  This is
what narrows a damaged db's at-risk keys to the ones the lost revisions
touched, and what a rewind (a db set back to an older consistent_index,
the WAL re-applying the rest) must reproduce exactly.

The rules, from etcd's apply path (3.4 ``etcdserver/apply.go`` and
``mvcc/kvstore_txn.go``; 3.5 ``server/etcdserver/apply.go`` and
``server/mvcc/kvstore_txn.go``; 3.6/3.7 ``server/etcdserver/apply/apply.go``,
``server/etcdserver/txn/txn.go`` and ``server/storage/mvcc/kvstore_txn.go``):

* ``applyEntryNormal`` (``server.go``) applies an entry to the backend
  only when its index is above the consistent_index; an empty entry (a
  leader's no-op), a v2 request, conf changes, auth, alarm, lease grant
  and checkpoint, cluster and member requests never take a revision.
* A write transaction (``storeTxnWrite``) takes ``beginRev + 1`` only when
  it changed something (``End``: ``if len(tw.changes) != 0 {
  currentRev++ }``); each change takes the next sub revision
  (``len(tw.changes)``), a put's ``create_revision``/``version`` come from
  the key's current generation, a delete writes a tombstone per live key
  in ``[key, range_end)`` in key order (``deleteRange``), and a delete of
  nothing changes nothing.
* ``Put``: a lease that does not exist (``lessor.Lookup``) or
  ``ignore_value``/``ignore_lease`` on an absent key fail before any
  write; under a NOSPACE alarm (``applierV3Capped``) puts and writing txns
  fail.
* ``Txn``: the compares are evaluated on the store before the txn
  (``compareToPath``, nested txns too), ``checkRequests`` refuses the
  whole txn when a put would fail (above) or a range names a future or
  compacted revision, then the chosen branch's ops run in one write txn
  (reads see the txn's own writes).  A read-only txn takes no revision.
* ``range_end``: absent means one key, ``\\x00`` every key from ``key``
  (``mkGteRange``).
* ``LeaseRevoke`` (``lessor.Revoke``): the lease's attached keys (the live
  keys whose current lease it is) are deleted in one txn, sorted by key;
  none attached: no revision.  A lease that does not exist: an error.
* ``Compaction`` takes no revision (it removes older ones); a revision at
  or below the compacted one or above the current one is refused.

Auth is not replayed: with auth enabled a request may also fail its
permission check (``authApplierV3``), which this model does not see;
:attr:`Replay.exact` says so.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from boltfix import etcd as E
from boltfix import raftlog as R
from boltfix.bigrecord import render_bytes
from boltfix.etcdkeys import decode_revision
from boltfix.navigate import open_path
from boltfix.walk import Walker

PUT, DELETE = "put", "delete"


@dataclass
class KV:
    """A key's live version: create, mod revision, version and lease, as mvccpb.KeyValue."""
    create: int
    mod: int
    version: int
    value: bytes
    lease: int


@dataclass
class Applied:
    """One applied entry: its revision (None when it takes none) and changes."""
    index: int
    term: int
    kind: Optional[str]
    revision: Optional[int] = None
    #: [(sub, user key, PUT|DELETE)]
    changes: List[Tuple[int, bytes, str]] = field(default_factory=list)
    #: why it wrote nothing, when it failed (etcd answers the client an error)
    error: Optional[str] = None

    def to_json(self) -> dict:
        """One applied entry for ``--json``."""

        out = {"index": self.index, "term": self.term, "kind": self.kind,
               "revision": self.revision,
               "changes": [{"sub": s, "key": render_bytes(k), "op": op}
                           for s, k, op in self.changes]}
        if self.error:
            out["error"] = self.error
        return out


class Store:
    """The keyspace etcd's MVCC would serve, as far as revisions need it."""

    def __init__(self):
        self.live: Dict[bytes, KV] = {}
        self.sorted: List[bytes] = []
        self.rev = 0
        self.compacted = 0
        self.leases: set = set()
        self.nospace = False
        self.auth_enabled = False

    # -- building from a backend
    @classmethod
    def from_db(cls, db) -> "Store":
        """The store a backend holds: for each user key its newest revision
        (live unless a tombstone), the current and compacted revisions, the
        leases and a NOSPACE alarm."""

        st = cls()
        w = Walker(db)
        newest: Dict[bytes, tuple] = {}
        bucket, _ = open_path(w, ["key"])
        if bucket is not None:
            for b, batch in w.walk_batches(bucket):
                if b is not bucket or batch.bucket_entry is not None:
                    continue
                for k, v in zip(batch.keys, batch.values):
                    rev = decode_revision(bytes(k))
                    if rev is None:
                        continue
                    kv = E.decode_key_value(bytes(v))
                    if "error" in kv:
                        continue
                    st.rev = max(st.rev, rev["main"])
                    old = newest.get(kv["key"])
                    order = (rev["main"], rev["sub"])
                    if old is None or old[0] < order:
                        newest[kv["key"]] = (order, rev["tombstone"], kv)
        for key, (_order, tomb, kv) in newest.items():
            if not tomb:
                st.live[key] = KV(kv["create_revision"], kv["mod_revision"], kv["version"],
                                  kv["value"], kv["lease"])
        st.sorted = sorted(st.live)
        st.compacted = _meta_rev(w, b"finishedCompactRev")
        st.rev = max(st.rev, st.compacted, _meta_rev(w, b"scheduledCompactRev"))
        st.leases = _lease_ids(w)
        st.nospace = _nospace(w)
        st.auth_enabled = _auth_enabled(w)
        return st

    # -- reads
    def range(self, key: bytes, end: Optional[bytes]) -> List[bytes]:
        """Live keys in etcd's range: one key, ``[key, end)``, or from ``key``
        on (``end`` empty after ``mkGteRange``)."""
        if end is None:
            return [key] if key in self.live else []
        i = bisect.bisect_left(self.sorted, key)
        if not end:
            return self.sorted[i:]
        j = bisect.bisect_left(self.sorted, end, lo=i)
        return self.sorted[i:j]

    # -- writes of one txn (see Txn)
    def _set(self, key: bytes, kv: Optional[KV]) -> None:
        if kv is None:
            if key in self.live:
                del self.live[key]
                del self.sorted[bisect.bisect_left(self.sorted, key)]
            return
        if key not in self.live:
            bisect.insort(self.sorted, key)
        self.live[key] = kv


def _end(range_end: Optional[bytes]) -> Optional[bytes]:
    """mkGteRange: ``\\x00`` -> b"" (every key from key on); absent -> None."""
    if not range_end:
        return None
    return b"" if range_end == b"\x00" else range_end


def _meta_rev(w, name: bytes) -> int:

    meta, _ = open_path(w, ["meta"])
    rec = w.find(meta, name) if meta is not None else None
    if rec is None or len(rec.value) < 8:
        return 0
    return int.from_bytes(bytes(rec.value[:8]), "big")


def _lease_ids(w) -> set:

    bucket, _ = open_path(w, ["lease"])
    out = set()
    if bucket is None:
        return out
    for keys in w.key_lists(bucket):
        for k in keys:
            if len(k) == 8:
                out.add(R._int64(int.from_bytes(bytes(k), "big")))
    return out


def _nospace(w) -> bool:

    bucket, _ = open_path(w, ["alarm"])
    if bucket is None:
        return False
    for keys in w.key_lists(bucket):
        for k in keys:
            if E.decode_alarm(bytes(k)).get("alarm") == "NOSPACE":
                return True
    return False


def _auth_enabled(w) -> bool:

    bucket, _ = open_path(w, ["auth"])
    rec = w.find(bucket, b"authEnabled") if bucket is not None else None
    return rec is not None and bytes(rec.value) == b"\x01"


class Txn:
    """One write transaction (``storeTxnWrite``): changes at ``rev + 1``."""

    def __init__(self, st: Store):
        self.st = st
        self.main = st.rev + 1
        self.changes: List[Tuple[int, bytes, str]] = []

    def put(self, key: bytes, value: bytes, lease: int) -> None:
        """A put in this transaction: the next sub-revision of its main revision."""
        old = self.st.live.get(key)
        create = old.create if old else self.main
        version = old.version + 1 if old else 1
        self.changes.append((len(self.changes), key, PUT))
        self.st._set(key, KV(create, self.main, version, value, lease))

    def delete_range(self, key: bytes, end: Optional[bytes]) -> int:
        """Delete the live keys in [key, end) with tombstones; the count deleted."""
        keys = self.st.range(key, end)
        for k in list(keys):
            self.changes.append((len(self.changes), k, DELETE))
            self.st._set(k, None)
        return len(keys)

    def end(self) -> Optional[int]:
        """Finish the transaction: its main revision, or None when it changed nothing."""
        if not self.changes:
            return None
        self.st.rev = self.main
        return self.main


class Refused(Exception):
    """The request fails before writing (etcd answers an error, no revision)."""


def _compare(st: Store, c: dict) -> bool:
    """applyCompare / compareKV."""
    keys = st.range(c.get("key", b""), _end(c.get("range_end")))
    target = c.get("target")
    if not keys:
        if target == "VALUE":
            return False
        return _compare_kv(c, KV(0, 0, 0, b"", 0))
    return all(_compare_kv(c, st.live[k]) for k in keys)


def _compare_kv(c: dict, kv: KV) -> bool:
    target = c.get("target")
    if target == "VALUE":
        a, b = kv.value, c.get("value", b"")
    elif target == "CREATE":
        a, b = kv.create, c.get("create_revision", 0)
    elif target == "MOD":
        a, b = kv.mod, c.get("mod_revision", 0)
    elif target == "VERSION":
        a, b = kv.version, c.get("version", 0)
    elif target == "LEASE":
        a, b = kv.lease, c.get("lease", 0)
    else:
        a = b = 0
    r = (a > b) - (a < b)
    result = c.get("result")
    return {"EQUAL": r == 0, "NOT_EQUAL": r != 0, "GREATER": r > 0,
            "LESS": r < 0}.get(result, True)


def _path(st: Store, txn: dict) -> list:
    """compareToPath: the branch taken by the txn and each nested one, as
    the ops to run (a tree of chosen branches)."""
    ok = all(_compare(st, c) for c in txn.get("compare", []))
    ops = txn.get("success" if ok else "failure", [])
    return [(op, _path(st, op["txn"]) if "txn" in op else None) for op in ops]


def _writes(path: list) -> bool:
    for op, sub in path:
        if "put" in op or "delete_range" in op or (sub is not None and _writes(sub)):
            return True
    return False


def _check(st: Store, path: list) -> None:
    """checkRequests with checkPut and checkRange."""
    for op, sub in path:
        if sub is not None:
            _check(st, sub)
        elif "put" in op:
            _check_put(st, op["put"])
        elif "range" in op:
            rev = op["range"].get("revision", 0)
            if rev > st.rev:
                raise Refused("range at a future revision (ErrFutureRev)")
            if rev and rev <= st.compacted:
                raise Refused("range at a compacted revision (ErrCompacted)")


def _check_put(st: Store, p: dict) -> None:
    key = p.get("key", b"")
    if (p.get("ignore_value") or p.get("ignore_lease")) and key not in st.live:
        raise Refused("ignore_value/ignore_lease on an absent key (ErrKeyNotFound)")
    lease = p.get("lease", 0)
    if lease and lease not in st.leases:
        raise Refused(f"lease {lease:x} not found (ErrLeaseNotFound)")


def _do_put(t: Txn, p: dict) -> None:
    key = p.get("key", b"")
    old = t.st.live.get(key)
    value = old.value if p.get("ignore_value") and old else p.get("value", b"")
    lease = old.lease if p.get("ignore_lease") and old else p.get("lease", 0)
    t.put(key, value, lease)


def _run(t: Txn, path: list) -> None:
    for op, sub in path:
        if sub is not None:
            _run(t, sub)
        elif "put" in op:
            _do_put(t, op["put"])
        elif "delete_range" in op:
            d = op["delete_range"]
            t.delete_range(d.get("key", b""), _end(d.get("range_end")))


def apply_request(st: Store, req: dict, out: Applied) -> None:
    """Apply one decoded InternalRaftRequest's effect on revisions."""
    kind = req.get("kind")
    try:
        if kind == "put":
            if st.nospace:
                raise Refused("NOSPACE alarm (ErrNoSpace)")
            _check_put(st, req["put"])
            t = Txn(st)
            _do_put(t, req["put"])
            _finish(t, out)
        elif kind == "delete_range":
            d = req["delete_range"]
            t = Txn(st)
            t.delete_range(d.get("key", b""), _end(d.get("range_end")))
            _finish(t, out)
        elif kind == "txn":
            path = _path(st, req["txn"])
            writes = _writes(path)
            if writes and st.nospace:
                raise Refused("NOSPACE alarm (ErrNoSpace)")
            _check(st, path)
            if writes:
                t = Txn(st)
                _run(t, path)
                _finish(t, out)
        elif kind == "lease_grant":
            lid = req["lease_grant"].get("ID", 0)
            if lid in st.leases:
                raise Refused("lease exists (ErrLeaseExists)")
            st.leases.add(lid)
        elif kind == "lease_revoke":
            lid = req["lease_revoke"].get("ID", 0)
            if lid not in st.leases:
                raise Refused(f"lease {lid:x} not found (ErrLeaseNotFound)")
            st.leases.discard(lid)
            t = Txn(st)
            for k in sorted(k for k, kv in st.live.items() if kv.lease == lid):
                t.delete_range(k, None)
            _finish(t, out)
        elif kind == "compaction":
            rev = req["compaction"].get("revision", 0)
            if rev <= st.compacted:
                raise Refused("compacted already (ErrCompacted)")
            if rev > st.rev:
                raise Refused("future revision (ErrFutureRev)")
            st.compacted = rev
        elif kind == "alarm":
            a = req["alarm"]
            if a.get("alarm") == "NOSPACE" and a.get("action") in ("ACTIVATE", "DEACTIVATE"):
                st.nospace = a["action"] == "ACTIVATE"
        elif kind == "auth_enable":
            st.auth_enabled = True
        elif kind == "auth_disable":
            st.auth_enabled = False
    except Refused as exc:
        out.error = str(exc)


def _finish(t: Txn, out: Applied) -> None:
    out.revision = t.end()
    out.changes = t.changes


@dataclass
class Replay:
    """What :func:`replay` found, beside the per-entry results it yields."""
    #: False when something the model does not replay could change the
    #: outcome (auth enabled at some point)
    exact: bool = True
    notes: List[str] = field(default_factory=list)


def replay(st: Store, entries: Iterable[tuple], above: int, summary: Optional[Replay] = None
           ) -> Iterator[Applied]:
    """For each ``(entry, payload)`` (payload from
    :func:`boltfix.raftlog.decode_entry_payload`) with index > ``above``
    (the backend's consistent_index), what applying it does.  ``st`` is
    changed as etcd's store would be."""
    summary = summary if summary is not None else Replay()
    for e, payload in entries:
        if e["index"] <= above:
            continue
        out = Applied(e["index"], e["term"], payload.get("kind"))
        if st.auth_enabled and summary.exact:
            summary.exact = False
            summary.notes.append(f"auth is enabled from entry {e['index']}: permission "
                                 "checks are not replayed")
        if payload.get("kind") == "unknown":
            out.error = payload.get("error")
        else:
            apply_request(st, payload, out)
        yield out


def touched_keys(applied: Iterable[Applied]) -> List[tuple]:
    """``[(main revision, [(user key, PUT|DELETE)])]`` of the entries that
    took a revision: the list the lead's at-risk narrowing and rewind use."""
    return [(a.revision, [(k, op) for _s, k, op in a.changes])
            for a in applied if a.revision is not None]
