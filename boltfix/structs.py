"""bbolt's on-disk structures, declared once.

Names follow bbolt's own source (go.etcd.io/bbolt ``page.go``, ``db.go``,
``bucket.go``, ``freelist.go``; at v1.3.6:
https://github.com/etcd-io/bbolt/blob/v1.3.6/page.go and
https://github.com/etcd-io/bbolt/blob/v1.3.6/db.go).  In bbolt 1.4+ the same
structs live in ``internal/common/page.go`` and ``internal/common/meta.go``.

All integers are little-endian (bbolt writes host order; every platform etcd
runs on is little-endian).  Structs have no padding.

The ``construct`` declarations are the source of truth for the layout.  The
library reads every structure (page headers, elements, metas, bucket
values, freelist ids) through :class:`struct.Struct` objects whose formats
are *derived* from those declarations and checked against their sizes at
import time (construct parses about 50k elements/s: far too slow for a
walk).  construct itself builds the meta pages the writer emits
(``meta_page.build``), and the tests' crafted damage (``tests/damage.py``)
parses and builds with it.
"""

from __future__ import annotations

import struct
from typing import Optional

from construct import Int16ul, Int32ul, Int64ul, Struct

# ---------------------------------------------------------------- constants
MAGIC = 0xED0CDAED
VERSION = 2

PAGE_HEADER_SIZE = 16
BRANCH_ELEMENT_SIZE = 16
LEAF_ELEMENT_SIZE = 16
BUCKET_HEADER_SIZE = 16
META_SIZE = 64  # bytes of meta after the page header, checksum included
META_CHECKSUM_SPAN = 56  # FNV-1a 64 covers meta bytes [0, 56)

# page.flags
BRANCH_PAGE_FLAG = 0x01
LEAF_PAGE_FLAG = 0x02
META_PAGE_FLAG = 0x04
FREELIST_PAGE_FLAG = 0x10

# leafPageElement.flags
BUCKET_LEAF_FLAG = 0x01

# meta.freelist when the freelist was not synced (etcd on Linux)
PGID_NO_FREELIST = 0xFFFFFFFFFFFFFFFF

# bbolt limits (bucket.go)
MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2

# freelist count escape (page.count is u16)
FREELIST_COUNT_ESCAPE = 0xFFFF

# page sizes bbolt itself ever writes: os.Getpagesize() on every platform
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536

# ---------------------------------------------------------------- construct
# type page struct { id pgid; flags uint16; count uint16; overflow uint32 }
page = Struct(
    "id" / Int64ul,
    "flags" / Int16ul,
    "count" / Int16ul,
    "overflow" / Int32ul,
)

# type bucket struct { root pgid; sequence uint64 }
bucket = Struct(
    "root" / Int64ul,
    "sequence" / Int64ul,
)

# type meta struct {...}, starting at page offset 16
meta = Struct(
    "magic" / Int32ul,
    "version" / Int32ul,
    "pageSize" / Int32ul,
    "flags" / Int32ul,
    "root" / bucket,
    "freelist" / Int64ul,
    "pgid" / Int64ul,
    "txid" / Int64ul,
    "checksum" / Int64ul,
)

# a whole meta page as bbolt writes it (header + meta); used when writing
meta_page = Struct(
    "header" / page,
    "meta" / meta,
)

# type branchPageElement struct { pos uint32; ksize uint32; pgid pgid }
branchPageElement = Struct(
    "pos" / Int32ul,
    "ksize" / Int32ul,
    "pgid" / Int64ul,
)

# type leafPageElement struct { flags uint32; pos uint32; ksize uint32; vsize uint32 }
leafPageElement = Struct(
    "flags" / Int32ul,
    "pos" / Int32ul,
    "ksize" / Int32ul,
    "vsize" / Int32ul,
)

# A freelist page body: ids follow the header.  Declared for building;
# reading slices the ids with struct because a freelist holds millions.
freelist_escape = Struct("count" / Int64ul)

# An inline bucket value is ``bucket`` (root == 0) followed by a ``page``
# header and leaf elements with their data, all inside the value itself.

# ---------------------------------------------------------------- fast paths
_FORMAT_CHARS = {Int16ul: "H", Int32ul: "I", Int64ul: "Q"}


def _struct_format(decl: Struct) -> str:
    """The ``struct`` format equivalent to a flat construct declaration."""
    chars = []
    for sub in decl.subcons:
        inner = sub.subcon if hasattr(sub, "subcon") else sub
        if inner in _FORMAT_CHARS:
            chars.append(_FORMAT_CHARS[inner])
        elif isinstance(inner, Struct):
            chars.append(_struct_format(inner)[1:])
        else:  # pragma: no cover - a declaration we cannot flatten
            raise TypeError(f"cannot flatten {sub!r}")
    return "<" + "".join(chars)


PAGE_HEADER = struct.Struct(_struct_format(page))
BRANCH_ELEMENT = struct.Struct(_struct_format(branchPageElement))
LEAF_ELEMENT = struct.Struct(_struct_format(leafPageElement))
BUCKET_HEADER = struct.Struct(_struct_format(bucket))
META = struct.Struct(_struct_format(meta))
U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")

assert PAGE_HEADER.size == page.sizeof() == PAGE_HEADER_SIZE
assert BRANCH_ELEMENT.size == branchPageElement.sizeof() == BRANCH_ELEMENT_SIZE
assert LEAF_ELEMENT.size == leafPageElement.sizeof() == LEAF_ELEMENT_SIZE
assert BUCKET_HEADER.size == bucket.sizeof() == BUCKET_HEADER_SIZE
assert META.size == meta.sizeof() == META_SIZE


def fnv64a(data) -> int:
    """FNV-1a 64, the hash bbolt uses for the meta checksum."""
    h = 0xCBF29CE484222325
    for b in bytes(data):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def bucket_sequence(value) -> Optional[int]:
    """A bucket entry's sequence, None when its value is too short."""
    if len(value) >= BUCKET_HEADER_SIZE:
        return BUCKET_HEADER.unpack_from(value, 0)[1]
    return None


def page_type_name(flags: int) -> str:
    """Page type as bbolt 1.4+ reads it (flags compared for equality)."""
    return _TYPE_NAMES.get(flags, f"unknown<{flags:02x}>")


_TYPE_NAMES = {
    BRANCH_PAGE_FLAG: "branch",
    LEAF_PAGE_FLAG: "leaf",
    META_PAGE_FLAG: "meta",
    FREELIST_PAGE_FLAG: "freelist",
}
