"""What a walk yields: buckets, records, and a bucket's records a page or
more at a time (:class:`Leaves`, :class:`InlineRun`), with the checked
decodings of one leaf page that the walk and its consumers share.

Nothing here follows a pointer (:mod:`boltfix.walk` does): these are the
values the walk hands out, and the rules for one page's records -- a clean
leaf taken whole (:func:`leaf_page`), a canonical inline bucket
(:func:`canonical_inline`, :func:`clean_inline`), the keys of a damaged leaf
that are sure (:func:`sure_increasing`).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from itertools import islice, repeat
from operator import lt
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

from boltfix import ccore
from boltfix import structs as S
from boltfix.reader import leaf_elements

#: key bytes a leaf page's records may hold to be taken whole (a batch).
#: bbolt's pages hold at most a page or two of keys (a key is at most
#: 32,768 bytes; a node is split at the page size), but crafted elements can
#: all point into the same bytes: 8,192 keys of 32 KB in 170 KB.  Such a page
#: is read one record at a time, so what is held stays bounded.  The C core
#: (page_clean) applies the same limit.
KEY_BYTES_PER_PAGE = 1 << 20


@dataclass
class Bucket:
    """A bucket found in the file: where its tree starts and how we got there."""

    path: Tuple[bytes, ...]  # names from the top level; () is the root bucket
    root: int  # root page id; 0 for an inline bucket
    sequence: int
    inline: Optional[memoryview] = None  # inline page bytes (header + elements)
    page: Optional[int] = None  # page holding this bucket's entry in its parent
    #: filled in while its records are walked
    pages: int = 0  # pages of its own tree, overflow included (0 when inline)
    depth: int = 0  # levels of its own tree (1 = a single leaf; inline counts 1)

    @property
    def is_inline(self) -> bool:
        # a root of 0 with no inline page is no inline bucket but a pointer
        # at meta page 0 (a tree whose root was lost): the walk reports it
        """An inline bucket: its records live inside its parent's value."""
        return self.root == 0 and self.inline is not None


@dataclass
class Record:
    """One leaf element that passed every check."""

    key: bytes
    value: memoryview
    flags: int
    page: int  # page holding the element (the parent's page for inline buckets)
    index: int
    #: for a bucket entry during Walker.walk(): the decoded sub-bucket, or None
    child: Optional["Bucket"] = None

    @property
    def is_bucket(self) -> bool:
        """A bucket entry (its value is a bucket header), not a plain record."""
        return bool(self.flags & S.BUCKET_LEAF_FLAG)


class Batch(NamedTuple):
    """Consecutive records of one page that passed every check, in key order.

    The same records :meth:`Walker.walk` yields one by one, as parallel
    columns: ``keys[i]`` (bytes), ``values[i]`` (a zero-copy view of the map),
    ``flags[i]`` and ``indexes[i]`` (the element's index on ``page``).  A
    consumer that only counts, or handles a page's records together, skips
    building a :class:`Record` per element.
    """

    page: int
    indexes: Sequence[int]
    flags: Sequence[int]
    keys: Sequence[bytes]
    values: Sequence[memoryview]
    #: set when the batch is a single bucket entry: that entry, its
    #: ``child`` opened (None when the bucket value is malformed)
    bucket_entry: Optional[Record] = None

    def records(self) -> Iterator[Record]:
        """The batch as :class:`Record` objects (what :meth:`Walker.walk` yields)."""
        if self.bucket_entry is not None:
            return iter((self.bucket_entry,))
        return map(Record, self.keys, self.values, self.flags, repeat(self.page), self.indexes)


#: ``fast_batch(Batch, fields)``: Batch(*fields) without NamedTuple's
#: keyword-handling constructor (the walk builds two per small inline
#: sub-bucket)
fast_batch = tuple.__new__


@dataclass(frozen=True)
class Tree:
    """The tree a walk starts from: what a meta page names (root bucket's
    page, its sequence, the high-water mark).  Repair may choose another
    than the meta in use and passes it to :class:`Walker`."""

    root: int
    sequence: int
    hwm: int

    @classmethod
    def of(cls, meta) -> Optional["Tree"]:
        """The tree a meta page names, or None for no meta."""
        return None if meta is None else cls(meta.root, meta.sequence, meta.pgid)


class Leaves:
    """Records of one bucket in key order, a page or more at a time: what
    :meth:`Walker.walk_leaves` yields.

    Either one page's records already read (a :class:`Batch`), or whole clean
    leaf pages the C core took at once, read only when asked.  Every method
    works on both, with or without the C core: a caller never needs to know
    which.  ``count`` is the number of records, ``last`` the last key.
    """

    __slots__ = ("walker", "count", "last", "_batch", "_pages")
    #: ``walker``: the :class:`~boltfix.walk.Walker` that yields these (the
    #: walk hands itself to what it yields; not imported here: walk imports
    #: this module)

    def __init__(self, walker, count: int, last: bytes,
                 batch: Optional[Batch] = None, pages=None):
        self.walker = walker
        self.count = count
        self.last = last
        self._batch = batch
        #: (page id, element count, end offset of its run) per page, from C
        self._pages = pages

    @property
    def bucket_entry(self) -> Optional[Record]:
        """The bucket entry when these leaves are just one (its ``child`` opened)."""
        return None if self._batch is None else self._batch.bucket_entry

    @property
    def page_count(self) -> int:
        """Pages these records lie on (one when already read)."""
        return 1 if self._pages is None else len(self._pages)

    def batches(self, start: int = 0, stop: Optional[int] = None) -> Iterator[Batch]:
        """The records as :class:`Batch` objects, one per page (pages ``start:stop``)."""
        if self._pages is None:
            return iter((self._batch,) if start == 0 and stop != 0 else ())
        return self.walker.page_batches(self._pages[start:stop])

    def batches_over(self, nbytes: int) -> Iterator[Batch]:
        """:meth:`batches`, leaving out pages the C core took whose run is
        ``nbytes`` or shorter: only a longer one can hold a key that long."""
        if self._pages is None:
            return self.batches()
        ps = self.walker.page_size
        return self.walker.page_batches([p for p in self._pages if p[2] - p[0] * ps > nbytes])

    def key_lists(self) -> Iterator[Sequence[bytes]]:
        """The keys, a page at a time."""
        return (b.keys for b in self.batches())

    @property
    def pages(self):
        """``[(page id, element count, end of its run), ...]`` when these are
        whole clean pages (every element taken, in key order: what repair can
        copy as they stand), else None (one page already read)."""
        return self._pages

    def etcd_suspects(self):
        """Indexes of the pages (of leaves of etcd's ``key`` bucket) whose
        records ``etcd.check_key_record`` must see: with the C core, only
        those holding a record C cannot vouch for (the same rules); else all."""
        fast = ccore.fast("etcd_key_suspects")
        if self._pages is None or fast is None:
            return set(range(self.page_count))
        return set(ccore.call(fast, self.walker.buf, self.walker.page_size, self._pages))

    def etcd_key_batches(self) -> Iterator[Tuple[Batch, bool]]:
        """(batch, whether ``etcd.check_key_record`` must see its records)
        for leaves of etcd's ``key`` bucket (see :meth:`etcd_suspects`)."""
        suspects = self.etcd_suspects()
        return ((b, i in suspects) for i, b in enumerate(self.batches()))

    def write_jsonl(self, start: int, pieces, automatic: bool, etcd: int, chunk: int,
                    left: int):
        """JSONL lines for pages ``start``.. (see :mod:`boltfix.record` and
        ``_speedups.jsonl``): (bytes written, next page, records in them, a
        :class:`Batch` the Python writer must write next or None).  ``left``:
        records still allowed, -1 for no limit.  ``etcd``: 0 plain; 1 etcd's
        ``key`` bucket with the "etcd" member (a record that may hold a
        Kubernetes object or secret comes back); 2 the ``key`` bucket without
        it (one that may hold a secret comes back).  Without the C core (or for
        a page read in Python) the bytes are empty and the page comes back
        as the batch."""
        fast = ccore.fast("jsonl")
        if self._pages is None or fast is None:
            return b"", start + 1, 0, next(self.batches(start, start + 1))
        data, i, n, python = ccore.call(fast, self.walker.buf, self.walker.page_size, self._pages,
                                    start, pieces, automatic, etcd, chunk, left)
        if python:
            return data, i + 1, n, next(self.batches(i, i + 1))
        return data, i, n, None


class InlineRun:
    """Consecutive bucket entries of one page whose values are each an
    inline bucket exactly as :class:`~boltfix.writer.BoltWriter` writes one
    (:func:`inline_run`): what :meth:`Walker.walk_leaves` yields with
    ``inline_runs`` instead of two or more items per small sub-bucket.

    Nothing in such a bucket can be wrong (every element in bounds, keys
    ascending, no nested bucket), so a consumer that only counts (check) or
    copies (repair: the values are the bytes it would write) takes the run
    whole; any other calls :meth:`expand` for the per-bucket items.
    ``keys`` are the sub-buckets' names, ``counts`` their record counts.
    """

    __slots__ = ("page", "indexes", "keys", "values", "counts", "records")
    #: read like a :class:`Batch` by the repair stream (rule 5, salvage.Seen)
    bucket_entry = None
    pages = None

    def __init__(self, page: int, indexes, keys, values, counts) -> None:
        self.page = page
        self.indexes = indexes
        self.keys = keys
        self.values = values
        self.counts = counts
        self.records = sum(counts)

    def __len__(self) -> int:
        return len(self.keys)

    def write_jsonl(self, pathj: str, automatic: bool, page_size: int) -> Optional[bytes]:
        """dump's live JSONL lines of the run, written by the C core
        (``_speedups.jsonl_run``: the bytes record.live_bucket_line and
        record.live_kv_pieces give), or None: no C core, the bucket's path
        (``pathj``, its :func:`~boltfix.record.path_json`) or a name needs
        ``path_encoding``, or a key or value is text only Python judges."""
        fast = ccore.fast("jsonl_run")
        if fast is None or ',"path_encoding":[' in pathj or not pathj.endswith("]"):
            return None
        pieces = ((pathj + ',"key":').encode("utf-8", "surrogateescape"),
                  (pathj[:-1] + ",").encode("utf-8", "surrogateescape"),
                  b',"key_encoding":"hex"', b',"value_encoding":"hex"')
        return ccore.call(fast, list(self.keys), list(self.values), pieces, automatic, self.page,
                      page_size // 4)

    def expand(self, walker, bucket: "Bucket") -> Iterator[Tuple["Bucket", Leaves]]:
        """The items :meth:`Walker.walk_leaves` yields for these entries
        without ``inline_runs``: each entry, then its records."""
        flag = S.BUCKET_LEAF_FLAG
        for idx, key, value in zip(self.indexes, self.keys, self.values):
            yield from walker.entry_items(bucket, Record(key, value, flag, self.page, idx), False)


#: the head of a one-record inline bucket value: bucket header (root,
#: sequence), page header (id, flags, count, overflow), its element
_INLINE_ONE = struct.Struct("<QQQHHIIIII")
_INLINE_HEAD = struct.Struct("<QQQHHI")


def canonical_inline(value, inline_max: int) -> int:
    """The number of records of a bucket value that is an inline bucket
    byte for byte as BoltWriter (and bbolt's ``bucket.write``) writes one,
    else -1.  Such a value: root 0; a leaf page header of id 0, overflow 0;
    elements of flags 0 whose keys (1 to MAX_KEY_SIZE bytes) ascend and
    whose keys and values follow the elements back to back, filling the
    value exactly; and at most ``inline_max`` (page size / 4) bytes of page
    (bbolt's ``inlineable``).  The C core's ``inline_run`` makes the same
    checks."""
    n = len(value)
    if n < 32 or n - S.BUCKET_HEADER_SIZE > inline_max:
        return -1
    if n >= 48:
        root, _seq, pid, pflags, count, overflow, ef, pos, ks, vs = _INLINE_ONE.unpack_from(value)
        if count == 1:  # the common small bucket: every rule in one test
            ok = (not root and not pid and pflags == S.LEAF_PAGE_FLAG and not overflow
                  and not ef and pos == 16 and 0 < ks <= S.MAX_KEY_SIZE and 48 + ks + vs == n)
            return 1 if ok else -1
    else:
        root, _seq, pid, pflags, count, overflow = _INLINE_HEAD.unpack_from(value)
    if root or pid or pflags != S.LEAF_PAGE_FLAG or overflow:
        return -1
    data = 32 + S.LEAF_ELEMENT_SIZE * count
    if data > n:
        return -1
    last = None
    for i in range(count):
        eoff = 32 + S.LEAF_ELEMENT_SIZE * i
        ef, pos, ks, vs = S.LEAF_ELEMENT.unpack_from(value, eoff)
        if ef or eoff + pos != data or not 0 < ks <= S.MAX_KEY_SIZE or data + ks + vs > n:
            return -1
        key = bytes(value[data:data + ks])
        if last is not None and key <= last:
            return -1
        last = key
        data += ks + vs
    return count if data == n else -1


def _inline_run_py(flags, keys, values, start: int, inline_max: int) -> Tuple[int, list]:
    counts = []
    for i in range(start, len(flags)):
        if flags[i] != S.BUCKET_LEAF_FLAG or len(keys[i]) > S.MAX_KEY_SIZE:
            break
        c = canonical_inline(values[i], inline_max)
        if c < 0:
            break
        counts.append(c)
    return start + len(counts), counts


def inline_run(flags, keys, values, start: int, inline_max: int) -> Tuple[int, list]:
    """(stop, record counts) of the run of elements ``start:stop`` of a
    page's columns that are bucket entries (flags exactly
    BUCKET_LEAF_FLAG, names of at most MAX_KEY_SIZE bytes) whose values
    are :func:`canonical_inline` buckets; ``stop == start`` for none."""
    fast = ccore.fast("inline_run")
    if fast is None:
        return _inline_run_py(flags, keys, values, start, inline_max)
    return fast(flags, keys, values, start, inline_max, S.MAX_KEY_SIZE)


#: a bucket's records on one page, as the walk streams them:
#: (page, indexes, flags, keys, values)
PageRecords = Tuple[int, Sequence[int], Sequence[int], Sequence[bytes], Sequence[memoryview]]


# ---------------------------------------------------------------- elements
def leaf_page(buf, raw, off, count, end):
    """(flags, keys, values) of a whole leaf page, or None when any element
    is out of bounds or has an empty key (or the count overruns the run), or
    the keys add up to more than KEY_BYTES_PER_PAGE.

    The fast form of :func:`~boltfix.reader.leaf_elements` for the common, undamaged page:
    one tight loop, no generator, no per-element tuples.  ``raw`` is the
    file as an object whose slices are bytes (the mmap itself), so a key is
    copied in one step; values stay zero-copy views of ``buf``.  (Measured
    on CPython 3.11, this beats column-wise C passes -- zip/map/min/max --
    which pay more in fixed costs than they save on pages of a few elements.)
    """
    base = off + S.PAGE_HEADER_SIZE
    floor = base + S.LEAF_ELEMENT_SIZE * count
    if floor > end:
        return None
    flags, keys, values = [], [], []
    eoff = base
    held = 0
    for eflags, pos, ksize, vsize in S.LEAF_ELEMENT.iter_unpack(raw[base:floor]):
        k = eoff + pos
        v = k + ksize
        e = v + vsize
        held += ksize
        if not ksize or e > end or k < floor or held > KEY_BYTES_PER_PAGE:
            return None
        flags.append(eflags)
        keys.append(raw[k:v])
        values.append(buf[v:e])
        eoff += S.LEAF_ELEMENT_SIZE
    return flags, keys, values


def clean_inline(page) -> Optional[list]:
    """``[(index, flags, key, value), ...]`` of an inline bucket's page when
    :meth:`Walker.inline_records` would report nothing on it and yield every
    element (each in bounds, a key, keys ascending, no bucket entry), else
    None (then that walk does it, with its findings)."""
    count = S.PAGE_HEADER.unpack_from(page, 0)[2]
    end = len(page)
    floor = S.PAGE_HEADER_SIZE + S.LEAF_ELEMENT_SIZE * count
    if floor > end:
        return None
    if count == 1:  # the common small bucket: the same rules, in one go
        flags, pos, ksize, vsize = S.LEAF_ELEMENT.unpack_from(page, S.PAGE_HEADER_SIZE)
        k = S.PAGE_HEADER_SIZE + pos
        v = k + ksize
        if not ksize or v + vsize > end or k < floor or flags & S.BUCKET_LEAF_FLAG:
            return None
        return [(0, flags, bytes(page[k:v]), page[v:v + vsize])]
    out = []
    last = None
    for idx, flags, key, value, problem in leaf_elements(page, 0, count, end):
        if problem or flags & S.BUCKET_LEAF_FLAG or (last is not None and key <= last):
            return None
        last = key
        out.append((idx, flags, key, value))
    return out


def sure_increasing(keys: Sequence[bytes]) -> set:
    """Indexes of the keys that lie on *every* longest strictly increasing
    run (subsequence) of ``keys``.

    bbolt writes a leaf's keys strictly increasing, so on a damaged leaf the
    keys out of order are the damage.  Keeping a longest increasing run
    keeps the most records; keeping only the keys on every such run keeps
    none that is in doubt: when two neighbours swapped their keys, either
    could be the one in order, and each now sits beside the other's value.
    """
    n = len(keys)
    if n == 0:
        return set()
    ending = [0] * n  # length of the longest run ending at i
    tails: list = []
    for i, k in enumerate(keys):
        j = bisect.bisect_left(tails, k)
        if j == len(tails):
            tails.append(k)
        else:
            tails[j] = k
        ending[i] = j + 1
    starting = [0] * n  # length of the longest run starting at i (negated keys)
    tails = []
    for i in range(n - 1, -1, -1):
        # runs starting at i, read backwards, are decreasing runs: compare reversed
        j = bisect.bisect_left(tails, _Rev(keys[i]))
        if j == len(tails):
            tails.append(_Rev(keys[i]))
        else:
            tails[j] = _Rev(keys[i])
        starting[i] = j + 1
    best = max(ending)
    on_some = [i for i in range(n) if ending[i] + starting[i] - 1 == best]
    per_level = {}
    for i in on_some:
        per_level[ending[i]] = per_level.get(ending[i], 0) + 1
    return {i for i in on_some if per_level[ending[i]] == 1}


class _MapKey:
    """A key compared where it lies in the map: a damaged page can hold
    hundreds of MB of overlapping keys, which must never be copied at once."""

    __slots__ = ("raw", "lo", "hi")

    def __init__(self, raw, lo: int, hi: int):
        self.raw, self.lo, self.hi = raw, lo, hi

    def __lt__(self, other: "_MapKey") -> bool:
        return self.raw[self.lo:self.hi] < other.raw[other.lo:other.hi]

    def __gt__(self, other: "_MapKey") -> bool:
        return other < self


def page_key_refs(buf, raw, off: int, count: int, end: int, last) -> List[_MapKey]:
    """The sound keys of a damaged leaf after ``last``, as places in the map
    (for :func:`sure_increasing`): one key copied at a time, none kept."""
    refs = []
    for idx, _, key, _, problem in leaf_elements(buf, off, count, end):
        if problem is None and (last is None or key > last):
            eoff = off + S.PAGE_HEADER_SIZE + idx * S.LEAF_ELEMENT_SIZE
            lo = eoff + S.LEAF_ELEMENT.unpack_from(buf, eoff)[1]
            refs.append(_MapKey(raw, lo, lo + len(key)))
    return refs


class _Rev:
    """A key ordered backwards (for the runs that start at an element)."""

    __slots__ = ("k",)

    def __init__(self, k: bytes):
        self.k = k

    def __lt__(self, other: _Rev) -> bool:
        return self.k > other.k


def ascending(keys: List[bytes]) -> bool:
    """Strictly increasing.  (all/map/lt: the loop runs inside CPython's
    builtins, with no bytecode per key; not in boltfix's C core.)"""
    return all(map(lt, keys, islice(keys, 1, None)))
