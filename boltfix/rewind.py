"""A repaired etcd db set back so that the WAL re-applies what it lost.

etcd applies every WAL entry above the backend's ``meta/consistent_index``
and no other (3.4 ``etcdserver/server.go`` ``applyEntryNormal``: ``if
index <= s.consistIndex.ConsistentIndex() { return }`` in 3.5
``server/etcdserver/server.go``; 3.6+ ``shouldApplyV3``).  A db that lost
revisions (a crash's lost writes, a rollback to the older meta, salvage)
but kept a newer ``consistent_index`` therefore never gets them back,
although the WAL still holds the entries that wrote them.

:func:`plan` finds the index C to set back to, from the revision map of
:mod:`boltfix.walapply` (etcd's apply rules replayed on the WAL entries):

* the anchor is the WAL's first entry when the WAL reaches back to index 1
  (an empty store at revision 1: ``mvcc.NewStore`` sets ``currentRev: 1``),
  else the db itself at its ``consistent_index`` (its highest revision; the
  db must then be trusted up to there);
* the oldest lost revision L is the smallest revision at or below the db's
  ``consistent_index`` whose records the db lacks (above its compaction),
  or whose key the db serves differently than the replay says;
* C is the index just below the entry that wrote L, and never below the
  newest raft snapshot's index (etcd's ``recoverSnapshotBackend`` then
  wants a ``.snap.db``, "failed to recover v3 backend from snapshot");
* :func:`write_rewound` copies the db without the ``key`` records above
  rev(C), with ``consistent_index`` = C and ``term`` = C's term, and the
  compaction revisions of ``meta`` set back to the compaction in effect
  at C.  When revisions below the snapshot are lost, ``finishedCompactRev``
  is raised to rev(C) so that etcd's ``store.restore`` (``if
  s.currentRev < s.compactMainRev { s.currentRev = s.compactMainRev }``)
  numbers the re-applied entries as they were numbered before.

The result is checked by replaying, on the rewound keyspace, the entries
etcd will apply (:func:`plan`'s ``predicted_wrong``): the keys whose value
or ``mod_revision`` then differ from the full replay are the keys at risk.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from boltfix import datadir as D
from boltfix import findings as F
from boltfix import raftlog as R
from boltfix import repair as R_
from boltfix import wal as W
from boltfix import walapply as A
from boltfix.bigrecord import render_bytes
from boltfix.check import check
from boltfix.errors import BoltError, CannotOpen, OutputError
from boltfix.etcd import decode_key_value
from boltfix.etcdkeys import decode_revision
from boltfix.findings import WARNING, Finding
from boltfix.navigate import open_path, top_bucket_batches
from boltfix.reader import DB
from boltfix.repair import RepairRefused, fsync_dir
from boltfix.walk import Walker
from boltfix.writer import BoltWriter

#: the most keys a report names
MAX_NAMED = 10000


@dataclass
class RevMap:
    """Index -> revision after that entry, from one anchor."""
    anchor: str
    anchor_index: int
    anchor_rev: int
    index: List[int] = field(default_factory=list)
    term: List[int] = field(default_factory=list)
    rev: List[int] = field(default_factory=list)
    compacted: List[int] = field(default_factory=list)
    #: [(index, main revision, [(key, op)])] of entries taking a revision
    writes: List[tuple] = field(default_factory=list)
    #: [(index, kind)] of entries that change something but no key
    other: List[tuple] = field(default_factory=list)
    exact: bool = True

    def at(self, idx: int) -> Optional[Tuple[int, int, int]]:
        """(revision, term, compacted) after entry ``idx``; the anchor's at it."""
        if idx == self.anchor_index:
            return self.anchor_rev, 0, 0
        i = bisect.bisect_left(self.index, idx)
        if i < len(self.index) and self.index[i] == idx:
            return self.rev[i], self.term[i], self.compacted[i]
        return None

    def entry_of(self, revision: int) -> Optional[int]:
        """The index of the entry that wrote ``revision``."""
        i = bisect.bisect_left(self.rev, revision)
        return self.index[i] if i < len(self.index) else None


_OTHER = ("lease_grant", "lease_revoke", "auth_enable", "auth_disable")


def _changes_state(kind: Optional[str], alarm_action: Optional[str]) -> bool:
    """An entry that changes the backend outside the ``key`` bucket: leases,
    auth (``auth_*`` requests but ``auth_status``), an alarm raised or
    cleared (not listed: ``etcdctl endpoint health`` lists them by raft)."""
    if kind == "alarm":
        return alarm_action in ("ACTIVATE", "DEACTIVATE")
    return bool(kind) and (kind in _OTHER or (kind.startswith("auth_")
                                              and kind != "auth_status"))


def _entries(res: W.WalRead, alarms: dict):
    """(entry, payload) of the WAL, noting each alarm request's action."""
    for _r, e in W.iter_entries(res):
        payload = R.decode_entry_payload(e, True)
        if payload.get("kind") == "alarm":
            alarms[e["index"]] = (payload.get("alarm") or {}).get("action")
        yield e, payload


def revision_map(res: W.WalRead, store: A.Store, anchor: str, anchor_index: int,
                 capture: Optional[int] = None) -> Tuple[RevMap, Optional[A.Store]]:
    """Replay the WAL's entries above ``anchor_index`` on ``store``
    (:func:`boltfix.walapply.replay`, etcd's apply rules); with ``capture``,
    also a copy of the store after that index."""
    m = RevMap(anchor, anchor_index, store.rev)
    summary = A.Replay()
    snap = _copy(store) if capture == anchor_index else None
    alarms: dict = {}
    for a in A.replay(store, _entries(res, alarms), anchor_index, summary):
        m.index.append(a.index)
        m.term.append(a.term)
        m.rev.append(store.rev)
        m.compacted.append(store.compacted)
        if a.revision is not None:
            m.writes.append((a.index, a.revision, [(k, op) for _s, k, op in a.changes]))
        elif not a.error and _changes_state(a.kind, alarms.pop(a.index, None)):
            m.other.append((a.index, a.kind))
        if capture is not None and a.index == capture:
            snap = _copy(store)
    m.exact = summary.exact
    return m, snap


def _copy(st: A.Store) -> A.Store:
    out = A.Store()
    out.live = dict(st.live)
    out.sorted = list(st.sorted)
    out.rev, out.compacted = st.rev, st.compacted
    out.leases = set(st.leases)
    out.nospace, out.auth_enabled = st.nospace, st.auth_enabled
    return out


@dataclass
class DbRevisions:
    """An etcd db's key bucket by revision, and its meta values.

    Bounded: only the records above ``floor`` are kept one by one (the
    revisions a rewind can remove or compare with the WAL); for the rest,
    each user key's newest record at or below ``floor`` (``base``), so
    that the memory is one entry per key plus the records above the
    floor, never the db's whole history."""
    records: Dict[Tuple[int, int], Tuple[bytes, bool]]
    newest: Dict[bytes, Tuple[int, int, bool]]
    max_rev: int
    meta: Dict[bytes, int]
    nested: bool
    floor: int = 0
    base: Dict[bytes, Tuple[int, int, bool]] = field(default_factory=dict)
    max_below: int = 0
    _by_key: Optional[Dict[bytes, list]] = None

    def newest_at_or_below(self, key: bytes, rev: int):
        """The key's newest (main, sub, tombstone) at or below ``rev``
        (``rev`` at or above the floor)."""
        if rev < self.floor:
            raise ValueError(f"revision {rev} is below the records kept ({self.floor})")
        n = self.newest.get(key)
        if n is None or n[0] <= rev:
            return n
        if self._by_key is None:
            self._by_key = {}
            for (main, sub), (k, tomb) in sorted(self.records.items()):
                self._by_key.setdefault(k, []).append((main, sub, tomb))
        revs = self._by_key.get(key, [])
        i = bisect.bisect_right(revs, (rev, 1 << 63, True))
        return revs[i - 1] if i else self.base.get(key)

    def count_above(self, rev: int) -> int:
        """How many records lie above main revision ``rev`` (at or above the floor)."""
        return sum(1 for (main, _s) in self.records if main > max(rev, self.floor))

    def max_at_or_below(self, rev: int) -> int:
        """The newest main revision at or below ``rev`` the db holds."""
        above = [main for (main, _s) in self.records if main <= rev]
        return max(above) if above else (self.max_below if rev >= self.floor else 0)


class _TooMany(Exception):
    """More records than the caller's limit."""


def db_meta(path: str) -> Dict[bytes, int]:
    """``meta``'s consistent_index, term and compaction revisions."""
    meta: Dict[bytes, int] = {}
    with DB(path) as db:
        w = Walker(db)
        mb, _ = open_path(w, ["meta"])
        for name in (b"consistent_index", b"term", b"finishedCompactRev",
                     b"scheduledCompactRev"):
            rec = w.find(mb, name) if mb is not None else None
            if rec is not None and len(rec.value) >= 8:
                meta[name] = int.from_bytes(bytes(rec.value[:8]), "big")
    return meta


def db_revisions(path: str, floor: int = 0, limit: Optional[Tuple[int, int]] = None
                 ) -> Optional[DbRevisions]:
    """Read the ``key`` bucket's revisions and the ``meta`` values of
    ``path``, keeping the records above main revision ``floor`` (see
    :class:`DbRevisions`).  ``limit`` = (n, rev): None as soon as more
    than n of them lie at or below main revision rev."""
    counted = 0
    recs: Dict[Tuple[int, int], Tuple[bytes, bool]] = {}
    newest: Dict[bytes, Tuple[int, int, bool]] = {}
    base: Dict[bytes, Tuple[int, int, bool]] = {}
    nested = False
    max_rev = max_below = 0
    with DB(path) as db:
        w = Walker(db)
        bucket, _ = open_path(w, ["key"])
        for b, batch in (w.walk_batches(bucket) if bucket is not None else ()):
            if b is not bucket or batch.bucket_entry is not None:
                nested = True
                continue
            for k, v in zip(batch.keys, batch.values):
                rev = decode_revision(bytes(k))
                kv = decode_key_value(bytes(v))
                if rev is None or "error" in kv:
                    continue
                key = kv["key"]
                item = (rev["main"], rev["sub"], rev["tombstone"])
                max_rev = max(max_rev, item[0])
                if item[0] > floor:
                    recs[item[:2]] = (key, item[2])
                    if limit is not None and item[0] <= limit[1]:
                        counted += 1
                        if counted > limit[0]:
                            return None
                else:
                    max_below = max(max_below, item[0])
                    old = base.get(key)
                    if old is None or old[:2] < item[:2]:
                        base[key] = item
                old = newest.get(key)
                if old is None or old[:2] < item[:2]:
                    newest[key] = item
    # only the keys with records above the floor need their base
    above = {k for k, _t in recs.values()}
    base = {k: v for k, v in base.items() if k in above}
    return DbRevisions(recs, newest, max_rev, db_meta(path), nested, floor, base, max_below)


@dataclass
class Plan:
    """Where the db is set back to, and what etcd will restore from the WAL."""
    consistent_index: int
    term: Optional[int]
    revision: int
    compact_rev: int
    raise_compact: bool
    db_consistent_index: int
    anchor: str
    oldest_lost: Optional[int] = None
    lost_revisions: int = 0
    restored_lost: int = 0
    reapplied: int = 0
    removed_records: int = 0
    limited_by_snapshot: bool = False
    unrestorable: List[int] = field(default_factory=list)
    at_risk: List[bytes] = field(default_factory=list)
    other_after: List[tuple] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)
    exact: bool = True
    #: with --older-snapshot: the snapshot etcd starts from (files above it set aside)
    snapshot_used: Optional[int] = None
    db_losses_stand: bool = False
    #: the db's consistent_index was past the WAL's last entry and every
    #: record is kept (:func:`_keep_past_wal`)
    db_kept_past_wal: bool = False
    #: set when the db is rewound although its consistent_index is past the
    #: WAL: the revision of the WAL's last entry (records above it are lost)
    past_wal_rev: Optional[int] = None
    #: with db_kept_past_wal: the revision after the WAL's last entry, when replayed
    cut_rev: Optional[int] = None
    #: the WAL cut before a record etcd refuses (repair_data_dir)
    wal_cut: Optional[dict] = None
    #: the WAL's torn tail, kept for etcd to trim (repair_data_dir)
    wal_torn: Optional[dict] = None
    #: a torn or cut WAL: the revision etcd reaches once it applied what it
    #: kept; a revision above it is lost (:func:`_open_above`)
    lost_above: Optional[int] = None

    @property
    def changes_db(self) -> bool:
        """Whether the db must be rewritten."""
        return (self.consistent_index != self.db_consistent_index or self.removed_records > 0
                or self.raise_compact)

    def to_json(self) -> dict:
        """The plan for ``--json``."""
        return {
            "consistent_index": self.consistent_index, "term": self.term,
            "revision": self.revision, "db_consistent_index": self.db_consistent_index,
            "anchor": self.anchor, "oldest_lost_revision": self.oldest_lost,
            "lost_revisions": self.lost_revisions,
            "lost_revisions_restored_by_wal": self.restored_lost,
            "revisions_wal_reapplies": self.reapplied,
            "records_removed": self.removed_records,
            "limited_by_snapshot": self.limited_by_snapshot,
            "unrestorable_revisions": len(self.unrestorable),
            "compaction_raised_to": self.compact_rev if self.raise_compact else None,
            "keys_at_risk": [render_bytes(k) for k in self.at_risk[:MAX_NAMED]],
            "keys_at_risk_count": len(self.at_risk),
            "non_key_changes_after": [{"index": i, "kind": k} for i, k in self.other_after],
            "replay_exact": self.exact,
            "db_losses_stand": self.db_losses_stand,
            "snapshot_used": self.snapshot_used,
            "db_kept_past_wal": self.db_kept_past_wal,
            "wal_cut": self.wal_cut,
            "wal_torn": self.wal_torn,
            "lost_revision_ranges": {
                "ranges": _ranges(self.unrestorable), "open_above": self.lost_above},
            "why": self.reasons,
        }


def _ranges(revs: Sequence[int]) -> List[List[int]]:
    """Sorted revisions as ``[first, last]`` runs of consecutive ones."""
    out: List[List[int]] = []
    for r in sorted(set(revs)):
        if out and out[-1][1] + 1 == r:
            out[-1][1] = r
        else:
            out.append([r, r])
    return out


def lost_revisions(m: RevMap, dbr: DbRevisions, upto: int, state: A.Store) -> List[int]:
    """Main revisions at or below ``upto`` that the db does not hold as the
    replay wrote them: a record missing above the db's compaction, or a key
    whose newest revision at ``upto`` differs from the replay's ``state``."""
    compacted = dbr.meta.get(b"finishedCompactRev", 0)
    lost = set()
    want = set()
    for _idx, rev, changes in m.writes:
        if rev > upto:
            break
        for sub, (key, op) in enumerate(changes):
            want.add((rev, sub))
            if rev > compacted:
                got = dbr.records.get((rev, sub))
                if got is None or got != (key, op == A.DELETE):
                    lost.add(rev)
    for (main, sub) in dbr.records:
        if main <= upto and main > max(compacted, m.anchor_rev) and (main, sub) not in want:
            lost.add(main)
    wrong = []
    for key in set(state.live) | set(dbr.newest):
        kv = state.live.get(key)
        got = dbr.newest_at_or_below(key, upto)
        live = got is not None and not got[2]
        if (kv is None and live) or (kv is not None and (not live or got[0] != kv.mod)):
            wrong.append((key, got[0] if got is not None else 0))
    if wrong:
        # the oldest revision after the db's own that touched each such key
        after = dict(wrong)
        for _idx, rev, changes in m.writes:
            if rev > upto or not after:
                break
            for key, _op in changes:
                if key in after and rev > after[key]:
                    lost.add(rev)
                    del after[key]
        lost.update(r + 1 for r in after.values())
    return sorted(r for r in lost if r > m.anchor_rev)


def written_by(m: RevMap, dbr: DbRevisions, upto: Optional[int] = None) -> bool:
    """Whether every record of the db (at or below revision ``upto`` when
    given: the db went on past the WAL) is one the replay wrote (same
    revision, key and put/delete): the WAL's history is the db's."""
    want = {}
    for _idx, rev, changes in m.writes:
        for sub, (key, op) in enumerate(changes):
            want[(rev, sub)] = (key, op == A.DELETE)
    return all(want.get(r) == v for r, v in dbr.records.items()
               if upto is None or r[0] <= upto)


def plan(res: W.WalRead, db_path: str, snap_index: int,
         older: Sequence[int] = (), snap_files: bool = True,
         multi_member: bool = False) -> Tuple[Plan, RevMap, A.Store]:
    """The rewind of the (clean) db at ``db_path`` for the WAL ``res``
    (see the module docstring); also the revision map and the store after
    the whole replay (what etcd serves once every entry is applied).
    ``older``: indexes of older snapshots etcd can start from instead
    (``--older-snapshot``; see :func:`older_snapshots`); ``snap_files``:
    False where etcd takes the snapshot from the WAL's record (3.7+), which
    setting ``.snap`` files aside does not move.  ``multi_member``: the
    member of a cluster of several, whose leader still holds what its WAL
    lost (:func:`_keep_past_wal`)."""
    ci = db_meta(db_path).get(b"consistent_index", 0)
    last = res.last_index or 0
    upto_index = min(ci, last)
    full = res.first_index == 1
    dbr = None
    if full:
        st = A.Store()
        st.rev = 1
        m, state = revision_map(res, st, "wal-start", 0, capture=upto_index)
        # every record, but never more than the WAL wrote: a db with more
        # is not the WAL's history (a restored data dir's WAL starts at 1
        # too, its db's history does not)
        # (past the WAL's end, when the db's consistent_index is: the
        # records a torn or cut tail dropped, not counted)
        dbr = db_revisions(db_path, limit=(sum(len(c) for _i, _r, c in m.writes),
                                           m.rev[-1] if ci > last and m.rev else 1 << 62))
        full = dbr is not None and written_by(m, dbr, m.rev[-1] if ci > last and m.rev
                                              else None)
    if not full:
        with DB(db_path) as db:
            st = A.Store.from_db(db)
        m, state = revision_map(res, st, "db", ci, capture=upto_index)
        # the db is trusted up to its own revision: nothing below is read again
        dbr = db_revisions(db_path, floor=m.anchor_rev)
        if ci > last and res.last_index is not None:
            p = Plan(ci, dbr.meta.get(b"term"), dbr.max_rev,
                     dbr.meta.get(b"finishedCompactRev", 0), False, ci, m.anchor)
            _keep_past_wal(p, m, dbr, res, last, multi_member)
            return p, m, st
    p = Plan(ci, dbr.meta.get(b"term"), dbr.max_rev, dbr.meta.get(b"finishedCompactRev", 0),
             False, ci, m.anchor, exact=m.exact)
    at = m.at(upto_index)
    if state is None or at is None:
        p.reasons.append(f"the WAL ({res.first_index}..{last}) does not reach the db's "
                         f"consistent_index {ci}: the db is kept as it is")
        return p, m, st
    upto_rev = at[0]
    lost = lost_revisions(m, dbr, upto_rev, state) if full else []
    if ci > last and not lost:
        _keep_past_wal(p, m, dbr, res, last, multi_member)
        return p, m, st
    if ci > last:
        p.past_wal_rev = upto_rev
    if not full:
        why = ("the WAL does not reach back to index 1" if res.first_index != 1 else
               "the db holds revisions the WAL did not write (a restored snapshot's)")
        p.reasons.append(f"{why}: the db is trusted up to its consistent_index {ci} (its "
                         f"revision {dbr.max_rev})")
    c = upto_index
    if lost:
        p.oldest_lost, p.lost_revisions = lost[0], len(lost)
        c = (m.entry_of(lost[0]) or 1) - 1
        p.reasons.append(f"the db lacks {len(lost)} revision(s) at or below its "
                         f"consistent_index {ci} (revision {upto_rev}), the oldest {lost[0]} "
                         f"(written by entry {c + 1})")
    elif dbr.max_rev > upto_rev:
        p.reasons.append(f"the db holds revisions above {upto_rev}, the revision of its "
                         f"consistent_index {ci}: they are removed and re-applied")
    fit = [i for i in older if i <= c]
    if c < snap_index and fit:
        p.snapshot_used = used = max(fit)
        start = f"the older snapshot at {used}" if used else "the WAL's start"
        p.reasons.append(f"the raft snapshot's index {snap_index} is above {c}: the snapshot "
                         f"files above {used} are set aside (*.snap.skipped), so etcd starts "
                         f"from {start} and re-applies the entries the WAL still holds")
    elif c < snap_index:
        p.limited_by_snapshot = True
        rev_snap = (m.at(snap_index) or (0,))[0]
        held = {main for (main, _s) in dbr.records}
        p.unrestorable = sorted(set(r for r in lost if r <= rev_snap)
                                | {r for _i, r, _c in m.writes
                                   if upto_rev < r <= rev_snap and r not in held})
        p.reasons.append(f"the raft snapshot's index {snap_index} is above {c}: etcd re-applies "
                         f"nothing at or below it (no .snap.db), so {len(p.unrestorable)} lost "
                         "revision(s) stay lost" + (
                             "; the WAL still holds them: --older-snapshot sets the newer "
                             "snapshot files aside so that etcd re-applies them"
                             if m.anchor == "wal-start" and snap_files else
                             "; etcd 3.7+ takes the snapshot from the WAL's own snapshot "
                             "record, so setting .snap files aside (--older-snapshot) does "
                             "not bring them back" if not snap_files else ""))
        c = snap_index
    _settle(p, m, dbr, c, lost)
    return p, m, st


def _term_of(res: W.WalRead, index: int) -> Optional[int]:
    """The term of the WAL's entry ``index``."""
    for _r, e in W.iter_entries(res, start_after=index - 1):
        if e["index"] == index:
            return e["term"]
    return None


def _keep_past_wal(p: Plan, m: RevMap, dbr: DbRevisions, res: W.WalRead, last: int,
                   multi_member: bool = False) -> None:
    """The db's consistent_index is past the WAL's last entry (a torn tail
    or a cut WAL lost entries the db already applied) and the db lacks no
    revision up to there: every record is kept.

    etcd's invariant (3.6.16 ``server/etcdserver/server.go`` ``apply``: "only
    'unapplied' (e.Index>backend.ConsistentIndex) on the backend") is that
    the entry at every index up to ``consistent_index`` is in the backend.
    On one member, nothing holds the entries the tail lost any more, and raft
    numbers new, different entries from ``last + 1``: ``consistent_index``
    is set to the WAL's last entry (and ``term`` to its term), so etcd
    applies them (left past it, etcd never applies nor answers them: 3.6+
    serves clients only after its member publish passes it,
    :func:`boltfix.datadir._ready_delay`).  The lost entries' effects stay
    in the db, and no log can apply them twice.  With ``multi_member``
    the leader still holds those entries and sends them again, so the
    ``consistent_index`` is kept: etcd skips them as applied (lowering it
    would apply each twice)."""
    if multi_member:
        p.reasons.append(f"the db's consistent_index {p.db_consistent_index} is past the WAL's "
                         f"last entry {last}, and the db lacks no revision the WAL wrote: kept "
                         "as it is: the leader sends this member the entries after "
                         f"{last} again, and etcd skips those at or below "
                         f"{p.db_consistent_index} as applied")
        p.db_kept_past_wal = True
        p.revision = dbr.max_rev
        return
    at = m.at(last)
    term = at[1] if at and at[1] else _term_of(res, last)
    p.consistent_index = last
    p.term = term if b"term" in dbr.meta else None
    p.revision = dbr.max_rev
    p.db_kept_past_wal = True
    p.cut_rev = at[0] if at else None
    p.other_after = [(i, k) for i, k in m.other if last < i <= p.db_consistent_index]
    p.reasons.append(f"the db's consistent_index {p.db_consistent_index} is past the WAL's "
                     f"last entry {last}, and the db lacks no revision the WAL wrote: every "
                     f"record kept (revision {dbr.max_rev}), consistent_index set to {last} so "
                     "that etcd applies the entries after it")


def older_snapshots(pred: D.StartPrediction) -> List[int]:
    """Snapshot indexes etcd can start from when the newer ``.snap`` files
    are set aside: 0 (no snapshot) when the WAL's first segment starts at 0
    and its entries at 1, and each readable ``.snap`` the WAL has a
    snapshot record for with a segment starting at or below it and its
    entries from just above it (``wal.Open``/``ReadAll``, as
    :func:`boltfix.datadir.predict_start` checks them)."""
    res = pred.wal
    if not res.segments or res.first_index is None:
        return []
    snap = pred.facts.get("snapshot") or {}
    if snap.get("from_wal"):
        # 3.7+ takes the snapshot from the WAL's own snapshot record, which
        # setting .snap files aside does not change
        return []
    records = {(s["index"], s["term"]) for s in res.snapshots}
    out = []
    if res.segments[0].index == 0 and res.first_index == 1 and (0, 0) in records:
        out.append(0)
    for s in pred.facts.get("snapshots") or []:
        if (s.get("ok") and (s["index"], s["term"]) in records
                and any(seg.index <= s["index"] for seg in res.segments)
                and res.first_index <= s["index"] + 1):
            out.append(s["index"])
    return sorted(set(out))


def _set_aside(snap_out: str, above: int) -> List[str]:
    """Rename the ``.snap`` files above index ``above`` to ``*.snap.skipped``
    (etcd's snapshotter skips names it does not know)."""
    moved = []
    for name in sorted(os.listdir(snap_out)):
        m = D._SNAP_NAME.match(name)
        if m and int(m.group(2), 16) > above:
            os.rename(os.path.join(snap_out, name), os.path.join(snap_out, name + ".skipped"))
            moved.append(name)
    return moved


def _settle(p: Plan, m: RevMap, dbr: DbRevisions, c: int, lost: List[int]) -> None:
    """Fill in the plan for the chosen index ``c``."""
    rev_c, term_c, compact_c = m.at(c) or (dbr.max_rev, p.term or 0, 0)
    p.consistent_index, p.revision = c, rev_c
    if term_c:
        p.term = term_c if b"term" in dbr.meta else None
    p.removed_records = dbr.count_above(rev_c)
    kept_max = dbr.max_at_or_below(rev_c)
    old_compact = dbr.meta.get(b"finishedCompactRev", 0)
    p.compact_rev = min(old_compact, rev_c) if m.anchor == "db" else compact_c
    if kept_max < rev_c and rev_c > 1:
        # store.restore: currentRev = max(newest revision, compactMainRev)
        p.compact_rev = rev_c
    p.raise_compact = p.compact_rev != old_compact
    p.restored_lost = sum(1 for r in lost if r > rev_c)
    p.reapplied = sum(1 for _i, r, _c in m.writes if r > rev_c)
    p.other_after = [(i, k) for i, k in m.other if c < i <= p.db_consistent_index]
    if p.consistent_index == p.db_consistent_index and not lost:
        p.reasons.append(f"consistent_index {c} kept: the db holds every revision the WAL "
                         f"wrote up to it (revision {rev_c})")
    else:
        p.reasons.append(f"consistent_index set to {c} (revision {rev_c}): etcd re-applies "
                         f"{p.reapplied} revision(s) from the WAL, {p.restored_lost} of them "
                         "lost by the db")


def predicted_wrong(m: RevMap, db_path: str, p: Plan, res: W.WalRead,
                    anchor_store: A.Store) -> List[bytes]:
    """The keys etcd will serve differently (value, mod_revision,
    create_revision or version) than the WAL's full history says, once
    started on the rewound db: the db's keyspace at rev(C) replayed with
    the entries above C, against ``anchor_store`` (the full replay from
    the anchor)."""
    dbr = db_revisions(db_path, floor=p.revision)
    live = {}
    with DB(db_path) as db:
        st = A.Store.from_db(db)
        # the rewound keyspace: the db's records at or below rev(C)
        for key in dbr.newest:
            got = dbr.newest_at_or_below(key, p.revision)
            if got is not None and not got[2]:
                kv = st.live.get(key)
                if kv is not None and kv.mod == got[0]:
                    live[key] = kv
                else:
                    live[key] = _kv_at(db, got)
    sim = A.Store()
    sim.live = {k: v for k, v in live.items() if v is not None}
    sim.sorted = sorted(sim.live)
    sim.rev = max(p.revision, max((v.mod for v in sim.live.values()), default=0))
    sim.compacted = p.compact_rev
    sim.leases, sim.nospace, sim.auth_enabled = (set(st.leases), st.nospace,
                                                 st.auth_enabled)
    ents = ((e, R.decode_entry_payload(e, True)) for _r, e in W.iter_entries(res))
    for _a in A.replay(sim, ents, p.consistent_index):
        pass
    truth = anchor_store
    wrong = []
    for key in set(sim.live) | set(truth.live):
        a, b = sim.live.get(key), truth.live.get(key)
        if (a is None) != (b is None) or (a and (a.value, a.mod, a.create, a.version)
                                          != (b.value, b.mod, b.create, b.version)):
            wrong.append(key)
    return sorted(wrong)


def _kv_at(db: DB, got) -> Optional[A.KV]:
    """The KeyValue at revision ``got`` (main, sub) in the ``key`` bucket
    (a walker per lookup: a walker reaches each page once)."""
    rk = _u64(got[0]) + b"_" + _u64(got[1])
    w = Walker(db)
    bucket, _ = open_path(w, ["key"])
    rec = w.find(bucket, rk) if bucket is not None else None
    if rec is None:
        return None
    kv = decode_key_value(bytes(rec.value))
    if "error" in kv:
        return None
    return A.KV(kv["create_revision"], kv["mod_revision"], kv["version"], kv["value"],
                kv["lease"])


def write_rewound(src: str, fileobj, p: Plan) -> dict:
    """Copy the db at ``src`` into ``fileobj`` (a new bbolt file) without
    the ``key`` records above the plan's revision, with the plan's
    ``consistent_index``, ``term`` and compaction revisions in ``meta``.
    etcd's buckets are flat: a nested bucket is refused (ValueError)."""
    meta_set = {b"consistent_index": _u64(p.consistent_index)}
    if p.term is not None:
        meta_set[b"term"] = _u64(p.term)
    meta_drop = set()
    if p.raise_compact:
        for name in (b"finishedCompactRev", b"scheduledCompactRev"):
            if p.compact_rev:
                # a revision key, revToBytes: main, '_', sub (mvcc/revision.go)
                meta_set[name] = _u64(p.compact_rev) + b"_" + _u64(0)
            else:
                meta_drop.add(name)
    with DB(src) as db:
        w = Walker(db)
        writer = BoltWriter(fileobj, page_size=db.page_size)
        root = w.root_bucket()
        for rec in (w.records(root) if root is not None else ()):
            bucket = w.open_bucket(root, rec) if rec.is_bucket else None
            if bucket is None:
                continue
            name = bytes(rec.key)
            writer.begin_bucket(name, bucket.sequence)
            pending = dict(meta_set) if name == b"meta" else {}
            for b, batch in w.walk_batches(bucket):
                if b is not bucket or batch.bucket_entry is not None:
                    raise ValueError(f"bucket {name!r} has a nested bucket: not an etcd db")
                for k, v in zip(batch.keys, batch.values):
                    k = bytes(k)
                    if name == b"key":
                        rev = decode_revision(k)
                        if rev is not None and rev["main"] > p.revision:
                            continue
                    elif name == b"meta":
                        for extra in sorted(x for x in pending if x < k):
                            writer.put(extra, pending.pop(extra))
                        if k in meta_drop:
                            continue
                        if k in pending:
                            writer.put(k, pending.pop(k))
                            continue
                    writer.put(k, bytes(v))
            for extra in sorted(pending):
                writer.put(extra, pending[extra])
            writer.end_bucket()
        return writer.close().as_dict()


# ---------------------------------------------------------------- a whole data dir
@dataclass
class DataDirRepair:
    """What :func:`repair_data_dir` wrote and found."""
    input: str
    output: str
    source_db: str
    copied: List[str]
    plan: Plan
    db_repair: dict
    db_alone_at_risk: Optional[int]
    before: dict
    after: dict
    members: List[str]
    findings: list = field(default_factory=list)

    @property
    def lost_data(self) -> bool:
        """Whether etcd will serve some key wrongly, or a revision stays lost."""
        cut = self.plan.wal_cut or {}
        return bool(self.plan.at_risk or self.plan.unrestorable or self.plan.db_losses_stand
                    or cut.get("lost_entries") or cut.get("unreadable_entries")
                    or self.after.get("outcome") == "fails")

    def to_json(self) -> dict:
        """The report for ``--json``."""
        return {"input": self.input, "output": self.output, "source_db": self.source_db,
                "copied": self.copied, "rewind": self.plan.to_json(),
                "db_repair": self.db_repair, "db_alone_keys_at_risk": self.db_alone_at_risk,
                "members": self.members, "start_before": self.before,
                "start_after": self.after,
                "findings": [f.to_json() for f in self.findings]}


def _source_db(pred: D.StartPrediction) -> Tuple[Optional[str], Optional[str]]:
    """(the backend etcd would use, the .snap.db it comes from or None)."""
    backend = pred.facts.get("backend")
    dd = pred.data_dir
    if backend and backend.endswith(".snap.db") and dd.snap_dir:
        path = os.path.join(dd.snap_dir, backend)
        return path, path
    return dd.db_path, None


def _members(pred: D.StartPrediction) -> List[str]:
    """The cluster's members as the WAL says (what etcd's raft restarts
    with): the loaded snapshot's conf state, then the conf changes after it."""
    snap = pred.facts.get("snapshot")
    members: set = set()
    for s in pred.facts.get("snapshots") or []:
        if snap and s.get("name") == snap["name"]:
            cs = s.get("conf_state") or {}
            members = {f"{v:x}" if isinstance(v, int) else str(v)
                       for v in list(cs.get("voters") or []) + list(cs.get("learners") or [])}
    above = snap["index"] if snap else 0
    for _r, e in W.iter_entries(pred.wal):
        if e["index"] <= above or e["type"] == R.ENTRY_NORMAL:
            continue
        payload = R.decode_entry_payload(e, False)
        changes = ([payload["conf_change"]] if "conf_change" in payload
                   else (payload.get("conf_change_v2") or {}).get("changes") or [])
        for ch in changes:
            node = str(ch.get("node_id"))
            if "Remove" in str(ch.get("type")):
                members.discard(node)
            else:
                members.add(node)
    return sorted(members)


def _copy_file(src: str, dst: str) -> None:
    """Byte for byte, fsynced."""
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())


def wal_cut_point(res: W.WalRead) -> Optional[dict]:
    """Where etcd's read of the WAL stops on a record it refuses (a CRC
    mismatch, a record that does not decode, a gap... anywhere but a torn
    tail, which etcd's ``wal.Repair`` trims itself): ``{segment, offset}``,
    or None when etcd reads it (or trims it) and starts."""
    if res.stop == "error" and res.stop_at:
        return dict(res.stop_at)
    return None


def _copy_wal_cut(src: str, dst: str, size: int) -> None:
    """The first ``size`` bytes of ``src`` (a segment cut as ``wal.Repair``
    truncates one), fsynced."""
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        left = size
        while left > 0:
            chunk = fi.read(min(left, 1 << 20))
            if not chunk:
                break
            fo.write(chunk)
            left -= len(chunk)
        fo.flush()
        os.fsync(fo.fileno())


def _copy_parts(dd: D.DataDir, member: str, skip: Optional[str],
                cut: Optional[dict] = None) -> List[str]:
    """The WAL segments and snapshot files into ``member``: their names.
    With ``cut``, the WAL ends at ``cut["offset"]`` of ``cut["segment"]``
    (the later segments are left out)."""
    wal_out, snap_out = os.path.join(member, "wal"), os.path.join(member, "snap")
    os.makedirs(wal_out)
    os.makedirs(snap_out)
    copied = []
    for src_dir, dst_dir, keep in ((dd.wal_dir, wal_out, (".wal",)),
                                   (dd.snap_dir, snap_out, (".snap", ".snap.db"))):
        for name in sorted(os.listdir(src_dir)) if src_dir else ():
            path = os.path.join(src_dir, name)
            if (not name.endswith(keep) or path == skip
                    or not stat.S_ISREG(os.lstat(path).st_mode)):
                continue
            if cut is not None and src_dir == dd.wal_dir and name >= cut["segment"]:
                if name == cut["segment"] and cut["offset"] > 0:
                    _copy_wal_cut(path, os.path.join(dst_dir, name), cut["offset"])
                    copied.append(os.path.relpath(os.path.join(dst_dir, name),
                                                  os.path.dirname(member)))
                continue
            _copy_file(path, os.path.join(dst_dir, name))
            copied.append(os.path.relpath(os.path.join(dst_dir, name), os.path.dirname(member)))
    return copied


def repair_data_dir(data_dir: str, wal_dir: Optional[str], out_dir: str, *,
                    force: bool = False, multi_member: bool = False,
                    older_snapshot: bool = False) -> DataDirRepair:
    """Write a new data dir ``out_dir`` from ``data_dir`` (never written):
    the WAL segments and snapshot files copied byte for byte, the db
    repaired (:func:`boltfix.repair.repair`) and set back by :func:`plan`
    so that etcd re-applies what it lost from the WAL.  Written into a temp
    dir beside ``out_dir``, fsynced, then renamed."""
    dd = D.open_data_dir(data_dir, wal_dir)
    if dd.member is None:
        raise CannotOpen(f"{data_dir}: a WAL directory alone: give the data dir")
    pred = D.predict_start(dd, full_check=False)
    if not pred.wal.segments:
        raise CannotOpen(f"{dd.wal_dir}: no WAL segment: nothing for etcd to start from")
    src, from_snap_db = _source_db(pred)
    if not src or not os.path.lexists(src):
        raise CannotOpen(f"{data_dir}: no member/snap/db and no .snap.db to repair")
    _refuse_out(data_dir, dd, out_dir, force)
    members = _members(pred)
    findings = []
    if len(members) > 1:
        msg = (f"the cluster has {len(members)} members ({', '.join(members)}): the usual fix "
               "is to remove this member and add it again from a healthy one (etcdctl member "
               "remove ID; etcdctl member add NAME --peer-urls ...; start it on an empty data "
               "dir with --initial-cluster-state existing)")
        if not multi_member:
            raise RepairRefused(msg + "; --multi-member writes this member's data dir anyway")
        findings.append(Finding(F.DATADIR_MULTI_MEMBER, msg, WARNING))
    parent = os.path.dirname(os.path.abspath(out_dir))
    try:
        tmp = tempfile.mkdtemp(prefix=".boltfix-datadir-", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror}") from exc
    cut = wal_cut_point(pred.wal)
    if cut is not None:
        cut["path"] = os.path.join(dd.wal_dir, cut["segment"])
    try:
        member = os.path.join(tmp, "member")
        copied = _copy_parts(dd, member, from_snap_db, cut)
        use = pred
        if cut is not None:
            # what etcd reads of the cut WAL, with the input's db and snapshots
            use = D.predict_start(dataclasses.replace(dd, wal_dir=os.path.join(member, "wal")),
                                  full_check=False)
        result = _write_db(use, src, os.path.join(member, "snap"), findings,
                           older_snapshots(use) if older_snapshot else [],
                           (pred.wal, cut) if cut is not None else None,
                           multi_member=len(members) > 1)
        _fsync_tree(tmp)
        after = D.predict_start(D.open_data_dir(tmp), full_check=True).to_json()
        _move_into_place(tmp, out_dir, force)
        tmp = None
    except OSError as exc:
        # ENOSPC, EROFS, EACCES, EIO...: the user's environment, not damage
        raise OutputError(f"cannot write {out_dir}: {exc.strerror or exc}; nothing "
                          "written") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    after["data_dir"] = out_dir
    plan_, db_json, alone = result
    return DataDirRepair(data_dir, out_dir, src, copied, plan_, db_json, alone,
                         pred.to_json(), after, members, findings)


def _write_db(pred: D.StartPrediction, src: str, snap_out: str, findings: list,
              older: List[int], cut: Optional[tuple] = None, multi_member: bool = False):
    """Repair ``src`` into ``snap_out/db`` and set it back: (plan, the db
    repair's JSON, how many keys the db alone names at risk).  ``cut``:
    (the input's whole WAL read, the cut point) when ``pred``'s WAL is the
    input's cut before a record etcd refuses."""
    repaired = os.path.join(snap_out, ".db.repaired")
    snap = pred.facts.get("snapshot")
    try:
        report = R_.repair(src, repaired)
    except BoltError as exc:
        # nothing recoverable: when the WAL holds every entry from index 1,
        # an empty db (its consistent_index set by the plan) will do: etcd
        # re-applies what is above the snapshot, the report names the rest
        if pred.wal.first_index != 1:
            raise
        with open(repaired, "xb") as fh:
            w = BoltWriter(fh)
            w.begin_bucket(b"meta")
            w.end_bucket()
            w.close()
        report = None
        whole = not snap or 0 in older
        findings.append(Finding(
            F.DATADIR_DB_REBUILT, f"{src}: {exc}; an empty db is written instead: etcd "
            + ("re-applies the whole WAL from index 1 into it" if whole else
               f"re-applies the WAL above the raft snapshot (index {snap['index']}); "
               "what lies below it is lost (--older-snapshot: the whole WAL)"), WARNING))
    p, m, final = plan(pred.wal, repaired, snap["index"] if snap else 0, older,
                       snap_files=not (snap or {}).get("from_wal"),
                       multi_member=multi_member)
    if p.snapshot_used is not None:
        _set_aside(snap_out, p.snapshot_used)
    p.at_risk = [] if p.db_kept_past_wal else predicted_wrong(m, repaired, p, pred.wal, final)
    if p.past_wal_rev is not None:
        # rewound below the WAL's end: the db's records past the WAL are gone
        p.at_risk = sorted(set(p.at_risk) | set(_keys_above(repaired, p.past_wal_rev)))
    if cut is not None:
        _name_cut(p, cut, repaired, pred.wal.last_index or 0, findings, final)
    elif pred.wal.stop == "torn" and pred.wal.stop_at:
        at = pred.wal.stop_at
        p.wal_torn = {"segment": at["segment"], "offset": at["offset"],
                      "last_index_kept": pred.wal.last_index,
                      "db_holds_past_it": p.db_consistent_index > (pred.wal.last_index or 0)}
        p.reasons.append(
            f"the WAL's last segment is torn at {at['segment']} offset {at['offset']}: kept as "
            "it is (etcd's wal.Repair truncates it there at start); whatever the records from "
            "there on held is gone" + ("" if p.wal_torn["db_holds_past_it"] else
                                      ", and the db holds nothing past it: a write they held "
                                      "(acknowledged before the WAL's fsync) is lost unnamed, "
                                      "its bytes are zeros"))
    if p.limited_by_snapshot and p.unrestorable:
        findings.append(Finding(
            F.DATADIR_REWIND_LIMITED,
            f"{len(p.unrestorable)} revision(s) the db lost lie at or below the raft snapshot "
            f"(index {p.consistent_index}): etcd never re-applies them; "
            f"{len(p.at_risk)} key(s) will be served wrongly (named)", WARNING))
    if p.other_after:
        kinds = sorted({k for _i, k in p.other_after})
        findings.append(Finding(
            F.DATADIR_REWIND_UNSURE,
            f"{len(p.other_after)} entr(y/ies) after index {p.consistent_index} changed "
            f"something other than keys ({', '.join(kinds)}): their effect is already in the "
            "db and etcd applies them again (a lease grant then fails as existing, a revoked "
            "lease stays revoked: puts attaching it fail; those keys are in the at-risk list)",
            WARNING))
    dst = os.path.join(snap_out, "db")
    if p.changes_db:
        with open(dst, "xb") as fh:
            write_rewound(repaired, fh, p)
            fh.flush()
            os.fsync(fh.fileno())
        with DB(dst) as db:
            res = check(db, max_findings=20)
        if res.failing:
            raise BoltError("the rewound db did not pass boltfix's own check; nothing written")
        os.unlink(repaired)
    else:
        os.rename(repaired, dst)
    if cut is not None or p.wal_torn is not None:
        p.lost_above = _open_above(dst, final)
    if report is None:
        return p, {"empty_db": True}, None
    etcd_ = report.etcd
    alone = etcd_.at_risk_count if etcd_ is not None else None
    if m.anchor == "db" and report.lost_data:
        # the WAL does not reach back before the db: it cannot narrow what
        # the db's repair lost; the db alone's at-risk keys stand
        known = set(p.at_risk)
        p.at_risk = sorted(known | set(etcd_.at_risk_keys if etcd_ is not None else ()))
        p.db_losses_stand = True
        p.reasons.append("the db's repair lost data the WAL cannot tell (it does not reach "
                         "back to index 1): the db's own at-risk keys are named")
    db_json = {k: v for k, v in report.to_json().items() if k not in ("etcd", "output")}
    return p, db_json, alone


def _open_above(db_path: str, final: Optional[A.Store]) -> int:
    """The revision etcd reaches once started on the db at ``db_path`` (as
    the plan writes it) and its (torn or cut) WAL applied: the db's newest
    ``key`` record or compaction, or the replay's last revision.  A torn or
    cut WAL lost entries whose revisions, if any, all lie above it: etcd
    gives each applied write txn that changes something the next main
    revision, in log order (3.5.21 ``server/mvcc/kvstore_txn.go``
    ``storeTxnWrite.End``: ``if len(tw.changes) != 0 { tw.s.currentRev++
    }``; ``put``/``delete`` write at ``tw.beginRev + 1``), so an entry past
    the last one kept (the damaged record's own, whether it decodes or
    not, and every later one) wrote above it."""
    with DB(db_path) as db:
        st = A.Store.from_db(db)
    return max(st.rev, final.rev if final is not None else 0)


def _user_keys_above(db_path: str, rev: int) -> Iterator[bytes]:
    """The user key of each ``key`` record above main revision ``rev``
    (records that do not decode are left out)."""
    with DB(db_path) as db:
        for _name, batch in top_bucket_batches(db, [b"key"]):
            for k, v in zip(batch.keys, batch.values):
                r = decode_revision(bytes(k))
                if r is not None and r["main"] > rev:
                    kv = decode_key_value(bytes(v))
                    if "error" not in kv:
                        yield kv["key"]


def _keys_above(db_path: str, rev: int) -> List[bytes]:
    """The user keys of the ``key`` records above main revision ``rev``."""
    return sorted(set(_user_keys_above(db_path, rev)))


def _writes_above(db_path: str, rev: int, wanted: set) -> Dict[bytes, int]:
    """For the user keys in ``wanted``: how many ``key`` records above main
    revision ``rev`` the db holds."""
    out: Dict[bytes, int] = {}
    for key in _user_keys_above(db_path, rev):
        if key in wanted:
            out[key] = out.get(key, 0) + 1
    return out


def _damaged_entry_keys(point: dict, st: A.Store, lost_from: int) -> List[bytes]:
    """The keys the damaged record at the cut would write, when it still
    decodes as an entry above ``lost_from`` (its CRC failed: its bytes are
    not trusted, so its keys are named, never applied)."""
    path = os.path.join(os.path.dirname(point.get("path") or ""), point["segment"])
    try:
        with open(path, "rb") as fh:
            fh.seek(point["offset"])
            n, pad = W.frame_size(int.from_bytes(fh.read(W.FRAME_BYTES), "little"))
            if n > W.MAX_RECORD_34:
                return []
            rec = R.decode_record(fh.read(n))
            if rec["type"] != R.ENTRY:
                return []
            e = R.decode_entry(rec["data"])
    except (OSError, R.ProtoError, KeyError, ValueError):
        return []
    if e.get("index", 0) <= lost_from or e.get("type") != R.ENTRY_NORMAL:
        return []
    payload = R.decode_entry_payload(e, True)
    keys = []
    for a in A.replay(_copy(st), [(e, payload)], lost_from):
        keys.extend(k for _s, k, _op in a.changes)
    return keys


def _name_cut(p: Plan, cut: tuple, db_path: str, kept_last: int, findings: list,
              final: Optional[A.Store] = None) -> None:
    """The WAL was cut before a record etcd refuses: the readable entries
    after the cut that neither the written db holds nor etcd re-applies
    are lost; the keys they touched are named (replayed on the db's
    keyspace), and the entries the damaged records held are counted."""
    orig, point = cut
    lost_from = max(kept_last, p.db_consistent_index) if p.db_kept_past_wal else kept_last
    if p.db_kept_past_wal or final is None:
        with DB(db_path) as db:
            st = A.Store.from_db(db)  # what etcd serves: the db as it is
    else:
        st = _copy(final)  # what etcd serves once it re-applied the cut WAL
    keys: set = set(_damaged_entry_keys(point, st, lost_from))
    damaged_named = len(keys)
    lost_entries = 0
    # entries the kept db applied (up to its consistent_index): a key the
    # WAL wrote more often after the cut than the db holds records of
    # after the cut's revision lost writes (one more in the db: the
    # damaged entry's, which no one can read)
    wal_writes: Dict[bytes, int] = {}
    for a in A.replay(st, _entries(orig, {}), kept_last):
        if a.index > lost_from:
            # entries that change nothing (raft's empty ones, a delete of
            # nothing, member attributes) lose nothing
            if a.revision is not None or (not a.error and _changes_state(a.kind, None)):
                lost_entries += 1
            keys.update(k for _s, k, _op in a.changes)
        else:
            for _s, k, _op in a.changes:
                wal_writes[k] = wal_writes.get(k, 0) + 1
    if p.db_kept_past_wal and p.cut_rev is not None and wal_writes:
        held = _writes_above(db_path, p.cut_rev, set(wal_writes))
        keys.update(k for k, n in wal_writes.items() if held.get(k, 0) < n)
    unreadable = []
    for f in orig.findings:
        missing = (f.detail or {}).get("missing") if f.code == F.WAL_INDEX_GAP else None
        if missing and missing[1] > lost_from:
            unreadable.append([max(missing[0], lost_from + 1), missing[1]])
    p.at_risk = sorted(set(p.at_risk) | keys)
    p.wal_cut = {"segment": point["segment"], "offset": point["offset"],
                 "damaged_entry_keys_named": damaged_named,
                 "last_index_kept": kept_last, "input_last_index": orig.last_index,
                 "lost_entries": lost_entries, "keys_named": len(keys),
                 "unreadable_entries": unreadable}
    p.reasons.append(
        f"the WAL is cut at {point['segment']} offset {point['offset']} (a record etcd "
        f"refuses: it would not start), its last entry kept {kept_last}; {lost_entries} "
        f"readable entr(y/ies) after index {lost_from} that changed something are lost, "
        f"their {len(keys)} key(s) named"
        + (f"; the damaged record(s) held entries {unreadable} whose keys cannot be told"
           if unreadable else ""))
    findings.append(Finding(
        F.DATADIR_WAL_CUT,
        f"the WAL is cut before the record etcd refuses ({point['segment']} at offset "
        f"{point['offset']}; the later segments left out), as etcd's wal.Repair cuts a torn "
        f"tail: {lost_entries} later entr(y/ies) neither the db holds nor etcd re-applies, "
        f"{len(keys)} key(s) named" + (f"; entries {unreadable} unreadable"
                                       if unreadable else ""), WARNING))


def _refuse_out(data_dir: str, dd: D.DataDir, out_dir: str, force: bool) -> None:
    """OUT is new (or --force), and never the input or inside it."""
    out = os.path.realpath(out_dir)
    for part in filter(None, (data_dir, dd.wal_dir)):
        inp = os.path.realpath(part)
        if out == inp or out.startswith(inp + os.sep) or inp.startswith(out + os.sep):
            raise RepairRefused(f"--out-data-dir {out_dir} overlaps the input {part}")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise RepairRefused(f"the directory {parent} does not exist")
    if os.path.lexists(out_dir):
        if not force:
            raise RepairRefused(f"{out_dir} exists; --force replaces it")
        if not stat.S_ISDIR(os.lstat(out_dir).st_mode):
            raise RepairRefused(f"{out_dir} exists and is not a directory")


def _fsync_tree(root: str) -> None:
    """fsync every directory under ``root`` (the files were fsynced as written)."""
    for d, _dirs, _files in os.walk(root, topdown=False):
        fsync_dir(d)


def _move_into_place(tmp: str, out_dir: str, force: bool) -> None:
    """Rename the finished temp dir to ``out_dir``; with ``force`` the old
    one is moved aside first, and removed once the new one is in place."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    old = None
    if force and os.path.lexists(out_dir):
        old = tempfile.mkdtemp(prefix=".boltfix-old-", dir=parent)
        os.rename(out_dir, os.path.join(old, "d"))
    try:
        os.rename(tmp, out_dir)
    except OSError as exc:
        if old is not None:
            os.rename(os.path.join(old, "d"), out_dir)
        raise OutputError(f"cannot write {out_dir}: {exc.strerror or exc}") from exc
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _u64(n: int) -> bytes:
    """A big-endian uint64, as etcd writes meta's integers."""
    return n.to_bytes(8, "big")
