"""Rule 3: revisions of etcd's ``key`` bucket from unreachable leaves, and
what of that bucket is truly gone (see :mod:`boltfix.salvage`)."""

from __future__ import annotations

import bisect
from collections import defaultdict

from boltfix import etcd
from boltfix import structs as S
from boltfix.etcdkeys import (
    KEY,
    KEY_BUCKET,
    META,
    META_BUCKET,
    is_tombstone,
    main_revision,
    revision_bucket_guess,
)
from boltfix.findings import Finding
from boltfix.leaves import Bucket, sure_increasing
from boltfix.reader import DB, leaf_elements
from boltfix.salvage.inputs import Inputs
from boltfix.salvage.plan import MAX_GAP_SCAN, RULE3, RULE3_ROOT, Evidence, Placed, Plan, has_page
from boltfix.unreached import Orphan, orphan_end
from boltfix.walk import Walker


def revision_leaf(db: DB, o: Orphan):
    """(records, all revision-shaped) of an orphan leaf: its checked
    elements whose keys lie on every longest increasing run (rule 6), each
    as (key, value, consistent); consistent: a put's KeyValue.mod_revision
    is its own main revision (kvstore_txn.go storeTxnWrite.put)."""
    els = [(k, v, f) for _, f, k, v, t in leaf_elements(
        db.buf, o.pgid * db.page_size, o.count, orphan_end(db, o)) if not t]
    keep = sure_increasing([k for k, _, _ in els])
    recs = []
    for i in sorted(keep):
        k, v, f = els[i]
        if f or not revision_bucket_guess(k):
            return [], False
        kv = etcd.decode_key_value(bytes(v))
        if "error" in kv or (len(k) == 17 and not kv["key"]):
            return [], False  # etcd.check_key_record's rules: etcd cannot load it
        recs.append((k, v, len(k) != 17 or kv["mod_revision"] == main_revision(k)))
    return recs, bool(recs)


def rule_3(db, inp: Inputs, orphans, plan: Plan, seen, taken: int, root_lost: bool) -> set:
    """Revisions of etcd's ``key`` bucket from unreachable leaves (rule 3)."""
    compact, compact_from = _compact_point(db, orphans, root_lost, inp.tree)
    bound = _committed_bound(inp, seen, plan)
    plan.facts.update({"compact_revision": compact, "compact_revision_from": compact_from,
                       "committed_revision": bound})
    claims = [(pr.lo, pr.hi) for pr in inp.pruned if pr.bucket == KEY_BUCKET and pr.exact]
    copies = defaultdict(list)  # revision key -> [(value bytes, page)]
    inconsistent = set()
    used = set()
    spans = []  # (first, last, page) of leaves read whole
    for o in orphans:
        if o.state == "bad-self-id" or o.flags != S.LEAF_PAGE_FLAG:
            continue
        if has_page(taken, o.pgid):
            continue
        recs, ok = revision_leaf(db, o)
        if not ok:
            continue
        used.add(o.pgid)
        if len(recs) == o.count:  # every element kept: its span says what it lacks
            spans.append((recs[0][0], recs[-1][0], o.pgid))
        for k, v, consistent in recs:
            copies[k].append((v, o.pgid))  # a view of the map: no copy
            if not consistent:
                inconsistent.add(k)
    removed = _removed(copies, spans)
    plan.facts["removed_revisions"] = len(removed)
    if removed and compact is not None and compact_from != "committed tree":
        # a removed revision was at or below some compaction point: a
        # sounder lower bound than the surviving copies of meta alone
        compact = max(compact, max(main_revision(k) for k in removed))
        plan.facts["compact_revision"] = compact
    rule = RULE3_ROOT if bound is None else RULE3
    succ = _successors(db, copies, compact, bound, seen, root_lost, inp.tree)
    kept_low = _kept_by_old_trees(db, orphans, compact, copies, inp.tree)
    plan.facts["old_trees_after_compaction"] = len(kept_low[1])
    kept_low = kept_low[0]
    bad = defaultdict(list)
    items = plan.extras.setdefault(KEY_BUCKET, [])
    already = {p.key for p in items}
    for k in sorted(copies):
        vs = copies[k]
        value, page = vs[0]
        why = None
        if any(v != value for v, _ in vs[1:]):
            why = "conflict"  # (a) copies of one revision disagree
        elif k in removed:
            # a leaf whose keys span this revision lacks it: removed before
            # that leaf was written, and removals are permanent
            why = "removed"
        elif k in inconsistent:
            # a put's KeyValue.mod_revision is its own main revision
            # (kvstore_txn.go storeTxnWrite.put: ModRevision: rev)
            why = "inconsistent"
        elif bound is not None and main_revision(k) > bound and not any(
                (lo is None or k >= lo) and (hi is None or k < hi) for lo, hi in claims):
            # (b) above the committed revision and in no range a committed
            # branch element claims (the rightmost one claims all above it)
            why = "uncommitted"
        elif compact is None:
            why = "compaction-unknown"
        elif main_revision(k) <= compact and k not in kept_low and \
                not _kept_by_compaction(k, value, succ):
            # (c) at or below the compaction point, compaction kept only the
            # newest revision of each user key, and removed a tombstone with
            # everything before it; a free page's copy alone cannot show it
            # was the one kept (the tombstone that ended it may be gone too)
            why = "compacted"
        if why is None and k in already:
            continue
        if why:
            bad[why].append((k, vs))
            continue
        items.append(Placed(k, value, 0, page, rule))
        plan.counts[(KEY_BUCKET, rule)] += 1
    for why, entries in bad.items():
        ev = Evidence(entries[0][1][0][1], why, likely=KEY_BUCKET,
                      why=_WHY[why], lo=entries[0][0], hi=entries[-1][0])
        ev.records = [(k, v) for k, vs in entries for v, _ in vs[:1]]
        plan.evidence.append(ev)
    if not items:
        del plan.extras[KEY_BUCKET]
    elif root_lost or (seen is not None and KEY_BUCKET not in seen.paths):
        plan.extras.setdefault((), []).append(
            Placed(KEY, b"", S.BUCKET_LEAF_FLAG, 0, rule,
                   Bucket(path=KEY_BUCKET, root=0, sequence=0), new_bucket=True))
        if root_lost:
            # An empty `meta` bucket, no record in it: every etcd creates it
            # at start (UnsafeCreateMetaBucket), and etcdutl 3.5's snapshot
            # restore writes consistent_index into it without creating it.
            plan.extras[()].append(
                Placed(META, b"", S.BUCKET_LEAF_FLAG, 0, rule,
                       Bucket(path=META_BUCKET, root=0, sequence=0), new_bucket=True))
    _revision_gaps(plan, inp, compact, bound, items, seen)
    return used


def _removed(copies, spans) -> set:
    """Revision keys that some leaf read whole spans (first <= key <= last)
    but does not hold.  Revisions are created in key order (a write takes
    main revision ``currentRev+1``, its records sub 0, 1, ...:
    kvstore_txn.go), so when a leaf holding ``last`` was written, every
    revision below ``last`` already existed; a leaf written as bbolt's
    ``node.write`` writes it holds every key of its range that the bucket
    held at that moment.  One lacking a revision inside its range was
    written after something removed it -- only compaction removes a
    revision (kvstore_compaction.go), and nothing writes it again -- so the
    revision is not current, whatever the compaction point.  Counted by a
    sweep: the leaves spanning a key, against the leaves holding it."""
    if not spans:
        return set()
    firsts = sorted(f for f, _, _ in spans)
    lasts = sorted(la for _, la, _ in spans)
    whole = {pg for _, _, pg in spans}
    out = set()
    for k, vs in copies.items():
        spanning = bisect.bisect_right(firsts, k) - bisect.bisect_left(lasts, k)
        if spanning > sum(1 for _, pg in vs if pg in whole):
            out.add(k)
    return out


def _successors(db, copies, compact, bound, seen, root_lost, tree) -> set:
    """(user key, create_revision, version) of every put above the
    compaction point that is proven: found copies that agree and are
    committed, and (when the tree survives) the tree's own records."""
    out = set()
    if not compact or not any(main_revision(k) <= compact for k in copies):
        return out

    def add(key, value):
        if len(key) == 17 and main_revision(key) > compact:
            kv = etcd.decode_key_value(value)
            if "error" not in kv:
                out.add((kv["key"], kv["create_revision"], kv["version"]))

    for k, vs in copies.items():
        if all(v == vs[0][0] for v, _ in vs) and (bound is None or main_revision(k) <= bound):
            add(k, vs[0][0])
    if not root_lost and seen is not None and KEY_BUCKET in seen.paths:
        w = Walker(db, tree=tree)
        top = w.root_bucket()
        key_bucket = next((r.child for r in w.records(top) if r.key == KEY and r.is_bucket),
                          None) if top is not None else None
        if key_bucket is not None:
            for page, _, _, keys, values in Walker(db, tree=tree)._leaves(key_bucket):
                if keys and main_revision(keys[-1]) > compact:
                    for k, v in zip(keys, values):
                        add(k, bytes(v))
    return out


def _kept_by_old_trees(db, orphans, compact, copies, tree):
    """Revision keys at or below the compaction point that an older,
    surviving tree holds *after* that compaction finished: an old root leaf
    whose inline ``meta`` says finishedCompactRev == scheduledCompactRev ==
    the compaction point.  etcd deletes the compacted revisions before it
    writes finishedCompactRev (kvstore_compaction.go: the last batch and
    the finished mark share one transaction), so such a tree's revisions at
    or below the point are the ones compaction kept.  Returns (keys, the
    roots of the trees that vouched for at least one revision: a tree whose
    `key` pages were reused since vouches for nothing)."""
    keys, roots = set(), []
    if not compact or not any(main_revision(k) <= compact for k in copies):
        return keys, roots
    for o in orphans:
        if o.state == "bad-self-id" or o.flags != S.LEAF_PAGE_FLAG:
            continue
        marks = dict(_meta_records(db, o))
        if not (len(marks.get(b"finishedCompactRev", b"")) >= 8
                and marks.get(b"finishedCompactRev") == marks.get(b"scheduledCompactRev")
                and main_revision(marks[b"finishedCompactRev"]) == compact):
            continue
        w = Walker(db, tree=tree)
        root = Bucket(path=(), root=o.pgid, sequence=0)
        entry = next((r for r in w.records(root) if r.key == KEY and r.is_bucket), None)
        child = w.open_bucket(root, entry) if entry is not None else None
        if child is None:
            continue
        vouched = False
        for _, _, _, ks, vs in Walker(db, tree=tree)._leaves(child):
            low = [(k, v) for k, v in zip(ks, vs) if main_revision(k) <= compact]
            if low and not _pre_compaction(low, compact):
                keys.update(k for k, _ in low)
                vouched = True
        if vouched:
            roots.append(o.pgid)
    return keys, roots


def _pre_compaction(low, compact: int) -> bool:
    """Whether a leaf's revisions at or below the compaction point (``low``:
    (revision key, value)) show it was written before that compaction
    finished, so it never vouches for a revision.  After ``keyIndex.compact``
    (key_index.go) each user key keeps at most one revision at or below the
    point: the newest of the one generation that goes on past it, or ends
    exactly at it.  Earlier generations go whole, and so does a generation
    whose tombstone lies below the point.  A tombstone *at* the point stays
    in etcd 3.5.15+, 3.6 and 3.7 (``doCompact``: ``tomb >= atRev`` stops
    there, and ``compact`` keeps ``revs[revIndex:]``, the tombstone); older
    etcd (``tomb > atRev``) drops it too, so a compacted tree can hold one
    only if the etcd that compacted kept it.  A page an old tree points at
    may have been rewritten since, or damaged: this is what it must hold."""
    users = set()
    for k, v in low:
        if is_tombstone(k) and main_revision(k) == compact:
            kv = etcd.decode_key_value(bytes(v))  # KeyValue{Key}: the user key it ends
        elif len(k) == 17:
            kv = etcd.decode_key_value(bytes(v))
        else:
            return True  # a tombstone below the point, or not a revision at all
        if "error" in kv or kv["key"] in users:
            return True
        users.add(kv["key"])
    return False


def _kept_by_compaction(key: bytes, value: bytes, succ: set) -> bool:
    """A put at or below the compaction point that compaction provably kept:
    the next put of its generation (same create_revision, version + 1) lies
    above the compaction point.  keyIndex.compact (key_index.go) keeps the
    newest revision at or below the point of each generation that goes on
    past it, and a generation cannot go on past a tombstone."""
    if len(key) != 17:
        return False
    kv = etcd.decode_key_value(value)
    if "error" in kv:
        return False
    return (kv["key"], kv["create_revision"], kv["version"] + 1) in succ


_WHY = {
    "conflict": "copies of these revisions disagree byte for byte",
    "inconsistent": "the KeyValue's mod_revision is not its own revision key's",
    "uncommitted": "above the highest revision the committed tree proves; may come from "
                   "a transaction bbolt never committed (etcd replays it from its WAL)",
    "compacted": "at or below the compaction point and not provably the one revision "
                 "of its user key that compaction keeps",
    "removed": "a leaf whose keys span this revision lacks it: a compaction removed it "
               "before that leaf was written (nothing writes a revision again)",
    "compaction-unknown": "no copy of the meta bucket with a compaction mark survives, so "
                          "whether a compaction removed these revisions cannot be told",
}


def _committed_bound(inp: Inputs, seen, plan: Plan) -> int | None:
    """The highest main revision the committed tree proves: its last ``key``
    record, and the keys pruned branch elements of ``key`` claim (each is a
    committed child's first key, or the next sibling's).  None when no part
    of the committed ``key`` tree survives (the root was lost)."""
    keys = [seen.key_last] if seen is not None and seen.key_last else []
    keys += [k for pr in inp.pruned if pr.bucket == KEY_BUCKET for k in (pr.lo, pr.hi) if k]
    keys += [p.key for p in plan.extras.get(KEY_BUCKET, ())]
    mains = [main_revision(k) for k in keys if len(k) >= 8]
    return max(mains) if mains else None


def _compact_point(db: DB, orphans, root_lost: bool, tree) -> tuple[int | None, str]:
    """max(finishedCompactRev, scheduledCompactRev): from the committed
    tree's ``meta`` bucket when the walk lost nothing of it (absent keys:
    never compacted, 0); else the highest that any surviving copy of
    ``meta`` holds, a lower bound only (the report says so); None when no
    copy of ``meta`` survives, or none holds a compaction mark: such copies
    predate every compaction, so they bound nothing (an etcd that never
    compacted is rare: Kubernetes compacts every five minutes)."""
    best, found, marked = 0, False, False
    if not root_lost:
        lost_meta = []  # a finding inside `meta`: its marks may be what was lost

        def note(f: Finding) -> None:
            if tuple(f.bucket)[:1] == META_BUCKET:
                lost_meta.append(f.code)

        w = Walker(db, note, tree=tree)
        for bucket, rec in w.walk():
            if not bucket.path and rec.key == META:
                found = True
            if bucket.path == META_BUCKET and rec.key in _COMPACT_KEYS and len(rec.value) >= 8:
                best = max(best, main_revision(bytes(rec.value)))
        if found and not lost_meta:
            return best, "committed tree"
        best, found = 0, False
    for o in orphans:
        if o.state == "bad-self-id" or o.flags != S.LEAF_PAGE_FLAG:
            continue
        for k, v in _meta_records(db, o):
            found = True
            if k in _COMPACT_KEYS and len(v) >= 8:
                best = max(best, main_revision(v))
                marked = True
    if found and marked:
        return best, "surviving copies of meta (a lower bound)"
    return None, "unknown" if not found else "unknown: no surviving copy of meta holds a mark"


_COMPACT_KEYS = (b"finishedCompactRev", b"scheduledCompactRev")


def _meta_records(db: DB, o: Orphan):
    """Records of a ``meta`` bucket on an orphan page: a leaf of it, or an
    inline ``meta`` bucket inside an old root leaf."""
    for _, f, k, v, t in leaf_elements(db.buf, o.pgid * db.page_size, o.count, orphan_end(db, o)):
        if t:
            continue
        if k in _COMPACT_KEYS and not f:
            yield k, bytes(v)
        elif k == b"consistent_index" and not f:
            yield k, bytes(v)  # a leaf of a paged meta bucket
        elif k == META and f & S.BUCKET_LEAF_FLAG and len(v) >= 32 and \
                S.BUCKET_HEADER.unpack_from(v, 0)[0] == 0:
            inline = v[S.BUCKET_HEADER_SIZE:]
            _, fl, cnt, _ = S.PAGE_HEADER.unpack_from(inline, 0)
            if fl == S.LEAF_PAGE_FLAG:
                yield META, b""  # an inline meta bucket in an old root leaf
                for _, f2, k2, v2, t2 in leaf_elements(inline, 0, cnt, len(inline)):
                    if not t2 and not f2 and k2 in _COMPACT_KEYS:
                        yield k2, bytes(v2)


def _revision_gaps(plan: Plan, inp: Inputs, compact: int, bound, items, seen) -> None:
    """What is truly gone from ``key``: main revisions above the compaction
    point that a pruned range claimed and no rule restored (above the
    compaction point every main revision has a record)."""
    have = {main_revision(p.key) for p in items}
    for pr in inp.pruned:
        if pr.bucket != KEY_BUCKET:
            continue
        lo = max(main_revision(pr.lo) if pr.lo else 1, (compact or 0) + 1)
        hi = main_revision(pr.hi) if pr.hi else (bound if bound is not None else lo)
        if pr.hi:
            hi = hi if pr.hi[9:] != bytes(8) else hi - 1
        if hi - lo > MAX_GAP_SCAN:
            plan.gone.append({"bucket": "key", "page": pr.page, "revisions": [lo, hi],
                              "note": "range too large to itemise"})
            continue
        start = None
        for m in range(lo, hi + 1):
            if m not in have and start is None:
                start = m
            elif m in have and start is not None:
                plan.gone.append({"bucket": "key", "page": pr.page, "revisions": [start, m - 1]})
                start = None
        if start is not None:
            plan.gone.append({"bucket": "key", "page": pr.page, "revisions": [start, hi]})
