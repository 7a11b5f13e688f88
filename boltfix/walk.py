"""Walk a bbolt tree safely: every record in key order, every problem reported.

The walk is the one place that follows pointers.  Before it follows a child
it checks, in order: not a meta page, below the high-water mark, inside the
file, not on the current path (a cycle), not already reached (a double
reference), its self-id, its type and its overflow run.  A bad pointer is
reported and pruned; its siblings are still walked.  A bad element is
reported and skipped; the rest of its page is kept.  Keys must rise strictly
across a whole bucket and stay inside the range their ancestors' branch
keys allow; a key that does not is reported and not yielded, so consumers
(dump, repair) only ever see a sorted, unique stream.

Everything is iterative: deep trees and long bucket chains never meet
Python's recursion limit, and memory is one byte per page of the file for
the reachability map plus the walk's stack.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from itertools import chain, islice, repeat
from operator import lt
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from boltfix import structs as S
from boltfix.errors import ERROR, WARNING, BoltError, Finding
from boltfix.reader import DB
from boltfix.reader import branch_elements as _branch_elements
from boltfix.reader import elements_end as _elements_end
from boltfix.reader import leaf_elements as _leaf_elements
from boltfix.resident import TRIM_BYTES, drop

Report = Callable[[Finding], None]


def _load_speedups():
    """The optional C core (boltfix/_speedups.c), or None: then, or with
    BOLTFIX_PURE_PYTHON=1, the pure-Python walk does everything (same
    results, slower)."""
    if os.environ.get("BOLTFIX_PURE_PYTHON"):
        return None
    try:
        from boltfix import _speedups
    except ImportError:
        return None
    return _speedups


_speedups = _load_speedups()


def call_c(fn, *args):
    """Call a C-core function.  Its ValueError means a page no longer holds
    what an earlier look at it saw (the file changed under the map); that is
    the library's own error, like every other unreadable page."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise BoltError(str(exc)) from exc

#: leaf pages per call into the C core: small enough that the first records
#: of a dump appear at once and progress moves, large enough to amortise it
RUN_LEAVES = 1024

# Findings whose records the walk did not yield: data of the file that a
# reader of the walk (dump, repair) cannot have.  Other findings (a wrong
# self-id, a count recovered from element 0, a meta or freelist problem)
# lose nothing.
LOSS_CODES = frozenset({
    "page-out-of-bounds", "page-past-eof", "page-cycle", "multiple-references",
    "invalid-page-type", "element-out-of-bounds", "element-count-overflow", "key-empty",
    "key-order", "key-out-of-range", "bucket-value-short", "inline-bucket-malformed",
    "root-entry-not-bucket", "branch-empty", "bucket-too-deep",
})

#: levels of nested buckets the walk opens.  bbolt sets no limit (a chain of
#: buckets costs it a page per level), but every open bucket carries its
#: path from the top, so depth d costs d*d/2 names: 2,048 levels cost 16 MB,
#: the 20,000 levels of nested inline buckets a 1 MB file can hold cost 1.6 GB.
#: A bucket entry deeper than this is reported (bucket-too-deep) and not
#: opened; etcd nests none, Kubernetes' etcd never more than one.
MAX_BUCKET_DEPTH = 2048

#: key bytes a leaf page's records may hold to be taken whole (a batch).
#: bbolt's pages hold at most a page or two of keys (a key is at most
#: 32,768 bytes; a node is split at the page size), but crafted elements can
#: all point into the same bytes: 8,192 keys of 32 KB in 170 KB.  Such a page
#: is read one record at a time, so what is held stays bounded.  The C core
#: (page_clean) applies the same limit.
KEY_BYTES_PER_PAGE = 1 << 20

#: whether a walk asked for :class:`InlineRun` items gives them (tests turn
#: it off to hold check and repair to the walk a sub-bucket at a time)
INLINE_RUNS = True

# reachability map values: a page's first page, and the rest of its run
UNSEEN, REACHED, OVERFLOW = 0, 1, 2


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


#: Batch(*fields) without NamedTuple's keyword-handling constructor: the
#: walk builds two per small inline sub-bucket
_batch = tuple.__new__


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

    def __init__(self, walker: "Walker", count: int, last: bytes,
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
        return 1 if self._pages is None else len(self._pages)

    def batches(self, start: int = 0, stop: Optional[int] = None) -> Iterator[Batch]:
        """The records as :class:`Batch` objects, one per page (pages ``start:stop``)."""
        if self._pages is None:
            return iter((self._batch,) if start == 0 and stop != 0 else ())
        return self.walker._page_batches(self._pages[start:stop])

    def batches_over(self, nbytes: int) -> Iterator[Batch]:
        """:meth:`batches`, leaving out pages the C core took whose run is
        ``nbytes`` or shorter: only a longer one can hold a key that long."""
        if self._pages is None:
            return self.batches()
        ps = self.walker.page_size
        return self.walker._page_batches([p for p in self._pages if p[2] - p[0] * ps > nbytes])

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
        fast = getattr(_speedups, "etcd_key_suspects", None)
        if self._pages is None or fast is None:
            return set(range(self.page_count))
        return set(call_c(fast, self.walker.buf, self.walker.page_size, self._pages))

    def etcd_key_batches(self) -> Iterator[Tuple[Batch, bool]]:
        """(batch, whether ``etcd.check_key_record`` must see its records)
        for leaves of etcd's ``key`` bucket (see :meth:`etcd_suspects`)."""
        suspects = self.etcd_suspects()
        return ((b, i in suspects) for i, b in enumerate(self.batches()))

    def revision_stats(self) -> Tuple[int, int, Optional[int], Optional[int]]:
        """For leaves of etcd's ``key`` bucket: (keys that are revisions,
        tombstones among them, first and last main revision or None)."""
        fast = getattr(_speedups, "etcd_revision_stats", None)
        if self._pages is not None and fast is not None:
            return call_c(fast, self.walker.buf, self.walker.page_size, self._pages)
        from boltfix.etcd import decode_revision

        revisions = tombstones = 0
        first = last = None
        for keys in self.key_lists():
            for key in keys:
                rev = decode_revision(key)
                if rev:
                    revisions += 1
                    tombstones += bool(rev["tombstone"])
                    if first is None:
                        first = rev["main"]
                    last = rev["main"]
        return revisions, tombstones, first, last

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
        fast = getattr(_speedups, "jsonl", None)
        if self._pages is None or fast is None:
            return b"", start + 1, 0, next(self.batches(start, start + 1))
        data, i, n, python = call_c(fast, self.walker.buf, self.walker.page_size, self._pages,
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
        fast = getattr(_speedups, "jsonl_run", None)
        if fast is None or ',"path_encoding":[' in pathj or not pathj.endswith("]"):
            return None
        pieces = ((pathj + ',"key":').encode("utf-8", "surrogateescape"),
                  (pathj[:-1] + ",").encode("utf-8", "surrogateescape"),
                  b',"key_encoding":"hex"', b',"value_encoding":"hex"')
        return call_c(fast, list(self.keys), list(self.values), pieces, automatic, self.page,
                      page_size // 4)

    def expand(self, walker: "Walker", bucket: "Bucket") -> Iterator[Tuple["Bucket", Leaves]]:
        """The items :meth:`Walker.walk_leaves` yields for these entries
        without ``inline_runs``: each entry, then its records."""
        flag = S.BUCKET_LEAF_FLAG
        for idx, key, value in zip(self.indexes, self.keys, self.values):
            yield from walker._entry(bucket, Record(key, value, flag, self.page, idx), False)


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
    fast = getattr(_speedups, "inline_run", None)
    if fast is None:
        return _inline_run_py(flags, keys, values, start, inline_max)
    return fast(flags, keys, values, start, inline_max, S.MAX_KEY_SIZE)


# per-bucket leaf stream items: (page, indexes, flags, keys, values)
_Leaf = Tuple[int, Sequence[int], Sequence[int], Sequence[bytes], Sequence[memoryview]]


class Walker:
    """Walks one tree of a DB, sharing one reachability map across all its buckets.

    ``tree``: the tree to walk (default: the one the meta in use names; None
    when there is no valid meta, then nothing is walked).
    """

    tree: Optional[Tree] = None
    #: pages the C core took (of pages_walked): tests hold it near 100%
    pages_in_c = 0
    #: pages walked between two drops of the map from RSS (boltfix.resident)
    _trim_pages = TRIM_BYTES // 4096
    #: pages, overflow included, walked since the last drop
    _untrimmed = 0

    def __init__(self, db: DB, report: Optional[Report] = None,
                 progress: Optional[Callable[[int], None]] = None,
                 tree: Optional[Tree] = None):
        self.db = db
        self.buf = db.buf
        # slices of the mmap are bytes: keys are copied out in one step
        self.raw = db._mm if getattr(db, "_mm", None) is not None else bytes(db.buf)
        self.page_size = db.page_size
        self.tree = Tree.of(db.meta) if tree is None else tree
        self.hwm = self.tree.hwm if self.tree is not None else db.pages_in_file
        self.pages_in_file = db.pages_in_file
        self.reached = bytearray(self.pages_in_file)
        self.report = report or (lambda f: None)
        self.progress = progress
        self.pages_walked = 0
        self.records_yielded = 0
        self._trim_pages = max(TRIM_BYTES // self.page_size, 1)

    # ------------------------------------------------------------ buckets
    def root_bucket(self) -> Optional[Bucket]:
        tree = self.tree
        if tree is None:
            return None
        return Bucket(path=(), root=tree.root, sequence=tree.sequence)

    def open_bucket(self, parent: Bucket, rec: Record) -> Optional[Bucket]:
        """Decode a bucket entry's value; None (and a finding) when malformed."""
        if len(parent.path) >= MAX_BUCKET_DEPTH:
            self._find("bucket-too-deep",
                       f"bucket entry {_hex(rec.key)} is {len(parent.path) + 1} levels deep; "
                       f"boltfix opens {MAX_BUCKET_DEPTH} levels of buckets at most",
                       rec.page, (), parent.path, detail={"depth": len(parent.path) + 1})
            return None
        path = parent.path + (rec.key,)
        value = rec.value
        if len(value) < S.BUCKET_HEADER_SIZE:
            self._find("bucket-value-short",
                       f"bucket value is {len(value)} bytes, needs at least 16",
                       rec.page, (), path)
            return None
        root, sequence = S.BUCKET_HEADER.unpack_from(value, 0)
        if root != 0:
            return Bucket(path, root, sequence, None, rec.page)  # positional: the hot path
        inline = value[S.BUCKET_HEADER_SIZE:]
        if len(inline) < S.PAGE_HEADER_SIZE:
            self._find("inline-bucket-malformed",
                       f"inline bucket value is {len(value)} bytes, shorter than a page header",
                       rec.page, (), path)
            return None
        _, flags, count, _ = S.PAGE_HEADER.unpack_from(inline, 0)
        if flags != S.LEAF_PAGE_FLAG:
            self._find("inline-bucket-malformed",
                       f"inline bucket page has type {S.page_type_name(flags)}, not leaf",
                       rec.page, (), path, detail={"flags": flags})
            return None
        return Bucket(path, 0, sequence, inline, rec.page)

    def walk(self) -> Iterator[Tuple[Bucket, Record]]:
        """Every record of every bucket, depth first, a bucket's records right
        after its own entry (pre-order), keys ascending within each bucket."""
        for bucket, batch in self.walk_batches():
            yield from zip(repeat(bucket), batch.records())

    def walk_batches(self, start: Optional[Bucket] = None, prefix: Optional[bytes] = None
                     ) -> Iterator[Tuple[Bucket, Batch]]:
        """:meth:`walk_leaves` a page at a time: (bucket, :class:`Batch`)."""
        for bucket, leaves in self.walk_leaves(start, prefix):
            for batch in leaves.batches():
                yield bucket, batch

    def walk_leaves(self, start: Optional[Bucket] = None, prefix: Optional[bytes] = None,
                    inline_runs: bool = False) -> Iterator[Tuple[Bucket, Leaves]]:
        """:meth:`walk`'s stream, grouped: (bucket, :class:`Leaves`) per run of
        plain records (one page, or many clean pages the C core took), and
        one per bucket entry, whose sub-bucket's leaves follow it at once.

        ``start``: walk that bucket and below instead of the whole tree.
        ``prefix``: only the keys of ``start`` itself that begin with it (a
        matching sub-bucket comes whole); the walk stops at the first key
        past them.  Keys that do not match are dropped before anything looks
        at them: a non-matching bucket entry is not opened, a non-matching
        plain key of the root bucket is not reported.
        ``inline_runs``: consecutive entries of small sub-buckets below the
        top level come as one (bucket, :class:`InlineRun`) instead (for a
        consumer that takes them whole; its :meth:`InlineRun.expand` gives
        what would have come).

        One explicit stack of open buckets, each with its own stream and the
        rest of the page that held its last sub-bucket entry: a bucket with
        many sub-buckets costs no deeper chain of iterators than one.
        """
        top = self.root_bucket() if start is None else start
        if top is None:
            return
        items = self._items(top)
        if prefix is not None:
            items = _prefixed(items, prefix, self._page_leaves)
        # frames: [bucket, its stream, the rest of a page still to do or None]
        stack = [[top, items, None]]
        while stack:
            frame = stack[-1]
            bucket = frame[0]
            rest, frame[2] = frame[2], None
            for leaf in chain((rest,), frame[1]) if rest is not None else frame[1]:
                if type(leaf) is Leaves:
                    yield bucket, leaf
                    continue
                flags = leaf[2]
                if not flags:
                    continue  # the empty rest of a page after a sub-bucket
                if bucket.path and not any(map(S.BUCKET_LEAF_FLAG.__and__, flags)):
                    # the common case: no bucket entries
                    yield bucket, Leaves(self, len(flags), leaf[3][-1], Batch(*leaf))
                    continue
                child, rest = yield from self._split(bucket, leaf, inline_runs)
                if child is not None:
                    # walk the sub-bucket, then the rest of this page, then on
                    frame[2] = rest
                    stack.append([child, self._items(child), None])
                    break
            else:
                stack.pop()

    def _split(self, bucket: Bucket, leaf: _Leaf, inline_runs: bool = False):
        """Yield a page's records up to and including its first bucket entry
        that opens; returns (that sub-bucket, the rest of the page) or
        (None, None) when the page ran out.  Plain keys of the root bucket
        are reported and dropped."""
        page, idxs, flags, keys, values = leaf
        start = 0
        is_root = not bucket.path
        bucket_flag = S.BUCKET_LEAF_FLAG
        # no runs in the root (its sub-buckets' records are what check's
        # etcd rules read) nor where open_bucket refuses the depth
        runs = (inline_runs and INLINE_RUNS and not is_root
                and len(bucket.path) < MAX_BUCKET_DEPTH)
        inline_max = self.page_size // 4
        i, n = 0, len(flags)
        while i < n:
            f = flags[i]
            if not (f & bucket_flag or is_root):
                i += 1
                continue
            if start < i:
                yield bucket, Leaves(self, i - start, keys[i - 1], Batch(
                    page, idxs[start:i], flags[start:i], keys[start:i], values[start:i]))
            if runs:
                stop, counts = inline_run(flags, keys, values, i, inline_max)
                if stop > i:
                    self.records_yielded += sum(counts)
                    yield bucket, InlineRun(page, idxs[i:stop], keys[i:stop],
                                            values[i:stop], counts)
                    start = i = stop
                    continue
            start = i + 1
            rec = Record(keys[i], values[i], f, page, idxs[i])
            i += 1
            if not f & S.BUCKET_LEAF_FLAG:
                self._find("root-entry-not-bucket",
                           "the root bucket holds a plain key; bbolt allows only buckets "
                           "there", page, (), (rec.key,))
                continue
            child = yield from self._entry(bucket, rec)
            if child is not None:
                rest = (page, idxs[start:], flags[start:], keys[start:], values[start:])
                return child, rest
        if start < len(keys):
            yield bucket, Leaves(self, len(keys) - start, keys[-1], Batch(
                page, idxs[start:], flags[start:], keys[start:], values[start:]))
        return None, None

    def _entry(self, bucket: Bucket, rec: Record, count: bool = True):
        """Yield a bucket entry and, when its sub-bucket is a clean inline
        one, that bucket's records; returns the sub-bucket when its records
        are still to walk (its own frame), else None.  ``count``: add the
        inline records to records_yielded (an :class:`InlineRun` did)."""
        rec.child = child = self.open_bucket(bucket, rec)
        yield bucket, Leaves(self, 1, rec.key, _batch(
            Batch, (rec.page, (rec.index,), (rec.flags,), (rec.key,), (rec.value,), rec)))
        if child is None:
            return None
        if child.inline is not None and not child.root:
            # an inline sub-bucket with nothing wrong (the common small
            # bucket): its records right here, as its own frame would yield
            # them, without opening one
            inline = clean_inline(child.inline)
            if inline is not None:
                child.depth = 1
                if count:
                    self.records_yielded += len(inline)
                cpage = child.page
                for el in inline:
                    yield child, Leaves(self, 1, el[2], _batch(
                        Batch, (cpage, (el[0],), (el[1],), (el[2],), (el[3],), None)))
                return None
        return child

    def find(self, bucket: Bucket, key: bytes) -> Optional[Record]:
        """The record for ``key`` in ``bucket``, descending the tree (O(depth)).

        Every page on the way passes the same checks as in a walk.  Children
        whose key range may hold ``key`` are all tried (a damaged branch key
        widens ranges).
        """
        if bucket.is_inline:
            for rec in self.records(bucket):
                if rec.key >= key:
                    return rec if rec.key == key else None
            return None
        stack = [(bucket.root, None, None, ())]
        while stack:
            pgid, lo, hi, parents = stack.pop()
            header = self._follow(pgid, parents, bucket.path, lo, hi)
            if header is None:
                continue
            flags, count, end = header
            path = parents + (pgid,)
            off = pgid * self.page_size
            if flags == S.BRANCH_PAGE_FLAG:
                stack.extend(fr for fr in reversed(self._branch_children(
                    off, count, end, lo, hi, path, bucket.path))
                    if (fr[1] is None or key >= fr[1]) and (fr[2] is None or key < fr[2]))
                continue
            for idx, eflags, k, value, problem in _leaf_elements(self.buf, off, count, end):
                if problem is None and k == key:
                    return Record(k, value, eflags, pgid, idx)
        return None

    def records(self, bucket: Bucket) -> Iterator[Record]:
        """The bucket's own records (sub-bucket entries included, not entered)."""
        for page, idxs, flags, keys, values in self._leaves(bucket):
            yield from map(Record, keys, values, flags, repeat(page), idxs)

    def key_lists(self, bucket: Bucket) -> Iterator[Sequence[bytes]]:
        """The bucket's own keys (sub-bucket names included), a page at a
        time: :meth:`records` without a Record per element."""
        for leaf in self._items(bucket):
            if type(leaf) is Leaves:
                yield from leaf.key_lists()
            else:
                yield leaf[3]

    def count_all(self) -> None:
        """Walk everything, for the reachability map and the findings only."""
        for _ in self.walk_leaves():
            pass

    def _page_batches(self, pages) -> Iterator[Batch]:
        """Pages the C core took, as batches."""
        for page, idxs, flags, keys, values in self._page_leaves(pages):
            yield Batch(page, idxs, flags, keys, values)

    def _items(self, bucket: Bucket) -> Iterator[Union[_Leaf, Leaves]]:
        """The bucket's own valid records: a page (or a single record) at a
        time, or clean pages taken by the C core as :class:`Leaves`."""
        if bucket.is_inline:
            return self._inline_leaves(bucket)
        return self._tree_items(bucket)

    def _leaves(self, bucket: Bucket) -> Iterator[_Leaf]:
        """:meth:`_items` with the C core's pages read: a page at a time."""
        for item in self._items(bucket):
            if type(item) is Leaves:
                yield from self._page_leaves(item._pages)
            else:
                yield item

    def _tree_leaves(self, bucket: Bucket) -> Iterator[_Leaf]:
        """:meth:`_leaves` of a paged bucket."""
        return self._leaves(bucket)

    def _inline_leaves(self, bucket: Bucket) -> Iterator[_Leaf]:
        page = bucket.inline
        bucket.depth = 1
        _, _, count, _ = S.PAGE_HEADER.unpack_from(page, 0)
        last = None
        for el in _leaf_elements(page, 0, count, len(page)):
            idx, flags, key, value, problem = el
            if problem:
                self._element_problem(problem, bucket.page, (), bucket.path, idx,
                                      "inline bucket")
                continue
            if last is not None and key <= last:
                self._key_order(key, last, bucket.page, (), bucket.path, "inline bucket")
                continue
            if flags & S.BUCKET_LEAF_FLAG:
                self._find("inline-bucket-nested",
                           "inline bucket holds a sub-bucket; bbolt never writes that",
                           bucket.page, (), bucket.path, severity=WARNING)
            last = key
            self.records_yielded += 1
            yield bucket.page, (idx,), (flags,), (key,), (value,)

    # ------------------------------------------------------------ trees
    def _tree_items(self, bucket: Bucket) -> Iterator[Union[_Leaf, Leaves]]:
        """In-order walk of a paged bucket; only valid, ordered records.

        With the C core, the clean frames on top of the stack are taken in C
        (:func:`_speedups.advance` makes exactly the checks below and takes a
        page only when all of them pass); a frame it leaves is handled here,
        one at a time, and then C goes on.  The root bucket is always walked
        here: its records are bucket entries, which need Python anyway.

        A leaf page with nothing wrong is checked in one tight pass
        (:func:`_leaf_page`, then its keys' order by :func:`_ascending`) and
        comes whole.  A
        page with any problem is walked element by element, each problem
        reported in place and each good record coming on its own, right
        after the findings before it -- the same interleaving as a walk one
        element at a time.
        """
        buf = self.buf
        raw = self.raw
        ps = self.page_size
        last: Optional[bytes] = None
        # frames: (page id, low bound, high bound, page path of the parent)
        stack = [(bucket.root, None, None, ())]
        fast = _speedups if bucket.path else None
        while stack:
            if fast is not None:
                leaves, last, walked, pages, depth, records, more = call_c(
                    fast.advance, stack, buf, self.reached, ps, self.hwm, self.pages_in_file,
                    last, RUN_LEAVES, self._trim_pages)
                if walked:
                    self._count_walked(walked)
                    self.pages_in_c += walked
                    bucket.pages += pages
                    self._touched(pages)
                    bucket.depth = max(bucket.depth, depth)
                    self.records_yielded += records
                if leaves:
                    yield Leaves(self, records, last, pages=leaves)
                if more or not stack:
                    continue
            pgid, lo, hi, parents = stack.pop()
            header = self._follow(pgid, parents, bucket.path, lo, hi)
            if header is None:
                continue
            flags, count, end = header
            path = parents + (pgid,)
            off = pgid * ps
            bucket.pages += (end - off) // ps
            self._touched((end - off) // ps)
            if len(path) > bucket.depth:
                bucket.depth = len(path)
            if count == 0 and flags == S.BRANCH_PAGE_FLAG:
                continue  # reported by _follow: the children are lost
            if flags != S.BRANCH_PAGE_FLAG:
                page = _leaf_page(buf, raw, off, count, end)
                if page is not None:
                    eflags, keys, values = page
                    if not keys:
                        continue
                    first, final = keys[0], keys[-1]
                    if ((last is None or first > last) and (lo is None or first >= lo)
                            and (hi is None or final < hi) and _ascending(keys)):
                        last = final
                        self.records_yielded += len(keys)
                        yield pgid, range(len(keys)), eflags, keys, values
                        continue
                # something on this page is wrong: one element at a time
                keep = sure_increasing(_page_key_refs(buf, raw, off, count, end, last))
                own = self._own_branch_key(path, lo)
                rank = 0
                for idx, eflags, key, value, problem in _leaf_elements(buf, off, count, end):
                    if problem:
                        self._element_problem(problem, pgid, path, bucket.path, idx, "leaf")
                        continue
                    if last is None or key > last:
                        rank += 1
                        if rank - 1 not in keep:
                            # out of order on its page, and not in every longest
                            # increasing run of its keys: it may carry another
                            # key's value (two keys swapped), so it is dropped
                            self._key_order(key, last if last is not None else key, pgid,
                                            path, bucket.path, "leaf", idx)
                            continue
                    if idx == 0 and own is not None and key != own:
                        # rule 6: bbolt writes a branch element's key as its
                        # child's first key (node.go spill: parent.put(key,
                        # node.inodes[0].key, ...)), so element 0 is damaged
                        self._find("key-out-of-range",
                                   f"key {_hex(key)} is element 0 of leaf page {pgid}, but its "
                                   f"parent's branch key is {_hex(own)} (bbolt sets a branch "
                                   "key to its child's first key)", pgid, path, bucket.path,
                                   detail={"index": idx})
                        continue
                    if (lo is not None and key < lo) or (hi is not None and key >= hi):
                        self._find("key-out-of-range",
                                   f"key {_hex(key)} on leaf page {pgid} is outside the range "
                                   f"[{_hex(lo)}, {_hex(hi)}) its ancestors allow",
                                   pgid, path, bucket.path, detail={"index": idx})
                        continue
                    if last is not None and key <= last:
                        self._key_order(key, last, pgid, path, bucket.path, "leaf", idx)
                        continue
                    last = key
                    self.records_yielded += 1
                    yield pgid, (idx,), (eflags,), (key,), (value,)
            else:
                stack.extend(reversed(self._branch_children(off, count, end, lo, hi,
                                                            path, bucket.path)))

    def _own_branch_key(self, path, lo) -> Optional[bytes]:
        """``lo`` when it is the key of the parent branch element pointing
        at the page (path[-1]), else None (no parent, or the range's lower
        bound came from another element).  The parent's elements are
        indexed once by child (offsets only), for the last parent asked."""
        if lo is None or len(path) < 2:
            return None
        parent, child = path[-2], path[-1]
        cache = getattr(self, "_parent_index", None)
        if cache is None or cache[0] != parent:
            index: dict = {}
            ps = self.page_size
            _, flags, count, overflow = S.PAGE_HEADER.unpack_from(self.buf, parent * ps)
            end = min((parent + 1 + overflow) * ps, len(self.buf))
            for i, _key, c, trouble in _branch_elements(self.buf, parent * ps, count, end):
                if not trouble:
                    index.setdefault(c, []).append(
                        parent * ps + S.PAGE_HEADER_SIZE + i * S.BRANCH_ELEMENT_SIZE)
            cache = self._parent_index = (parent, index)
        for eoff in cache[1].get(child, ()):
            pos, ksize, _ = S.BRANCH_ELEMENT.unpack_from(self.buf, eoff)
            if ksize == len(lo) and self.buf[eoff + pos:eoff + pos + ksize] == lo:
                return lo
        return None

    def _page_leaves(self, leaves) -> Iterator[_Leaf]:
        """The records of pages the C core took, sliced as _leaf_page does."""
        buf, raw, ps = self.buf, self.raw, self.page_size
        for pgid, count, end in leaves:
            page = _leaf_page(buf, raw, pgid * ps, count, end)
            if page is None:  # it passed in C a moment ago
                raise BoltError(f"leaf page {pgid} changed while it was read",
                                page=pgid, offset=pgid * ps)
            flags, keys, values = page
            yield pgid, range(count), flags, keys, values

    def _count_walked(self, n: int) -> None:
        before = self.pages_walked
        self.pages_walked += n
        if self.progress is not None and before >> 10 != self.pages_walked >> 10:
            self.progress(self.pages_walked)

    def _touched(self, pages: int) -> None:
        """``pages`` more pages (overflow included) of the map were read."""
        self._untrimmed += pages
        if self._untrimmed >= self._trim_pages:
            self._untrimmed = 0
            drop(self.raw)

    def _zero_count(self, pgid, flags, off, end, path, bucket_path) -> int:
        """A branch page, or a leaf below a branch, whose count is 0.

        bbolt never writes either (rebalance removes empty nodes; only a
        bucket's root leaf may be empty), so the count itself is damaged.
        Element 0's ``pos`` is ``count * 16`` in bbolt's layout: when it
        gives a plausible count, the elements are read with it (each still
        checked); otherwise the page's contents are lost.
        """
        leaf = flags == S.LEAF_PAGE_FLAG
        base = off + S.PAGE_HEADER_SIZE
        fit = (end - base) // S.LEAF_ELEMENT_SIZE
        pos0 = S.U32.unpack_from(self.buf, base + (4 if leaf else 0))[0] if fit else 0
        n = pos0 // S.LEAF_ELEMENT_SIZE
        if pos0 % S.LEAF_ELEMENT_SIZE == 0 and 0 < n <= fit:
            self._find("element-count-corrupt",
                       f"{'leaf' if leaf else 'branch'} page {pgid} has count 0, but element "
                       f"0 says {n} elements precede the data: read with count {n}",
                       pgid, path, bucket_path, detail={"count": n})
            return n
        if leaf:
            self._find("leaf-empty",
                       f"leaf page {pgid} below a branch has no elements; bbolt never "
                       "writes one (its count may be damaged)", pgid, path, bucket_path,
                       severity=WARNING)
        else:
            # its cursor panics on it, and in a file without a synced
            # freelist nothing else would show that the children were lost
            self._find("branch-empty",
                       f"branch page {pgid} has no elements (its children are lost)",
                       pgid, path, bucket_path)
        return 0

    def _branch_children(self, off, count, end, lo, hi, path, bucket_path):
        """Children of a branch page as frames, with the key range each may hold.

        A branch element with a bad key is reported but its child is still
        followed (the pointer is checked on its own); such a key simply does
        not narrow the range, so the child's records are judged by their
        neighbours' keys and by the bucket-wide order.
        """
        pgid = path[-1]
        children = []  # (child page, key or None when the key cannot be trusted)
        prev = None
        held = 0
        for idx, key, child, problem in _branch_elements(self.buf, off, count, end):
            if problem:
                self._element_problem(problem, pgid, path, bucket_path, idx, "branch")
                if problem not in ("element-count-overflow", "element-count-corrupt"):
                    children.append((child, None))
                continue
            held += len(key)
            if held > KEY_BYTES_PER_PAGE:
                # keys sharing their bytes (bbolt's branch keys fit a page):
                # past the budget a key is not kept, so it narrows no range
                children.append((child, None))
                continue
            if prev is not None and key <= prev:
                self._key_order(key, prev, pgid, path, bucket_path, "branch", idx)
                children.append((child, None))
                continue
            if (lo is not None and key < lo) or (hi is not None and key >= hi):
                self._find("key-out-of-range",
                           f"branch key[{idx}]={_hex(key)} on page {pgid} is outside the "
                           f"range [{_hex(lo)}, {_hex(hi)}) its ancestors allow",
                           pgid, path, bucket_path, detail={"index": idx})
                children.append((child, None))
                continue
            children.append((child, key))
            prev = key
        # lower bound: the child's own key, else the last trusted one before it;
        # upper bound: the next trusted key after it, else the parent's bound.
        frames = [None] * len(children)
        upper = hi
        for i in range(len(children) - 1, -1, -1):
            child, key = children[i]
            frames[i] = [child, None, upper, path]
            if key is not None:
                upper = key
        lower = lo
        for i, (child, key) in enumerate(children):
            if key is not None:
                lower = key
            frames[i][1] = lower
        return [tuple(f) for f in frames]

    def _follow(self, pgid, parents, bucket_path, lo, hi):
        """Check a pointer before following it; (flags, count, run end) or None."""
        reached = self.reached
        if not (2 <= pgid < self.hwm and pgid < self.pages_in_file) or reached[pgid]:
            self._bad_pointer(pgid, parents, bucket_path, lo, hi)
            return None
        reached[pgid] = REACHED
        self._count_walked(1)
        pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(self.buf, pgid * self.page_size)
        if flags != S.BRANCH_PAGE_FLAG and flags != S.LEAF_PAGE_FLAG:
            where, rng = _where(pgid, parents, lo, hi)
            self._find("invalid-page-type",
                       f"{where} has type {S.page_type_name(flags)}, expected branch or leaf",
                       pgid, parents, bucket_path,
                       detail=dict(rng, flags=flags,
                                   bbolt=f"page {pgid}: invalid type: {S.page_type_name(flags)}"))
            return None
        if pid != pgid:
            self._find("page-id-mismatch",
                       f"page {pgid} identifies itself as page {pid}",
                       pgid, parents, bucket_path, detail=_where(pgid, parents, lo, hi)[1])
        if count == 0 and (parents or flags == S.BRANCH_PAGE_FLAG):
            # before the overflow check: the run a page needs depends on its count
            ps = self.page_size
            claimed_end = min((pgid + 1 + overflow) * ps, self.pages_in_file * ps)
            count = self._zero_count(pgid, flags, pgid * ps, claimed_end,
                                     parents + (pgid,), bucket_path)
        if overflow:
            overflow = self._needed_overflow(pgid, flags, count, overflow, parents, bucket_path)
            return flags, count, self._mark_overflow(pgid, overflow, parents, bucket_path)
        return flags, count, (pgid + 1) * self.page_size

    def _needed_overflow(self, pgid, flags, count, overflow, parents, bucket_path) -> int:
        """The overflow run the page's own elements need, when that is shorter.

        bbolt allocates exactly ``ceil(size / page_size)`` pages for a node,
        so a longer run is damage; trusting it would claim the pages after it
        (live siblings) and prune their real pointers.
        """
        ps = self.page_size
        off = pgid * ps
        end = min((pgid + 1 + overflow) * ps, self.pages_in_file * ps)
        used = _elements_end(self.buf, off, flags, count, end) - off
        needed = max(0, -(-used // ps) - 1)
        if needed < overflow:
            self._find("page-overflow-too-large",
                       f"page {pgid} claims {overflow} overflow pages but its elements "
                       f"need {needed}; the extra pages are not claimed",
                       pgid, parents, bucket_path, severity=WARNING,
                       detail={"overflow": overflow, "needed": needed})
            return needed
        return overflow

    def _bad_pointer(self, pgid, parents, bucket_path, lo, hi):
        """Report why a pointer cannot be followed (meta page, past the
        high-water mark or the file, a cycle, or a second reference)."""
        where, rng = _where(pgid, parents, lo, hi)
        if pgid < 2:
            self._find("invalid-page-type", f"{where} points at meta page {pgid}",
                       pgid, parents, bucket_path, detail=dict(rng, bbolt="invalid type: meta"))
        elif pgid >= self.hwm:
            self._find("page-out-of-bounds",
                       f"{where} is at or above the high-water mark {self.hwm}",
                       pgid, parents, bucket_path,
                       detail=dict(rng, bbolt=f"page {pgid}: out of bounds: {self.hwm}"))
        elif pgid >= self.pages_in_file:
            self._find("page-past-eof",
                       f"{where} is past the end of the file ({self.pages_in_file} pages); "
                       "bbolt dies with SIGBUS here", pgid, parents, bucket_path, detail=rng)
        elif pgid in parents:
            self._find("page-cycle", f"{where} points back at an ancestor: a cycle",
                       pgid, parents, bucket_path, detail=rng)
        else:
            self._find("multiple-references", f"{where} is referenced more than once",
                       pgid, parents, bucket_path,
                       detail=dict(rng, bbolt=f"page {pgid}: multiple references"))

    def _mark_overflow(self, pgid, overflow, parents, bucket_path) -> int:
        """Mark the overflow run reached; returns the usable end offset."""
        last = pgid + overflow
        if last >= self.hwm or last >= self.pages_in_file:
            limit = min(self.hwm, self.pages_in_file)
            code = "page-out-of-bounds" if last >= self.hwm else "page-past-eof"
            past = ("the high-water mark" if code == "page-out-of-bounds"
                    else "the end of the file")
            self._find(code,
                       f"page {pgid}'s overflow run ({overflow} pages) ends at page {last}, "
                       f"past {past}", pgid, parents, bucket_path, detail={"overflow": overflow})
            last = limit - 1
        if last > pgid:
            hit = _first_nonzero(self.reached, pgid + 1, last + 1)
            if hit != -1:
                self._find("multiple-references",
                           f"page {pgid}'s overflow run overlaps page {hit}, reached elsewhere",
                           hit, parents + (pgid,), bucket_path,
                           detail={"bbolt": f"page {hit}: multiple references"})
                last = hit - 1
            self.reached[pgid + 1: last + 1] = b"\x02" * (last - pgid)
        return (last + 1) * self.page_size

    # ------------------------------------------------------------ findings
    def _find(self, code, message, page, path, bucket_path, *, severity=ERROR, detail=None):
        self.report(Finding(code, message, severity, page, tuple(path), tuple(bucket_path),
                            detail or {}))

    def _element_problem(self, problem, pgid, path, bucket_path, idx, kind):
        text = {
            "key-empty": "has a zero-length key",
            "element-out-of-bounds": "runs past its page",
            "element-count-overflow": "and those after it do not fit: the page's "
                                      "element count runs past its run",
            "element-count-corrupt": "is where the page's data starts: its element count "
                                     "is damaged (elements read up to there)",
        }[problem]
        self._find(problem, f"{kind} element {idx} on page {pgid} {text}", pgid, path, bucket_path,
                   detail={"index": idx})

    def _key_order(self, key, last, pgid, path, bucket_path, kind, idx=None):
        self._find("key-order",
                   f"key {_hex(key)} on {kind} page {pgid} is not greater than the "
                   f"previous key {_hex(last)}", pgid, path, bucket_path,
                   detail={"index": idx} if idx is not None else {})


def top_level_names(db: DB, tree: Optional[Tree] = None) -> List[bytes]:
    """Names of the root bucket's bucket entries (of ``tree``, default the
    meta in use's), read with a quiet throwaway walker: the one rule by
    which check, inspect, dump and repair tell whether a file is etcd's.
    A plain key in the root is not a bucket (bbolt allows none there)."""
    w = Walker(db, tree=tree)
    root = w.root_bucket()
    if root is None:
        return []
    return [r.key for r in w.records(root) if r.is_bucket]


# ---------------------------------------------------------------- elements
def _leaf_page(buf, raw, off, count, end):
    """(flags, keys, values) of a whole leaf page, or None when any element
    is out of bounds or has an empty key (or the count overruns the run), or
    the keys add up to more than KEY_BYTES_PER_PAGE.

    The fast form of :func:`_leaf_elements` for the common, undamaged page:
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
    :meth:`Walker._inline_leaves` would report nothing on it and yield every
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
    for idx, flags, key, value, problem in _leaf_elements(page, 0, count, end):
        if problem or flags & S.BUCKET_LEAF_FLAG or (last is not None and key <= last):
            return None
        last = key
        out.append((idx, flags, key, value))
    return out


def _prefixed(leaves, prefix: bytes, expand) -> Iterator[_Leaf]:
    """The keys of an ascending leaf stream that start with ``prefix``.

    They are one contiguous run: keys below ``prefix`` are skipped (the C
    core's :class:`Leaves` whose last key is below it without slicing a key;
    others through ``expand``), and the first key past the run ends the
    stream (no further leaf is read).
    """
    for item in leaves:
        if type(item) is not Leaves:
            pages = (item,)
        elif item.last < prefix:
            continue
        else:
            pages = expand(item._pages)
        for leaf in pages:
            piece, past = _prefix_cut(leaf, prefix)
            if piece is not None:
                yield piece
            if past:
                return


def _prefix_cut(leaf: _Leaf, prefix: bytes) -> Tuple[Optional[_Leaf], bool]:
    """(the page's keys that start with ``prefix`` or None, whether a key
    past them is on this page)."""
    page, idxs, flags, keys, values = leaf
    n = len(keys)
    i = 0
    while i < n and keys[i] < prefix:
        i += 1
    j = i
    while j < n and keys[j].startswith(prefix):
        j += 1
    if i == j:
        piece = None
    elif i == 0 and j == n:
        piece = leaf
    else:
        piece = (page, idxs[i:j], flags[i:j], keys[i:j], values[i:j])
    return piece, j < n


def sure_increasing(keys: Sequence[bytes]) -> set:
    """Indexes of the keys that lie on *every* longest strictly increasing
    run (subsequence) of ``keys``.

    bbolt writes a leaf's keys strictly increasing, so on a damaged leaf the
    keys out of order are the damage.  Keeping a longest increasing run
    keeps the most records; keeping only the keys on every such run keeps
    none that is in doubt: when two neighbours swapped their keys, either
    could be the one in order, and each now sits beside the other's value.
    """
    import bisect

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


def _page_key_refs(buf, raw, off: int, count: int, end: int, last) -> List[_MapKey]:
    """The sound keys of a damaged leaf after ``last``, as places in the map
    (for :func:`sure_increasing`): one key copied at a time, none kept."""
    refs = []
    for idx, _, key, _, problem in _leaf_elements(buf, off, count, end):
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


def _ascending(keys: List[bytes]) -> bool:
    """Strictly increasing.  (all/map/lt: the loop runs inside CPython's
    builtins, with no bytecode per key; not in boltfix's C core.)"""
    return all(map(lt, keys, islice(keys, 1, None)))


def _where(pgid, parents, lo, hi):
    """How a finding names a pointer, and the key range it was followed with."""
    role = "bucket root" if not parents else "child"
    where = f"{role} page {pgid}" + (f" (from page {parents[-1]})" if parents else "")
    rng = {"key_range": [_hex(lo), _hex(hi)]} if (lo is not None or hi is not None) else {}
    return where, rng


def _first_nonzero(data: bytearray, start: int, end: int) -> int:
    """Index of the first non-zero byte in data[start:end], or -1.
    (lstrip does the scan inside CPython, with no bytecode per byte.)"""
    stripped = data[start:end].lstrip(b"\x00")
    return -1 if not stripped else end - len(stripped)


def _hex(key) -> str:
    if key is None:
        return "-"
    key = bytes(key)
    return key.hex() if len(key) <= 32 else key[:32].hex() + "…"
