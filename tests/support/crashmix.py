"""Crash files mixed from two real captures of one bbolt file: what a crash
leaves when some of the newer capture's writes never reached the disk.

Both captures are bytes a real bbolt (or a real etcd) wrote: ``prev``, the
file at an earlier commit, and ``cur``, the file at a later one.  Every page
of a mix is a page one of them held; only the mix is the crash's doing.
Nothing here invents a page.

Kinds (``cur``'s newest meta page ``m``):

* ``lost``: every page ``cur`` changed still holds ``prev``'s bytes (zeros
  past ``prev``'s end), ``m`` is ``cur``'s (a write cache that lied);
* ``lost-metas``: as ``lost``, with both of ``cur``'s meta pages in: the
  writes of several commits lost, their metas not;
* ``partial-even`` / ``partial-odd``: every other changed page is lost;
* ``torn`` / ``torn-tree``: one changed page holds ``prev``'s bytes from a
  512-byte boundary on: a page chosen by ``n``, or the changed branch or
  leaf page with the most elements, torn at 512;
* ``zeroed``: the changed pages read as zeros (an unwritten extent);
* ``meta-zeroed`` / ``meta-old-sector``: ``m`` zeroed, or its first sector
  still ``prev``'s;
* ``live-copy``: the first half of the file (the metas with it) from
  ``prev``, the rest from ``cur``: ``cp`` or ``rsync`` reading front to
  back while bbolt went on writing;
* ``lost-growth``: ``cur`` cut to ``prev``'s length: the file's last growth
  (and every page written into it) never reached the disk, its metas did.
"""

from __future__ import annotations

import struct
from typing import List, Optional

#: bbolt's meta after the page header: magic, version, page_size, flags,
#: root (pgid, sequence), freelist, pgid, txid, checksum
META = struct.Struct("<IIIIQQQQQQ")

KINDS = ("lost", "lost-metas", "partial-even", "partial-odd", "torn", "torn-tree", "zeroed",
         "meta-zeroed", "meta-old-sector", "live-copy", "lost-growth")


def page_size(buf: bytes) -> int:
    """The page size meta 0 holds."""
    return META.unpack_from(buf, 16)[2]


def meta_txids(buf: bytes, ps: int) -> List[int]:
    """The txids of meta 0 and meta 1."""
    return [META.unpack_from(buf, i * ps + 16)[8] for i in (0, 1)]


def high_water(buf: bytes) -> int:
    """The bytes the newest meta says are in use (its ``pgid``, the first
    page never allocated, times the page size)."""
    ps = page_size(buf)
    return META.unpack_from(buf, newest_meta(buf, ps) * ps + 16)[7] * ps


def newest_meta(buf: bytes, ps: int) -> int:
    """The index of the meta page with the higher txid."""
    txids = meta_txids(buf, ps)
    return 0 if txids[0] >= txids[1] else 1


def written_pages(prev: bytes, cur: bytes, ps: int) -> List[int]:
    """Pages (meta pages aside) whose bytes ``cur`` changed."""
    prev = prev.ljust(len(cur), b"\0")
    return [p for p in range(2, len(cur) // ps)
            if prev[p * ps:(p + 1) * ps] != cur[p * ps:(p + 1) * ps]]


def torn_tree_page(cur: bytes, pages: List[int], ps: int) -> Optional[int]:
    """Of ``pages``, the branch or leaf page (a header with its own id) with
    the most elements."""
    best = None
    for p in pages:
        pid, flags, count, _ = struct.unpack_from("<QHHI", cur, p * ps)
        if pid == p and flags in (1, 2) and (best is None or count > best[0]):
            best = (count, p)
    return best[1] if best else None


def applies(prev: bytes, cur: bytes, kind: str) -> bool:
    """Whether ``kind`` makes a file other than ``cur`` from these two
    (a lost growth needs a file that grew)."""
    if kind == "lost-growth":
        return len(cur) > len(prev)
    return prev != cur


def crash(prev: bytes, cur: bytes, kind: str, n: int = 0) -> bytes:
    """The file a crash of ``kind`` leaves, mixed from ``prev`` and ``cur``
    (``n`` picks the torn page and sector of ``torn``)."""
    ps = page_size(cur)
    old = prev.ljust(len(cur), b"\0")
    out = bytearray(cur)
    m = newest_meta(cur, ps)
    pages = written_pages(prev, cur, ps)

    def take(p: int, src: bytes, start: int = 0) -> None:
        out[p * ps + start:(p + 1) * ps] = src[p * ps + start:(p + 1) * ps]

    if kind in ("lost", "lost-metas"):
        out = bytearray(old)
        take(m, cur)
        if kind == "lost-metas":
            take(1 - m, cur)
    elif kind in ("partial-even", "partial-odd"):
        for j, p in enumerate(pages):
            if j % 2 == (kind == "partial-odd"):
                take(p, old)
    elif kind == "torn":
        take(pages[n % len(pages)], old, 512 * (1 + n % (ps // 512 - 1)))
    elif kind == "torn-tree":
        p = torn_tree_page(cur, pages, ps)
        assert p is not None, "a commit writes at least its root bucket's page"
        take(p, old, 512)
    elif kind == "zeroed":
        for p in pages:
            take(p, bytes(len(cur)))
    elif kind == "meta-zeroed":
        take(m, bytes(len(cur)))
    elif kind == "meta-old-sector":
        out[m * ps:m * ps + 512] = old[m * ps:m * ps + 512]
    elif kind == "live-copy":
        half = (len(cur) // ps // 2) * ps
        out[:half] = old[:half]
    elif kind == "lost-growth":
        out = out[:len(prev)]
    else:
        raise AssertionError(kind)
    return bytes(out)
