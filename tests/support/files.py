"""Files the tests build with boltfix's own writer (shapes bbolt writes too,
but faster to make, or damaged from the construct declarations)."""

from __future__ import annotations

from boltfix import structs as S
from boltfix.writer import BoltWriter
from support import damage


def write_values(path, values, page_size=4096, pad=0) -> None:
    """Bucket ``b`` with one record per value (key ``kNN``), and small
    records around them (``pad`` of each side) so pages mix both kinds."""
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size)
        w.begin_bucket(b"b")
        for i in range(pad):
            w.put(b"a%04d" % i, b"small %d" % i)
        for i, v in enumerate(values):
            w.put(b"k%02d" % i, v)
        for i in range(pad):
            w.put(b"z%04d" % i, b"small %d" % i)
        w.end_bucket()
        w.close()



def many_sub_buckets(path, n: int) -> None:
    """Bucket ``parent`` holding ``n`` small inline sub-buckets (``sub-NNNNNNNN``, one
    record each), written by boltfix's writer."""
    with open(path, "wb") as f:
        w = BoltWriter(f, 4096)
        w.begin_bucket(b"parent")
        for i in range(n):
            w.begin_bucket(b"sub-%08d" % i)
            w.put(b"k", b"v%d" % i)
            w.end_bucket()
        w.end_bucket()
        w.close()



def write_overlapping_keys(path, n: int, ksize: int) -> None:
    """Bucket ``o`` with one leaf page of ``n`` elements whose keys of
    ``ksize`` bytes all overlap: key i starts one byte after key i-1 in one
    run of non-decreasing bytes, so they ascend (a valid page to every check
    of order and bounds) while their total is ``n * ksize``."""
    ps = 4096
    size = S.PAGE_HEADER_SIZE + n * S.LEAF_ELEMENT_SIZE + n + ksize
    with open(path, "wb") as f:
        w = BoltWriter(f, ps)
        w.begin_bucket(b"o")
        w.put(b"k", bytes(size))  # a leaf page with an overflow run to fill
        w.end_bucket()
        w.close()
    node, _ = damage.leaf_holding(path, [b"o"], b"k")
    hdr = damage.read_header(path, node.pgid)
    data = S.PAGE_HEADER_SIZE + n * S.LEAF_ELEMENT_SIZE
    blob = bytes(1 + j * 254 // (n + ksize) for j in range(n + ksize))
    els = b"".join(S.LEAF_ELEMENT.pack(0, data + i - (S.PAGE_HEADER_SIZE + i * S.LEAF_ELEMENT_SIZE),
                                       ksize, 0) for i in range(n))
    page = S.PAGE_HEADER.pack(node.pgid, S.LEAF_PAGE_FLAG, n, hdr.overflow) + els + blob
    assert len(page) <= (hdr.overflow + 1) * ps
    with open(path, "r+b") as f:
        f.seek(node.pgid * ps)
        f.write(page)

