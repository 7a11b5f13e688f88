"""What etcd will serve from a repaired (or damaged) db: lost revisions, and
the user keys whose served state may now be wrong.

etcd serves, for each user key, its newest revision in the ``key`` bucket (a
tombstone: deleted).  When damage destroyed a key's newest revision, etcd
serves an older value (stale) or brings a deleted key back (resurrected),
with no warning.  This module says which keys, from the records a repair
wrote (whatever their source) and the evidence the input still holds.

The rules (etcd's MVCC invariants; REFERENCE.md "etcd's MVCC"):

* Every write transaction takes the next main revision, and nothing but
  compaction removes a record; compaction at C removes only revisions <= C.
  So **above the compaction point, main revisions are dense**: each main
  revision between the floor and the highest revision the committed tree
  proves that has no record written is lost, and the count is exact.
* A pruned subtree of the ``key`` bucket held exactly the keys in the range
  its parent's branch keys allow (``key_range`` of the walk's finding).  Its
  lower bound was a real, committed record; an unbounded upper bound means
  revisions above everything that survives may be lost (the tail is open).
* Below the compaction point a key has at most one record (the newest <= C,
  never a tombstone), so a loss there can only make a key vanish; it cannot
  make one stale or resurrected.  Those ranges are "possibly lost", uncounted.
* A key whose newest surviving main revision m lies below a lost revision
  L > m is at risk: its newest surviving record is a put -> etcd may serve it
  although L changed or deleted it ("possibly-resurrected" when L could be
  its deletion, "possibly-stale" when the evidence shows only puts); its
  newest surviving record is a tombstone -> L may have re-created it, and
  etcd serves nothing ("possibly-lost").
* Evidence narrows this.  A copy of a ``key`` bucket leaf on a free or
  orphan page (found by :mod:`boltfix.unreached`, dump's own scan) names the user keys
  its records touched.  Because revision keys only ever grow, a key between
  two records adjacent on such a leaf never existed after that leaf was
  written and cannot be created later, and only compaction (<= C) removes
  one: so a lost main revision that a leaf spans (a record below it and a
  record above it) is fully known, and keys it did not touch are provably
  untouched by it.
* ``KeyValue.version`` and ``create_revision`` describe a key's generation
  *below* its newest revision; a transaction may hold several operations
  (sub revisions) and no surviving record bounds how many, so they cannot
  clear a lost revision above a key's newest one.  They are not used to
  narrow the list (saying so here so nobody adds a rule that is not sound).

Memory: lost main revisions as (first, last) ranges; the per-key state (a
dict from user key to its newest main revision, packed in one int) only for
keys whose newest surviving revision lies below the highest lost revision,
built only when something was lost and freed after the verdicts; nothing runs
on a file without losses.  What is kept of the at-risk keys is their count,
a count per key prefix, the first :data:`MAX_AT_RISK_LISTED` keys (in key
order) for the report, and the set of them only when ``--etcd-at-risk drop``
needs it; ``check`` gets one finding per at-risk key as they are found (its
collector keeps the first ``--max-findings``).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from boltfix import findings as F
from boltfix import k8s
from boltfix.etcd import looks_like_etcd
from boltfix.etcdkeys import (
    KEY,
    KEY_BUCKET,
    META,
    is_revision,
    is_tombstone,
    leading_user_key,
    main_revision,
    sub_revision,
)
from boltfix.findings import WARNING, Finding
from boltfix.leaves import Tree
from boltfix.navigate import open_path, top_level_names
from boltfix.reader import DB, leaf_elements
from boltfix.text import name_text
from boltfix.unreached import C_FREE, C_ORPHAN, classify, leaf_pages
from boltfix.walk import Walker

#: at most this many lost ranges listed per key and in the report
MAX_RANGES_LISTED = 64
MAX_RANGES_PER_KEY = 8
#: at most this many at-risk keys listed (the smallest keys; the count and the
#: summary by prefix cover all): what the report holds stays bounded
MAX_AT_RISK_LISTED = 1000
#: at most this many prefixes in the JSON report's at_risk_by_prefix
MAX_PREFIXES_LISTED = 100
INF = 1 << 63

POSSIBLY_STALE = "possibly-stale"
POSSIBLY_RESURRECTED = "possibly-resurrected"
POSSIBLY_LOST = "possibly-lost"


# ---------------------------------------------------------------- result
@dataclass
class EtcdState:
    """The analysis; ``to_json`` is repair's ``etcd`` object."""

    analysed: bool = False
    floor: Optional[int] = None  # finishedCompactRev's main revision (0 when none)
    floor_known: bool = True
    lost_ranges: List[Tuple[int, int]] = field(default_factory=list)  # dense region, exact
    lost_count: int = 0
    open_above: Optional[int] = None  # revisions above this may be lost (count unknown)
    compacted_possibly_lost: List[Tuple[int, int]] = field(default_factory=list)
    #: (user key, reason, newest surviving main revision, evidence events or None),
    #: the first MAX_AT_RISK_LISTED by key: compact; :meth:`risk_entries` turns
    #: them into the report's dicts
    at_risk: List[tuple] = field(default_factory=list)
    at_risk_count: int = 0  # every at-risk key, listed or not
    #: key prefix (up to its last '/') -> at-risk keys under it, over all of them
    prefix_counts: Dict[str, int] = field(default_factory=dict)
    #: the Kubernetes objects among all the at-risk keys and the lost keys,
    #: counted per (resource, namespace): bounded by k8s.MAX_SUMMARY_GROUPS
    k8s_at_risk: k8s.ResourceCounter = field(default_factory=k8s.ResourceCounter)
    k8s_lost: k8s.ResourceCounter = field(default_factory=k8s.ResourceCounter)
    #: every at-risk user key: only when asked for (``--etcd-at-risk drop``)
    drop_keys: Optional[set] = field(default=None, repr=False)
    lost_keys: List[dict] = field(default_factory=list)
    highest_written: int = 0
    evidence_records: int = 0
    explained_revisions: int = 0
    at_risk_action: str = "keep"  # keep | drop
    dropped_records: int = 0
    notes: List[str] = field(default_factory=list)
    _ends: List[int] = field(default_factory=list, repr=False)

    @property
    def at_risk_keys(self) -> List[bytes]:
        """The listed at-risk keys (all of them unless ``at_risk_truncated``)."""
        return [a[0] for a in self.at_risk]

    @property
    def at_risk_truncated(self) -> int:
        """At-risk keys counted but not listed."""
        return self.at_risk_count - len(self.at_risk)

    def _count_risk(self, uk: bytes) -> None:
        self.at_risk_count += 1
        p = _prefix(name_text(uk))
        self.prefix_counts[p] = self.prefix_counts.get(p, 0) + 1
        self.k8s_at_risk.add(uk)  # the key only: no value is decoded here
        if self.drop_keys is not None:
            self.drop_keys.add(uk)

    def risk_entry(self, risk: tuple) -> dict:
        """One at-risk key as the report prints it."""
        uk, reason, m, later = risk
        ends = self._ends or [b for _, b in self.lost_ranges]
        self._ends = ends
        i = bisect_right(ends, m)  # the first range ending above m
        above = [[max(a, m + 1), b] for a, b in self.lost_ranges[i:i + MAX_RANGES_PER_KEY]]
        if self.open_above is not None:
            above.append([max(self.open_above, m) + 1, None])  # None: how far is unknown
        entry = {"key": name_text(uk), "reason": reason, "newest_surviving_revision": m,
                 "lost_ranges_above": above}
        _add_k8s(entry, uk)
        if later:
            entry["evidence"] = [{"revision": r, "tombstone": t} for r, t in later]
        return entry

    def risk_entries(self) -> Iterator[dict]:
        """Every listed at-risk key as the report prints it."""
        return map(self.risk_entry, self.at_risk)

    def to_json(self) -> dict:
        """The analysis as repair's ``etcd`` object."""
        return {
            "analysed": self.analysed,
            "compaction_floor": self.floor,
            "lost_revisions": {
                "ranges": [list(r) for r in self.lost_ranges[:MAX_RANGES_LISTED]],
                "ranges_total": len(self.lost_ranges),
                "count": self.lost_count,
                "open_above": self.open_above,
                "compacted_possibly_lost": [
                    list(r) for r in self.compacted_possibly_lost[:MAX_RANGES_LISTED]],
            },
            "at_risk": list(self.risk_entries()),
            "at_risk_total": self.at_risk_count,
            "at_risk_truncated": self.at_risk_truncated,
            "at_risk_by_prefix": [list(p) for p in self.by_prefix(MAX_PREFIXES_LISTED)],
            "lost_keys": [_add_k8s({k: v for k, v in a.items() if k != "raw"}, a["raw"])
                          for a in self.lost_keys],
            **self.k8s_json(),
            "at_risk_action": self.at_risk_action,
            "dropped_records": self.dropped_records,
            "evidence": {"records": self.evidence_records,
                         "revisions_explained": self.explained_revisions},
            "notes": self.notes,
        }

    def k8s_json(self) -> dict:
        """``{"k8s_summary": {"at_risk", "lost_keys"}}`` when a key named
        is a Kubernetes object's, else ``{}`` (a plain etcd file's report is
        unchanged)."""
        if not self.k8s_at_risk and not self.k8s_lost:
            return {}
        return {"k8s_summary": {"at_risk": self.k8s_at_risk.to_json(),
                                "lost_keys": self.k8s_lost.to_json()}}

    def by_prefix(self, limit: int = 20) -> List[Tuple[str, int]]:
        """(key prefix up to its last '/', at-risk keys under it), most first."""
        return sorted(self.prefix_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


# ---------------------------------------------------------------- helpers
def _add_k8s(entry: dict, uk: bytes) -> dict:
    """``entry["k8s"]``: the Kubernetes resource, namespace and name the
    user key names (its layout only), when it is under /registry/."""
    info = k8s.parse_key(uk)
    if info is not None:
        entry["k8s"] = k8s.key_object(info)
    return entry


def _prefix(text: str) -> str:
    cut = text.rfind("/")
    return text[:cut + 1] if cut > 0 else text


def _parse_bound(text) -> Tuple[bool, Optional[bytes]]:
    """(known, key) for a finding's key_range bound ("-" is unbounded)."""
    if text in (None, "-"):
        return True, None
    if "…" in text:
        return False, None  # truncated: not a revision key
    try:
        return True, bytes.fromhex(text)
    except ValueError:
        return False, None


# ---------------------------------------------------------------- losses
@dataclass
class _Losses:
    """What the walk's findings say about the ``key`` bucket."""

    ranges: List[Tuple[Optional[bytes], Optional[bytes]]] = field(default_factory=list)
    unbounded: bool = False  # some loss cannot be placed: revisions above all may be lost
    any: bool = False


def key_bucket_losses(findings: Sequence[Finding], truncated: bool) -> _Losses:
    """The key ranges of everything the walk pruned from the ``key`` bucket.

    A loss finding without a key range (a leaf element, the bucket's root
    page) cannot be placed: it opens the tail (conservative)."""
    out = _Losses()
    for f in findings:
        if f.code not in F.WALK_LOSS and f.code != F.ETCD_UNLOADABLE_RECORD:
            continue
        if tuple(f.bucket) != KEY_BUCKET:
            if not f.bucket or f.bucket[0] == KEY:
                out.any = True
                out.unbounded = True  # the bucket itself, or a root-level loss
                out.ranges.append((None, None))
            continue
        out.any = True
        rng = (f.detail or {}).get("key_range")
        if f.code == F.ETCD_UNLOADABLE_RECORD:
            # its revision is a gap of the written records (exact above the
            # compaction point); below it, the key it held is gone
            try:
                k = bytes.fromhex((f.detail or {}).get("key", ""))
            except ValueError:
                k = b""
            if is_revision(k):
                out.ranges.append((k, k))
            continue
        if not rng:
            out.ranges.append((None, None))  # cannot be placed: anywhere
            out.unbounded = True
            continue
        (ok_lo, lo), (ok_hi, hi) = _parse_bound(rng[0]), _parse_bound(rng[1])
        if not ok_lo or not ok_hi:
            out.ranges.append((None, None))
            out.unbounded = True
            continue
        out.ranges.append((lo, hi))
        if hi is None:
            out.unbounded = True
    if truncated:
        out.any = True
        out.unbounded = True  # findings were left out: cannot place them all
        out.ranges.append((None, None))
    return out


# ---------------------------------------------------------------- written records
def _open_key_bucket(walker: Walker):
    bucket, _ = open_path(walker, [KEY.decode()])
    return bucket


def _meta_main(db: DB, name: bytes, tree: Optional[Tree] = None) -> Optional[int]:
    w = Walker(db, tree=tree)
    meta, _ = open_path(w, [META.decode()])
    if meta is None:
        return None
    rec = w.find(meta, name)
    if rec is None or len(rec.value) < 8:
        return None
    return main_revision(rec.value)


def _key_leaves(db: DB, tree: Optional[Tree] = None):
    """The ``key`` bucket's own plain records, as :class:`~boltfix.walk.Leaves`."""
    walker = Walker(db, tree=tree)
    bucket = _open_key_bucket(walker)
    if bucket is None:
        return
    for b, leaves in walker.walk_leaves(bucket):
        if b.path == KEY_BUCKET and leaves.bucket_entry is None:
            yield leaves


def _key_lists(db: DB, tree: Optional[Tree] = None) -> Iterator[Sequence[bytes]]:
    """The keys of the ``key`` bucket, a page at a time."""
    for leaves in _key_leaves(db, tree):
        yield from leaves.key_lists()


def _key_batches(db: DB, tree: Optional[Tree] = None
                 ) -> Iterator[Tuple[Sequence[bytes], Sequence]]:
    """(keys, values) of the ``key`` bucket, a page at a time."""
    for leaves in _key_leaves(db, tree):
        for batch in leaves.batches():
            yield batch.keys, batch.values


def _scan_written(db: DB, floor: int, probes: set, tree: Optional[Tree] = None):
    """One pass over the written keys: the gaps of main revisions above the
    floor (ranges), the highest main written, and which probe keys exist."""
    gaps: List[Tuple[int, int]] = []
    prev = floor  # dense above the floor: from floor + 1 on, every main exists
    found = set()
    for keys in _key_lists(db, tree):
        for k in keys:
            if not is_revision(k):
                continue
            m = main_revision(k)
            if probes and k in probes:
                found.add(k)
            if m > prev + 1:
                gaps.append((prev + 1, m - 1))
            prev = max(prev, m)
    return gaps, prev, found


def _lowest_main(db: DB, tree: Optional[Tree] = None) -> Optional[int]:
    for keys in _key_lists(db, tree):
        for k in keys:
            if is_revision(k):
                return main_revision(k)
    return None


def _merge(ranges: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


# ---------------------------------------------------------------- evidence
class _LeafCopies:
    """The free and orphan leaf pages of the input whose elements all parse
    as ``key`` bucket records (:func:`boltfix.unreached.leaf_pages` over the
    walk's :func:`~boltfix.unreached.classify`: the pages ``dump --include
    free,orphan`` reads).  The input's ``tree`` (the one repair used) is
    walked once, for what is reachable."""

    def __init__(self, src: DB, tree: Optional[Tree] = None):
        self.src = src
        walker = Walker(src, tree=tree)
        walker.count_all()
        self.free, self.orphan, self.classes = classify(src, walker)

    def leaves(self) -> Iterator[List[Tuple[bytes, bytes]]]:
        """Each such leaf as its (revision key, value) list, in page order."""
        buf = self.src.buf
        for want, pages in ((C_FREE, self.free), (C_ORPHAN, self.orphan)):
            for _pgid, off, count, end in leaf_pages(self.src, pages, self.classes, want):
                try:
                    page = _key_leaf(buf, off, count, end)
                except Exception:  # never let stale bytes stop the scan
                    continue
                if page:
                    yield page


def _key_leaf(buf, off: int, count: int, end: int) -> Optional[List[Tuple[bytes, bytes]]]:
    """A leaf's records when every element is a ``key`` bucket record in key
    order (an adjacency proof), else None."""
    page = []
    for _, eflags, key, value, problem in leaf_elements(buf, off, count, end):
        if problem or eflags or not is_revision(key) or leading_user_key(value) is None:
            return None  # not (wholly) a key bucket leaf: no adjacency proof
        page.append((bytes(key), bytes(value)))
    if page and all(a[0] < b[0] for a, b in zip(page, page[1:])):
        return page
    return None


def _in(ranges: List[Tuple[int, int]], starts: List[int], m: int) -> bool:
    i = bisect_right(starts, m) - 1
    return i >= 0 and ranges[i][0] <= m <= ranges[i][1]


def _gather_evidence(src: Optional[DB], st: EtcdState, tree: Optional[Tree] = None):
    """What free/orphan copies of ``key`` leaves say about the losses.

    Returns (events: {main: [(user key, tombstone)]} for records at lost
    main revisions above the floor (or in the open tail); explained: the
    lost mains a leaf copy spans, whose every record is therefore known;
    below: {user key: newest (main, sub, tombstone) in any copy} for the keys
    a copy in a possibly-lost range below the floor names)."""
    events: Dict[int, List[Tuple[bytes, bool]]] = {}
    explained: set = set()
    below: Dict[bytes, tuple] = {}
    lost, comp = st.lost_ranges, st.compacted_possibly_lost
    if src is None or not (lost or comp or st.open_above is not None):
        return events, explained, below
    ev = _LeafCopies(src, tree)
    starts, cstarts = [a for a, _ in lost], [a for a, _ in comp]
    open_above = INF if st.open_above is None else st.open_above
    for page in ev.leaves():
        first, last = page[0][0], page[-1][0]
        for k, v in page:
            m = main_revision(k)
            if m > open_above or _in(lost, starts, m):
                pair = (leading_user_key(v), is_tombstone(k))
                if pair not in events.setdefault(m, []):
                    events[m].append(pair)
                st.evidence_records += 1
            elif comp and _in(comp, cstarts, m):
                below.setdefault(leading_user_key(v), ())
        # lost mains the page spans: every record of them is on it (mains
        # from the first record's, when that is sub 0, to below the last's).
        # Only above the floor: below it compaction removes records.
        lo_main = main_revision(first) + (sub_revision(first) != 0)
        hi_main = main_revision(last) - 1
        i = max(0, bisect_right(starts, lo_main) - 1)
        while i < len(lost) and lost[i][0] <= hi_main:
            a, b = lost[i]
            explained.update(range(max(a, lo_main), min(b, hi_main) + 1))
            i += 1
    if below:
        # the newest copy of each such key: a tombstone there means it was
        # deleted (compaction then removed both), not lost
        for page in ev.leaves():
            for k, v in page:
                uk = leading_user_key(v)
                if uk in below:
                    r = (main_revision(k), sub_revision(k), is_tombstone(k))
                    below[uk] = max(below[uk], r)
    return events, explained, below


# ---------------------------------------------------------------- analysis
def analyse(written: DB, losses: _Losses, *, src: Optional[DB] = None,
            tail_lost: bool = False, tree: Optional[Tree] = None,
            src_tree: Optional[Tree] = None, keep_keys: bool = False,
            on_risk: Optional[Callable[[EtcdState, tuple], None]] = None) -> EtcdState:
    """The etcd state of ``written`` (the records repair wrote, or a damaged
    file's own tree), given what was lost (``losses``, the walk's findings)
    and the input ``src`` to look for evidence in (free and orphan pages).

    ``tree``/``src_tree``: the trees to read (default: each file's meta in
    use's; a dry run passes the tree repair chose for both).
    ``tail_lost``: the last committed transaction(s) may be missing (an
    older meta or a rediscovered root was used).
    ``keep_keys``: keep the set of every at-risk key (``drop_keys``, for
    :func:`drop_filter`); ``on_risk(state, risk)`` sees every at-risk key as
    it is found, listed or not."""
    st = lost_revisions(written, losses, tail_lost=tail_lost, tree=tree)
    keys_at_risk(st, written, src=src, tree=tree, src_tree=src_tree, keep_keys=keep_keys,
                 on_risk=on_risk)
    return st


def lost_revisions(written: DB, losses: _Losses, *, tail_lost: bool = False,
                   tree: Optional[Tree] = None) -> EtcdState:
    """The first half of :func:`analyse`: the compaction floor and the lost
    main revisions (exact ranges, and the open tail)."""
    st = EtcdState(analysed=True)
    fin = _meta_main(written, b"finishedCompactRev", tree)
    sched = _meta_main(written, b"scheduledCompactRev", tree)
    st.floor_known = fin is not None or sched is not None
    floor = fin if fin is not None else (sched or 0)
    if sched is not None and fin is not None and sched > fin:
        st.notes.append(f"a compaction at {sched} was interrupted (finished: {fin}): gaps "
                        f"in ({fin}, {sched}] may be compaction, counted as lost")
    if fin is None and sched is None:
        low = _lowest_main(written, tree)
        floor = (low - 1) if low else 0
        if low:
            st.notes.append("meta/finishedCompactRev is missing: revisions below the lowest "
                            f"one written ({low}) are not judged; every gap above is lost")
    # etcd's first write takes revision 2: main 1 never exists
    floor = max(floor, 1)
    st.floor = floor
    # every bound of a pruned range was a committed record key: a branch key
    # is its child's first key when the parent was last written (bbolt's
    # node.spill), and revision keys are never reused
    probes = {k for r in losses.ranges for k in r if k is not None and is_revision(k)}
    gaps, highest, found = _scan_written(written, floor, probes, tree)
    st.highest_written = highest
    extra = []
    proven = highest
    for bound in probes:
        m = main_revision(bound)
        if m > floor:
            proven = max(proven, m)
            if bound not in found:
                extra.append((m, m))  # at least partly lost
    for lo, hi in losses.ranges:
        lo_m = main_revision(lo) if lo is not None and len(lo) >= 8 else 1
        hi_m = main_revision(hi) if hi is not None and len(hi) >= 8 else INF
        if lo_m <= floor:
            # below the compaction point: a key has at most one record there
            st.compacted_possibly_lost.append((lo_m, min(hi_m, floor)))
    # dense above the floor: mains between the highest written and the
    # highest proven are lost too
    tail = [(max(highest, floor) + 1, proven)] if proven > max(highest, floor) else []
    st.lost_ranges = _merge(gaps + extra + tail)
    st.compacted_possibly_lost = _merge(st.compacted_possibly_lost)
    st.lost_count = sum(b - a + 1 for a, b in st.lost_ranges)
    if losses.unbounded or tail_lost:
        st.open_above = max(proven, floor)
    return st


def keys_at_risk(st: EtcdState, written: DB, *, src: Optional[DB] = None,
                 tree: Optional[Tree] = None, src_tree: Optional[Tree] = None,
                 keep_keys: bool = False, on_risk=None) -> None:
    """The second half of :func:`analyse`: evidence, then the keys at risk
    and the lost keys (nothing runs when no revision was lost)."""
    if not st.lost_ranges and st.open_above is None and not st.compacted_possibly_lost:
        return
    if keep_keys:
        st.drop_keys = set()
    events, explained, below = _gather_evidence(src, st, src_tree)
    st.explained_revisions = len(explained)
    _classify_keys(st, written, events, explained, below, tree, on_risk)


def _classify_keys(st: EtcdState, written: DB, events, explained, below,
                   tree: Optional[Tree] = None, on_risk=None) -> None:
    """Per-key state for keys whose newest surviving revision is below a lost
    revision, then their verdicts; and the keys evidence names that no
    written record holds."""
    u_top = 0  # the highest lost main revision no evidence fully explains
    for a, b in reversed(st.lost_ranges):
        m = b
        while m >= a and m in explained:
            m -= 1
        if m >= a:
            u_top = m
            break
    if st.open_above is not None:
        u_top = INF  # revisions above everything written may be lost: any key
    # per user key: the events (main, tombstone) evidence names above the floor
    named: Dict[bytes, List[Tuple[int, bool]]] = {}
    for m, evs in events.items():
        for uk, tomb in evs:
            if uk is not None:
                named.setdefault(uk, []).append((m, tomb))
    top = max(u_top, max(events, default=0))
    newest: Dict[bytes, int] = {}  # user key -> main << 1 | tombstone
    present = set()
    for keys, values in _key_batches(written, tree):
        for k, v in zip(keys, values):
            if not is_revision(k):
                continue
            uk = leading_user_key(v)
            if uk is None:
                continue
            m = main_revision(k)
            if uk in named or uk in below:
                present.add(uk)
            if m >= top:
                newest.pop(uk, None)  # a revision above every loss: served right
                continue
            newest[uk] = (m << 1) | is_tombstone(k)
    listed: List[tuple] = []
    cap = max(MAX_AT_RISK_LISTED, 1)
    for uk, packed in newest.items():
        m, tomb = packed >> 1, bool(packed & 1)
        m_eff = max(m, st.floor or 0)
        later = sorted(e for e in named.get(uk, ()) if e[0] > m_eff)
        if tomb:
            # etcd serves nothing; a lost revision above may have re-created it
            if m_eff < u_top or (later and not later[-1][1]):
                reason = POSSIBLY_LOST
            else:
                continue
        elif m_eff < u_top:
            reason = POSSIBLY_RESURRECTED  # an unexplained revision may be its deletion
        elif later:
            reason = POSSIBLY_RESURRECTED if later[-1][1] else POSSIBLY_STALE
        else:
            continue  # every lost revision above it is known and did not touch it
        risk = (uk, reason, m, later or None)
        st._count_risk(uk)
        if on_risk is not None:
            on_risk(st, risk)
        listed.append(risk)
        if len(listed) >= 2 * cap:  # keep the smallest keys: bounded, whatever the count
            listed.sort()
            del listed[cap:]
    del newest
    listed.sort()
    st.at_risk = listed[:cap]
    lost = {}
    for uk, evs in named.items():
        last = max(evs)
        if uk not in present and not last[1]:
            # its newest known event is a put at a lost revision, and nothing
            # of it survives; certain when no unknown revision lies above it
            lost[uk] = (last[0], last[0] >= u_top)
    for uk, (m, _, tomb) in below.items():
        if uk not in present and uk not in named and not tomb:
            lost[uk] = (m, False)  # below the floor a copy may predate a compaction
    for uk in sorted(lost):
        m, certain = lost[uk]
        st.k8s_lost.add(uk)
        st.lost_keys.append({"raw": uk, "key": name_text(uk), "evidence_revision": m,
                             "certain": certain})


# ---------------------------------------------------------------- entry points
def is_etcd(db: DB, tree: Optional[Tree] = None) -> bool:
    """Whether ``tree`` (default: the meta in use's) is an etcd file's."""
    return looks_like_etcd(top_level_names(db, tree))


def _path_is_etcd(path) -> bool:
    with DB(path) as db:
        return is_etcd(db)


def for_repair(src: DB, written_path, collector, meta_choice: dict,
               tree: Optional[Tree] = None, keep_keys: bool = False) -> Optional[EtcdState]:
    """repair's hook: None for a file that is not etcd's; an empty, not
    analysed state when nothing was lost (nothing runs); else the analysis
    of the records written to ``written_path`` (the input's ``tree``, the
    one repair chose, when None: a dry run) with evidence from ``src``.
    ``keep_keys``: ``--etcd-at-risk drop`` will need every at-risk key."""
    # a salvage that rebuilt a lost root writes an etcd file from an input
    # whose own tree no longer says so
    if not is_etcd(src, tree) and not (written_path is not None and _path_is_etcd(written_path)):
        return None
    losses = key_bucket_losses(collector.findings, collector.truncated > 0)
    tail = meta_choice.get("index") is None or bool(meta_choice.get("fallback"))
    if not losses.any and not tail:
        return EtcdState()
    if written_path is None:
        return analyse(src, losses, src=src, tail_lost=tail, tree=tree, src_tree=tree)
    with DB(written_path) as out:
        return analyse(out, losses, src=src, tail_lost=tail, src_tree=tree,
                       keep_keys=keep_keys)


def check_findings(db: DB, collector, stats: Optional[dict] = None) -> None:
    """check's hook: the same analysis on a damaged etcd file's own tree,
    reported as findings (etcd-revisions-lost, etcd-key-at-risk, etcd-key-lost);
    on a Kubernetes db, ``stats["etcd_k8s_summary"]`` counts the objects of
    all of them (the findings kept may be fewer: ``--max-findings``)."""
    losses = key_bucket_losses(collector.findings, collector.truncated > 0)
    if not losses.any:
        return
    st = lost_revisions(db, losses)
    if st.lost_count or st.open_above is not None:
        collector(revisions_finding(st))
    # one finding per at-risk key as it is found: the collector keeps the
    # first --max-findings and counts all, the state lists only a few
    keys_at_risk(st, db, src=db, on_risk=lambda s, risk: collector(risk_finding(s, risk)))
    for f in lost_key_findings(st):
        collector(f)
    summary = st.k8s_json()
    if stats is not None and summary:
        stats["etcd_k8s_summary"] = summary["k8s_summary"]


def state_findings(st: EtcdState) -> Iterator[Finding]:
    """The analysis as findings (of the listed at-risk keys only)."""
    if st.lost_count or st.open_above is not None:
        yield revisions_finding(st)
    for risk in st.at_risk:
        yield risk_finding(st, risk)
    yield from lost_key_findings(st)


def revisions_finding(st: EtcdState) -> Finding:
    """The ``etcd-revisions-lost`` finding of the analysis."""
    rng = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in st.lost_ranges[:8])
    more = f" (+{len(st.lost_ranges) - 8} ranges)" if len(st.lost_ranges) > 8 else ""
    tail = (f"; revisions above {st.open_above} may be lost too"
            if st.open_above is not None else "")
    return Finding(F.ETCD_REVISIONS_LOST,
                   f"{st.lost_count} main revisions of etcd's key bucket are lost: "
                   f"{rng or 'none counted'}{more}{tail}", WARNING, None, (), KEY_BUCKET,
                   {"count": st.lost_count, "open_above": st.open_above,
                    "ranges": [list(r) for r in st.lost_ranges[:MAX_RANGES_LISTED]]})


def risk_finding(st: EtcdState, risk: tuple) -> Finding:
    """The ``etcd-key-at-risk`` finding of one at-risk key."""
    a = st.risk_entry(risk)
    detail = {"key": a["key"], "reason": a["reason"],
              "newest_surviving_revision": a["newest_surviving_revision"]}
    if "k8s" in a:
        detail["k8s"] = a["k8s"]
    return Finding(F.ETCD_KEY_AT_RISK,
                   f"etcd would serve {a['key']!r} from revision "
                   f"{a['newest_surviving_revision']}, below lost revisions: {a['reason']}",
                   WARNING, None, (), KEY_BUCKET, detail)


def lost_key_findings(st: EtcdState) -> Iterator[Finding]:
    """The ``etcd-key-lost`` findings of the analysis."""
    for a in st.lost_keys:
        yield Finding(F.ETCD_KEY_LOST,
                      f"{a['key']!r} has no surviving revision; a free or orphan page holds "
                      f"its put at lost revision {a['evidence_revision']}",
                      WARNING, None, (), KEY_BUCKET,
                      _add_k8s({"key": a["key"], "evidence_revision": a["evidence_revision"]},
                               a["raw"]))


def drop_filter(state: EtcdState):
    """For ``--etcd-at-risk drop``: (keys, values) -> the same without the
    records of at-risk keys (every revision of each, tombstones included).
    The state must have been analysed with ``keep_keys``."""
    drop = state.drop_keys
    if drop is None:
        if state.at_risk_truncated:
            raise ValueError("drop_filter needs every at-risk key: analyse(keep_keys=True)")
        drop = set(state.at_risk_keys)

    def keep(keys, values):
        pairs = [(k, v) for k, v in zip(keys, values) if leading_user_key(v) not in drop]
        return [k for k, _ in pairs], [v for _, v in pairs]
    return keep
