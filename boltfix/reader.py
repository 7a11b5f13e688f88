"""Read-only access to a bbolt file: ``DB -> Page -> Element``.

Nothing in the file is trusted.  ``DB`` maps the file read-only, works out
the page size and decodes both meta pages with their own validity; ``page(n)``
checks bounds before it reads a header; ``Page.elements()`` checks every
element against the page's run before it slices a key or value.  Problems
are returned as :class:`~boltfix.errors.Finding` values; only an access that
cannot be answered at all raises :class:`~boltfix.errors.BoltError`.

Tree walks live in :mod:`boltfix.walk`.
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from boltfix import findings as F
from boltfix import structs as S
from boltfix.errors import BoltError, CannotOpen, located
from boltfix.findings import Finding
from boltfix.guard import Watch, lease_input

# how many leading pages the page-size scan looks at per candidate size
_SCAN_PAGES = 64


# ---------------------------------------------------------------- meta
@dataclass
class Meta:
    """One decoded meta page and everything wrong with it."""

    index: int
    offset: int
    magic: int = 0
    version: int = 0
    page_size: int = 0
    flags: int = 0
    root: int = 0
    sequence: int = 0
    freelist: int = 0
    pgid: int = 0
    txid: int = 0
    checksum: int = 0
    computed_checksum: int = 0
    header_id: Optional[int] = None
    header_flags: Optional[int] = None
    #: codes of what makes this meta unusable (empty when valid)
    problems: List[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Usable: no problem found."""
        return not self.problems

    @property
    def checksum_ok(self) -> bool:
        """The stored checksum is the computed one."""
        return self.checksum == self.computed_checksum

    @property
    def freelist_synced(self) -> bool:
        """The freelist is on disk (etcd's files do not sync it)."""
        return self.freelist != S.PGID_NO_FREELIST

    def to_json(self) -> dict:
        """The meta as ``inspect --json`` and ``page --json`` give it."""
        return {
            "index": self.index,
            "magic": self.magic,
            "version": self.version,
            "page_size": self.page_size,
            "flags": self.flags,
            "root": self.root,
            "sequence": self.sequence,
            "freelist": None if not self.freelist_synced else self.freelist,
            "freelist_synced": self.freelist_synced,
            "pgid": self.pgid,
            "txid": self.txid,
            "checksum": f"{self.checksum:016x}",
            "checksum_ok": self.checksum_ok,
            "valid": self.valid,
            "problems": list(self.problems),
        }


def page_size_sane(size: int) -> bool:
    """A page size bbolt itself writes: a power of two in 512..65536."""
    return S.MIN_PAGE_SIZE <= size <= S.MAX_PAGE_SIZE and size & (size - 1) == 0


def decode_meta_page(buf, offset: int, index: int, page_size_hint: Optional[int] = None) -> Meta:
    """Decode the meta page at ``offset``; never raises on file data."""
    m = Meta(index=index, offset=offset)
    if offset + S.PAGE_HEADER_SIZE + S.META_SIZE > len(buf):
        m.problems.append(F.META_TRUNCATED)
        return m
    m.header_id, m.header_flags, _, _ = S.PAGE_HEADER.unpack_from(buf, offset)
    body = offset + S.PAGE_HEADER_SIZE
    (m.magic, m.version, m.page_size, m.flags, m.root, m.sequence, m.freelist,
     m.pgid, m.txid, m.checksum) = S.META.unpack_from(buf, body)
    m.computed_checksum = S.fnv64a(buf[body: body + S.META_CHECKSUM_SPAN])
    if m.magic != S.MAGIC:
        m.problems.append(F.META_BAD_MAGIC)
    if m.version != S.VERSION:
        m.problems.append(F.META_BAD_VERSION)
    # bbolt <= 1.3.6 accepts a zero checksum; we follow the version etcd uses.
    if m.checksum != m.computed_checksum and m.checksum != 0:
        m.problems.append(F.META_BAD_CHECKSUM)
    if not page_size_sane(m.page_size):
        m.problems.append(F.META_BAD_PAGE_SIZE)
    if m.pgid < 2 or (m.root < 2 or m.root >= m.pgid):
        m.problems.append(F.META_ROOT_OUT_OF_BOUNDS)
    if m.freelist != S.PGID_NO_FREELIST and (m.freelist < 2 or m.freelist >= m.pgid):
        m.problems.append(F.META_FREELIST_OUT_OF_BOUNDS)
    return m


def meta_in_use(metas: List[Meta]) -> Optional[Meta]:
    """bbolt's choice: the valid meta with the higher txid; a tie goes to meta 0."""
    valid = [m for m in metas if m.valid]
    if not valid:
        return None
    return max(valid, key=lambda m: (m.txid, -m.index))


# ---------------------------------------------------------------- pages
@dataclass
class Element:
    """One branch or leaf element, already bounds-checked (or with a problem)."""

    index: int
    offset: int  # absolute file offset of the element header
    key: bytes = b""
    value: Optional[memoryview] = None  # leaf only
    flags: int = 0  # leaf only
    child: Optional[int] = None  # branch only
    pos: int = 0
    ksize: int = 0
    vsize: int = 0
    problem: Optional[str] = None

    @property
    def is_bucket(self) -> bool:
        """A bucket entry (leaf elements only)."""
        return bool(self.flags & S.BUCKET_LEAF_FLAG)


@dataclass
class Page:
    """A page header at its position, with its run bounds (not yet trusted)."""

    db: "DB"
    pgid: int  # its position in the file: offset / page size
    self_id: int  # the id its header claims (== pgid unless damaged)
    flags: int
    count: int
    overflow: int

    @property
    def offset(self) -> int:
        """The page's byte offset in the file."""
        return self.pgid * self.db.page_size

    @property
    def type(self) -> str:
        """The page's type name, as bbolt reads its flags."""
        return S.page_type_name(self.flags)

    @property
    def run_end(self) -> int:
        """End offset of the page with its overflow run, clipped to the file."""
        return min(self.offset + (self.overflow + 1) * self.db.page_size, self.db.size)

    @property
    def run_complete(self) -> bool:
        """The whole overflow run lies inside the file."""
        return self.offset + (self.overflow + 1) * self.db.page_size <= self.db.size

    def data(self) -> memoryview:
        """The page's run (clipped to the file), a view of the map."""
        return self.db.buf[self.offset: self.run_end]

    def elements(self) -> List[Element]:
        """Decode the element array (branch or leaf) with every bound checked."""
        return page_elements(self.db.buf, self.offset, self.flags, self.count, self.run_end)[0]

    def count_problem(self) -> Optional[str]:
        """``element-count-overflow``/``-corrupt`` when the count cannot be trusted."""
        return page_elements(self.db.buf, self.offset, self.flags, self.count, self.run_end)[1]

    def meta(self) -> Meta:
        """The page decoded as a meta page."""
        return decode_meta_page(self.db.buf, self.offset, self.pgid)

    def freelist_ids(self) -> "FreelistRead":
        """The page read as a freelist page."""
        return read_freelist(self.db, self)


COUNT_PROBLEMS = (F.ELEMENT_COUNT_OVERFLOW, F.ELEMENT_COUNT_CORRUPT)


def page_elements(buf, page_off: int, flags: int, count: int, end: int):
    """(elements, count problem) of a branch or leaf page, for people.

    The same checked decoding the walk uses (:func:`leaf_elements`,
    :func:`branch_elements`), with each element's raw fields added.
    """
    out: List[Element] = []
    problem = None
    base = page_off + S.PAGE_HEADER_SIZE
    if flags == S.BRANCH_PAGE_FLAG:
        for idx, key, child, trouble in branch_elements(buf, page_off, count, end):
            if trouble in COUNT_PROBLEMS:
                problem = trouble
                continue
            eoff = base + idx * S.BRANCH_ELEMENT_SIZE
            pos, ksize, _ = S.BRANCH_ELEMENT.unpack_from(buf, eoff)
            out.append(Element(index=idx, offset=eoff, key=key, child=child, pos=pos,
                               ksize=ksize, problem=trouble))
    elif flags == S.LEAF_PAGE_FLAG:
        for idx, eflags, key, value, trouble in leaf_elements(buf, page_off, count, end):
            if trouble in COUNT_PROBLEMS:
                problem = trouble
                continue
            eoff = base + idx * S.LEAF_ELEMENT_SIZE
            _, pos, ksize, vsize = S.LEAF_ELEMENT.unpack_from(buf, eoff)
            out.append(Element(index=idx, offset=eoff, key=key, value=value, flags=eflags,
                               pos=pos, ksize=ksize, vsize=vsize, problem=trouble))
    return out, problem


# ---------------------------------------------------------------- element primitives
def leaf_elements(buf, off, count, end):
    """(index, flags, key, value, problem) for each leaf element that fits.

    ``off`` is the page start, ``end`` the end of its usable run.  The element
    array is unpacked in one go; keys are copied (they are compared), values
    stay zero-copy memoryviews of the map.
    """
    base = off + S.PAGE_HEADER_SIZE
    n, problem = usable_count(buf, base, count, end, S.LEAF_ELEMENT_SIZE, 4)
    if problem:
        yield n, 0, b"", None, problem
    data_floor = base + S.LEAF_ELEMENT_SIZE * n
    eoff = base
    for i, (flags, pos, ksize, vsize) in enumerate(
            S.LEAF_ELEMENT.iter_unpack(buf[base:data_floor])):
        k = eoff + pos
        v = k + ksize
        e = v + vsize
        eoff += S.LEAF_ELEMENT_SIZE
        if ksize == 0:
            yield i, flags, b"", None, F.KEY_EMPTY
        elif e > end or k < data_floor:
            yield i, flags, b"", None, F.ELEMENT_OUT_OF_BOUNDS
        else:
            yield i, flags, bytes(buf[k:v]), buf[v:e], None


def branch_elements(buf, off, count, end):
    """(index, key, child, problem) for each branch element that fits."""
    base = off + S.PAGE_HEADER_SIZE
    n, problem = usable_count(buf, base, count, end, S.BRANCH_ELEMENT_SIZE, 0)
    if problem:
        yield n, b"", 0, problem
    data_floor = base + S.BRANCH_ELEMENT_SIZE * n
    eoff = base
    for i, (pos, ksize, child) in enumerate(
            S.BRANCH_ELEMENT.iter_unpack(buf[base:data_floor])):
        k = eoff + pos
        e = k + ksize
        eoff += S.BRANCH_ELEMENT_SIZE
        if ksize == 0:
            yield i, b"", child, F.KEY_EMPTY
        elif e > end or k < data_floor:
            yield i, b"", child, F.ELEMENT_OUT_OF_BOUNDS
        else:
            yield i, bytes(buf[k:e]), child, None


def elements_end(buf, off, flags, count, end) -> int:
    """Offset just past the last byte that any in-bounds element uses."""
    base = off + S.PAGE_HEADER_SIZE
    leaf = flags == S.LEAF_PAGE_FLAG
    n, _ = usable_count(buf, base, count, end, S.LEAF_ELEMENT_SIZE, 4 if leaf else 0)
    top = base + S.LEAF_ELEMENT_SIZE * n
    eoff = base
    if leaf:
        for _, pos, ksize, vsize in S.LEAF_ELEMENT.iter_unpack(buf[base:top]):
            e = eoff + pos + ksize + vsize
            if top < e <= end:
                top = e
            eoff += S.LEAF_ELEMENT_SIZE
    else:
        for pos, ksize, _ in S.BRANCH_ELEMENT.iter_unpack(buf[base:top]):
            e = eoff + pos + ksize
            if top < e <= end:
                top = e
            eoff += S.BRANCH_ELEMENT_SIZE
    return top


def usable_count(buf, base, count, end, size, pos_field):
    """How many elements to read when ``count`` may be damaged.

    bbolt packs all element headers first and the data after them, so
    element 0's ``pos`` is exactly ``count * size``.  When the header's count
    does not fit the run, that gives the real count back
    (``element-count-corrupt``: nothing lost); when it cannot, read what fits
    (``element-count-overflow``: the rest is lost).  Returns (n, problem).
    """
    fit = max(0, (end - base) // size)
    if count <= fit:
        return count, None
    if fit:
        pos0 = S.U32.unpack_from(buf, base + pos_field)[0]
        if pos0 % size == 0 and 0 < pos0 // size <= fit:
            return pos0 // size, F.ELEMENT_COUNT_CORRUPT
    return fit, F.ELEMENT_COUNT_OVERFLOW


# ---------------------------------------------------------------- freelist
@dataclass
class FreelistRead:
    """The ids a freelist page lists, and what was wrong reading them."""

    pgid: int
    count: int = 0
    ids_offset: int = 0
    findings: List[Finding] = field(default_factory=list)

    def ids(self, db: "DB") -> Iterator[int]:
        """Iterate the ids (a memoryview slice; millions are fine)."""
        if self.count <= 0:
            return iter(())
        view = db.buf[self.ids_offset: self.ids_offset + 8 * self.count]
        return (t[0] for t in S.U64.iter_unpack(view))


def read_freelist(db: "DB", page: Page) -> FreelistRead:
    """The ids a freelist page lists, bounded by its run; what is wrong with it."""
    out = FreelistRead(pgid=page.pgid)
    if page.flags != S.FREELIST_PAGE_FLAG:
        out.findings.append(Finding(
            F.FREELIST_INVALID_TYPE,
            f"meta's freelist page {page.pgid} has type {page.type}, not freelist "
            f"(bbolt: unexpected page type (flags: {page.flags:#x}) for pgId:{page.pgid})",
            page=page.pgid, detail={"flags": page.flags}))
        return out
    count = page.count
    start = page.offset + S.PAGE_HEADER_SIZE
    if count == S.FREELIST_COUNT_ESCAPE:
        if start + 8 > page.run_end:
            out.findings.append(Finding(F.FREELIST_COUNT_OVERFLOW,
                                        "freelist count escape runs past its page",
                                        page=page.pgid))
            return out
        (count,) = S.U64.unpack_from(db.buf, start)
        start += 8
    fit = (page.run_end - start) // 8
    if count > fit:
        out.findings.append(Finding(
            F.FREELIST_COUNT_OVERFLOW,
            f"freelist page {page.pgid} claims {count} ids but its run holds {fit}",
            page=page.pgid, detail={"count": count, "fit": fit}))
        count = fit
    out.count = count
    out.ids_offset = start
    return out


# ---------------------------------------------------------------- the file
class DB:
    """A bbolt file opened read-only.

    ``page_size`` and ``meta`` force a page size or a meta page (0 or 1)
    instead of bbolt's own choice.
    """

    def __init__(self, filename, *, page_size: Optional[int] = None, meta: Optional[int] = None):
        self.filename = os.fspath(filename)
        self._mm = None
        self._watch: Optional[Watch] = None
        self.buf = memoryview(b"")
        self._open()
        self.reread(page_size, meta)

    def reread(self, page_size: Optional[int] = None, meta: Optional[int] = None) -> None:
        """Decide the page size and the meta in use (as forced, else as bbolt
        would) over the map as it is: what opening the file again would,
        without opening it again (repair retries another page size)."""
        self.page_size, self.page_size_source = self._detect_page_size(page_size)
        self.metas = [
            decode_meta_page(self.buf, 0, 0),
            decode_meta_page(self.buf, self.page_size, 1),
        ]
        if meta is not None:
            if meta not in (0, 1):
                raise BoltError(f"--meta must be 0 or 1, not {meta}")
            self.meta = self.metas[meta]
            self.meta_source = f"forced meta {meta}"
        else:
            self.meta = meta_in_use(self.metas)
            self.meta_source = self._meta_reason()

    # -- opening
    def _open(self) -> None:
        # stat before open: opening a FIFO or a device could block or have effects
        try:
            st = os.stat(self.filename)
        except OSError as exc:
            raise CannotOpen(f"cannot open {self.filename}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise CannotOpen(f"{self.filename} is not a regular file")
        try:
            fd = os.open(self.filename, os.O_RDONLY)
        except OSError as exc:
            raise CannotOpen(f"cannot open {self.filename}: {exc.strerror}") from exc
        try:
            # before the size is read and the file mapped: a truncation from
            # now on waits for us (without the C guard; guard.lease_input)
            leased = lease_input(fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CannotOpen(f"{self.filename} is not a regular file")
            if st.st_size == 0:
                raise CannotOpen(f"{self.filename} is empty")
            try:
                self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise CannotOpen(f"cannot map {self.filename}: {exc}") from exc
            # the fd stays open: the watch fstats it to see the file change
            self._watch = Watch(self.filename, fd, self._mm, leased)
        except BaseException:
            os.close(fd)
            raise
        self.size = len(self._mm)
        self.buf = memoryview(self._mm)

    def _detect_page_size(self, forced: Optional[int]):
        if forced is not None:
            if not page_size_sane(forced):
                raise BoltError(f"page size {forced} is not a power of two in 512..65536")
            return forced, "given"
        m0 = decode_meta_page(self.buf, 0, 0)
        if _meta_readable(m0):
            return m0.page_size, "meta 0"
        # bbolt >= 1.3.7 probes for meta 1 at 1024 << i.
        for i in range(15):
            off = 1024 << i
            if off > S.MAX_PAGE_SIZE or off + 80 > self.size:
                break
            m1 = decode_meta_page(self.buf, off, 1)
            if _meta_readable(m1) and m1.page_size == off:
                return off, "meta 1"
        scanned = self.scan_page_size()
        if scanned:
            return scanned, "page scan"
        return 4096, "default"

    def scan_page_size(self) -> Optional[int]:
        """Guess the page size from headers whose id equals their position."""
        best, best_hits = None, 0
        size = S.MIN_PAGE_SIZE
        while size <= S.MAX_PAGE_SIZE:
            hits = 0
            for n in range(2, _SCAN_PAGES):
                off = n * size
                if off + S.PAGE_HEADER_SIZE > self.size:
                    break
                pid, flags, _, _ = S.PAGE_HEADER.unpack_from(self.buf, off)
                if pid == n and flags in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG,
                                          S.FREELIST_PAGE_FLAG):
                    hits += 1
            # prefer larger sizes on a tie: small sizes also hit at multiples
            if hits >= 2 and hits >= best_hits:
                best, best_hits = size, hits
            size *= 2
        return best

    def _meta_reason(self) -> str:
        m0, m1 = self.metas
        if self.meta is None:
            return "both meta pages are invalid"
        other = self.metas[1 - self.meta.index]
        if not other.valid:
            return f"meta {other.index} is invalid ({', '.join(other.problems)})"
        if m0.txid == m1.txid:
            return "both metas have the same txid; bbolt takes meta 0"
        return "highest txid"

    # -- lifetime
    def close(self) -> None:
        # Slices handed out (values are memoryviews) may outlive the DB; then
        # the map is freed when the last of them is, not here.
        """Unmap the file (when no view of it is left) and let its watch go."""
        unmapped = True
        for closer in (self.buf.release, self._mm.close if self._mm else None):
            if closer is not None:
                try:
                    closer()
                except BufferError:
                    unmapped = False
        self._mm = None
        if self._watch is not None:
            self._watch.close(unmapped)
            self._watch = None

    def changed(self) -> Optional[str]:
        """Why the file is no longer what was opened (truncated, written), or None."""
        return self._watch.changed() if self._watch is not None else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- geometry
    @property
    def pages_in_file(self) -> int:
        """Whole pages the file holds."""
        return self.size // self.page_size

    @property
    def hwm(self) -> int:
        """High-water mark from the meta in use (pages in use are below it)."""
        return self.meta.pgid if self.meta is not None else self.pages_in_file

    @property
    def page_limit(self) -> int:
        """Pages that can be followed: below the HWM and inside the file."""
        return min(self.hwm, self.pages_in_file)

    # -- pages
    def page(self, pgid: int) -> Page:
        """The page header at position ``pgid``; raises BoltError if absent."""
        if pgid < 0:
            raise BoltError("negative page id", page=pgid)
        off = pgid * self.page_size
        if off + S.PAGE_HEADER_SIZE > self.size:
            raise BoltError(f"page {pgid} is past the end of the file "
                            f"({self.pages_in_file} pages)", page=pgid, offset=off)
        with located("page header", page=pgid, offset=off):
            pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(self.buf, off)
        return Page(self, pgid, pid, flags, count, overflow)

    def pages(self) -> Iterator[Page]:
        """Every page header in file order, skipping overflow runs that fit."""
        n = 0
        total = self.pages_in_file
        while n < total:
            p = self.page(n)
            yield p
            step = 1
            if p.flags in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG, S.FREELIST_PAGE_FLAG) \
                    and p.self_id == n and n + 1 + p.overflow <= total:
                step += p.overflow
            n += step

    def freelist(self, meta: Optional[Meta] = None) -> Optional[FreelistRead]:
        """The synced freelist of ``meta`` (default the meta in use), or
        None when not synced."""
        m = self.meta if meta is None else meta
        if m is None or not m.freelist_synced:
            return None
        # below that meta's own high-water mark (a newer meta's may be higher)
        if m.freelist >= min(m.pgid, self.pages_in_file):
            fl = FreelistRead(pgid=m.freelist)
            fl.findings.append(Finding(
                F.FREELIST_OUT_OF_BOUNDS,
                f"freelist page {m.freelist} is past the high-water mark or the end of the file",
                page=m.freelist))
            return fl
        return read_freelist(self, self.page(m.freelist))


def _meta_readable(m: Meta) -> bool:
    """Good enough to trust its page size: magic, version and checksum."""
    return (m.magic == S.MAGIC and m.version == S.VERSION
            and F.META_BAD_CHECKSUM not in m.problems and page_size_sane(m.page_size))
