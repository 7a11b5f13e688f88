"""Which commit survived: judge the trees a file holds and choose the one repair keeps.

Files are damaged less by random bytes than by crashes and careless copies,
and after those every page is one bbolt itself wrote at some commit: only
the mix is wrong.  bbolt keeps two meta pages so that the previous commit
survives an unfinished one.  The invariant, checked in bbolt v1.3.6
(``db.go`` ``beginRWTx``/``freePages``, ``freelist.go`` ``free``/``release``,
``tx.go`` ``Commit``) and v1.4.3/v1.5.0 (the same through
``internal/freelist/shared.go`` ``ReleasePendingPages``):

* A write transaction N allocates pages only from the free list as it stood
  when N began, or past the high-water mark (``node.spill`` ->
  ``tx.allocate`` -> ``freelist.allocate``).
* The pages a commit frees (the old copies of the nodes it rewrote, its old
  freelist page) go to ``pending[txid]``; a later writer's ``beginRWTx`` ->
  ``freePages`` -> ``release(minid - 1)`` hands them to the allocator, never
  N itself.  With an unsynced freelist (etcd) bbolt rebuilds the free set at
  open from the tree of the meta in use, which again leaves that tree's
  pages out.
* Commit N-1's tree is reachable when N begins, so none of its pages is
  free: **commit N never writes over a page of commit N-1's tree.**
* ``Commit`` writes every dirty page, ``fdatasync``, then the meta page
  ``N % 2``, ``fdatasync``: the other meta page still names N-1's tree.

So when commit N's meta reached the disk but some of its pages did not (a
write cache that lies, a VM restored from a snapshot), or reads back as
zeros (an unwritten extent), or half old (a page torn at a 512-byte sector),
or lies past the end of a file whose last growth was lost, N-1's tree is
whole.  Rolling back to it is bbolt's own semantics for a commit that did
not finish (``bbolt surgery revert-meta-page`` does it by hand).

Limits, stated plainly:

* Lost writes of two or more commits leave no whole meta tree (N-1's own
  pages may be stale too, and N-2's meta page was overwritten by N's).
* A copy made while bbolt wrote (``cp``, ``rsync``, a live volume snapshot)
  holds the metas of the moment page 0 was read and later pages from later
  commits, which may have reused pages of the metas' trees: then the newest
  whole tree may be one no meta names, found from its root page.
* The converse does not hold: a page both trees reach in different
  buckets proves one tree a mix, but not which.  A commit N+1 that crashed
  before its meta (or later commits a live copy caught) writes over the
  pages commit N freed, N-1's old copies, which leaves N-1's tree mixed
  the same way beside N's whole one, and it may still read as whole.
* Structure alone cannot prove a page current: a stale page has a right
  self-id, a right type and sorted keys.  A tree is *whole* when its walk
  and its own freelist (when synced) find nothing wrong; a whole tree is
  taken as bbolt would take it, a damaged one only when nothing better is
  in the file.

The rule (:func:`choose`), the first that applies:

0. The other meta, failing validation by one field only (a bad checksum
   with a synced freelist, or a freelist id past its high-water mark with a
   good checksum), txid one above the newest valid meta's, on page ``txid %
   2``, its tree whole (and, for the checksum, covering with its freelist
   every page below its high-water mark exactly once): "newest meta
   mended", its commit finished (:func:`_mended_newest`; bbolt's own open
   takes the previous commit).
1. The newest valid meta's tree, if whole (bbolt's own choice).
2. When that tree is damaged: a whole tree no meta names that a copy made
   while bbolt wrote left behind, proven newer than the newest meta (it
   reaches pages at or above that meta's high-water mark, which no tree up
   to that commit used, or for etcd its ``meta/consistent_index`` is
   higher): "copied while written".  Only then: beside a whole meta tree,
   such a tree is a commit that crashed before its meta was written, which
   bbolt rolls back.
3. The other meta's tree, if whole: "rolled back"; the newest commit did
   not finish on disk.
4. etcd only: when neither meta's root can be read at all (the writes of
   several commits lost, the metas' roots zeroed, past the end of the file,
   or pages of other buckets now), the
   whole etcd tree no meta names with the highest revision, not above what
   the newest meta's tree still shows: "rolled back further".  An older
   commit's whole state is one etcd starts from, replaying its WAL above
   that tree's own ``consistent_index`` (``server.go`` ``applyAll`` skips
   only entries at or below it), where a pruned newest tree keeps its
   ``consistent_index`` while missing revisions below it, which no replay
   brings back.  Ordered by revision first: revisions are never reset,
   while a snapshot restore resets ``consistent_index``.  A tree no meta
   names (rules 2 and 4) is whole only if its ``key`` bucket's history holds
   (:func:`key_history_gap`): a stale root leaf naming a ``key`` page
   reused since would pair its ``consistent_index`` with revisions from
   later raft entries, which etcd's WAL replay would write again.
5. Else the newest meta's tree, with what is damaged in it pruned (and
   salvaged where a rule proves it): nothing whole is left.

Judging another tree costs a walk: it happens only when the newest is
damaged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterator, List, Optional, Sequence

from boltfix import etcd
from boltfix import findings as F
from boltfix import structs as S
from boltfix.etcdkeys import decode_revision
from boltfix.findings import NEVER_STOP, Collector, Finding
from boltfix.leaves import Tree
from boltfix.navigate import top_level_names
from boltfix.reader import DB, Meta, branch_elements, leaf_elements, read_freelist
from boltfix.text import name_text
from boltfix.treecheck import check_freelist, walk_everything
from boltfix.walk import Walker

#: a judgement counts its synced freelist's findings under this prefix:
#: they are not the tree's (a judgement's ``counts`` say which is which)
FREELIST_PREFIX = "freelist:"

#: what makes a tree not whole: its records dropped or not placed
TREE_LOSS = F.REPAIR_LOSS | {F.PAGE_ID_MISMATCH, F.ETCD_COMMIT_OLDER, F.COMMIT_REACHES_FREE_PAGE,
                             F.COMMIT_FREELIST_LOST, F.COMMIT_DROPS_PAGES, F.ETCD_BAD_REVISION_KEY,
                             F.ETCD_BAD_KEY_VALUE, F.ETCD_NESTED_BUCKET,
                             F.ETCD_CREATE_REVISION_MISSING}

#: the rules, as the report names them
NEWEST, COPIED, ROLLED_BACK, ROLLED_BACK_FURTHER, MOST_COMPLETE = (
    "newest", "copied-while-written", "rolled-back", "rolled-back-further", "most-complete")
#: rule 0: the newest meta fails validation by one field only, and its commit is proven finished
MENDED = "newest-meta-mended"

#: root pages no meta names that are judged at most (each costs a walk)
MAX_CANDIDATES = 16
#: the keys created at a ``key`` bucket's lowest revision kept to judge a
#: tombstone there (one transaction's puts: etcd's --max-txn-ops is 128)
MAX_LOWEST_KEYS = 4096
#: findings kept per judged tree (all are counted)
KEPT_FINDINGS = 20


@dataclass(frozen=True)
class Candidate:
    """A tree that may be the file's newest whole commit."""

    tree: Tree
    #: "meta 0", "meta 1", or "page N" for a root no meta names
    source: str
    meta: Optional[Meta] = None

    @property
    def txid(self) -> Optional[int]:
        """The meta's txid (None for a root no meta names)."""
        return self.meta.txid if self.meta is not None else None

    def to_json(self) -> dict:
        """Where the tree comes from, its root, txid and high-water mark."""
        return {"source": self.source, "root": self.tree.root, "txid": self.txid,
                "pgid": self.tree.hwm}


@dataclass
class Judgement:
    """What a walk of one candidate tree (and its freelist) found."""

    candidate: Candidate
    counts: Counter
    findings: List[Finding]
    records: int
    buckets: int
    top: List[bytes]
    #: the tree's ``meta`` bucket, for an etcd file (``consistent_index``, ``term``)
    etcd: dict = field(default_factory=dict)
    #: the highest page the tree reaches (a page's run included)
    max_page: int = -1
    #: pages the tree reaches, one byte per page of the file (walk.REACHED...)
    reached: Optional[bytearray] = None

    @property
    def damage(self) -> int:
        """Findings that lose records of the tree (what repair would drop,
        or not place): a whole tree has none.  A problem read around
        without a loss (a count recovered from element 0, an overflow run
        longer than needed) is damage of the file, not of the commit.  Nor
        are its freelist's problems: the freelist holds no records (bbolt
        rebuilds it: ``surgery freelist rebuild``), and bbolt itself leaks
        pages in some transactions (``unreachable unfreed`` in files it
        wrote)."""
        return sum(n for code, n in self.counts.items() if code in TREE_LOSS)

    @property
    def freelist_damage(self) -> int:
        """Problems of its synced freelist against the tree."""
        return sum(n for code, n in self.counts.items() if code.startswith(FREELIST_PREFIX))

    @property
    def whole(self) -> bool:
        """No finding that loses records of the tree."""
        return self.damage == 0

    @property
    def is_etcd(self) -> bool:
        """The tree's top level is etcd's."""
        return etcd.looks_like_etcd(self.top)

    def reaches_from(self, pgid: int) -> bool:
        """Does the tree reach a page at or above ``pgid``?"""
        return self.max_page >= pgid

    def to_json(self) -> dict:
        """The judgement for ``repair --json``."""
        out = dict(self.candidate.to_json(), whole=self.whole, damage=self.damage,
                   counts=dict(self.counts), records=self.records, buckets=self.buckets)
        if self.etcd:
            out["etcd"] = dict(self.etcd)
        return out


@dataclass
class Choice:
    """The tree repair keeps, the rule that chose it, and every tree judged."""

    judgement: Judgement
    #: :data:`NEWEST`, :data:`MENDED`, :data:`COPIED`, :data:`ROLLED_BACK`, ... (the rules)
    rule: str
    reason: str
    judged: List[Judgement] = field(default_factory=list)
    #: the newest meta's tree when another was kept (its commit is lost)
    passed_over: Optional[Judgement] = None

    @property
    def candidate(self) -> Candidate:
        """The kept tree's candidate."""
        return self.judgement.candidate

    def to_json(self) -> dict:
        """The choice for ``repair --json`` (``commits``)."""
        return {"rule": self.rule, "reason": self.reason,
                "kept": self.judgement.to_json(),
                "passed_over": self.passed_over.to_json() if self.passed_over else None,
                "judged": [j.to_json() for j in self.judged]}


# ---------------------------------------------------------------- judging
def meta_candidate(meta: Meta) -> Candidate:
    """The tree a valid meta names, as a candidate."""
    return Candidate(Tree.of(meta), f"meta {meta.index}", meta)


def judge(db: DB, cand: Candidate, *, keep_reached: bool = False) -> Judgement:
    """Walk ``cand``'s tree as ``check`` would with its meta in use: every
    bucket, etcd's loadability checks, and its own synced freelist against
    what the walk reached."""
    collector = Collector(KEPT_FINDINGS)
    walker = Walker(db, collector, tree=cand.tree)
    stats = walk_everything(db, walker, collector)
    if cand.meta is not None:
        # the freelist's own findings (a freelist run over a tree page is a
        # "multiple references" of the freelist's, not of the tree's)
        freelist = Collector(KEPT_FINDINGS)
        check_freelist(db, walker, freelist, {}, meta=cand.meta)
        collector.counts.update({FREELIST_PREFIX + c: n for c, n in freelist.counts.items()})
        collector.findings.extend(freelist.findings[:KEPT_FINDINGS])
    reached = walker.reached
    top = bytes(reached).rstrip(b"\x00")
    names = _top_names(db, cand.tree)
    if cand.meta is None and etcd.looks_like_etcd(names):
        # a root no meta names: nothing but its records says which commit
        # its pages are (only rules 2 and 4 judge one: the cost of a pass)
        gap = key_history_gap(db, cand.tree)
        if gap is not None:
            collector(gap)
    return Judgement(cand, collector.counts, collector.findings, walker.records_yielded,
                     stats.get("buckets", 0), names,
                     etcd=stats.get("etcd_meta", {}), max_page=len(top) - 1,
                     reached=reached if keep_reached else None)


def key_history_gap(db: DB, tree: Tree) -> Optional[Finding]:
    """etcd's MVCC history broken in one tree's ``key`` bucket, when its
    lowest revision m is above its compaction revision C (the higher of
    ``meta/scheduledCompactRev`` and ``finishedCompactRev``, 0 when none):
    a key's revision whose generation began below m.  None when the history
    holds, or cannot be judged this way.

    etcd (``server/storage/mvcc/kvstore_txn.go``) writes a key's revision
    with the ``create_revision`` of its generation, itself a record of the
    bucket, and deletes a key by a tombstone revision (a ``KeyValue``
    naming only the key) after its live revisions.  Only compaction removes
    a revision: ``kvstore_compaction.go`` ``scheduleCompaction`` deletes
    revisions at or below C not in ``keep``, and ``keep`` holds, for each
    key whose generation is open at C, its newest revision at or below C
    (``key_index.go`` ``doCompact``/``compact``).  So when m > C no revision
    at or below C survives, and none above C was removed: a revision
    created below m (created above C, its creating revision was never
    compacted; at or below C, its generation was open at C, whose newest
    revision there was kept), or a tombstone at m of a key m did not
    create, proves the bucket's pages are another commit's than its
    ``meta`` bucket's (a stale root leaf naming a page reused since).  A
    snapshot restore keeps the bucket and the compaction revisions (unlike
    ``consistent_index``): it holds there too.  One pass over the bucket,
    the keys created at m at most :data:`MAX_LOWEST_KEYS` kept."""
    buckets = _etcd_buckets(db, tree)
    if b"key" not in buckets:
        return None
    compacted = 0
    for name in (b"scheduledCompactRev", b"finishedCompactRev"):
        rec = Walker(db, tree=tree).find(buckets[b"meta"], name) if b"meta" in buckets else None
        rev = decode_revision(bytes(rec.value)) if rec is not None and \
            not rec.is_bucket else None
        if rev is not None:
            compacted = max(compacted, rev["main"])
    lowest, created_at_lowest = None, set()
    for rec in Walker(db, tree=tree).records(buckets[b"key"]):
        rev = decode_revision(bytes(rec.key)) if not rec.is_bucket else None
        if rev is None:
            continue
        if lowest is None:
            lowest = rev["main"]
            if lowest <= compacted:
                return None
        kv = etcd.decode_key_value(bytes(rec.value))
        if "error" in kv:
            continue
        created = kv["create_revision"]
        if rev["tombstone"]:
            if rev["main"] != lowest or kv["key"] in created_at_lowest or \
                    len(created_at_lowest) >= MAX_LOWEST_KEYS:
                continue
            why = f"a tombstone at revision {lowest} deletes a key no revision of the bucket made"
        elif 0 < created < lowest:
            why = f"revision {rev['main']} belongs to a key created at revision {created}"
        else:
            if rev["main"] == lowest and len(created_at_lowest) < MAX_LOWEST_KEYS:
                created_at_lowest.add(kv["key"])
            continue
        return Finding(
            F.ETCD_CREATE_REVISION_MISSING,
            f"{why}, below the `key` bucket's lowest revision {lowest} and above its compaction "
            f"revision {compacted}: etcd keeps a key's revisions back to its creating one, or "
            "once compacted its newest at the compaction revision, so the bucket's pages are "
            "another commit's than its meta bucket's", page=rec.page, bucket=(b"key",),
            detail={"revision": rev["main"], "lowest": lowest, "compacted": compacted})
    return None


def _etcd_buckets(db: DB, tree: Tree) -> dict:
    """etcd's ``meta`` and ``key`` buckets of ``tree`` (those found), by name."""
    root = Walker(db, tree=tree).root_bucket()
    buckets = {}
    for name in (b"meta", b"key"):
        w = Walker(db, tree=tree)  # one per descent: a walker reaches each page once
        rec = w.find(root, name) if root is not None else None
        if rec is not None and rec.is_bucket:
            buckets[name] = w.open_bucket(root, rec)
    return buckets


def _top_names(db: DB, tree: Tree) -> List[bytes]:
    return top_level_names(db, tree)


# ---------------------------------------------------------------- evidence of newer commits
def newer_pages(db: DB, meta: Meta, limit: int = 1 << 20) -> int:
    """Tree pages (a header whose id is its position, of branch, leaf or
    freelist type) at or above ``meta``'s high-water mark: no commit up to
    ``meta``'s wrote there (bbolt never lowers the mark), so they are the
    trace of later commits, as a copy made while bbolt wrote leaves them.
    Pages bbolt grew the file by and never wrote read as zeros."""
    ps = db.page_size
    found = 0
    for pgid in range(max(meta.pgid, 2), min(db.pages_in_file, meta.pgid + limit)):
        pid, flags, _, _ = S.PAGE_HEADER.unpack_from(db.buf, pgid * ps)
        if pid == pgid and flags in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG,
                                     S.FREELIST_PAGE_FLAG):
            found += 1
    return found


def root_pages(db: DB, exclude: Sequence[int] = ()) -> List[int]:
    """Leaf pages that could be a root bucket's page: every element a bucket
    entry with a bucket value (bbolt allows nothing else in the root).  A
    sub-bucket that holds only sub-buckets looks the same; such a page is
    usually named by a bucket entry elsewhere, a root never is (only a meta
    names it): those come last.  At most :data:`MAX_CANDIDATES`."""
    ps = db.page_size
    named = bytearray(db.pages_in_file)  # named by some bucket entry's value
    found = []
    skip = set(exclude)
    for pgid in range(2, db.pages_in_file):
        pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, pgid * ps)
        if pid != pgid or flags != S.LEAF_PAGE_FLAG or not count:
            continue
        end = min((pgid + overflow + 1) * ps, db.size)
        roots = list(_bucket_roots(db, pgid, count, end))
        for r in roots:
            if r is not None and 0 < r < len(named):
                named[r] = 1
        if roots and all(r is not None for r in roots) and pgid not in skip:
            found.append(pgid)
    # unnamed first, then the highest pages (later commits tend to extend the file)
    found.sort(key=lambda p: (named[p], -p))
    return found[:MAX_CANDIDATES]


def _bucket_roots(db: DB, pgid: int, count: int, end: int) -> Iterator[Optional[int]]:
    """Per element: the root page of the bucket entry (0 inline), or None
    when the element is not a well-formed bucket entry."""
    for _, flags, _, value, problem in leaf_elements(db.buf, pgid * db.page_size, count, end):
        if problem or not flags & S.BUCKET_LEAF_FLAG or len(value) < S.BUCKET_HEADER_SIZE:
            yield None
        else:
            yield S.BUCKET_HEADER.unpack_from(value, 0)[0]


def _synthetic_tree(db: DB, root: int, hwm: int) -> Tree:
    return Tree(root, 0, hwm)


# ---------------------------------------------------------------- the rule
def valid_metas(db: DB) -> List[Meta]:
    """The valid metas, newest first (bbolt's order: txid, then meta 0)."""
    return sorted((m for m in db.metas if m.valid), key=lambda m: (-m.txid, m.index))


def choose(db: DB, newest: Optional[Judgement] = None) -> Optional[Choice]:
    """The tree to repair from (the module's rule); None when no meta is valid
    (the caller rediscovers a root).  ``newest``: the newest meta's tree
    already judged (``check`` walked it: :func:`of_check`), with its reach."""
    metas = valid_metas(db)
    if not metas:
        return None
    mended = _mended_newest(db, metas[0])
    if mended is not None:
        return mended
    if newest is None or newest.candidate.meta is not metas[0]:
        newest = judge(db, meta_candidate(metas[0]), keep_reached=True)
    judged = [newest]
    older = None
    if len(metas) > 1 and metas[1].txid < metas[0].txid:
        older = _older_if_needed(db, newest, metas[1], judged)
    newest.reached = None  # a byte per page: not kept past its use
    if newest.whole:
        # pages past its high-water mark may hold a later commit that never
        # wrote its meta (a crash inside Commit): not committed, not taken
        return Choice(newest, NEWEST, "the newest commit's tree is whole", judged)
    copy = _copied_while_written(db, newest, older, judged)
    if copy is not None:
        return copy
    if older is not None and older.whole:
        return Choice(older, ROLLED_BACK,
                      f"the newest commit (txid {newest.candidate.txid}) is damaged "
                      f"({_damage_text(newest)}); the previous commit (txid "
                      f"{older.candidate.txid}) is whole: rolled back to it, as bbolt does "
                      "with a commit that did not finish", judged, passed_over=newest)
    further = _older_whole_etcd_tree(db, newest, older, judged)
    if further is not None:
        return further
    return Choice(newest, MOST_COMPLETE,
                  f"no tree in the file is whole; the newest commit (txid "
                  f"{newest.candidate.txid}) is kept with its damage pruned "
                  f"({_damage_text(newest)})", judged)


def of_check(db: DB, walker: Walker, counts, stats: dict,
             freelist: Optional[Counter] = None) -> Optional[Judgement]:
    """The judgement of the tree ``check`` walked (the meta in use's), from
    its walk and findings, so that :func:`choose` need not walk it again.
    ``freelist``: the counts of the freelist's own findings among ``counts``
    (a freelist run over a tree page is a ``multiple-references`` of the
    freelist's, not of the tree's: :func:`judge` counts them apart too)."""
    metas = valid_metas(db)
    if not metas or walker.tree != Tree.of(metas[0]):
        return None
    freelist = freelist or Counter()
    tree = Counter(counts)
    tree.subtract(freelist)
    mine = Counter({c: n for c, n in tree.items()
                    if c in TREE_LOSS and c not in FREELIST and n > 0})
    mine.update({FREELIST_PREFIX + c: n for c, n in counts.items() if c in FREELIST})
    mine.update({FREELIST_PREFIX + c: n for c, n in freelist.items() if c not in FREELIST})
    return Judgement(meta_candidate(metas[0]), mine, [], walker.records_yielded,
                     stats.get("buckets", 0), top_level_names(db, walker.tree),
                     etcd=stats.get("etcd_meta", {}), reached=walker.reached)


#: what check_freelist and the page map report about a synced freelist
FREELIST = frozenset({F.FREELIST_INVALID_TYPE, F.FREELIST_COUNT_OVERFLOW,
                      F.FREELIST_RESERVED_PAGE, F.FREELIST_OUT_OF_BOUNDS, F.FREELIST_SELF,
                      F.ALREADY_FREED, F.REACHABLE_FREED, F.UNREACHABLE_UNFREED})


def check_findings(db: DB, choice: Choice, report) -> None:
    """What ``check`` says about the file's commits: the newest commit's
    damage only a comparison of trees shows, and when it is not the commit
    repair keeps, which one and why."""
    newest = choice.judged[0]
    for f in newest.findings:
        if f.code in COMMIT_CODES:
            report(f)
    if choice.rule == ROLLED_BACK:
        report(Finding(F.NEWEST_COMMIT_DAMAGED,
                       f"the newest commit (txid {newest.candidate.txid}) is damaged; the "
                       f"previous commit (txid {choice.candidate.txid}) is whole: repair rolls "
                       "back to it", page=newest.candidate.tree.root,
                       detail={"kept": choice.judgement.to_json(), "damaged": newest.to_json()}))
    elif choice.rule == ROLLED_BACK_FURTHER:
        report(Finding(F.NEWEST_COMMIT_DAMAGED,
                       f"the newest commit (txid {newest.candidate.txid}) and the previous one "
                       "are damaged (the writes of several commits lost); the newest whole "
                       f"etcd tree in the file, at root page {choice.candidate.tree.root}, is "
                       "an older commit's: repair rolls back to it",
                       page=newest.candidate.tree.root,
                       detail={"kept": choice.judgement.to_json(), "damaged": newest.to_json()}))
    elif choice.rule == COPIED:
        report(Finding(F.FILE_COPIED_WHILE_WRITTEN,
                       "this file was copied while it was being written: its metas (txid "
                       f"{newest.candidate.txid}) are older than pages their trees reach; the "
                       f"newest whole commit's root is page {choice.candidate.tree.root}, which "
                       "repair keeps", page=choice.candidate.tree.root,
                       detail={"kept": choice.judgement.to_json(), "damaged": newest.to_json()}))


#: the damage of a newest commit that only judging it against the other
#: trees shows (check's own walk does not)
COMMIT_CODES = frozenset({F.ETCD_COMMIT_OLDER, F.COMMIT_REACHES_FREE_PAGE,
                          F.COMMIT_FREELIST_LOST, F.COMMIT_DROPS_PAGES})


def _older_if_needed(db: DB, newest: Judgement, meta: Meta,
                     judged: List[Judgement]) -> Optional[Judgement]:
    """The other meta's tree, judged when the newest is damaged.  A whole
    newest etcd tree is still held to the older one's etcd facts
    (:func:`_etcd_facts_disagree`)."""
    if newest.whole and newest.candidate.meta.freelist_synced and meta.freelist_synced:
        _stale_reach(db, newest, meta)
        if newest.whole and newest.counts[FREELIST_PREFIX + F.UNREACHABLE_UNFREED] >= 2:
            older = judge(db, meta_candidate(meta), keep_reached=True)
            judged.append(older)
            _dropped_pages(db, newest, older)
            older.reached = None
            return older
    if newest.whole and not newest.is_etcd:
        return None
    if newest.whole:
        return _etcd_facts_disagree(db, newest, meta, judged)
    older = judge(db, meta_candidate(meta))
    judged.append(older)
    return older


def _etcd_facts_disagree(db: DB, newest: Judgement, meta: Meta,
                         judged: List[Judgement]) -> Optional[Judgement]:
    """Hold a whole newest etcd tree to the older meta's, by the facts that
    only grow from commit to commit: ``meta/consistent_index`` (etcd writes
    the applied index in every backend commit) and the highest revision (a
    revision is never removed but by compaction, which keeps each key's
    newest).  The older tree, judged, when it was needed.

    A fact lower in the newest tree has two causes that the two trees alone
    cannot tell apart: the newest commit's writes were lost (a write cache
    that lies), leaving an older commit's pages under its meta; or the
    commit *after* the newest crashed inside ``Commit`` before its meta,
    having reused pages of the older meta's tree (freed by the newest
    commit).  So the older tree must be whole to count: a later commit that
    wrote only part of its pages leaves it torn, and then the newest stays
    (bbolt's choice).  When it is whole, each tree is one commit's whole
    state, and either is a state etcd starts from, replaying its WAL above
    that tree's own ``consistent_index``; the one further on is taken
    (``etcd-commit-older`` on the newest), which loses nothing in either
    case, where keeping a tree whose writes were lost would lose a commit."""
    facts = etcd_facts(db, Tree.of(meta))
    lower = [f for f in ("consistent_index", "max_revision")
             if newest.etcd.get(f) is not None and facts.get(f) is not None
             and newest.etcd[f] < facts[f]]
    if not lower:
        return None
    older = judge(db, meta_candidate(meta))
    judged.append(older)
    if not older.whole:
        return older
    fact = lower[0]
    newest.counts[F.ETCD_COMMIT_OLDER] += 1
    newest.findings.append(Finding(
        F.ETCD_COMMIT_OLDER,
        f"the newest commit's {fact} {newest.etcd[fact]} is below the other meta's whole "
        f"tree's {facts[fact]}: the newest commit's writes were lost, or a later commit "
        "crashed before writing its meta", page=newest.candidate.tree.root,
        bucket=(b"meta",)))
    return older


def _stale_reach(db: DB, newest: Judgement, meta: Meta) -> None:
    """Pages the newest tree reaches that the commit did not allocate: a
    page a lost write or a torn sector left pointing at an older page (the
    walk sees nothing wrong: the older page is well formed).  Two proofs,
    from the synced freelists:

    * its own freelist and the previous commit's both list the page as
      free: free before the commit and after it;
    * the tree and its own freelist disagree both ways, by two pages or
      more each: the tree reaches pages the freelist lists (the old copies
      the commit freed) and misses pages it allocated (listed nowhere,
      reached by nothing), as a pointer to the old copy of a rewritten
      branch does.  A freelist with one id changed errs by one page each
      way; bbolt's own leaks (``unreachable unfreed`` in files it wrote)
      one way only.  (A pointer to the old copy of one leaf looks like the
      former and is not caught.)

    Both trust the freelist over the tree, so both ask for two pages or
    more: a freelist with one id changed (a bit flip) makes either look
    true for one page.  Either makes the tree damaged
    (``commit-reaches-free-page``)."""
    mine = db.freelist(newest.candidate.meta)
    before = db.freelist(meta)
    if mine is None or before is None or before.findings:
        return
    if any(f.code == F.FREELIST_INVALID_TYPE for f in mine.findings) and \
            not _freelist_flags_only(db, newest):
        # the page the commit wrote as its freelist holds none (zeros, or
        # an older page): its writes did not all reach the disk
        newest.counts[F.COMMIT_FREELIST_LOST] += 1
        newest.findings.append(Finding(
            F.COMMIT_FREELIST_LOST,
            f"the newest commit's freelist page {mine.pgid} holds no freelist, while the "
            "previous commit's does: the commit's writes did not all reach the disk, so its "
            "tree cannot be trusted either", page=mine.pgid))
        return
    if mine.findings:
        return
    reached, n = newest.reached, len(newest.reached)
    listed = bytearray(n)
    for pid in before.ids(db):
        if 2 <= pid < n:
            listed[pid] = 1
    stale = [pid for pid in mine.ids(db) if 2 <= pid < n and listed[pid] and reached[pid]]
    counts = newest.counts
    if not stale and counts[FREELIST_PREFIX + F.REACHABLE_FREED] >= 2 and \
            counts[FREELIST_PREFIX + F.UNREACHABLE_UNFREED] >= 2:
        # both ways at once, pages of a subtree each: the tree reaches pages
        # the commit freed (its freelist lists them) and misses pages it
        # allocated (listed nowhere), as a pointer to the old copy of a
        # rewritten branch does.  One id of a damaged freelist changed into
        # another errs by a page each way; bbolt's own leaks one way only.
        listed = bytearray(n)
        for pid in mine.ids(db):
            if 2 <= pid < n:
                listed[pid] = 1
        stale = [pid for pid in range(2, n) if reached[pid] and listed[pid]]
    if len(stale) >= 2:  # one page: as likely one id of a damaged freelist
        newest.counts[F.COMMIT_REACHES_FREE_PAGE] += len(stale)
        newest.findings.append(Finding(
            F.COMMIT_REACHES_FREE_PAGE,
            f"the newest commit's tree reaches {len(stale)} pages (e.g. {stale[:5]}) its "
            "freelists say the commit did not allocate: the pages that point at them are "
            "older than the commit (a lost write or a torn page)", page=stale[0],
            detail={"pages": stale[:100]}))


def _dropped_pages(db: DB, newest: Judgement, older: Judgement) -> None:
    """Pages of the previous commit's tree that the newest commit neither
    reaches nor lists free: a commit frees every page it stops using
    (``node.spill`` frees a rewritten node's old page, ``Bucket.DeleteBucket``
    a deleted bucket's pages, each into ``pending[txid]``, and a synced
    freelist is written with its pending ids: ``freelist.write``), so a
    page of tree N-1 is in tree N or in N's freelist.  Two or more that are
    in neither (the leaks ``unreachable-unfreed`` names) prove meta N's tree
    is not what commit N wrote: a lost write left an older page at a page
    N rewrote (its root, say), and the older page's subtree, well formed, is
    taken for N's tree.  Only asked when the newest tree leaks two pages or
    more (bbolt's own rare leaks are not pages of the previous tree)."""
    mine = db.freelist(newest.candidate.meta)
    if mine is None or mine.findings or newest.reached is None or older.reached is None:
        return
    n = len(newest.reached)
    listed = bytearray(n)
    for pid in mine.ids(db):
        if 2 <= pid < n:
            listed[pid] = 1
    old = older.reached
    # below the newest commit's high-water mark only: a later commit that
    # crashed before its meta (or a copy made while bbolt wrote) may have
    # written over pages the newest freed, whose new pointers reach pages
    # past that mark; every other page a later commit wrote is one the
    # newest lists free or reaches itself
    top = min(n, len(old), newest.candidate.meta.pgid)
    dropped = [pid for pid in range(2, top)
               if old[pid] and not newest.reached[pid] and not listed[pid]]
    if len(dropped) < 2:  # one page: as likely one id of a damaged freelist
        return
    newest.counts[F.COMMIT_DROPS_PAGES] += len(dropped)
    newest.findings.append(Finding(
        F.COMMIT_DROPS_PAGES,
        f"the newest commit's tree neither reaches nor frees {len(dropped)} pages of the "
        f"previous commit's tree (e.g. {dropped[:5]}): a commit frees every page it stops "
        "using, so the pages its meta names are older than the commit (a lost write)",
        page=dropped[0], detail={"pages": dropped[:100]}))


# ---------------------------------------------------------------- one field proven harmless
def _mended_newest(db: DB, valid: Meta) -> Optional[Choice]:
    """Rule 0: the other meta page fails validation by one field only, and
    the commit it names is proven finished: its tree is kept (bbolt's own
    open takes ``valid``, the previous commit, instead).

    Which meta: the one bbolt would write next after ``valid`` (txid exactly
    ``valid.txid + 1``, on page ``txid % 2``: ``meta.write`` puts meta N on
    page ``N % 2``), magic, version and page size right, its root and
    high-water mark inside the file, and one problem only:

    * ``meta-bad-checksum``, with a synced freelist.  The meta (64 bytes
      after a 16-byte header) lies inside the page's first 512-byte sector,
      which a crash writes whole or not at all, so a bad checksum is not an
      unfinished meta write but a changed byte.  bbolt writes the meta only
      after ``fdatasync`` of every page of the commit (``tx.Commit``).  The
      proof that the fields are the commit's own: its tree is whole, and the
      tree and its own freelist cover every page below its high-water mark
      exactly once (``bbolt check``'s own rule: no page reachable and free,
      none neither), which a changed root, freelist or high-water mark
      breaks;
    * ``meta-freelist-out-of-bounds`` with a good checksum: the meta page is
      what bbolt wrote, after the commit's pages; only its freelist id
      cannot be read.  The freelist holds no records (repair writes its
      own); the tree must be whole.

    Else None."""
    if db.page_size is None:
        return None
    for m in db.metas:
        if m is valid or m.txid != valid.txid + 1 or m.index != m.txid % 2:
            continue
        if m.page_size != db.page_size or m.pgid > db.pages_in_file or m.pgid < valid.pgid:
            continue
        if m.problems == [F.META_BAD_CHECKSUM] and m.freelist_synced:
            why = "fails its checksum only"
        elif m.problems == [F.META_FREELIST_OUT_OF_BOUNDS] and m.checksum_ok:
            why = f"names freelist page {m.freelist}, past its high-water mark {m.pgid}"
        else:
            continue
        j = judge(db, meta_candidate(replace(m, problems=[])), keep_reached=True)
        if not j.whole or (m.checksum_ok is False and j.freelist_damage):
            continue
        if m.checksum_ok is False and valid.freelist_synced:
            _stale_reach(db, j, valid)  # the same proofs a valid newest meta gets
            if not j.whole:
                continue
        j.reached = None
        return Choice(j, MENDED,
                      f"meta {m.index} (txid {m.txid}) {why}; its tree is whole"
                      + (" and covers, with its freelist, every page below its high-water "
                         "mark exactly once" if not m.checksum_ok else "")
                      + f": the commit finished, and is kept (bbolt opens txid {valid.txid})",
                      [j])
    return None


def _freelist_flags_only(db: DB, newest: Judgement) -> bool:
    """The newest commit's freelist page has the wrong type, but its body,
    read as a freelist, lists exactly the pages below the high-water mark
    that the tree does not reach (the freelist's own run aside), each once:
    the commit's freelist with a changed type byte, not a lost write.  A
    lost write leaves the page as it was before the commit: a page free at
    N-1, so an older leaf, branch or zeros, whose bytes read as page ids
    are not that exact set."""
    meta, reached = newest.candidate.meta, newest.reached
    n = meta.pgid
    if reached is None or newest.max_page >= n or not 2 <= meta.freelist < n or \
            n > db.pages_in_file:
        return False
    page = db.page(meta.freelist)
    read = read_freelist(db, replace(page, flags=S.FREELIST_PAGE_FLAG))
    if read.findings or meta.freelist + page.overflow >= n:
        return False
    cover = bytearray(n)
    for pid in range(2, min(n, len(reached))):
        cover[pid] = 1 if reached[pid] else 0
    for pid in range(meta.freelist, meta.freelist + page.overflow + 1):
        cover[pid] += 1
    for pid in read.ids(db):
        if not 2 <= pid < n or cover[pid]:
            return False
        cover[pid] = 1
    return cover.count(1) == n - 2


def etcd_facts(db: DB, tree: Tree) -> dict:
    """``consistent_index``, ``term`` and ``max_revision`` of an etcd tree,
    read by descending to them (O(depth)), not by a walk: a quiet walker,
    whose findings are the full judgement's business."""
    def walker() -> Walker:  # one per descent: a walker reaches each page once
        return Walker(db, tree=tree)

    root = walker().root_bucket()
    out: dict = {}
    buckets = {}
    for name in (b"meta", b"key"):
        w = walker()
        rec = w.find(root, name) if root is not None else None
        if rec is not None and rec.is_bucket:
            buckets[name] = w.open_bucket(root, rec)
    meta = buckets.get(b"meta")
    for key in (b"consistent_index", b"term"):
        rec = walker().find(meta, key) if meta is not None else None
        if rec is not None and not rec.is_bucket and len(rec.value) == 8:
            out[key.decode()] = int.from_bytes(rec.value, "big")
    key = buckets.get(b"key")
    revision = _revision_of(db, key.root if key is not None else None)
    if revision is not None:
        out["max_revision"] = revision
    return out


def _revision_of(db: DB, key_root: Optional[int]) -> Optional[int]:
    """The main revision of the last key of etcd's ``key`` bucket rooted at
    page ``key_root`` (keys are big-endian revisions: the last is the highest)."""
    last = _last_key(db, key_root) if key_root else None
    if last is None or len(last) < 8:
        return None
    return int.from_bytes(last[:8], "big")


def readable_revision(db: DB, newest: Judgement) -> Optional[int]:
    """The highest revision the newest meta's (maybe damaged) tree still
    shows: its walk's, else the ``key`` bucket's last key, found element by
    element off the root even when other elements of the root are broken."""
    revision = newest.etcd.get("max_revision")
    if revision is not None:
        return revision
    return _revision_of(db, _root_entry(db, newest.candidate.tree.root, b"key"))


def _root_entry(db: DB, root: int, name: bytes) -> Optional[int]:
    """The root page of top-level bucket ``name`` when the tree's root is
    one leaf page (etcd's few top-level buckets always fit one): read
    element by element, so one broken element does not hide the others."""
    if not 2 <= root < db.pages_in_file:
        return None
    ps = db.page_size
    pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, root * ps)
    if pid != root or flags != S.LEAF_PAGE_FLAG:
        return None
    end = min((root + overflow + 1) * ps, db.size)
    for _, eflags, key, value, problem in leaf_elements(db.buf, root * ps, count, end):
        if problem is None and key == name and eflags & S.BUCKET_LEAF_FLAG \
                and len(value) >= S.BUCKET_HEADER_SIZE:
            return S.BUCKET_HEADER.unpack_from(value, 0)[0] or None
    return None


def _last_key(db: DB, root: int) -> Optional[bytes]:
    """The last key of a paged bucket rooted at page ``root``, down its
    rightmost branch elements (every page read within its bounds; None on
    anything unexpected)."""
    ps, pgid = db.page_size, root
    for _ in range(64):  # deeper than any bbolt tree
        if not 2 <= pgid < db.pages_in_file:
            return None
        _, flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, pgid * ps)
        end = min((pgid + overflow + 1) * ps, db.size)
        if flags == S.BRANCH_PAGE_FLAG and count:
            last = list(branch_elements(db.buf, pgid * ps, count, end))[-1]
            if last[3]:
                return None
            pgid = last[2]
            continue
        if flags == S.LEAF_PAGE_FLAG and count:
            last = list(leaf_elements(db.buf, pgid * ps, count, end))[-1]
            return None if last[4] else bytes(last[2])
        return None
    return None


def _copied_while_written(db: DB, newest: Judgement, older: Optional[Judgement],
                          judged: List[Judgement]) -> Optional[Choice]:
    """Rule 2: a whole tree no meta names, proven newer than the newest meta."""
    meta = newest.candidate.meta
    later = newer_pages(db, meta)
    etcd_index = newest.etcd.get("consistent_index") if newest.is_etcd else None
    etcd_revision = readable_revision(db, newest) if etcd_index is not None else None
    # neither meta's root holds a bucket any more, both being pages of
    # records (pages of later commits took their places): no name nor index
    # to hold a candidate to.  A root zeroed or cut off is no such trace.
    unread = all(j is not None and not j.top and _root_of_records(db, j.candidate.tree.root)
                 for j in (newest, older))
    if not later and etcd_index is None and not unread:
        return None
    exclude = {newest.candidate.tree.root}
    if older is not None:
        exclude.add(older.candidate.tree.root)
    hwm = db.pages_in_file
    best = None
    for root in root_pages(db, sorted(exclude)):
        j = judge(db, Candidate(_synthetic_tree(db, root, hwm), f"page {root}"))
        judged.append(j)
        if not j.whole or not _compatible(j, newest, older, unread):
            continue
        proof = _newer_proof(j, meta, etcd_index, unread, etcd_revision)
        if proof is None:
            continue
        if best is None or _order(j) > _order(best[0]):
            best = (j, proof)
    if best is None:
        return None
    j, proof = best
    return Choice(j, COPIED,
                  f"this file was copied while it was being written: the newest meta "
                  f"(txid {meta.txid}) names a damaged tree ({_damage_text(newest)}), "
                  f"while the whole tree at root page {j.candidate.tree.root} is newer "
                  f"({proof}); kept that one", judged, passed_over=newest)


def _older_whole_etcd_tree(db: DB, newest: Judgement, older: Optional[Judgement],
                           judged: List[Judgement]) -> Optional[Choice]:
    """Rule 4: neither meta's root reads; for an etcd file, the whole etcd
    tree no meta names with the highest revision that is not above the
    revision the newest meta's tree still shows (a higher one would be rule
    2's to prove newer)."""
    metas = [j for j in (newest, older) if j is not None]
    if any(j.top for j in metas):
        # a meta's root still reads: pruning keeps its commit's records
        # (the report names what it lost); a file that is not etcd's has
        # no WAL to replay what a rollback loses either
        return None
    shown = readable_revision(db, newest)
    known = {j.candidate.tree.root for j in judged}
    hwm = db.pages_in_file
    for root in root_pages(db, sorted(known)):
        judged.append(judge(db, Candidate(_synthetic_tree(db, root, hwm), f"page {root}")))
    best = None
    for j in judged:
        if j.candidate.meta is not None or not j.whole or not j.is_etcd:
            continue
        revision = j.etcd.get("max_revision", -1)
        if shown is not None and revision > shown:
            continue
        rank = (revision, j.etcd.get("consistent_index", -1), j.records)
        if best is None or rank > best[0]:
            best = (rank, j)
    if best is None:
        return None
    j = best[1]
    facts = ", ".join(f"{k} {v}" for k, v in sorted(j.etcd.items())) or "no etcd facts"
    return Choice(j, ROLLED_BACK_FURTHER,
                  f"no meta names a whole tree: the newest commit (txid "
                  f"{newest.candidate.txid}) is damaged ({_damage_text(newest)})"
                  + (f", and so is the previous one ({_damage_text(older)})" if older else "")
                  + f"; the newest whole etcd tree in the file, at root page "
                  f"{j.candidate.tree.root} ({facts}), is an older commit's: rolled back to "
                  "it (etcd replays its WAL above that tree's consistent_index)",
                  judged, passed_over=newest)


def _root_of_records(db: DB, root: int) -> bool:
    """The page a meta names as its root is a readable branch or leaf page
    (with its own id) of another bucket's records."""
    if not 2 <= root < db.pages_in_file:
        return False
    pid, flags, count, _ = S.PAGE_HEADER.unpack_from(db.buf, root * db.page_size)
    return pid == root and count > 0 and flags in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG)


def _compatible(j: Judgement, newest: Judgement, older: Optional[Judgement],
                unread: bool = False) -> bool:
    """A root no meta names must hold the kind of top level the metas' trees
    hold (a sub-bucket holding only sub-buckets would move them to the top):
    an etcd file's buckets, or top-level names the meta trees also have.
    When neither meta's root can be read, only etcd's top level, which no
    sub-bucket has (etcd nests none), is recognised."""
    if unread or newest.is_etcd or (older is not None and older.is_etcd):
        return j.is_etcd
    known = set(newest.top) | set(older.top if older is not None else ())
    return bool(known) and bool(set(j.top) & known)


def _newer_proof(j: Judgement, meta: Meta, etcd_index: Optional[int],
                 unread: bool = False, etcd_revision: Optional[int] = None) -> Optional[str]:
    """Why tree ``j`` is newer than ``meta``'s commit, or None.

    For etcd both facts must grow: ``consistent_index`` alone is not proof,
    because a snapshot restore (``etcdutl snapshot restore``) resets it, so a
    freed tree from before the restore can carry a higher index than every
    commit after it.  Revisions are never reset, and a newer commit that a
    copy caught holds at least one revision more (etcd writes a revision in
    every commit that changes a key).  When the newest tree's highest
    revision cannot be read, nothing proves the other tree newer."""
    index = j.etcd.get("consistent_index")
    if etcd_index is not None and index is not None:
        if index <= etcd_index:
            return None
        revision = j.etcd.get("max_revision")
        if etcd_revision is None or revision is None or revision <= etcd_revision:
            return None  # no proof: the newest tree's revision unread, or not below
        return (f"its meta/consistent_index {index} is above the newest meta's {etcd_index} "
                f"and its highest revision {revision} above {etcd_revision}")
    if unread and index is not None:
        # nothing to compare with: the whole etcd tree with the highest
        # consistent_index (_order) is the newest commit the file still holds
        return (f"the metas' roots hold no bucket; of the whole etcd trees in the file it has "
                f"the highest meta/consistent_index, {index}")
    if j.reaches_from(meta.pgid):
        return (f"it reaches page {j.max_page}, at or above the newest meta's high-water "
                f"mark {meta.pgid}, where no commit up to txid {meta.txid} wrote")
    return None


def _order(j: Judgement) -> tuple:
    """Newest first among proven-newer whole trees: etcd's consistent_index
    and term; else the highest page reached (bbolt's high-water mark only
    grows), then the most records."""
    return (j.etcd.get("consistent_index", -1), j.etcd.get("term", -1), j.max_page, j.records)


def _damage_text(j: Judgement, most: int = 3) -> str:
    codes = [c for c, _ in j.counts.most_common() if c in TREE_LOSS][:most]
    return ", ".join(f"{j.counts[c]} {c}" for c in codes) or "no damage"


# ---------------------------------------------------------------- what the newer commit held
#: key ranges listed per bucket (every record is still counted)
MAX_RANGES = 16
#: buckets listed (the rest are counted)
MAX_BUCKETS = 100


@dataclass
class BucketLoss:
    """What the passed-over commit held in one bucket that the kept one does not."""

    path: tuple
    added: int = 0
    changed: int = 0
    deleted: int = 0
    #: kept records the newer tree may hold on pages it could not read
    unknown: int = 0
    ranges: list = field(default_factory=list)
    _open: Optional[list] = None

    def note(self, key: bytes, kind: str) -> None:
        """Count one record of ``kind`` (added, changed, deleted, unknown) and extend the range."""
        setattr(self, kind, getattr(self, kind) + 1)
        if kind in ("deleted", "unknown"):
            self._open = None  # a record the rollback brings back breaks a run
            return
        if self._open is not None:
            self._open[1] = key
        elif len(self.ranges) < MAX_RANGES:
            self._open = [key, key]
            self.ranges.append(self._open)

    def same(self) -> None:
        """A record both commits hold alike: it ends the current range."""
        self._open = None


def newer_commit_loss(db: DB, newer: Tree, kept: Tree) -> dict:
    """What the newer commit's tree held, as far as its pages can still be
    read, that the kept tree does not: records it added or changed (lost by
    the rollback) and records it deleted (back after it), per bucket with
    their key ranges.  ``unread`` names the buckets where the newer tree is
    damaged: a kept record there may or may not be in the newer commit.
    Pages both trees reach are the same bytes and are skipped, so the cost
    is the pages the two commits differ in."""
    damaged: set = set()  # bucket paths the newer tree could not read whole

    def note(f: Finding) -> None:
        if f.code not in NEVER_STOP:
            damaged.add(tuple(f.bucket))

    w_new, w_old = Walker(db, note, tree=newer), Walker(db, tree=kept)
    w_old.count_all()  # the kept tree's pages, to skip them in the newer one
    shared = w_old.reached
    w_old = Walker(db, tree=kept)
    w_new.count_all()
    mine = w_new.reached
    w_new = Walker(db, tree=newer)

    def unread(path: tuple) -> bool:
        """A record of the kept tree the newer one may hold on a page it
        could not read: not known to be deleted."""
        return any(path[:i] in damaged for i in range(len(path) + 1))

    per: dict = {}
    order: list = []

    def loss(path) -> BucketLoss:
        b = per.get(path)
        if b is None:
            b = per[path] = BucketLoss(path)
            order.append(path)
        return b

    new_it = _records_off(w_new, shared)
    old_it = _records_off(w_old, mine)
    a, b = next(new_it, None), next(old_it, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            loss(a[0][:-1]).note(a[0][-1], "added")
            a = next(new_it, None)
        elif a is None or b[0] < a[0]:
            loss(b[0][:-1]).note(b[0][-1], "unknown" if unread(b[0][:-1]) else "deleted")
            b = next(old_it, None)
        else:
            if a[1] != b[1]:
                loss(a[0][:-1]).note(a[0][-1], "changed")
            elif a[0][:-1] in per:
                per[a[0][:-1]].same()
            a, b = next(new_it, None), next(old_it, None)
    buckets = [per[p] for p in order if per[p].added or per[p].changed or per[p].deleted]
    return {
        "added": sum(x.added for x in buckets),
        "changed": sum(x.changed for x in buckets),
        "deleted": sum(x.deleted for x in buckets),
        "unread": sorted([name_text(p) for p in path] for path in damaged)[:MAX_BUCKETS],
        "buckets_total": len(buckets),
        "buckets": [{"bucket": [name_text(p) for p in x.path], "added": x.added,
                     "changed": x.changed, "deleted": x.deleted,
                     "ranges": [[_range_key(a), _range_key(b)] for a, b in x.ranges]}
                    for x in buckets[:MAX_BUCKETS]],
    }


#: a lost commit's key ranges show keys by their first bytes: a range is a
#: pointer for the operator, and a key may be 32 KiB (bbolt's MaxKeySize)
RANGE_KEY_BYTES = 64


def _range_key(key: bytes) -> str:
    """``key`` for a range of a lost commit, cut to :data:`RANGE_KEY_BYTES`."""
    if len(key) <= RANGE_KEY_BYTES:
        return name_text(key)
    return f"{name_text(key[:RANGE_KEY_BYTES])}... ({len(key)} bytes)"


def _records_off(walker: Walker, skip) -> Iterator[tuple]:
    """(bucket path + key, value or None for a bucket entry) in walk order
    (which is that tuple's order), leaving out the pages ``skip`` marks."""
    for bucket, batch in walker.walk_batches():
        if batch.page and batch.page < len(skip) and skip[batch.page]:
            continue
        path = bucket.path
        for rec in batch.records():
            yield path + (bytes(rec.key),), None if rec.is_bucket else bytes(rec.value)
