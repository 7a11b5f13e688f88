"""The pages the tree does not reach, and the leaves on them.

What the walk did not reach is either free (the synced freelist lists it,
or, without one, any page below the high-water mark the tree does not
reach) or an orphan: neither, or at or past the high-water mark.  Stale
data lies there: ``dump --include free,orphan`` prints it, the etcd
analysis (:mod:`boltfix.served`) reads copies of ``key`` leaves there, and
salvage (:mod:`boltfix.salvage`) decides what of it is proven current.

* :func:`classify`: the free and orphan candidates of one walk, and a
  class per page;
* :func:`leaf_pages`: the one iterator over the leaf pages among them
  (dump and the etcd analysis), each with its usable run;
* :func:`scan_orphans`: salvage's view (branch and leaf pages below the
  high-water mark, with their state and first key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

from boltfix import resident
from boltfix import structs as S
from boltfix.pagemap import (
    BEYOND_HWM,
    FREELIST,
    FREELIST_RUN,
    LISTED,
    OVERFLOW,
    REACHED,
    UNREACHED,
    PageMap,
)
from boltfix.reader import DB, branch_elements, leaf_elements
from boltfix.walk import Walker

_KNOWN_FLAGS = (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG, S.FREELIST_PAGE_FLAG, S.META_PAGE_FLAG)
# page classes for classify()
C_REACHED, C_FREE, C_ORPHAN, C_OTHER = 1, 2, 3, 4
# page map state -> class (free and orphan are set by classify itself)
_MAP_CLASS = bytes(
    C_FREE if b == UNREACHED | LISTED else
    C_REACHED if b & 0x7F in (REACHED, OVERFLOW) else
    0 if b & 0x7F in (UNREACHED, BEYOND_HWM) else C_OTHER
    for b in range(256))


def _has_header(buf, q: int, ps: int) -> bool:
    pid, flags = S.PAGE_HEADER.unpack_from(buf, q * ps)[:2]
    return pid == q and flags in _KNOWN_FLAGS


def classify(db: DB, walker: Walker) -> Tuple[List[int], List[int], bytearray]:
    """Free and orphan candidate pages, and a class per page of the file,
    from the walk's :class:`PageMap`.

    Free: the synced freelist's ids (that are not reachable), or without a
    synced (readable) freelist, the unreached pages below the high-water mark.
    Orphan: with a synced freelist, unreached pages below the HWM that are
    neither free nor the freelist itself; in every case the pages at or past
    the HWM that are in the file.
    """
    pm = PageMap(db, walker)
    classes = pm.states.translate(_MAP_CLASS)  # a bytearray: one copy of the map
    limit = pm.limit
    if pm.readable:
        free = list(pm.positions(UNREACHED | LISTED, 2, limit))
        orphan = list(pm.positions(UNREACHED, 2, limit))
    else:
        # a freelist that could not be read at all counts as not synced: its
        # own page is a candidate like any other page the tree does not reach
        free = [i for i in range(2, limit)
                if pm.states[i] in (UNREACHED, FREELIST, FREELIST_RUN)]
        orphan = []
        for i in free:
            classes[i] = C_FREE
    if not pm.has_tree:
        # no tree at all: everything is an orphan
        orphan = free + orphan
        free = []
    for i in orphan:
        classes[i] = C_ORPHAN
    beyond = range(max(limit, 2), pm.pages_in_file)
    for start in range(beyond.start, beyond.stop, 1 << 22):  # no map-sized temporary
        stop = min(beyond.stop, start + (1 << 22))
        classes[start:stop] = bytes([C_ORPHAN]) * (stop - start)
    return free, _Pages(orphan, beyond), classes


class _Pages:
    """Page ids: a list, then a range (the pages past the high-water mark,
    never made into a list)."""

    def __init__(self, ids: List[int], tail: range):
        self.ids = ids
        self.tail = tail

    def __len__(self) -> int:
        return len(self.ids) + len(self.tail)

    def __iter__(self):
        yield from self.ids
        yield from self.tail


def leaf_pages(db: DB, pages, classes: bytearray, want: int,
               on_skip: Optional[Callable[[int, Exception], None]] = None
               ) -> Iterator[Tuple[int, int, int, int]]:
    """``(pgid, offset, count, end)`` of each leaf page among ``pages``
    (sorted candidates of class ``want``: :data:`C_FREE` or
    :data:`C_ORPHAN`), ``end`` the end of its usable run.

    ``classes[p]`` tells what page ``p`` is (:func:`classify`); a
    continuation run is cut at the first page of another class, or one that
    has its own valid header.  A page whose header cannot be read is
    skipped (``on_skip(pgid, exc)``): stale bytes never stop a scan.
    """
    buf = db.buf
    ps = db.page_size
    npages = db.pages_in_file
    skip_until = -1
    # the headers read (a continuation run's too) stay mapped: the map
    # is dropped every TRIM_BYTES of pages (boltfix.resident)
    trim = max(resident.TRIM_BYTES // ps, 1)
    next_trim = trim
    for pgid in pages:
        if pgid <= skip_until:
            continue
        if pgid >= next_trim:
            resident.release(buf)
            next_trim = pgid + trim
        try:
            off = pgid * ps
            pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(buf, off)
            if pid != pgid or flags not in _KNOWN_FLAGS:
                continue
            # the usable run: continuation pages of the same class without
            # a header of their own
            last = pgid
            while last < pgid + overflow and last + 1 < npages:
                q = last + 1
                if classes[q] != want or _has_header(buf, q, ps):
                    break
                last = q
                if q >= next_trim:
                    resident.release(buf)
                    next_trim = q + trim
            skip_until = last
        except Exception as exc:  # never let stale bytes stop the scan
            if on_skip is not None:
                on_skip(pgid, exc)
            continue
        if flags == S.LEAF_PAGE_FLAG:
            yield pgid, off, count, (last + 1) * ps


# ---------------------------------------------------------------- salvage's orphans
@dataclass
class Orphan:
    """A page below the high-water mark the tree does not reach that claims
    to be a branch or leaf page (:func:`scan_orphans`)."""

    pgid: int
    flags: int
    count: int
    overflow: int
    state: str  # unreached | free | bad-self-id
    first: bytes | None = None


def scan_orphans(db: DB, reached, page_limit: int, free) -> list[Orphan]:
    """Every page below ``page_limit`` (the high-water mark, inside the file)
    not ``reached`` (nonzero: reached; one byte per page) that claims to be
    a branch or leaf page; ``free``: the synced freelist's ids or None.
    Overflow runs of the pages kept are skipped."""
    out = []
    ps, buf, n, limit = db.page_size, db.buf, 2, page_limit
    while n < limit:
        if reached[n]:
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
        state = "free" if free is not None and n in free else "unreached"
        o = Orphan(n, flags, count, overflow if n + overflow < limit else 0, state)
        o.first = _first_key(db, o)
        out.append(o)
        n += 1 + o.overflow
    return out


def orphan_end(db: DB, o: Orphan) -> int:
    """The end offset of an orphan's run, clipped to the file."""
    return min((o.pgid + 1 + o.overflow) * db.page_size, db.size)


def _first_key(db: DB, o: Orphan) -> bytes | None:
    off = o.pgid * db.page_size
    if o.flags == S.BRANCH_PAGE_FLAG:
        for _, key, _, trouble in branch_elements(db.buf, off, o.count, orphan_end(db, o)):
            return None if trouble else key
    else:
        for _, _, key, _, trouble in leaf_elements(db.buf, off, o.count, orphan_end(db, o)):
            return None if trouble else key
    return None


def orphan_children(db: DB, o: Orphan) -> list[int]:
    """Pages an orphan points at: a branch's children, a leaf's sub-bucket roots."""
    off, end = o.pgid * db.page_size, orphan_end(db, o)
    if o.flags == S.BRANCH_PAGE_FLAG:
        return [c for _, _, c, t in branch_elements(db.buf, off, o.count, end) if not t]
    return [S.BUCKET_HEADER.unpack_from(v, 0)[0]
            for _, f, _, v, t in leaf_elements(db.buf, off, o.count, end)
            if not t and f & S.BUCKET_LEAF_FLAG and len(v) >= S.BUCKET_HEADER_SIZE]
