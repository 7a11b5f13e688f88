"""Salvage beyond the reachable tree: records the damage cut off but the file still holds.

``repair`` first walks the committed tree (:mod:`boltfix.walk`).  What that
walk could not reach is often still intact on unreachable pages.  This
module decides, page by page and record by record, what of it is *proven*
to belong in a bucket of the output, and keeps everything else as evidence
for a separate lost+found file (never the output).  The rules, each backed
by an invariant of bbolt or etcd:

rule 1  a pruned branch element with a trusted key.  bbolt's ``node.write``
        / ``node.spill`` set a branch element's key to its child's first
        key (``inode.key = child.inodes[0].key``).  An unreachable page whose
        header id is its own position, whose first key equals the element's
        key and whose records fit the element's range is that child, if the
        element's *pointer* is what broke (past the high-water mark, at a
        meta page, into a cycle, a second reference): the child was then
        never overwritten.  Placed only when exactly one such page exists,
        or all of them hold byte-identical records.  A page past the end of
        a truncated file, or destroyed at a valid position, is the child
        itself, gone: another page with its first key is an older copy,
        never used.
rule 2  a lost subtree's key range, with a synced freelist.  bbolt's
        ``tx.Check`` invariant: every page below the high-water mark is
        either reachable or on the freelist (``page N: unreachable
        unfreed``).  So a page neither reached nor free is in use by the
        committed tree; its subtree is current, and goes where its keys fit
        one pruned range of one bucket.  Such subtrees are placed when they
        prove the range: the one intact child behind a broken pointer, or
        the children of a destroyed (zeroed) branch tiling its range from
        the element's key without overlap.  Without a synced freelist (etcd),
        older copies of a range lie on free pages, so this proves nothing.
rule 3  etcd's ``key`` bucket.  A revision record is written once
        (server/storage/mvcc/kvstore_txn.go: ``storeTxnWrite.put`` writes
        ``revToBytes(rev)`` under a new main revision, ``delete`` writes a
        tombstone under a new one; nothing rewrites a revision key), and
        removed only by compaction (kvstore_compaction.go
        ``scheduleCompaction`` deletes the revisions ``key_index.go``
        ``compact`` does not keep).  So an intact revision on any
        unreachable page is the committed record, provided that
        (a) every copy agrees byte for byte, its KeyValue.mod_revision is
        its own main revision, (b) it was committed: its main revision is at
        most the highest one the committed tree reaches, or it lies inside a
        range a committed branch element claims (the rightmost element
        claims everything above its key; a lost bucket root, everything)
        -- a write transaction takes ``beginRev+1``, and a revision outside
        those may come from a transaction bbolt never committed, which etcd
        replays from its WAL and would write again -- and (c) no compaction removed it: above
        ``max(finishedCompactRev, scheduledCompactRev)`` nothing was
        removed; at or below it, only the newest revision of a user key
        survives, and not a tombstone below the point (``keyIndex.compact``;
        one exactly at it stays in etcd 3.5.15+, 3.6 and 3.7, whose
        ``doCompact`` stops at ``tomb >= atRev``), and a copy on
        a free page cannot show it was the one kept (the tombstone that
        ended its generation may be gone as well), so it is placed only if
        an old tree written *after* that compaction finished still holds
        it, or the next put of its generation lies above the point
        (``keyIndex.compact`` keeps exactly that one).  A leaf of such an
        old tree that shows pre-compaction content (a tombstone below the
        point, or two revisions of one user key at or below it) never
        vouches.  When no such tree survives (etcd's map freelist reuses
        free pages in Go map order, so which old trees a file keeps varies
        from run to run), the revisions at or below the point are evidence.
        And whatever the compaction point, a revision that an orphan leaf
        read whole spans (first key <= it <= last key) but lacks is never
        placed (``removed``): revisions are created in key order, so that
        leaf was written after something removed it, and only compaction
        removes a revision, for good.  Nothing else proves a revision at or
        below the point current: a tombstone carries no generation
        (``KeyValue{Key}`` only), a stale copy of a leaf holds the same
        bytes as the current one, and when no copy of ``meta`` survives
        nothing bounds the point (compaction writes no revision, only
        ``meta``'s two marks): those revisions are evidence.
rule 4  the root lost.  In an etcd file the ``key`` bucket is rebuilt by
        rule 3 (its records are recognised by content: revision keys
        holding ``mvccpb.KeyValue``) and an empty ``meta`` bucket is
        created (etcd creates it at start anyway; ``etcdutl snapshot
        restore`` needs it).  Other buckets' records cannot be proven
        current and go to lost+found: old root leaves on free pages hold
        *older* ``meta``, ``auth``, ``members`` (a stale
        ``consistent_index`` makes etcd replay its WAL twice).  In a generic
        file, bucket names no surviving page holds are unknown, so
        everything does.
rule 5  a page whose header id is not its position (a misdirected write or
        a copied page) is never placed: its records are evidence.
rule 6  a leaf whose keys are out of order keeps its longest strictly
        increasing run of keys (each key with its own value) for rule 3.

Everything arrives through :func:`~boltfix.salvage.inputs.inputs_from_walk`,
the one adapter between the walk and the rules.  Rule 3 is
:mod:`boltfix.salvage.revisions`; merging the plan into the repair stream
(and rule 5 there) :mod:`boltfix.salvage.merge`; the lost+found file
:mod:`boltfix.salvage.lostfound`.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from boltfix import findings as F
from boltfix import structs as S
from boltfix.etcdkeys import KEY_BUCKET, META_BUCKET, revision_bucket_guess
from boltfix.findings import Collector
from boltfix.leaves import Bucket, Tree
from boltfix.reader import DB, leaf_elements
from boltfix.salvage.inputs import Inputs, Pruned, orphans_of, root_lost_inputs
from boltfix.salvage.merge import Seen
from boltfix.salvage.plan import (
    RULE1,
    RULE2,
    Evidence,
    Placed,
    Plan,
    Subtree,
    bitmap,
    pages_of,
)
from boltfix.salvage.revisions import revision_leaf, rule_3
from boltfix.unreached import Orphan, orphan_children
from boltfix.walk import Walker


def etcd_by_content(db: DB, inp: Inputs) -> bool:
    """Rule 4: with the root lost, an etcd file is recognised by its ``key``
    bucket's content: a leaf whose every record is a revision key holding
    an ``mvccpb.KeyValue``."""
    return any(o.flags == S.LEAF_PAGE_FLAG and o.state != "bad-self-id"
               and revision_leaf(db, o)[1] for o in orphans_of(db, inp))


def plan_root_lost(db: DB) -> Plan | None:
    """Rule 4: the plan when no root page can be used (None: nothing found)."""
    inp = root_lost_inputs(db)
    plan = plan_salvage(db, inp, None, etcd_by_content(db, inp), root_lost=True)
    return plan if plan.extras or plan.evidence else None


def walk_subtree(db: DB, top: int, path: tuple, tree: Tree | None = None) -> Subtree:
    """An orphan subtree read with the walk's own machinery: every pointer,
    bound, cycle, self-id and key order checked as in the committed walk.
    Its own records only (sub-bucket entries are opened, not entered)."""
    problems = Collector(limit=0)
    w = Walker(db, problems, tree=tree)
    recs = list(w.records(Bucket(path=path or (b"?",), root=top, sequence=0)))
    pages = bitmap(w.reached)
    leaves = sorted({r.page for r in recs})
    return Subtree(top, path, recs, pages, problems.total, leaves)




def _fits(sub: Subtree, lo, hi) -> bool:
    if not sub.records:
        return False
    return (lo is None or sub.records[0].key >= lo) and (hi is None or sub.records[-1].key < hi)


def _same_records(a: Subtree, b: Subtree) -> bool:
    return len(a.records) == len(b.records) and all(
        x.key == y.key and x.flags == y.flags and bytes(x.value) == bytes(y.value)
        for x, y in zip(a.records, b.records))


def plan_salvage(db: DB, inp: Inputs, seen: Seen | None, is_etcd: bool,
                 root_lost: bool = False, newer_lost: bool = False) -> Plan:
    """Decide what goes where.  ``seen`` is what the first pass wrote (None
    when the root was lost and nothing was walked).  ``newer_lost``: the
    tree is the older meta's (the newest one's root is unusable), so the
    newest transaction's pages lie unreached even when nothing was pruned:
    no pointer claims them, so they are evidence (rules 1 and 2 need a
    pruned pointer; rule 3 still places what it proves)."""
    plan = Plan(root_lost=root_lost, etcd=is_etcd, tree=inp.tree)
    plan.facts["freelist"] = "synced" if inp.free is not None else "not synced or unreadable"
    for pg, path in sorted((seen.bad_pages if seen is not None else {}).items()):
        ev = Evidence(pg, "bad-self-id", [pg], likely=path,
                      why="reached by the tree, but the page's header id is not its position "
                          "(a misdirected write or a copied page): never placed (rule 5)")
        plan.evidence.append(ev)
    if not inp.pruned and not root_lost and not newer_lost:
        return plan
    if seen is not None and seen.bad_pages:
        # a copied page reached by the walk took the place of another page,
        # whose sub-bucket entries (subtrees with no range) died with it
        inp.unclaimed += len(seen.bad_pages)
    if inp.truncated:
        plan.gone.append({"pages": [db.pages_in_file, inp.hwm - 1],
                          "note": "past the end of the file"})
    orphans = orphans_of(db, inp)
    taken = bitmap(inp.reached)
    taken, used = _rule_1_and_2(db, inp, orphans, plan, taken, root_lost)
    if is_etcd:
        used |= rule_3(db, inp, orphans, plan, seen, taken, root_lost)
    _evidence(db, orphans, inp, used, plan, is_etcd)
    if newer_lost:
        _newer_evidence(db, inp, plan, is_etcd)
    for path, items in plan.extras.items():
        items.sort(key=lambda p: p.key)
        for a, b in zip(items, items[1:]):
            assert a.key < b.key, "salvage placed one key twice"  # rules exclude it
    return plan


def _rule_1_and_2(db, inp: Inputs, orphans, plan: Plan, taken: int, root_lost: bool):
    """Reattach whole subtrees (rules 1 and 2); returns (pages taken, orphans used)."""
    used = set()
    if root_lost:
        return taken, used
    first_index = defaultdict(list)
    for o in orphans:
        if o.first is not None and (o.state == "unreached"
                                    or (o.state == "free" and inp.free is None)):
            first_index[o.first].append(o)
    for pr in inp.pruned:
        if not pr.exact:
            continue
        if not pr.broken_pointer or pr.key is None:
            continue
        cands = [walk_subtree(db, o.pgid, pr.bucket, inp.tree) for o in first_index.get(pr.key, ())
                 if o.pgid != pr.page]
        cands = [s for s in cands if _fits(s, pr.lo, pr.hi) and not s.pages & taken]
        if not cands or not all(_same_records(cands[0], s) for s in cands[1:]):
            if cands:
                plan.facts.setdefault("rule 1 ambiguous", []).append(pr.page)
            continue
        sub = cands[0]
        taken |= sub.pages
        used.update(pages_of(sub.pages))
        _place_subtree(db, plan, sub, RULE1)
    if inp.free is None:
        return taken, used
    # rule 2: the tops of in-use unreached subtrees (referenced by no other
    # orphan page, through a branch element or a sub-bucket's value)
    inuse = [o for o in orphans if o.state == "unreached"]
    referenced = {c for o in inuse for c in orphan_children(db, o)}
    tops = [o for o in inuse if o.pgid not in referenced and o.pgid not in used]
    fitting = defaultdict(list)  # range index -> subtrees that fit it
    ranges_of = Counter()  # top page -> how many ranges it fits
    walked = [walk_subtree(db, o.pgid, (), inp.tree) for o in tops]  # once each: keys decide
    walked = [t for t in walked if t.records and not t.pages & taken
              and not any(p in inp.free for p in pages_of(t.pages))]
    for i, pr in enumerate(p for p in inp.pruned if p.exact):
        for t in walked:
            if _fits(t, pr.lo, pr.hi):
                sub = Subtree(t.top, pr.bucket, t.records, t.pages, t.problems, t.leaves)
                fitting[i].append((pr, sub))
                ranges_of[t.top] += 1
    for i, pairs in fitting.items():
        pr = pairs[0][0]
        subs = sorted((s for _, s in pairs), key=lambda s: s.records[0].key)
        if any(ranges_of[s.top] != 1 or s.pages & taken for s in subs) or \
                not _proves_range(pr, subs, inp):
            continue
        for sub in subs:
            taken |= sub.pages
            used.update(pages_of(sub.pages))
            _place_subtree(db, plan, sub, RULE2)
    return taken, used


def _proves_range(pr: Pruned, subs: list[Subtree], inp: Inputs) -> bool:
    """Rule 2's shape test: in-use subtrees that fit the range are its
    content when either the pointer broke (the one real child or root is
    intact: exactly one fits), or the page at a valid position is destroyed
    (a zeroed branch) and its children tile the range from its own key: the
    first starts exactly at the element's key (bbolt: a branch key is its
    child's first key), and they do not overlap.  Sub-bucket roots whose
    entries died with a destroyed leaf fit no such shape, except by chance
    of their keys."""
    if inp.unclaimed and pr.lo is None and pr.hi is None:
        return False  # a subtree lost with no range would fit an open one too
    if pr.broken_pointer or pr.code == F.INVALID_PAGE_TYPE and pr.page < 2:
        return len(subs) == 1
    if pr.key is None or subs[0].records[0].key != pr.key:
        return False
    return all(a.records[-1].key < b.records[0].key for a, b in zip(subs, subs[1:]))


def _place_subtree(db: DB, plan: Plan, sub: Subtree, rule: str) -> None:
    w = Walker(db, tree=plan.tree)
    parent = Bucket(path=sub.path, root=sub.top, sequence=0)
    items = plan.extras.setdefault(sub.path, [])
    for r in sub.records:
        child = w.open_bucket(parent, r) if r.is_bucket else None
        if r.is_bucket and child is None:
            continue
        items.append(Placed(r.key, r.value, r.flags, r.page, rule, child))
        plan.counts[(sub.path, rule)] += 1


def _reached(w: Walker, pgid: int) -> bool:
    """The walker reached page ``pgid`` (its map stops at its high-water mark)."""
    return pgid < len(w.reached) and bool(w.reached[pgid])


def _evidence(db, orphans, inp: Inputs, used: set, plan: Plan, is_etcd: bool) -> None:
    """Every orphan subtree (or page) nothing placed, as lost+found evidence.

    One walker for all of them, its page map starting from the committed
    tree's and the pages placed: each page is evidence at most once, and a
    stale branch pointing at live pages does not copy them in."""
    referenced = set()
    for o in orphans:
        if o.state != "bad-self-id":
            referenced.update(orphan_children(db, o))
    w = Walker(db, Collector(limit=0), tree=inp.tree)
    w.reached[:] = bytes(inp.reached)[:len(w.reached)].ljust(len(w.reached), b"\0")
    for p in used:
        if p < len(w.reached):
            w.reached[p] = 1
    for o in orphans:
        if o.state == "bad-self-id":
            ev = Evidence(o.pgid, o.state, why="the page's header id is not its position "
                          "(a misdirected write or a copied page): never placed (rule 5)")
            ev.records = _raw_records(db, o)
            ev.lo, ev.hi = _span(ev.records)
            plan.evidence.append(ev)
            continue
        if _reached(w, o.pgid) or o.pgid in referenced:
            continue
        recs = list(w.records(Bucket(path=(b"?",), root=o.pgid, sequence=0)))
        if not recs:
            continue
        sub = Subtree(o.pgid, (b"?",), recs, 0, 0, sorted({r.page for r in recs}))
        plan.evidence.append(Evidence(
            o.pgid, o.state, sub.leaves, lo=recs[0].key, hi=recs[-1].key,
            likely=_likely_bucket(sub, is_etcd),
            why="not proven to be the current version of any bucket's range"))
    for o in orphans:  # leaves no surviving subtree walk reached
        if o.flags == S.LEAF_PAGE_FLAG and o.state != "bad-self-id" and not _reached(w, o.pgid):
            ev = Evidence(o.pgid, o.state, [o.pgid], why="an orphan leaf no subtree reaches")
            plan.evidence.append(ev)


def _newer_evidence(db: DB, inp: Inputs, plan: Plan, is_etcd: bool) -> None:
    """The pages of a lost newest transaction at or above the older tree's
    high-water mark (and below the newest valid meta's, inside the file):
    evidence only.  No rule uses them -- rule 2's "reached or free"
    invariant holds below the walked tree's own high-water mark only -- but
    a valid meta committed them, so what they hold is kept apart."""
    newer = max((m.pgid for m in db.metas if m.valid), default=0)
    limit = min(newer, db.pages_in_file)
    if limit <= inp.page_limit or inp.tree is None:
        return
    reached = bytes(inp.reached)[:limit].ljust(limit, b"\0")
    marks = bytearray(reached)
    marks[:inp.page_limit] = b"\1" * inp.page_limit  # below: handled by _evidence
    wide = Inputs(reached=bytes(marks), pruned=[], free=None, hwm=newer, page_limit=limit,
                  truncated=False, tree=Tree(inp.tree.root, inp.tree.sequence, newer))
    _evidence(db, orphans_of(db, wide), wide, set(), plan, is_etcd)


def _raw_records(db: DB, o: Orphan) -> list[tuple[bytes, bytes]]:
    end = min((o.pgid + 1) * db.page_size, db.size)
    out = []
    if o.flags == S.LEAF_PAGE_FLAG:
        for _, _, k, v, t in leaf_elements(db.buf, o.pgid * db.page_size, o.count, end):
            if not t:
                out.append((k, bytes(v)))
    return out


def _span(records):
    keys = [k for k, _ in records]
    return (min(keys), max(keys)) if keys else (None, None)


def _likely_bucket(sub: Subtree, is_etcd: bool) -> tuple | None:
    keys = [r.key for r in sub.records]
    if not keys:
        return None
    if is_etcd and all(revision_bucket_guess(k) for k in keys):
        return KEY_BUCKET
    if is_etcd and b"consistent_index" in keys:
        return META_BUCKET
    if all(r.is_bucket for r in sub.records):
        return ()
    return None
