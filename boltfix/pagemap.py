"""One page map per walk: what every page of the file is, and why.

Built once from what the walk reached (:attr:`Walker.reached`), the
freelist of the meta in use (synced or not) and the file length, and read
by ``check`` (freelist findings), ``inspect`` (free page count), ``pages``
(each page's state) and ``dump --include free,orphan`` (the candidates).

One byte per page of the file: the low 7 bits are the page's state, bit 7
says the synced freelist lists it.  Pages the meta counts but the file lacks
(past the end of the file) are not stored: :meth:`PageMap.state` says
:data:`PAST_EOF` for them.  The reason for each state is :data:`REASONS`; a
new kind of page (salvage's "orphan subtree root", say) is a new state
number with its reason (:func:`add_state`), set with :meth:`PageMap.mark`.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Optional

from boltfix import findings as F
from boltfix import structs as S
from boltfix.findings import ERROR, Finding
from boltfix.reader import DB

# states (the walk's own reachability values for the first two)
UNREACHED = 0  # below the high-water mark, not reached by the tree
REACHED = 1  # a tree page (its first page); walk.REACHED
OVERFLOW = 2  # the rest of a reached page's overflow run; walk.OVERFLOW
META = 3  # page 0 or 1
FREELIST = 4  # the synced freelist's page
FREELIST_RUN = 5  # the rest of the freelist page's overflow run
BEYOND_HWM = 6  # in the file, at or above the high-water mark
PAST_EOF = 7  # below the high-water mark but past the end of the file (not stored)
#: bit 7: listed in the synced freelist (a valid id, listed once)
LISTED = 0x80

REASONS = {
    UNREACHED: "below the high-water mark and not reached from the root",
    REACHED: "reached from the root",
    OVERFLOW: "part of a reached page's overflow run",
    META: "a meta page",
    FREELIST: "the synced freelist's page",
    FREELIST_RUN: "part of the freelist page's overflow run",
    BEYOND_HWM: "at or above the high-water mark (never allocated by the meta in use)",
    PAST_EOF: "the meta counts it, the file does not hold it",
}



def add_state(state: int, reason: str) -> int:
    """Register a new page state (a number below 0x80 not yet taken) and
    its reason; returns it.  For example salvage's "orphan subtree root"."""
    if not 0 <= state < LISTED or state in REASONS:
        raise ValueError(f"page state {state} is taken or out of range")
    REASONS[state] = reason
    return state


#: the states a reader of the tree reaches (tree pages, metas, the freelist)
_IN_USE = (REACHED, OVERFLOW, META, FREELIST, FREELIST_RUN)
# state byte -> 0 neither reached nor listed, 1 in use, 2 listed, 3 both
_REACH_LIST = bytes((1 if (b & 0x7F) in _IN_USE else 0) | (2 if b & LISTED else 0)
                    for b in range(256))


class PageMap:
    """The state of every page of one DB after one walk."""

    def __init__(self, db: DB, walker, report=None, meta=None):
        """``meta``: whose freelist (default the meta in use's): the one
        naming the tree the walker walked."""
        self.db = db
        self.pages_in_file = n = db.pages_in_file
        self.hwm = walker.hwm
        self.limit = min(self.hwm, n)
        self.has_tree = walker.tree is not None
        # REACHED / OVERFLOW / UNREACHED; the walker's map stops at the
        # high-water mark, the page map covers the file
        self.states = bytearray(n)
        self.states[:len(walker.reached)] = walker.reached
        self.states[0:min(2, n)] = bytes([META]) * min(2, n)
        self.freelist = db.freelist(meta) if self.has_tree else None
        #: the meta says the freelist is synced (etcd's files do not sync it)
        self.synced = self.freelist is not None
        #: ...and its page could be read (a freelist that could not be read at
        #: all tells nothing about which pages are free)
        self.readable = self.synced and (self.freelist.count > 0 or not self.freelist.findings)
        self.listed = 0
        self.reported = 0  # freelist id findings reported one by one
        self._report = report or (lambda f: None)
        if self.freelist is not None:
            self._mark_freelist(self.freelist)
        # in slices: a sparse file of 78 million pages past the high-water
        # mark would need two more copies of the whole map at once
        for start in range(self.hwm, n, 1 << 22):
            stop = min(n, start + (1 << 22))
            self.states[start:stop] = self.states[start:stop].replace(b"\x00",
                                                                      bytes([BEYOND_HWM]))

    # ------------------------------------------------------------ reading
    def state(self, pgid: int) -> int:
        """The state of page ``pgid`` (:data:`PAST_EOF` past the end of the file)."""
        if pgid >= self.pages_in_file:
            return PAST_EOF
        return self.states[pgid] & 0x7F

    def is_listed(self, pgid: int) -> bool:
        """Whether the synced freelist lists page ``pgid``."""
        return pgid < self.pages_in_file and bool(self.states[pgid] & LISTED)

    def reason(self, pgid: int) -> str:
        """Why page ``pgid`` is in its state, in words."""
        why = REASONS[self.state(pgid)]
        return why + ("; listed in the freelist" if self.is_listed(pgid) else "")

    def mark(self, pgid: int, state: int) -> None:
        """Give a page a new state (keeping its freelist bit)."""
        self.states[pgid] = (self.states[pgid] & LISTED) | state

    def count(self, state: int, start: int = 0, stop: Optional[int] = None) -> int:
        """Pages in ``state`` (freelist bit clear) among ``start:stop``."""
        return self.states[start:stop].count(state)

    def positions(self, state: int, start: int = 0, stop: Optional[int] = None
                  ) -> Iterator[int]:
        """Page ids in ``state`` (freelist bit clear), ascending."""
        return _positions(self.states, state, start, self.limit if stop is None else stop)

    def reach_list(self) -> bytes:
        """Per page below the limit: 0 neither in use nor listed, 1 in use,
        2 listed free, 3 both (``reachable-freed``)."""
        return bytes(self.states[:self.limit]).translate(_REACH_LIST)

    # ------------------------------------------------------------ freelist
    def _mark_freelist(self, fl) -> None:
        """The freelist page's run and the ids it lists; every problem reported
        (bbolt's ``tx.Check`` wording in ``detail``)."""
        for f in fl.findings:
            self._report(f)
        states, hwm, n = self.states, self.hwm, self.pages_in_file
        if fl.pgid < self.limit:
            fpage = self.db.page(fl.pgid)
            # a page that is not a freelist has no overflow run we can trust
            overflow = fpage.overflow if fpage.flags == S.FREELIST_PAGE_FLAG else 0
            last = fl.pgid + overflow
            if last >= hwm:
                self._report(Finding(
                    F.FREELIST_OUT_OF_BOUNDS,
                    f"freelist page {fl.pgid}'s overflow run ({overflow} pages) ends "
                    f"at page {last}, at or above the high-water mark {hwm}",
                    ERROR, fl.pgid, detail={"overflow": overflow}))
            end = min(last, hwm - 1, n - 1)
            for hit in range(fl.pgid, end + 1):
                if states[hit] != UNREACHED:  # a tree page's head or overflow page
                    self._overlap(hit, fl.pgid)
            # the claimed run past the high-water mark too (pages folds it
            # into the freelist's row; check and dump look only below it)
            end = min(last, n - 1)
            states[fl.pgid + 1: end + 1] = bytes([FREELIST_RUN]) * max(0, end - fl.pgid)
        if fl.pgid < n:
            states[fl.pgid] = FREELIST
        self._mark_listed(fl)

    def _overlap(self, hit: int, fpgid: int) -> None:
        self._report(Finding(F.MULTIPLE_REFERENCES,
                             f"page {hit} is reached from the tree and is also part of "
                             f"freelist page {fpgid}'s run",
                             ERROR, hit, detail={"bbolt": f"page {hit}: multiple references"}))

    def _mark_listed(self, fl) -> None:
        states, hwm, n = self.states, self.hwm, self.pages_in_file
        report = self._report
        more = Counter()  # findings past FREELIST_FINDINGS, by code

        def bounded(finding):
            if self.reported < FREELIST_FINDINGS:
                self.reported += 1
                report(finding)
            else:
                more[finding.code] += 1

        self._report = bounded
        try:
            self._mark_ids(fl, states, hwm, n, more)
        finally:
            self._report = report
        for code, k in more.items():
            report(Finding(code, f"... and {k:,} more freelist ids with this problem, not "
                           f"listed one by one (the first {FREELIST_FINDINGS:,} are)",
                           ERROR, None, detail={"more": k}))

    def _mark_ids(self, fl, states, hwm, n, more) -> None:
        for pid in fl.ids(self.db):
            if more and states[pid if pid < n else 0] & LISTED and 2 <= pid < hwm:
                more[F.ALREADY_FREED] += 1  # the hot path of a hostile list
                continue
            if pid < 2:
                self._report(Finding(F.FREELIST_RESERVED_PAGE,
                                     f"the freelist lists meta page {pid} as free", ERROR, pid))
            elif pid >= hwm:
                self._report(Finding(
                    F.FREELIST_OUT_OF_BOUNDS,
                    f"the freelist lists page {pid}, at or above the high-water mark {hwm}",
                    ERROR, pid))
            elif pid == fl.pgid:
                self._report(Finding(F.FREELIST_SELF,
                                     f"the freelist lists its own page {pid} as free",
                                     ERROR, pid))
            elif pid >= n:
                continue  # past the end of the file: file-truncated already says so
            elif states[pid] & LISTED:
                self._report(Finding(F.ALREADY_FREED,
                                     f"page {pid} is listed twice in the freelist", ERROR, pid,
                                     detail={"bbolt": f"page {pid}: already freed"}))
            else:
                states[pid] |= LISTED
                self.listed += 1


#: findings about single freelist ids reported one by one; past it they are
#: counted, in one finding per code at the end.  A hostile freelist of 6
#: million duplicate ids took 15 s of Finding objects (bbolt prints one line
#: per id, too).
FREELIST_FINDINGS = 10_000


def _positions(data, value: int, start: int, stop: int) -> Iterator[int]:
    """Indexes of ``value`` in ``data[start:stop]``, ascending (bytes.find)."""
    needle = bytes([value])
    i = data.find(needle, start, stop)
    while i != -1:
        yield i
        i = data.find(needle, i + 1, stop)


def positions(data, value: int) -> Iterator[int]:
    """Indexes of ``value`` in ``data``, ascending."""
    return _positions(data, value, 0, len(data))
