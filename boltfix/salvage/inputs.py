"""What the rules need from the walk: the pruned pointers with their exact
key ranges, and the page map (:func:`inputs_from_walk`, the one adapter)."""

from __future__ import annotations

from dataclasses import dataclass

from boltfix import findings as F
from boltfix import structs as S
from boltfix.findings import Finding
from boltfix.leaves import Tree
from boltfix.pagemap import PageMap, positions
from boltfix.reader import DB, branch_elements, read_freelist
from boltfix.unreached import Orphan, scan_orphans
from boltfix.walk import Walker


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
        """The pointer itself broke (rule 1): the real child may lie elsewhere."""
        return self.code in F.BROKEN_POINTER or (self.code == F.INVALID_PAGE_TYPE
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


class PruneLog:
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
        if finding.code in F.POINTER:
            self.pruned.append(finding)
        elif finding.code in F.UNCLAIMED:
            self.unclaimed += 1
        elif finding.code == F.PAGE_ID_MISMATCH:
            # a copied page followed by the walk: its overflow run or
            # sub-buckets may have claimed pages of others (so a later, real
            # pointer to them reads as a second reference), and the entries
            # of the page it replaced died with it
            self.unclaimed += 1
            self.mismatch += 1


def inputs_from_walk(db: DB, walker: Walker, log: PruneLog, meta=None) -> Inputs:
    """The one adapter from the walk to the rules: the page map (what the
    tree reached, what the synced freelist lists: :class:`~boltfix.pagemap.PageMap`),
    pruned pointers with their exact key ranges.  ``meta``: the meta whose
    tree was walked (repair may use the other one than the meta in use)."""
    # rule 5: a pointer read from a page whose header id is not its position
    # (a copy of another page) claims nothing about this bucket
    parents: dict = {}  # the last parent branch page's elements, indexed once
    pruned = [_pruned(db, f, parents) for f in log.pruned
              if all(_own_id(db, pg) for pg in f.pages)
              and not (log.mismatch and f.code == F.MULTIPLE_REFERENCES)]
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
                  unclaimed=log.unclaimed, mismatch=log.mismatch)


_IN_USE = bytes(b & 1 for b in range(256))


def _freelist_of(db: DB, m, hwm: int) -> frozenset | None:
    """The ids a meta's synced freelist lists, None when it cannot be read cleanly."""
    if m.freelist >= min(hwm, db.pages_in_file):
        return None
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
            for i, k, child_id, trouble in branch_elements(db.buf, p.offset, p.count,
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


def orphans_of(db: DB, inp: Inputs) -> list[Orphan]:
    """The unreached pages the rules read (:func:`boltfix.unreached.scan_orphans`)."""
    return scan_orphans(db, inp.reached, inp.page_limit, inp.free)


def root_lost_inputs(db: DB) -> Inputs:
    """Inputs when no tree could be walked at all: nothing reached, the
    high-water mark and freelist of the newest meta that is still valid."""
    m = max((m for m in db.metas if m.valid), key=lambda m: m.txid, default=None)
    hwm = m.pgid if m is not None else db.pages_in_file
    free = _freelist_of(db, m, hwm) if m is not None and m.freelist_synced else None
    return Inputs(reached=bytes(db.pages_in_file), pruned=[], free=free, hwm=hwm,
                  page_limit=min(hwm, db.pages_in_file), truncated=db.pages_in_file < hwm,
                  tree=Tree(0, 0, hwm))


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
