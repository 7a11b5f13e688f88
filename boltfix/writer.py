"""Streaming writer: build a fresh, valid bbolt file from sorted records.

This is the back end of ``boltfix repair`` (which, like bbolt's ``Compact``,
salvages records from a damaged file and writes them anew).  Records arrive
in order -- keys strictly increasing within each bucket, with a sub-bucket's
name taking its place among its parent's keys -- and pages are written
sequentially as they complete, so memory is O(depth x page_size) per open
bucket however large the file is.

The layout follows bbolt 1.3.6 (``node.write``, ``Bucket.write``,
``Bucket.inlineable``, ``Tx.WriteTo``, ``freelist.write``):

* a page is a 16-byte header, then all element headers, then the key/value
  data; ``pos`` is measured from the element's own address and a leaf's value
  follows its key; a page bigger than ``page_size`` is one page with
  ``overflow`` extra physical pages (only the first has a header);
* a branch element's key is the first key of its child; branch levels are
  built bottom-up as pages complete (one open page per level per open
  bucket);
* a sub-bucket is written inline (``root == 0`` and a leaf page inside the
  value) exactly when bbolt would: it has no sub-buckets and its page header
  plus elements plus data is at most ``page_size / 4``.  Records of a new
  bucket are buffered until they pass that bound (or a sub-bucket appears),
  then the bucket switches to page mode.  The root bucket is never inline;
* pages 0 and 1 are the metas: page 0 holds txid T and page 1 T-1 with the
  same root, as ``Tx.WriteTo`` writes them; with ``freelist="synced"`` page 2
  is an empty freelist page, with ``"none"`` meta.freelist is
  ``0xFFFFFFFFFFFFFFFF`` (etcd's ``NoFreelistSync``).  meta.pgid is the
  number of pages written and the file is exactly ``pgid * page_size`` bytes.

Example::

    with open("new.db", "wb") as f:
        w = BoltWriter(f)
        w.begin_bucket(b"key")
        w.put(b"a", b"1")
        w.end_bucket()
        stats = w.close()
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from itertools import islice
from operator import lt
from typing import List, Optional, Sequence

from boltfix import ccore, resident
from boltfix.resident import BIG_VALUE
from boltfix.structs import (
    BRANCH_ELEMENT,
    BRANCH_ELEMENT_SIZE,
    BRANCH_PAGE_FLAG,
    BUCKET_HEADER,
    BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG,
    FREELIST_PAGE_FLAG,
    LEAF_ELEMENT,
    LEAF_ELEMENT_SIZE,
    LEAF_PAGE_FLAG,
    MAGIC,
    MAX_KEY_SIZE,
    MAX_PAGE_SIZE,
    MAX_VALUE_SIZE,
    META_CHECKSUM_SPAN,
    META_PAGE_FLAG,
    MIN_PAGE_SIZE,
    PAGE_HEADER,
    PAGE_HEADER_SIZE,
    PGID_NO_FREELIST,
    U64,
    VERSION,
    fnv64a,
    meta_page,
)
from boltfix.writebehind import WriteBehind

__all__ = ["BoltWriter", "WriteStats", "DEFAULT_CHUNK_SIZE"]

#: bytes of completed pages gathered before one ``fileobj.write``
DEFAULT_CHUNK_SIZE = 4 << 20

_U64_MAX = 0xFFFFFFFFFFFFFFFF

#: node.go minKeysPerPage; applied to branch pages
_MIN_KEYS_PER_PAGE = 2

# the element sizes are equal, which the hot paths below rely on
assert LEAF_ELEMENT_SIZE == BRANCH_ELEMENT_SIZE == 16 == PAGE_HEADER_SIZE


@dataclass
class WriteStats:
    """What :meth:`BoltWriter.close` wrote."""

    page_size: int
    #: high-water mark: pages in the file, metas and freelist included
    pgid: int
    #: pages with a header (metas, freelist, branches, leaves); overflow
    #: continuation pages are counted in ``overflow_pages`` instead
    pages: int
    leaf_pages: int
    branch_pages: int
    #: continuation pages of multi-page leaves/branches
    overflow_pages: int
    #: leaf pages written by :meth:`BoltWriter.copy_leaves` (a source page
    #: as it stood, header rewritten), included in ``leaf_pages``
    copied_leaves: int
    #: sub-buckets at every depth (the root bucket is not counted)
    buckets: int
    inline_buckets: int
    #: key/value records (bucket entries not counted)
    keys: int
    root_pgid: int
    #: freelist page id, or 0xFFFFFFFFFFFFFFFF when not synced
    freelist_pgid: int
    txid: int
    file_size: int

    def as_dict(self) -> dict:
        """The stats as a dict (repair's report: ``written``)."""
        return asdict(self)


class _Branch:
    """The open page of one branch level: (first key of child, child pgid)."""

    __slots__ = ("keys", "pgids", "size")

    def __init__(self) -> None:
        self.keys: List[bytes] = []
        self.pgids: List[int] = []
        self.size = PAGE_HEADER_SIZE


class _Bucket:
    """An open bucket: its open leaf page, open branch pages, order state."""

    __slots__ = (
        "name", "sequence", "inline", "last",
        "keys", "vals", "flags", "size", "branches",
    )

    def __init__(self, name: Optional[bytes], sequence: int, inline: bool) -> None:
        self.name = name
        self.sequence = sequence
        # True while the bucket could still be written inline; its records
        # then sit in the open leaf page, which never exceeds page_size/4.
        self.inline = inline
        self.last: Optional[bytes] = None  # last key (or bucket name) added
        self.keys: List[bytes] = []
        self.vals: List[bytes] = []
        self.flags: List[int] = []
        self.size = PAGE_HEADER_SIZE  # header + elements + data of the leaf
        # branches[i] is level i+1 above the leaves; it exists once level i
        # has completed a page.
        self.branches: List[_Branch] = []


def _check_key(key, last: Optional[bytes], what: str) -> bytes:
    if type(key) is not bytes:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"{what} must be bytes, not {type(key).__name__}")
        if (key.nbytes if type(key) is memoryview else len(key)) > MAX_KEY_SIZE:
            raise ValueError(f"{what} is too long; bbolt allows at most {MAX_KEY_SIZE} bytes")
        key = bytes(key)
    n = len(key)
    if n == 0:
        raise ValueError(f"{what} must not be empty")
    if n > MAX_KEY_SIZE:
        raise ValueError(f"{what} is {n} bytes; bbolt allows at most {MAX_KEY_SIZE}")
    if last is not None and key <= last:
        raise ValueError(
            f"{what} {key[:64].hex()} is not greater than the previous key "
            f"{last[:64].hex()} (keys must be strictly increasing)"
        )
    return key


class _PageWriter:
    """The page half of :class:`BoltWriter`: a bucket's open leaf and branch
    pages, laid out as ``node.write`` lays them out, numbered in order and
    gathered into chunks of the output (with write-behind); the metas."""

    def _add_leaf(self, b: _Bucket, key: bytes, value: bytes, flag: int) -> None:
        esz = 16 + len(key) + len(value)
        size = b.size + esz
        if b.inline and size > self._inline_max:
            b.inline = False
        if size > self._ps and b.keys:
            self._flush_leaf(b)
            size = 16 + esz
        b.keys.append(key)
        b.vals.append(value)
        b.flags.append(flag)
        b.size = size

    def _flush_leaf(self, b: _Bucket) -> None:
        """Write the open leaf page of ``b`` and hand it to the branch level."""
        first = b.keys[0]
        pgid = self._write_leaf(b)
        b.keys = []
        b.vals = []
        b.flags = []
        b.size = PAGE_HEADER_SIZE
        self._add_branch(b, 0, first, pgid)

    def _add_branch(self, b: _Bucket, level: int, key: bytes, child: int) -> None:
        branches = b.branches
        if level == len(branches):
            branches.append(_Branch())
        br = branches[level]
        esz = 16 + len(key)
        # A branch page holds at least two children (bbolt's minKeysPerPage),
        # even when its keys overflow the page; otherwise huge keys would
        # make every level as wide as the one below and the tree never close.
        if len(br.keys) >= _MIN_KEYS_PER_PAGE and br.size + esz > self._ps:
            first = br.keys[0]
            pgid = self._write_branch(br)
            br.keys = []
            br.pgids = []
            br.size = PAGE_HEADER_SIZE
            self._add_branch(b, level + 1, first, pgid)
        br.keys.append(key)
        br.pgids.append(child)
        br.size += esz

    def _finish_tree(self, b: _Bucket) -> int:
        """Write every open page of a page-mode bucket; return its root."""
        if not b.branches:
            # a single leaf (possibly empty: the root bucket of an empty DB)
            return self._write_leaf(b)
        if b.keys:  # empty only right after copy_leaves
            self._flush_leaf(b)
        level = 0
        while True:
            br = b.branches[level]
            if level == len(b.branches) - 1:
                # top level; it holds >= 2 children because the level below
                # completed a page before its last one -- except a bucket
                # that is one copied leaf, which is then the root itself
                if len(br.pgids) == 1:
                    return br.pgids[0]
                return self._write_branch(br)
            first = br.keys[0]
            pgid = self._write_branch(br)
            self._add_branch(b, level + 1, first, pgid)
            level += 1

    def _write_leaf(self, b: _Bucket) -> int:
        ps = self._ps
        npages = (b.size + ps - 1) // ps
        pgid = self._next_pgid
        if npages * ps >= BIG_LEAF:
            self._write_big_leaf(b, pgid, npages)
        else:
            buf = bytearray(npages * ps)
            _pack_leaf(buf, 0, pgid, npages - 1, b.keys, b.vals, b.flags)
            self._emit_raw(buf, npages)
        self._n_pages += 1
        self._n_leaf += 1
        self._n_overflow += npages - 1
        return pgid

    def _write_big_leaf(self, b: _Bucket, pgid: int, npages: int) -> None:
        """_pack_leaf's page as pieces: header and elements, then each key and
        value as it is (no page-sized buffer), then the zero padding."""
        n = len(b.keys)
        head = bytearray(16 + 16 * n)
        PAGE_HEADER.pack_into(head, 0, pgid, LEAF_PAGE_FLAG, n, npages - 1)
        pieces = [head]
        off, epos = 16 + 16 * n, 16
        for key, value, flag in zip(b.keys, b.vals, b.flags):
            LEAF_ELEMENT.pack_into(head, epos, flag, off - epos, len(key), len(value))
            pieces += (key, value)
            off += len(key) + len(value)
            epos += 16
        pieces.append(bytes(npages * self._ps - off))
        if self._pending is not None:
            self._take_pending()  # copied leaves before this page come first
        self._next_pgid = pgid + npages
        for piece in pieces:
            if type(piece) is memoryview and piece.nbytes >= BIG_VALUE:
                # a value from the input's map, in pieces: each is written,
                # then the map dropped from RSS (boltfix.resident)
                for part in resident.pieces(piece):
                    self._out.append(part)
                    self._out_len += part.nbytes
                    self._flush_out()
            else:
                self._out.append(piece)
                self._out_len += len(piece)
        self._flush_out()

    def _write_branch(self, br: _Branch) -> int:
        ps = self._ps
        npages = (br.size + ps - 1) // ps
        buf = bytearray(npages * ps)
        pgid = self._next_pgid
        keys = br.keys
        n = len(keys)
        PAGE_HEADER.pack_into(buf, 0, pgid, BRANCH_PAGE_FLAG, n, npages - 1)
        pack = BRANCH_ELEMENT.pack_into
        epos = 16
        off = 16 + 16 * n
        for key, child in zip(keys, br.pgids):
            kl = len(key)
            pack(buf, epos, off - epos, kl, child)
            end = off + kl
            buf[off:end] = key
            off = end
            epos += 16
        self._emit_raw(buf, npages)
        self._n_pages += 1
        self._n_branch += 1
        self._n_overflow += npages - 1
        return pgid

    def _inline_value(self, b: _Bucket) -> bytes:
        """bucket.go write(): bucket header (root 0) + the leaf as a page."""
        if len(b.keys) == 1:  # the common small bucket: what _pack_leaf writes
            key, value = b.keys[0], b.vals[0]
            return b"".join((BUCKET_HEADER.pack(0, b.sequence),
                             PAGE_HEADER.pack(0, LEAF_PAGE_FLAG, 1, 0),
                             LEAF_ELEMENT.pack(b.flags[0], 16, len(key), len(value)),
                             key, value))
        buf = bytearray(BUCKET_HEADER_SIZE + b.size)
        BUCKET_HEADER.pack_into(buf, 0, 0, b.sequence)
        _pack_leaf(buf, BUCKET_HEADER_SIZE, 0, 0, b.keys, b.vals, b.flags)
        return bytes(buf)

    def _take_pending(self) -> None:
        """Queue the copied pages not yet queued (see :meth:`copy_leaves`)."""
        view, lo, hi = self._pending
        if hi > lo:
            self._out.append(view[lo:hi])
            self._out_len += hi - lo
            self._pending[1] = hi

    def _emit_raw(self, data, npages: int) -> int:
        if self._pending is not None:
            self._take_pending()  # copied leaves before this page come first
        pgid = self._next_pgid
        self._next_pgid = pgid + npages
        self._out.append(data)
        self._out_len += len(data)
        if self._out_len >= self._chunk_size:
            self._flush_out()
        return pgid

    def _flush_out(self) -> None:
        out = self._out
        if not out:
            return
        if len(out) == 1:
            self._f.write(out[0])
        elif self._out_len >= len(out) << 16:
            for data in out:  # big slices of copied pages: joining would copy them
                self._f.write(data)
        else:
            self._f.write(b"".join(out))
        self._wb.wrote(self._out_len)
        self._out = []
        self._out_len = 0

    def _meta_page(self, pid: int, txid: int, root: int, hwm: int) -> bytes:
        fields = dict(
            magic=MAGIC,
            version=VERSION,
            pageSize=self._ps,
            flags=0,
            root=dict(root=root, sequence=self._root_sequence),
            freelist=self._freelist_pgid,
            pgid=hwm,
            txid=txid,
            checksum=0,
        )
        header = dict(id=pid, flags=META_PAGE_FLAG, count=0, overflow=0)
        raw = bytearray(meta_page.build(dict(header=header, meta=fields)))
        start = PAGE_HEADER_SIZE
        U64.pack_into(
            raw,
            start + META_CHECKSUM_SPAN,
            fnv64a(raw[start:start + META_CHECKSUM_SPAN]),
        )
        raw.extend(bytes(self._ps - len(raw)))
        return bytes(raw)


class BoltWriter(_PageWriter):
    """Write a bbolt database sequentially from records in sorted order.

    ``fileobj`` must be a writable, seekable binary file positioned where the
    database starts (normally 0, a file opened ``"wb"``).  Pages are written
    in increasing page-id order through an internal buffer of
    ``chunk_size`` bytes; :meth:`close` seeks back once to write the metas.

    ``freelist`` is ``"none"`` (meta.freelist = 0xFFFFFFFFFFFFFFFF, etcd's
    mode) or ``"synced"`` (an empty freelist page at page 2).  ``txid`` is
    meta 0's txid; meta 1 gets ``txid - 1`` (``txid < 1`` means 1).
    ``root_sequence`` is the root bucket's sequence (meta.root.sequence).
    """

    def __init__(
        self,
        fileobj,
        page_size: int = 4096,
        *,
        freelist: str = "none",
        txid: int = 1,
        root_sequence: int = 0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not isinstance(page_size, int) or page_size & (page_size - 1) or not (
            MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE
        ):
            raise ValueError(
                f"page_size must be a power of two in [{MIN_PAGE_SIZE}, {MAX_PAGE_SIZE}]"
            )
        if freelist not in ("none", "synced"):
            raise ValueError('freelist must be "none" or "synced"')
        if not 0 <= root_sequence <= _U64_MAX:
            raise ValueError("root_sequence must fit in a u64")
        txid = max(int(txid), 1)
        if txid > _U64_MAX:
            raise ValueError("txid must fit in a u64")

        self._f = fileobj
        self._ps = page_size
        self._inline_max = page_size // 4
        self._freelist_mode = freelist
        self._txid = txid
        self._root_sequence = root_sequence
        self._chunk_size = max(int(chunk_size), page_size)
        self._closed = False
        self._stats: Optional[WriteStats] = None

        try:
            self._base = fileobj.tell()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._base = 0
        # the output's written pages leave the page cache as the disk takes them
        self._wb = WriteBehind(fileobj, self._base)

        # output buffer of completed pages
        self._out: List[bytes] = []
        self._pending: Optional[list] = None  # see copy_leaves
        self._copybuf = bytearray()
        self._out_len = 0
        self._next_pgid = 0

        # counters
        self._n_pages = 0
        self._n_leaf = 0
        self._n_branch = 0
        self._n_overflow = 0
        self._n_copied = 0
        self._n_buckets = 0
        self._n_inline = 0
        self._n_keys = 0

        # metas are written at close; reserve their pages now
        self._emit_raw(bytes(2 * page_size), 2)
        self._n_pages += 2
        if freelist == "synced":
            # bbolt's freelist.write with no ids: header only, count 0.
            # Its content is known now (a fresh file frees nothing), so it is
            # written in sequence and nothing needs patching later.
            fl = bytearray(page_size)
            PAGE_HEADER.pack_into(fl, 0, 2, FREELIST_PAGE_FLAG, 0, 0)
            self._freelist_pgid = self._emit_raw(fl, 1)
            self._n_pages += 1
        else:
            self._freelist_pgid = PGID_NO_FREELIST

        self._root = _Bucket(None, root_sequence, inline=False)
        self._stack: List[_Bucket] = [self._root]

    # ------------------------------------------------------------- public API
    @property
    def keys_written(self) -> int:
        """Key/value records added so far (bucket entries not counted)."""
        return self._n_keys

    @property
    def depth(self) -> int:
        """Number of open sub-buckets (0 at top level)."""
        return len(self._stack) - 1

    def put(self, key: bytes, value: bytes) -> None:
        """Add a key/value record to the currently open bucket."""
        b = self._stack[-1]
        if b is self._root:
            if self._closed:
                raise ValueError("writer is closed")
            raise ValueError("put at top level: every entry of the root bucket is a bucket")
        last = b.last
        if not (
            type(key) is bytes
            and 0 < len(key) <= MAX_KEY_SIZE
            and (last is None or key > last)
        ):
            key = _check_key(key, last, "key")  # raises, or converts bytes-likes
        if type(value) is not bytes and not isinstance(value, (bytearray, memoryview)):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        vl = value.nbytes if type(value) is memoryview else len(value)
        if vl > MAX_VALUE_SIZE:
            raise ValueError(f"value is {vl} bytes; bbolt allows at most {MAX_VALUE_SIZE}")
        if type(value) is not bytes and not _plain_view(value):
            value = bytes(value)  # a private copy: the page is built later
        # (a read-only byte view, e.g. of the input's map, is kept as it is:
        # a 200 MB value is not copied before it is written)
        b.last = key
        self._n_keys += 1

        # inlined _add_leaf(b, key, value, 0): this is the hot path
        esz = 16 + len(key) + vl
        size = b.size + esz
        if b.inline and size > self._inline_max:
            b.inline = False
        if size > self._ps and b.keys:
            self._flush_leaf(b)
            size = 16 + esz
        b.keys.append(key)
        b.vals.append(value)
        b.flags.append(0)
        b.size = size

    def put_many(self, keys: Sequence[bytes], values: Sequence) -> None:
        """:meth:`put` for each pair in order: the same checks, the same file.

        The keys are checked for the whole batch at once (types, lengths and
        order, each a C-level pass); a batch that fails is replayed record by
        record, so the error names the record and the ones before it are in.
        Then one lean loop fills the open leaf page, with none of put's
        per-call checks.
        """
        b = self._stack[-1]
        n = len(keys)
        if n != len(values):
            raise ValueError(f"{n} keys but {len(values)} values")
        if not n:
            return
        if b is self._root or not _batch_ok(keys, values, b.last):
            for key, value in zip(keys, values):
                self.put(key, value)  # raises at the offending record
            return
        ps = self._ps
        size = b.size
        bkeys, bvals, bflags = b.keys, b.vals, b.flags
        for key, value in zip(keys, values):
            if type(value) is not bytes:
                # a private copy: the page is built later; but a big read-only
                # byte view (of the input's map) goes as it is, as in put()
                if len(value) < BIG_VALUE or not _plain_view(value):
                    value = bytes(value)
            vl = len(value)
            if vl > MAX_VALUE_SIZE:
                b.size = size
                raise ValueError(f"value is {vl} bytes; bbolt allows at most {MAX_VALUE_SIZE}")
            esz = 16 + len(key) + vl
            size += esz
            if size > ps and bkeys:
                b.inline = False
                b.size = size - esz  # the page as it stands, without this record
                self._flush_leaf(b)
                bkeys, bvals, bflags = b.keys, b.vals, b.flags
                size = 16 + esz
            bkeys.append(key)
            bvals.append(value)
            bflags.append(0)
            b.last = key
            self._n_keys += 1
        b.size = size
        if b.inline and size > self._inline_max:
            b.inline = False

    def put_inline_buckets(self, names: Sequence[bytes], values: Sequence,
                           records: int) -> None:
        """Sub-buckets of the open bucket (or top-level buckets), each given
        whole as its entry's value: an inline bucket exactly as
        :meth:`end_bucket` writes one (what :func:`boltfix.walk.inline_run`
        vouches for), ``records`` records in all.  The same file as
        :meth:`begin_bucket`, :meth:`put` of its records and
        :meth:`end_bucket` for each, in one lean loop: the values are not
        looked into again, so only a walk's run may be passed."""
        if self._closed:
            raise ValueError("writer is closed")
        b = self._stack[-1]
        n = len(names)
        if n != len(values):
            raise ValueError(f"{n} names but {len(values)} values")
        if not n:
            return
        if not _batch_ok(names, values, b.last):
            last = b.last
            for name in names:  # raises at the offending name, as begin_bucket does
                last = _check_key(name, last, "bucket name")
            raise TypeError("bucket names must be bytes, inline bucket values bytes-like")
        # a bucket with a sub-bucket is never inline (bucket.go inlineable)
        b.inline = False
        ps = self._ps
        size = b.size
        bkeys, bvals, bflags = b.keys, b.vals, b.flags
        for name, value in zip(names, values):
            if type(value) is not bytes:
                value = bytes(value)  # a private copy: the page is built later
            esz = 16 + len(name) + len(value)
            size += esz
            if size > ps and bkeys:
                b.size = size - esz  # the page as it stands, without this entry
                self._flush_leaf(b)
                bkeys, bvals, bflags = b.keys, b.vals, b.flags
                size = 16 + esz
            bkeys.append(name)
            bvals.append(value)
            bflags.append(BUCKET_LEAF_FLAG)
        b.size = size
        b.last = names[-1]
        self._n_buckets += n
        self._n_inline += n
        self._n_keys += records

    @property
    def may_copy(self) -> bool:
        """Whether :meth:`copy_leaves` may take a page now: not at top level,
        nor while the open bucket could still be written inline (bbolt
        inlines a small bucket; record by record decides that)."""
        b = self._stack[-1]
        return not (b is self._root or b.inline or self._closed)

    def copy_leaves(self, buf, leaves: Sequence) -> int:
        """:meth:`_copy_run` until a page is not taken: a run stops at
        :data:`COPY_BYTES` of pages (the copy buffer's bound), and the next
        run goes on from there; a page bigger than that is never copied
        (its caller puts its records: a big value is written from the map
        in pieces, never copied whole)."""
        done = self._copy_run(buf, leaves)
        while 0 < done < len(leaves):
            more = self._copy_run(buf, leaves[done:])
            if not more:
                break
            done += more
        return done

    def _copy_run(self, buf, leaves: Sequence) -> int:
        """Write whole leaf pages of a source file as they stand, with only
        their header rewritten; returns how many of ``leaves`` (a prefix)
        were taken.  The caller :meth:`put_many`'s the records of the next
        one, if any.

        ``buf`` is the source file (same page size), ``leaves`` a list of
        ``(pgid, count, end)``: leaf pages whose ``count`` elements the walk
        took whole, in key order, after this bucket's last key.  A page is
        taken when :func:`copyable_leaf` says it is laid out exactly as
        ``node.write`` lays out its records (so the bytes are those a fresh
        leaf of the same records holds); its overflow becomes what the data
        needs and the rest of its last page is zeroed.  Nothing is taken
        while the bucket could still be written inline (bbolt inlines a
        small bucket; record by record decides that) or at top level.
        """
        b = self._stack[-1]
        if not self.may_copy or not leaves:
            return 0
        fast = _speedups_leaf_copy()
        if fast is not None:
            # one buffer for every call: free again, since every copy ends
            # with its pages written out (below)
            blob, firsts, records, last = fast(buf, self._ps, leaves, b.last, self._copybuf,
                                               COPY_BYTES)
        else:
            blob, firsts, records, last = _copy_leaves(buf, self._ps, leaves, b.last, COPY_BYTES)
        if not firsts:
            return 0
        if b.keys:
            self._flush_leaf(b)  # its records come before the copied pages
        ps = self._ps
        view = memoryview(blob)
        # copied pages wait here, as one slice of the blob, until a branch
        # page is emitted between them (_emit_raw takes them first) or the
        # copy ends: no page is sliced or joined on its own
        self._pending = [view, 0, 0]
        start = 0
        pack = U64.pack_into
        pending = self._pending
        br = b.branches[0] if b.branches else None
        try:
            for first, npages in firsts:
                pgid = self._next_pgid
                # the header id is the page's new position: only now known,
                # since branch pages may be written between two leaves
                pack(view, start, pgid)
                start += npages * ps
                self._next_pgid = pgid + npages
                pending[2] = start
                self._n_overflow += npages - 1
                esz = 16 + len(first)
                if br is not None and (len(br.keys) < _MIN_KEYS_PER_PAGE
                                       or br.size + esz <= ps):
                    # _add_branch's common case inlined: room on the open page
                    br.keys.append(first)
                    br.pgids.append(pgid)
                    br.size += esz
                else:
                    self._add_branch(b, 0, first, pgid)
                    br = b.branches[0]
        finally:
            self._take_pending()
            self._pending = None
        self._n_pages += len(firsts)
        self._n_leaf += len(firsts)
        self._flush_out()  # nothing may still point into the buffer
        self._n_copied += len(firsts)
        b.last = last
        self._n_keys += records
        return len(firsts)

    def begin_bucket(self, name: bytes, sequence: int = 0) -> None:
        """Open a sub-bucket of the current bucket (a top-level bucket if
        none is open).  ``name`` takes its place in the parent's key order."""
        if self._closed:
            raise ValueError("writer is closed")
        parent = self._stack[-1]
        name = _check_key(name, parent.last, "bucket name")
        if not 0 <= sequence <= _U64_MAX:
            raise ValueError("bucket sequence must fit in a u64")
        parent.last = name
        # a bucket with a sub-bucket is never inline (bucket.go inlineable)
        parent.inline = False
        self._stack.append(_Bucket(name, sequence, inline=True))
        self._n_buckets += 1

    def end_bucket(self) -> None:
        """Close the current bucket and add its entry to the parent."""
        if len(self._stack) <= 1:
            raise ValueError("end_bucket without an open bucket")
        b = self._stack.pop()
        if b.inline:
            value = self._inline_value(b)
            self._n_inline += 1
        else:
            value = BUCKET_HEADER.pack(self._finish_tree(b), b.sequence)
        self._add_leaf(self._stack[-1], b.name, value, BUCKET_LEAF_FLAG)

    def close(self) -> WriteStats:
        """Close any open buckets, finish the tree, write the metas.

        Returns the :class:`WriteStats`.  The file object is flushed, not
        closed.  Calling ``close`` again returns the same stats.
        """
        if self._closed:
            return self._stats  # type: ignore[return-value]
        while len(self._stack) > 1:
            self.end_bucket()
        root_pgid = self._finish_tree(self._root)
        self._flush_out()
        self._closed = True

        ps = self._ps
        hwm = self._next_pgid
        f = self._f
        end = self._base + hwm * ps
        f.seek(self._base)
        for pid, txid in ((0, self._txid), (1, self._txid - 1)):
            f.write(self._meta_page(pid, txid, root_pgid, hwm))
        f.seek(end)
        try:
            f.truncate(end)
        except (AttributeError, OSError, io.UnsupportedOperation):
            pass
        f.flush()

        self._stats = WriteStats(
            page_size=ps,
            pgid=hwm,
            pages=self._n_pages,
            leaf_pages=self._n_leaf,
            branch_pages=self._n_branch,
            overflow_pages=self._n_overflow,
            copied_leaves=self._n_copied,
            buckets=self._n_buckets,
            inline_buckets=self._n_inline,
            keys=self._n_keys,
            root_pgid=root_pgid,
            freelist_pgid=self._freelist_pgid,
            txid=self._txid,
            file_size=hwm * ps,
        )
        return self._stats

    def __enter__(self) -> "BoltWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


_BYTES_LIKE = frozenset({bytes, bytearray, memoryview})


def _plain_view(value) -> bool:
    """A read-only, contiguous, one-dimensional byte view: kept as it is
    until its page is written (the input's map does not change under it)."""
    return (type(value) is memoryview and value.readonly and value.c_contiguous
            and value.ndim == 1 and value.itemsize == 1)


def _batch_ok(keys, values, last: Optional[bytes]) -> bool:
    """Whether a batch of keys (or bucket names) may go in as it is: all
    bytes, 1 to MAX_KEY_SIZE long, ascending and after ``last``, the values
    bytes-like (each a C-level pass; a batch that fails is replayed one by
    one, so the error names the offending key)."""
    return (_all_bytes_like(keys, values)
            and 0 < min(map(len, keys)) <= max(map(len, keys)) <= MAX_KEY_SIZE
            and (last is None or keys[0] > last)
            and all(map(lt, keys, islice(keys, 1, None))))


def _all_bytes_like(keys, values) -> bool:
    """Keys all exactly bytes, values all bytes, bytearray or memoryview (in C)."""
    return set(map(type, keys)) <= {bytes} and set(map(type, values)) <= _BYTES_LIKE


def copyable_leaf(buf, off: int, count: int, end: int, last: Optional[bytes]):
    """``(size, first key, last key)`` of the leaf page at byte ``off`` of
    ``buf`` when it can be written out as it stands, else None.

    bbolt's ``node.write`` packs a leaf as: header, ``count`` elements, then
    each record's key and value back to back in element order; element i's
    ``pos`` is therefore ``16 * (count - i)`` plus the data before it.  A
    page laid out exactly so, with plain records only (a bucket entry's
    value is rebuilt), keys of 1..32768 bytes, values within bbolt's limit,
    all inside ``end`` and its first key after ``last``, holds the very bytes
    :func:`_pack_leaf` would write for its records.  ``size`` is header +
    elements + data.  The C core's ``leaf_copy`` applies this same rule.
    """
    base = off + PAGE_HEADER_SIZE
    floor = base + LEAF_ELEMENT_SIZE * count
    if not count or floor > end or floor > len(buf):
        return None
    data = floor
    eoff = base
    first_k = first_n = last_k = last_n = 0
    for eflags, pos, ksize, vsize in LEAF_ELEMENT.iter_unpack(buf[base:floor]):
        if (eflags or eoff + pos != data or not 0 < ksize <= MAX_KEY_SIZE
                or vsize > MAX_VALUE_SIZE):
            return None
        if eoff == base:
            first_k, first_n = data, ksize
        last_k, last_n = data, ksize
        data += ksize + vsize
        eoff += LEAF_ELEMENT_SIZE
    if data > end:
        return None
    first = bytes(buf[first_k:first_k + first_n])
    if last is not None and not first > last:
        return None
    return data - off, first, bytes(buf[last_k:last_k + last_n])


def _copy_leaves(buf, ps: int, leaves, last: Optional[bytes], max_bytes: int = -1):
    """The pure-Python ``leaf_copy``: the longest prefix of ``leaves`` that
    :func:`copyable_leaf` accepts, each next first key after the previous
    page's last, and that fits in ``max_bytes`` (-1: no bound), as
    ``(pages, [(first key, npages)], records, last key)``;
    ``pages`` holds each page with its header (id left 0) and zeroed tail."""
    out = bytearray()
    firsts = []
    records = 0
    for pgid, count, end in leaves:
        off = pgid * ps
        got = copyable_leaf(buf, off, count, end, last)
        if got is None:
            break
        size, first, last_key = got
        npages = (size + ps - 1) // ps
        if max_bytes >= 0 and len(out) + npages * ps > max_bytes:
            break
        last = last_key
        page = bytearray(npages * ps)
        PAGE_HEADER.pack_into(page, 0, 0, LEAF_PAGE_FLAG, count, npages - 1)
        page[PAGE_HEADER_SIZE:size] = buf[off + PAGE_HEADER_SIZE:off + size]
        out += page
        firsts.append((first, npages))
        records += count
    return out, firsts, records, last


def _speedups_leaf_copy():
    return ccore.fast("leaf_copy")


#: bytes of pages one copy_leaves run copies at most (its buffer's bound)
COPY_BYTES = 16 << 20

#: a leaf page run this big is written in pieces, its values as they are
#: (writer._write_big_leaf) instead of packed into one page-sized buffer
BIG_LEAF = 1 << 20


def _pack_leaf(buf, base: int, pgid: int, overflow: int, keys, vals, flags) -> None:
    """node.write for a leaf: header, all elements, then key+value data."""
    n = len(keys)
    if n >= 0xFFFF:  # cannot happen: a page holds at most page_size/17 elements
        raise ValueError(f"too many elements for one page: {n}")
    PAGE_HEADER.pack_into(buf, base, pgid, LEAF_PAGE_FLAG, n, overflow)
    pack = LEAF_ELEMENT.pack_into
    epos = base + 16
    off = epos + 16 * n
    for key, value, flag in zip(keys, vals, flags):
        kl = len(key)
        vl = len(value)
        pack(buf, epos, flag, off - epos, kl, vl)
        mid = off + kl
        buf[off:mid] = key
        off = mid + vl
        buf[mid:off] = value
        epos += 16
