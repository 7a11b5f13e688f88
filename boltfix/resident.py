"""Keep the input's mapped pages from adding up in the process's RSS.

A :class:`~boltfix.reader.DB` maps its file.  Every page the walk touches
stays in the process's page tables until the map goes, and counts in its
RSS as a file-backed page (``RssFile``): a check of an 872 MB file peaked at
870 MB, of which 30 MB was the process's own memory (``RssAnon``).

``madvise(MADV_DONTNEED)`` on a read-only shared file map drops those page
table entries and nothing else: the pages stay in the page cache, a later
touch maps them again (a minor fault) with the same bytes, and the kernel
may reclaim them like any other cached page.  So the walk drops the whole
map every :data:`TRIM_BYTES` of pages it has walked, and a big value is
written or printed in pieces of :data:`PIECE` bytes, the map dropped after
each (:func:`pieces`).  RSS then holds at most about ``TRIM_BYTES`` of the
file, whatever its size.
"""

from __future__ import annotations

import mmap
from typing import Iterator, Optional

__all__ = ["TRIM_BYTES", "PIECE", "BIG_VALUE", "drop", "release", "pieces"]

#: pages walked between two drops of the map (about; C runs count whole)
TRIM_BYTES = 32 << 20

#: a value at least this big is written and printed in pieces (writer,
#: dump), with the map dropped after each; a smaller one goes whole
BIG_VALUE = 1 << 20

#: bytes of a big value per piece (a multiple of 3: base64 of pieces is
#: the base64 of the whole)
PIECE = 3 << 20

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def drop(mm) -> None:
    """Drop every page of the map ``mm`` from this process's page tables
    (a hint: nothing else changes, and nothing happens where it cannot)."""
    if _DONTNEED is None or not isinstance(mm, mmap.mmap):
        return
    try:
        mm.madvise(_DONTNEED)
    except (OSError, ValueError):  # closed, or a kernel without it
        pass


def release(view) -> None:
    """:func:`drop` the map that ``view`` (a memoryview slice) is part of."""
    if type(view) is memoryview:
        drop(view.obj)


def pieces(view, size: Optional[int] = None) -> Iterator[memoryview]:
    """``view`` in slices of ``size`` (default :data:`PIECE`) bytes; after
    each has been used (when the next is asked for, and at the end) the map
    it lies in is dropped."""
    size = size or PIECE
    if type(view) is not memoryview:
        view = memoryview(view)
    n = view.nbytes
    for start in range(0, n, size):
        yield view[start:start + size]
        release(view)
