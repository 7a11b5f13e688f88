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
        or all of them hold byte-identical records.
rule 2  a lost subtree's key range, with a synced freelist.  bbolt's
        ``tx.Check`` invariant: every page below the high-water mark is
        either reachable or on the freelist (``page N: unreachable
        unfreed``).  So a page neither reached nor free is in use by the
        committed tree; its subtree is current, and goes where its keys fit
        one pruned range of one bucket.  Without a synced freelist (etcd),
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
        survives, and not a tombstone (``keyIndex.compact``), and a copy on
        a free page cannot show it was the one kept (the tombstone that
        ended its generation may be gone as well), so it is never placed.
rule 4  the root lost.  In an etcd file the ``key`` bucket is rebuilt by
        rule 3 (its records are recognised by content: revision keys
        holding ``mvccpb.KeyValue``).  Other buckets' records cannot be
        proven current and go to lost+found; in a generic file, bucket
        names no surviving page holds are unknown, so everything does.
rule 5  a page whose header id is not its position (a misdirected write or
        a copied page) is never placed: its records are evidence.
rule 6  a leaf whose keys are out of order keeps its longest strictly
        increasing run of keys (each key with its own value) for rule 3.

Everything arrives through :func:`inputs_from_walk`, the one adapter between
the walk and the rules.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from boltfix import etcd
from boltfix import structs as S
from boltfix.check import Collector
from boltfix.errors import BoltError, Finding
from boltfix.pagemap import PageMap, positions
from boltfix.reader import DB
from boltfix.reader import branch_elements as _branch_elements
from boltfix.reader import leaf_elements as _leaf_elements
from boltfix.walk import Batch, Bucket, Record, Tree, Walker, sure_increasing

# walk findings that prune a pointer: the subtree behind it was not walked
POINTER_CODES = frozenset({"page-out-of-bounds", "page-past-eof", "page-cycle",
                           "multiple-references", "invalid-page-type", "branch-empty"})
# findings that lose a subtree without a pointer range: its pages are
# in-use orphans that belong to a bucket no range names
UNCLAIMED_CODES = frozenset({"bucket-value-short", "inline-bucket-malformed",
                             "root-entry-not-bucket", "key-too-long"})
# of those, the ones where the pointer itself is broken, so the real child
# was never overwritten and may be found elsewhere (rule 1).  A page past the
# end of a truncated file, or a damaged page at a valid position, is the
# child itself, gone: another page with its first key is an older copy.
BROKEN_POINTER = frozenset({"page-out-of-bounds", "page-cycle", "multiple-references"})

KEY_BUCKET = (b"key",)
RULE1, RULE2, RULE3 = "rule 1", "rule 2", "rule 3"
RULE3_ROOT = "rule 3 (no committed bound)"  # no part of the committed `key` tree survives
MAX_EVIDENCE_RECORDS = 1_000_000  # per lost+found file
MAX_GAP_SCAN = 10_000_000  # revisions scanned per range when reporting what is gone


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Pruned:
    """One pointer the walk did not follow, and what it claimed."""

    page: int
    parent: int | None  # the branch page holding the element; None: a bucket root
    bucket: tuple
    lo: bytes | None  # the range [lo, hi) its ancestors allow
    hi: bytes | None
    code: str
    key: bytes | None = None  # the element's own key, when it was trusted
    exact: bool = True  # both bounds known exactly (or truly open)

    @property
    def broken_pointer(self) -> bool:
        return self.code in BROKEN_POINTER or (self.code == "invalid-page-type"
                                               and self.page < 2)


@dataclass
class Inputs:
    """What the rules need from the walk (see :func:`inputs_from_walk`)."""

    reached: bytes  # one byte per page, nonzero: the committed tree reached it
    pruned: list[Pruned]
    free: frozenset | None  # synced freelist ids, None when not synced/unreadable
    hwm: int
    page_limit: int
    truncated: bool
    #: the tree repair walked (its high-water mark bounds every walk here)
    tree: Tree | None = None
    unclaimed: int = 0  # subtrees lost without a range (a malformed bucket entry)
    mismatch: int = 0  # pages the walk followed whose header id is not their position


class Watch:
    """The walk's report callable during repair: forwards every finding to
    ``collector`` and keeps the pruned pointers (however many the
    collector itself keeps)."""

    def __init__(self, collector=None):
        self.collector = collector
        self.pruned: list[Finding] = []
        self.unclaimed = 0
        self.mismatch = 0

    def __call__(self, finding: Finding) -> None:
        if self.collector is not None:
            self.collector(finding)
        if finding.code in POINTER_CODES:
            self.pruned.append(finding)
        elif finding.code in UNCLAIMED_CODES:
            self.unclaimed += 1
        elif finding.code == "page-id-mismatch":
            # a copied page followed by the walk: its overflow run or
            # sub-buckets may have claimed pages of others (so a later, real
            # pointer to them reads as a second reference), and the entries
            # of the page it replaced died with it
            self.unclaimed += 1
            self.mismatch += 1


def inputs_from_walk(db: DB, walker: Walker, watch: Watch, meta=None) -> Inputs:
    """The one adapter from the walk to the rules: the page map (what the
    tree reached, what the synced freelist lists: :class:`~boltfix.pagemap.PageMap`),
    pruned pointers with their exact key ranges.  ``meta``: the meta whose
    tree was walked (repair may use the other one than the meta in use)."""
    # rule 5: a pointer read from a page whose header id is not its position
    # (a copy of another page) claims nothing about this bucket
    parents: dict = {}  # the last parent branch page's elements, indexed once
    pruned = [_pruned(db, f, parents) for f in watch.pruned
              if all(_own_id(db, pg) for pg in f.pages)
              and not (watch.mismatch and f.code == "multiple-references")]
    pm = PageMap(db, walker)
    marks = pm.reach_list()  # per page: bit 0 in use by the tree, bit 1 listed free
    free = None
    if meta is None or meta is db.meta:
        if pm.freelist is not None and not pm.freelist.findings:
            free = frozenset(positions(marks, 2))  # listed, not in use
    elif meta.freelist_synced:  # the page map reads the meta in use's freelist
        free = _freelist_of(db, meta, walker.hwm)
    return Inputs(reached=marks.translate(_IN_USE), pruned=pruned, free=free, hwm=walker.hwm,
                  page_limit=min(walker.hwm, db.pages_in_file),
                  truncated=db.pages_in_file < walker.hwm, tree=walker.tree,
                  unclaimed=watch.unclaimed, mismatch=watch.mismatch)


_IN_USE = bytes(b & 1 for b in range(256))


def _freelist_of(db: DB, m, hwm: int) -> frozenset | None:
    """The ids a meta's synced freelist lists, None when it cannot be read cleanly."""
    if m.freelist >= min(hwm, db.pages_in_file):
        return None
    from boltfix.reader import read_freelist

    fl = read_freelist(db, db.page(m.freelist))
    return None if fl.findings else frozenset(fl.ids(db))


def _own_id(db: DB, pgid: int) -> bool:
    return 2 <= pgid < db.pages_in_file and \
        S.U64.unpack_from(db.buf, pgid * db.page_size)[0] == pgid


def _has_branch_key(db: DB, parent: int, child: int, key: bytes, parents: dict) -> bool:
    """Whether a sound element of branch page ``parent`` points at ``child``
    with ``key``.  The page's elements are indexed once, (child, hash of
    its key) -> element offsets (ints, no key copies: hostile pages hold GBs
    of overlapping keys), and only the last page asked for is kept; a page
    of 65,535 elements pointing at pruned children is then read once, not
    per child."""
    if parent not in parents:
        parents.clear()
        index: dict = {}
        p = db.page(parent)
        if p.flags == S.BRANCH_PAGE_FLAG and p.self_id == parent:
            for i, k, child_id, trouble in _branch_elements(db.buf, p.offset, p.count,
                                                            p.run_end):
                if not trouble:
                    index.setdefault((child_id, hash(k)), []).append(
                        p.offset + S.PAGE_HEADER_SIZE + i * S.BRANCH_ELEMENT_SIZE)
        parents[parent] = index
    for eoff in parents[parent].get((child, hash(key)), ()):
        pos, ksize, _ = S.BRANCH_ELEMENT.unpack_from(db.buf, eoff)
        if ksize == len(key) and db.buf[eoff + pos:eoff + pos + ksize] == key:
            return True
    return False


def _pruned(db: DB, f: Finding, parents: dict) -> Pruned:
    """A pruned-pointer finding with exact keys.  The finding's key_range is
    hex, shortened past 32 bytes: a shortened bound is unknown, and the
    pointer then takes part in no rule.  The element's own key is read back
    from its parent branch page with the reader's checked decoder; it counts
    as trusted when it is the range's lower bound (the walk bounds a child
    by its own key only when that key passed every check)."""
    rng = (f.detail or {}).get("key_range") or ["-", "-"]
    exact = not any("…" in (x or "") for x in rng)
    lo, hi = (_unhex(x) for x in rng)
    key = None
    parent = f.pages[-1] if f.pages else None
    if exact and lo is not None and parent is not None and 2 <= parent < db.pages_in_file:
        if _has_branch_key(db, parent, f.page, lo, parents):
            key = lo
    return Pruned(f.page, parent, tuple(f.bucket), lo, hi, f.code, key, exact)


def _unhex(x) -> bytes | None:
    if x in (None, "-") or "…" in x:
        return None
    try:
        return bytes.fromhex(x)
    except ValueError:
        return None


def root_lost_inputs(db: DB) -> Inputs:
    """Inputs when no tree could be walked at all: nothing reached, the
    high-water mark and freelist of the newest meta that is still valid."""
    m = max((m for m in db.metas if m.valid), key=lambda m: m.txid, default=None)
    hwm = m.pgid if m is not None else db.pages_in_file
    free = _freelist_of(db, m, hwm) if m is not None and m.freelist_synced else None
    return Inputs(reached=bytes(db.pages_in_file), pruned=[], free=free, hwm=hwm,
                  page_limit=min(hwm, db.pages_in_file), truncated=db.pages_in_file < hwm,
                  tree=Tree(0, 0, hwm))


def etcd_by_content(db: DB, inp: Inputs) -> bool:
    """Rule 4: with the root lost, an etcd file is recognised by its ``key``
    bucket's content: a leaf whose every record is a revision key holding
    an ``mvccpb.KeyValue``."""
    return any(o.flags == S.LEAF_PAGE_FLAG and o.state != "bad-self-id"
               and _revision_leaf(db, o)[1] for o in scan_orphans(db, inp))


def plan_root_lost(db: DB) -> Plan | None:
    """Rule 4: the plan when no root page can be used (None: nothing found)."""
    inp = root_lost_inputs(db)
    plan = plan_salvage(db, inp, None, etcd_by_content(db, inp), root_lost=True)
    return plan if plan.extras or plan.evidence else None


class Dedupe:
    """A report callable that drops findings ``collector`` already holds
    (the second writing pass meets the first pass's findings again)."""

    def __init__(self, collector):
        self.collector = collector
        self.known = set(collector.findings)

    def __call__(self, finding: Finding) -> None:
        if finding not in self.known:
            self.collector(finding)

    def __getattr__(self, name):
        return getattr(self.collector, name)


# ---------------------------------------------------------------- plan
@dataclass
class Placed:
    """One record salvaged into a bucket of the output."""

    key: bytes
    value: object  # bytes or memoryview
    flags: int
    page: int
    rule: str
    child: Bucket | None = None  # a sub-bucket entry: its tree, walked when written
    new_bucket: bool = False  # a bucket the tree lost entirely (root lost)


@dataclass
class Evidence:
    """Something found but not proven: one bucket of the lost+found file."""

    page: int
    state: str  # free, unreached, bad-self-id, conflict, uncommitted, compacted, ...
    leaves: list[int] = field(default_factory=list)
    records: list[tuple[bytes, bytes]] = field(default_factory=list)  # explicit records
    lo: bytes | None = None
    hi: bytes | None = None
    likely: tuple | None = None  # the bucket it most likely came from
    why: str = ""

    def to_json(self) -> dict:
        from boltfix.render import name_text

        return {"page": self.page, "state": self.state, "leaf_pages": self.leaves[:64],
                "records": len(self.records) or None,
                "key_range": [_hx(self.lo), _hx(self.hi)],
                "likely_bucket": None if self.likely is None
                else [name_text(b) for b in self.likely], "why": self.why}


#: an etcd file rebuilt without its root has an empty `meta` bucket: no
#: consistent_index.  Put back into its own data dir, etcd would re-apply
#: every WAL entry it still holds (server.go applyEntryNormal skips only
#: entries at or below consistent_index): writes the file already holds would
#: be applied twice, under new revisions (seen with the real etcd 3.4).  A
#: snapshot restore makes a new data dir and WAL, where nothing is replayed.
ETCD_SNAPSHOT_ONLY = ("restore it as a snapshot (etcdutl / etcdctl snapshot restore "
                      "--skip-hash-check) into a new data dir; do not put it back into "
                      "its own data dir: with no meta/consistent_index etcd would replay "
                      "its whole WAL and apply those writes a second time")


@dataclass
class Plan:
    root_lost: bool = False
    tree: Tree | None = None  # the tree repair walked (its high-water mark bounds walks)
    etcd: bool = False
    extras: dict[tuple, list[Placed]] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (bucket path, rule) -> records
    facts: dict = field(default_factory=dict)
    gone: list[dict] = field(default_factory=list)
    #: filled while writing: records skipped because the tree had the key
    duplicates: int = 0
    conflicts: list[tuple[tuple, bytes]] = field(default_factory=list)

    @property
    def placed(self) -> int:
        return sum(n for n in self.counts.values() if n > 0)

    def to_json(self) -> dict:
        from boltfix.render import name_text

        per = defaultdict(dict)
        for (path, rule), n in sorted(self.counts.items()):
            if n > 0:  # records the tree already held are not salvaged ones
                per["/".join(name_text(b) for b in path)][rule] = n
        out = {"root_lost": self.root_lost, "etcd": self.etcd, "salvaged": dict(per),
                "salvaged_records": self.placed, "facts": self.facts,
                "lost_found": [e.to_json() for e in self.evidence[:1000]],
                "lost_found_subtrees": len(self.evidence),
                "duplicates_of_tree": self.duplicates,
                "conflicts_with_tree": len(self.conflicts), "gone": self.gone[:1000]}
        if self.root_lost and self.etcd:
            out["etcd_restore"] = ETCD_SNAPSHOT_ONLY
        return out


class Seen:
    """What the first writing pass saw: every bucket path, the last key of
    etcd's ``key`` bucket (its highest committed revision), and the pages
    whose records rule 5 kept out."""

    def __init__(self, report=None):
        self.paths = set()
        self.key_last: bytes | None = None
        self.bad_pages: dict[int, tuple] = {}  # page -> bucket path
        self.report = report

    def observe(self, stream, db: DB):
        """The repair stream ``(bucket, item, etcd check, whole)`` (see
        ``repair._batches``) through rule 5, noting what it holds."""
        for bucket, item, check, whole in rule_5(stream, db, self._drop):
            self.paths.add(bucket.path)
            if whole:
                leaves, _start, stop = item
                if bucket.path == KEY_BUCKET and stop == len(leaves.pages):
                    self.key_last = leaves.last  # else a batch of its last page follows
            else:
                entry = item.bucket_entry
                if entry is not None and entry.child is not None:
                    self.paths.add(entry.child.path)
                if bucket.path == KEY_BUCKET and item.keys:
                    self.key_last = item.keys[-1]
            yield bucket, item, check, whole

    def _drop(self, bucket, batch) -> None:
        if batch.page not in self.bad_pages and self.report is not None:
            self.report(Finding(
                "page-records-not-placed",
                f"page {batch.page} identifies itself as another page (a misdirected "
                "write or a copied page): its records are kept out of the output "
                "(rule 5) and go to lost+found", page=batch.page, bucket=bucket.path))
        self.bad_pages.setdefault(batch.page, bucket.path)


def rule_5(stream, db: DB, on_drop=None):
    """The repair stream without the batches of pages whose header id is
    not their position, nor anything under a bucket entry on such a page.
    Whole pages pass: the C core takes a page only when its header id is
    its position (``_speedups.c``: else the walk reads it in Python)."""
    skip = None
    ok = None  # the last page that passed: a page's records come in a row
    for bucket, item, check, whole in stream:
        if skip is not None:
            if bucket.path[:len(skip)] == skip:
                continue
            skip = None
        if whole:
            yield bucket, item, check, whole
            continue
        if item.page == ok or self_id_ok(db, item):
            ok = item.page
            yield bucket, item, check, whole
            continue
        if on_drop is not None:
            on_drop(bucket, item)
        entry = item.bucket_entry
        if entry is not None and entry.child is not None:
            skip = entry.child.path


def self_id_ok(db: DB, batch: Batch) -> bool:
    """Rule 5: the batch's page (not an inline bucket's parent page) holds
    its own position in its header id.  bbolt asserts it on every page it
    reads (``Page expected to be: N, but self identifies as M``)."""
    pg = batch.page
    if pg < 2 or pg >= db.pages_in_file:
        return True
    return S.U64.unpack_from(db.buf, pg * db.page_size)[0] == pg


# ---------------------------------------------------------------- orphan pages
@dataclass
class Orphan:
    pgid: int
    flags: int
    count: int
    overflow: int
    state: str  # unreached | free | bad-self-id
    first: bytes | None = None


def scan_orphans(db: DB, inp: Inputs) -> list[Orphan]:
    """Every unreached page below the high-water mark (and inside the file)
    that claims to be a branch or leaf page.  Overflow runs of the pages
    kept are skipped."""
    out = []
    ps, buf, n, limit = db.page_size, db.buf, 2, inp.page_limit
    while n < limit:
        if inp.reached[n]:
            n += 1
            continue
        pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(buf, n * ps)
        if flags not in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG) or not count:
            n += 1
            continue
        if pid != n:
            out.append(Orphan(n, flags, count, 0, "bad-self-id"))  # rule 5
            n += 1
            continue
        state = "free" if inp.free is not None and n in inp.free else "unreached"
        o = Orphan(n, flags, count, overflow if n + overflow < limit else 0, state)
        o.first = _first_key(db, o)
        out.append(o)
        n += 1 + o.overflow
    return out


def _end(db: DB, o: Orphan) -> int:
    return min((o.pgid + 1 + o.overflow) * db.page_size, db.size)


def _first_key(db: DB, o: Orphan) -> bytes | None:
    off = o.pgid * db.page_size
    if o.flags == S.BRANCH_PAGE_FLAG:
        for _, key, _, trouble in _branch_elements(db.buf, off, o.count, _end(db, o)):
            return None if trouble else key
    else:
        for _, _, key, _, trouble in _leaf_elements(db.buf, off, o.count, _end(db, o)):
            return None if trouble else key
    return None


def _children(db: DB, o: Orphan) -> list[int]:
    """Pages an orphan points at: a branch's children, a leaf's sub-bucket roots."""
    off, end = o.pgid * db.page_size, _end(db, o)
    if o.flags == S.BRANCH_PAGE_FLAG:
        return [c for _, _, c, t in _branch_elements(db.buf, off, o.count, end) if not t]
    return [S.BUCKET_HEADER.unpack_from(v, 0)[0]
            for _, f, _, v, t in _leaf_elements(db.buf, off, o.count, end)
            if not t and f & S.BUCKET_LEAF_FLAG and len(v) >= S.BUCKET_HEADER_SIZE]


# ---------------------------------------------------------------- subtrees
@dataclass
class Subtree:
    top: int
    path: tuple
    records: list[Record]
    pages: int  # the pages it walked, as an int (byte n nonzero: page n)
    problems: int
    leaves: list[int]


def walk_subtree(db: DB, top: int, path: tuple, tree: Tree | None = None) -> Subtree:
    """An orphan subtree read with the walk's own machinery: every pointer,
    bound, cycle, self-id and key order checked as in the committed walk.
    Its own records only (sub-bucket entries are opened, not entered)."""
    problems = Collector(limit=0)
    w = Walker(db, problems, tree=tree)
    recs = list(w.records(Bucket(path=path or (b"?",), root=top, sequence=0)))
    pages = _bitmap(w.reached)
    leaves = sorted({r.page for r in recs})
    return Subtree(top, path, recs, pages, problems.total, leaves)


def _bitmap(reached) -> int:
    """A page map (one byte per page, nonzero: set) as an int, so that two
    maps intersect with one ``&``."""
    return int.from_bytes(bytes(reached).translate(_NONZERO), "little")


_NONZERO = bytes([0] + [1] * 255)


def _fits(sub: Subtree, lo, hi) -> bool:
    if not sub.records:
        return False
    return (lo is None or sub.records[0].key >= lo) and (hi is None or sub.records[-1].key < hi)


def _same_records(a: Subtree, b: Subtree) -> bool:
    return len(a.records) == len(b.records) and all(
        x.key == y.key and x.flags == y.flags and bytes(x.value) == bytes(y.value)
        for x, y in zip(a.records, b.records))


# ---------------------------------------------------------------- the planner
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
    orphans = scan_orphans(db, inp)
    taken = _bitmap(inp.reached)
    taken, used = _rule_1_and_2(db, inp, orphans, plan, taken, root_lost)
    if is_etcd:
        used |= _rule_3(db, inp, orphans, plan, seen, taken, root_lost)
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
        used.update(_pages_of(sub.pages))
        _place_subtree(db, plan, sub, RULE1)
    if inp.free is None:
        return taken, used
    # rule 2: the tops of in-use unreached subtrees (referenced by no other
    # orphan page, through a branch element or a sub-bucket's value)
    inuse = [o for o in orphans if o.state == "unreached"]
    referenced = {c for o in inuse for c in _children(db, o)}
    tops = [o for o in inuse if o.pgid not in referenced and o.pgid not in used]
    fitting = defaultdict(list)  # range index -> subtrees that fit it
    ranges_of = Counter()  # top page -> how many ranges it fits
    walked = [walk_subtree(db, o.pgid, (), inp.tree) for o in tops]  # once each: keys decide
    walked = [t for t in walked if t.records and not t.pages & taken
              and not any(p in inp.free for p in _pages_of(t.pages))]
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
            used.update(_pages_of(sub.pages))
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
    if pr.broken_pointer or pr.code == "invalid-page-type" and pr.page < 2:
        return len(subs) == 1
    if pr.key is None or subs[0].records[0].key != pr.key:
        return False
    return all(a.records[-1].key < b.records[0].key for a, b in zip(subs, subs[1:]))


def _pages_of(bitmap: int) -> list[int]:
    """The pages set in a page map held as an int (one byte per page)."""
    raw = bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little")
    return [i for i, x in enumerate(raw) if x]


def _has(bitmap: int, pgid: int) -> bool:
    return bool((bitmap >> (8 * pgid)) & 0xFF)


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


# ---------------------------------------------------------------- rule 3
def _revision_leaf(db: DB, o: Orphan):
    """(records, all revision-shaped) of an orphan leaf: its checked
    elements whose keys lie on every longest increasing run (rule 6), each
    as (key, value, consistent); consistent: a put's KeyValue.mod_revision
    is its own main revision (kvstore_txn.go storeTxnWrite.put)."""
    els = [(k, v, f) for _, f, k, v, t in _leaf_elements(
        db.buf, o.pgid * db.page_size, o.count, _end(db, o)) if not t]
    keep = sure_increasing([k for k, _, _ in els])
    recs = []
    for i in sorted(keep):
        k, v, f = els[i]
        if f or not etcd.revision_bucket_guess(k):
            return [], False
        kv = etcd.decode_key_value(bytes(v))
        if "error" in kv or (len(k) == 17 and not kv["key"]):
            return [], False  # etcd.check_key_record's rules: etcd cannot load it
        recs.append((k, v, len(k) != 17 or kv["mod_revision"] == _main(k)))
    return recs, bool(recs)


def _main(key: bytes) -> int:
    return int.from_bytes(key[:8], "big")


def _rule_3(db, inp: Inputs, orphans, plan: Plan, seen, taken: int, root_lost: bool) -> set:
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
        if _has(taken, o.pgid):
            continue
        recs, ok = _revision_leaf(db, o)
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
        compact = max(compact, max(_main(k) for k in removed))
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
        elif bound is not None and _main(k) > bound and not any(
                (lo is None or k >= lo) and (hi is None or k < hi) for lo, hi in claims):
            # (b) above the committed revision and in no range a committed
            # branch element claims (the rightmost one claims all above it)
            why = "uncommitted"
        elif compact is None:
            why = "compaction-unknown"
        elif _main(k) <= compact and k not in kept_low and \
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
            Placed(b"key", b"", S.BUCKET_LEAF_FLAG, 0, rule,
                   Bucket(path=KEY_BUCKET, root=0, sequence=0), new_bucket=True))
        if root_lost:
            # An empty `meta` bucket, no record in it: every etcd creates it
            # at start (UnsafeCreateMetaBucket), and etcdutl 3.5's snapshot
            # restore writes consistent_index into it without creating it.
            plan.extras[()].append(
                Placed(b"meta", b"", S.BUCKET_LEAF_FLAG, 0, rule,
                       Bucket(path=(b"meta",), root=0, sequence=0), new_bucket=True))
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
    import bisect

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
    if not compact or not any(_main(k) <= compact for k in copies):
        return out

    def add(key, value):
        if len(key) == 17 and _main(key) > compact:
            kv = etcd.decode_key_value(value)
            if "error" not in kv:
                out.add((kv["key"], kv["create_revision"], kv["version"]))

    for k, vs in copies.items():
        if all(v == vs[0][0] for v, _ in vs) and (bound is None or _main(k) <= bound):
            add(k, vs[0][0])
    if not root_lost and seen is not None and KEY_BUCKET in seen.paths:
        w = Walker(db, tree=tree)
        top = w.root_bucket()
        key_bucket = next((r.child for r in w.records(top) if r.key == b"key" and r.is_bucket),
                          None) if top is not None else None
        if key_bucket is not None:
            for page, _, _, keys, values in Walker(db, tree=tree)._leaves(key_bucket):
                if keys and _main(keys[-1]) > compact:
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
    or below the point are the ones compaction kept.  Returns (keys, roots)."""
    keys, roots = set(), []
    if not compact or not any(_main(k) <= compact for k in copies):
        return keys, roots
    for o in orphans:
        if o.state == "bad-self-id" or o.flags != S.LEAF_PAGE_FLAG:
            continue
        marks = dict(_meta_records(db, o))
        if not (len(marks.get(b"finishedCompactRev", b"")) >= 8
                and marks.get(b"finishedCompactRev") == marks.get(b"scheduledCompactRev")
                and _main(marks[b"finishedCompactRev"]) == compact):
            continue
        w = Walker(db, tree=tree)
        root = Bucket(path=(), root=o.pgid, sequence=0)
        entry = next((r for r in w.records(root) if r.key == b"key" and r.is_bucket), None)
        child = w.open_bucket(root, entry) if entry is not None else None
        if child is None:
            continue
        roots.append(o.pgid)
        for _, _, _, ks, vs in Walker(db, tree=tree)._leaves(child):
            low = [(k, v) for k, v in zip(ks, vs) if _main(k) <= compact]
            if not _pre_compaction(low):
                keys.update(k for k, _ in low)
    return keys, roots


def _pre_compaction(low) -> bool:
    """Whether a leaf's revisions at or below the compaction point (``low``:
    (revision key, value)) show it was written before that compaction
    finished, so it never vouches for a revision.  After ``keyIndex.compact``
    (key_index.go) each user key keeps at most one revision at or below the
    point (the newest of the one generation that goes on past it; earlier
    generations go whole) and no tombstone (a generation ended at or below
    the point is dropped with its tombstone).  A page an old tree points at
    may have been rewritten since, or damaged: this is what it must hold."""
    users = set()
    for k, v in low:
        if len(k) != 17:
            return True  # a tombstone (18 bytes), or not a revision at all
        kv = etcd.decode_key_value(bytes(v))
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
    mains = [_main(k) for k in keys if len(k) >= 8]
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
            if tuple(f.bucket)[:1] == (b"meta",):
                lost_meta.append(f.code)

        w = Walker(db, note, tree=tree)
        for bucket, rec in w.walk():
            if not bucket.path and rec.key == b"meta":
                found = True
            if bucket.path == (b"meta",) and rec.key in _COMPACT_KEYS and len(rec.value) >= 8:
                best = max(best, _main(bytes(rec.value)))
        if found and not lost_meta:
            return best, "committed tree"
        best, found = 0, False
    for o in orphans:
        if o.state == "bad-self-id" or o.flags != S.LEAF_PAGE_FLAG:
            continue
        for k, v in _meta_records(db, o):
            found = True
            if k in _COMPACT_KEYS and len(v) >= 8:
                best = max(best, _main(v))
                marked = True
    if found and marked:
        return best, "surviving copies of meta (a lower bound)"
    return None, "unknown" if not found else "unknown: no surviving copy of meta holds a mark"


_COMPACT_KEYS = (b"finishedCompactRev", b"scheduledCompactRev")


def _meta_records(db: DB, o: Orphan):
    """Records of a ``meta`` bucket on an orphan page: a leaf of it, or an
    inline ``meta`` bucket inside an old root leaf."""
    for _, f, k, v, t in _leaf_elements(db.buf, o.pgid * db.page_size, o.count, _end(db, o)):
        if t:
            continue
        if k in _COMPACT_KEYS and not f:
            yield k, bytes(v)
        elif k == b"consistent_index" and not f:
            yield k, bytes(v)  # a leaf of a paged meta bucket
        elif k == b"meta" and f & S.BUCKET_LEAF_FLAG and len(v) >= 32 and \
                S.BUCKET_HEADER.unpack_from(v, 0)[0] == 0:
            inline = v[S.BUCKET_HEADER_SIZE:]
            _, fl, cnt, _ = S.PAGE_HEADER.unpack_from(inline, 0)
            if fl == S.LEAF_PAGE_FLAG:
                yield b"meta", b""  # an inline meta bucket in an old root leaf
                for _, f2, k2, v2, t2 in _leaf_elements(inline, 0, cnt, len(inline)):
                    if not t2 and not f2 and k2 in _COMPACT_KEYS:
                        yield k2, bytes(v2)


def _revision_gaps(plan: Plan, inp: Inputs, compact: int, bound, items, seen) -> None:
    """What is truly gone from ``key``: main revisions above the compaction
    point that a pruned range claimed and no rule restored (above the
    compaction point every main revision has a record)."""
    have = {_main(p.key) for p in items}
    for pr in inp.pruned:
        if pr.bucket != KEY_BUCKET:
            continue
        lo = max(_main(pr.lo) if pr.lo else 1, (compact or 0) + 1)
        hi = _main(pr.hi) if pr.hi else (bound if bound is not None else lo)
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


# ---------------------------------------------------------------- evidence
def _evidence(db, orphans, inp: Inputs, used: set, plan: Plan, is_etcd: bool) -> None:
    """Every orphan subtree (or page) nothing placed, as lost+found evidence.

    One walker for all of them, its page map starting from the committed
    tree's and the pages placed: each page is evidence at most once, and a
    stale branch pointing at live pages does not copy them in."""
    referenced = set()
    for o in orphans:
        if o.state != "bad-self-id":
            referenced.update(_children(db, o))
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
        if w.reached[o.pgid] or o.pgid in referenced:
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
        if o.flags == S.LEAF_PAGE_FLAG and o.state != "bad-self-id" and not w.reached[o.pgid]:
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
    _evidence(db, scan_orphans(db, wide), wide, set(), plan, is_etcd)


def _raw_records(db: DB, o: Orphan) -> list[tuple[bytes, bytes]]:
    end = min((o.pgid + 1) * db.page_size, db.size)
    out = []
    if o.flags == S.LEAF_PAGE_FLAG:
        for _, _, k, v, t in _leaf_elements(db.buf, o.pgid * db.page_size, o.count, end):
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
    if is_etcd and all(etcd.revision_bucket_guess(k) for k in keys):
        return KEY_BUCKET
    if is_etcd and b"consistent_index" in keys:
        return (b"meta",)
    if all(r.is_bucket for r in sub.records):
        return ()
    return None


# ---------------------------------------------------------------- merging
def merged(stream, plan: Plan | None, db: DB | None = None):
    """The repair stream ``(bucket, item, etcd check, whole)`` with the
    plan's records merged in, in the order the writer needs (keys ascending
    per bucket, a sub-bucket's records right after its entry).  A salvaged
    key the tree already holds is dropped (the tree's record is the
    committed one); if its bytes differ, that is counted as a conflict.

    Salvaged records come as batches with ``whole`` None (never copied as a
    page: their records are not their page's).  In a bucket with salvaged
    records pending, whole clean pages are still copied, one at a time,
    when no pending key falls inside the page's key span (key order
    allows it); the rest go as batches, interleaved."""
    if plan is None or not plan.extras:
        yield from stream
        return
    pending = {path: deque(items) for path, items in plan.extras.items()}
    ctx = (pending, plan, db)
    active: list[tuple] = []
    for bucket, item, check, whole in (rule_5(stream, db) if db is not None else stream):
        path = bucket.path
        while active and active[-1] != path[:len(active[-1])]:
            yield from _flush(ctx, active.pop(), check)
        if path in pending and (not active or active[-1] != path):
            active.append(path)
        if path not in pending:
            yield bucket, item, check, whole
        elif whole:
            yield from _merge_pages(ctx, bucket, item)
        else:
            yield from _merge_batch(ctx, bucket, item, check)
        entry = None if whole else item.bucket_entry
        if entry is not None and entry.child is not None and entry.child.path in pending:
            active.append(entry.child.path)  # its records may all be salvaged ones
    while active:
        path = active.pop()
        yield from _flush(ctx, path, plan.etcd and path == KEY_BUCKET)
    if () in pending:  # the root was lost: nothing of the tree came
        yield from _flush(ctx, (), False)
    for path, items in pending.items():  # a bucket the writer never opened
        for p in items:
            plan.counts[(path, p.rule)] -= 1


def _merge_pages(ctx, bucket: Bucket, item):
    """Whole clean pages ``(leaves, start, stop)`` of a bucket with salvaged
    records pending: each page copied whole when no pending key lies inside
    its key span, else merged record by record (no etcd check: the C core
    vouched for these pages, see ``repair._batches``)."""
    leaves, start, stop = item
    items = ctx[0][bucket.path]
    for i in range(start, stop):
        if not items:  # nothing pending any more: the rest in one go
            yield bucket, (leaves, i, stop), False, True
            return
        batch = next(leaves.batches(i, i + 1))
        if not batch.keys:
            continue
        yield from _emit_below(ctx, items, bucket.path, False, batch.keys[0])
        if not items or items[0].key > batch.keys[-1]:
            yield bucket, (leaves, i, i + 1), False, True
        else:
            yield from _merge_batch(ctx, bucket, batch, False)


def _merge_batch(ctx, bucket: Bucket, batch: Batch, check):
    pending, plan, _ = ctx
    items = pending[bucket.path]
    yield from _emit_below(ctx, items, bucket.path, check, batch.keys[0])
    if not items or items[0].key > batch.keys[-1]:
        yield bucket, batch, check, False
        return
    # salvaged keys inside this batch's span: interleave record by record
    for rec in batch.records():
        yield from _emit_below(ctx, items, bucket.path, check, rec.key)
        if items and items[0].key == rec.key:
            dup = items.popleft()
            if dup.flags != rec.flags or bytes(dup.value) != bytes(rec.value):
                plan.conflicts.append((bucket.path, rec.key))
            if not dup.new_bucket:
                plan.duplicates += 1
                plan.counts[(bucket.path, dup.rule)] -= 1
        one = Batch(rec.page, (rec.index,), (rec.flags,), (rec.key,), (rec.value,),
                    rec if rec.is_bucket else None)
        yield bucket, one, check, False


def _flush(ctx, path, check):
    items = ctx[0].get(path)
    if items:
        yield from _emit_below(ctx, items, path, check, None)


def _emit_below(ctx, items, path: tuple, check, below):
    """The pending items with keys below ``below`` (all: None), runs of
    plain records as one batch each."""
    while items and (below is None or items[0].key < below):
        if items[0].flags & S.BUCKET_LEAF_FLAG:
            yield from _emit(ctx, items.popleft(), path, check)
            continue
        run = []
        while items and not items[0].flags & S.BUCKET_LEAF_FLAG and (
                below is None or items[0].key < below) and len(run) < 1024:
            run.append(items.popleft())
        # rule 3 already held each record to etcd's loadability check
        loaded = all(p.rule in (RULE3, RULE3_ROOT) for p in run)
        yield (Bucket(path=path, root=0, sequence=0),
               Batch(run[0].page, range(len(run)), (0,) * len(run), [p.key for p in run],
                     [p.value for p in run]), check and not loaded, None)


def _emit(ctx, p: Placed, path: tuple, check):
    _pending, plan, db = ctx
    bucket = Bucket(path=path, root=0, sequence=0)
    if not p.flags & S.BUCKET_LEAF_FLAG:
        yield bucket, Batch(p.page, (0,), (0,), (p.key,), (p.value,)), check, None
        return
    child = p.child
    rec = Record(p.key, memoryview(bytes(p.value)), p.flags, p.page, 0, child)
    yield bucket, Batch(p.page, (0,), (p.flags,), (p.key,), (rec.value,), rec), check, None
    if p.new_bucket:
        yield from _flush(ctx, child.path, plan.etcd and child.path == KEY_BUCKET)
    elif child is not None and db is not None:
        # an adopted sub-bucket: its own tree, walked with every check (rule 5 too)
        walk = Walker(db, Collector(limit=0), tree=plan.tree).walk_batches(start=child)
        yield from rule_5(((b, batch, False, False) for b, batch in walk), db)


# ---------------------------------------------------------------- lost+found
def write_lost_found(db: DB, plan: Plan, path: str, force: bool = False) -> dict:
    """The evidence as a separate, valid bbolt file: one bucket per orphan
    subtree or page, ``page-NNNNNNNN-<state>``, holding ``provenance`` (JSON)
    and a ``records`` sub-bucket with its records as they lie in the file
    (sorted, a repeated key kept once).  Written to a temp file beside
    ``path``, fsynced, then moved into place."""
    import os
    import tempfile

    from boltfix.writer import BoltWriter

    path = os.fspath(path)
    if os.path.lexists(path) and (not force or not os.path.isfile(path)
                                  or os.path.islink(path)):
        raise BoltError(f"{path} exists; lost+found is written only to a new file "
                        "(or over a regular file with --force)")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".boltfix-lost-found-", suffix=".tmp", dir=directory)
    total = 0
    try:
        with os.fdopen(fd, "w+b", buffering=0) as raw:
            w = BoltWriter(raw, db.page_size)
            names = set()
            named = sorted((f"page-{e.page:08d}-{e.state}".encode(), i, e)
                           for i, e in enumerate(plan.evidence))  # the writer's key order
            for name, _, ev in named:
                if name in names:
                    continue
                names.add(name)
                recs = _evidence_records(db, ev)
                recs = recs[:max(0, MAX_EVIDENCE_RECORDS - total)]
                total += len(recs)
                w.begin_bucket(name)
                prov = dict(ev.to_json(), records=len(recs))
                w.put(b"provenance", json.dumps(prov, sort_keys=True).encode())
                w.begin_bucket(b"records")
                for k, v in recs:
                    if isinstance(v, list):  # an inline sub-bucket, with its records
                        w.begin_bucket(k)
                        for k2, v2 in v:
                            w.put(k2, v2)
                        w.end_bucket()
                    else:
                        w.put(k, v)
                w.end_bucket()
                w.end_bucket()
            stats = w.close()
            raw.flush()
            os.fsync(raw.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if it appeared meanwhile: no clobber
    except FileExistsError as exc:
        raise BoltError(f"{path} appeared while writing lost+found; nothing replaced") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"path": path, "subtrees": len(plan.evidence), "records": total,
            "pages": stats.as_dict().get("pages") if hasattr(stats, "as_dict") else None}


def _evidence_records(db: DB, ev: Evidence) -> list[tuple[bytes, object]]:
    """(key, value) of the evidence, sorted, a repeated key kept once; an
    inline sub-bucket's value is the list of its own records (its records
    live inside its value, so they are evidence too)."""
    recs = list(ev.records)
    ps = db.page_size
    for pg in ev.leaves:
        _pid, _flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, pg * ps)
        end = min((pg + 1 + overflow) * ps, db.size)
        for _, f, k, v, t in _leaf_elements(db.buf, pg * ps, count, end):
            if not t:
                inline = _inline_records(v) if f & S.BUCKET_LEAF_FLAG else None
                recs.append((k, bytes(v) if inline is None else inline))
    out, last = [], None
    for k, v in sorted(recs, key=lambda kv: kv[0]):
        if k != last and 0 < len(k) <= S.MAX_KEY_SIZE and len(v) <= S.MAX_VALUE_SIZE:
            out.append((k, v))
            last = k
    return out


def _inline_records(value) -> list[tuple[bytes, bytes]] | None:
    """The plain records of an inline bucket's value (bucket header with
    root 0, then a leaf page), in key order as the checked decoder reads
    them; None when it is not one (a paged sub-bucket: its pages are
    evidence of their own)."""
    if len(value) < S.BUCKET_HEADER_SIZE + S.PAGE_HEADER_SIZE or \
            S.BUCKET_HEADER.unpack_from(value, 0)[0] != 0:
        return None
    inline = bytes(value[S.BUCKET_HEADER_SIZE:])
    _, flags, count, _ = S.PAGE_HEADER.unpack_from(inline, 0)
    if flags != S.LEAF_PAGE_FLAG:
        return None
    out, last = [], None
    for _, f, k, v, t in _leaf_elements(inline, 0, count, len(inline)):
        if not t and not f and 0 < len(k) <= S.MAX_KEY_SIZE and (last is None or k > last):
            out.append((k, bytes(v)))
            last = k
    return out


def _hx(k) -> str | None:
    return None if k is None else bytes(k).hex()
