"""Mutated real bbolt files for the fuzzers (check's, and the C core's
comparison with the pure-Python walk): bit flips, page header and element
fields, zeroed and copied pages, truncation, meta fields with a recomputed
checksum."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import strategies as st

from boltfix import structs as S
from boltfix.reader import DB
from support import oracle

SHAPES = ("nested", "freed", "nofreelist", "page16k", "overflow", "deep")


@lru_cache(maxsize=None)
def original(shape: str) -> tuple:
    """(bytes, page size, pgid of the meta in use) of a committed fixture."""
    data = oracle.fixture(shape).read_bytes()
    with DB(oracle.fixture(shape)) as db:
        return data, db.page_size, db.meta.pgid


INTERESTING_U64 = [0, 1, 2, 3, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF,
                   1 << 32, 1 << 62, 0xFFFFFFFFFFFFFFFF]


def interesting(bits: int):
    """Integers of ``bits`` bits that tend to matter (bounds, sentinels), or any."""
    mask = (1 << bits) - 1
    return st.one_of(st.sampled_from(sorted({v & mask for v in INTERESTING_U64})),
                     st.integers(0, mask))


# Each mutation is (name, args) drawn by hypothesis and applied to a bytearray.
@st.composite
def mutation(draw, shape):
    data, ps, hwm = original(shape)
    npages = len(data) // ps
    # pages worth hitting: mostly in use (below the high-water mark)
    page = draw(st.one_of(st.integers(0, max(0, min(hwm, npages) - 1)),
                          st.integers(0, npages - 1)))
    kind = draw(st.sampled_from(["flip", "header", "element", "zero", "copy",
                                 "truncate", "meta", "bytes"]))
    if kind == "flip":
        offsets = draw(st.lists(st.integers(0, len(data) * 8 - 1), min_size=1, max_size=8))
        return ("flip", offsets)
    if kind == "header":
        fld = draw(st.sampled_from(["id", "flags", "count", "overflow"]))
        bits = {"id": 64, "flags": 16, "count": 16, "overflow": 32}[fld]
        if fld == "flags":
            value = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 0x10, 0x12, 0xFFFF]),
                                   interesting(16)))
        else:
            value = draw(interesting(bits))
        return ("header", page, fld, value)
    if kind == "element":
        idx = draw(st.integers(0, 40))
        field_off = draw(st.sampled_from([0, 4, 8, 12]))
        width = draw(st.sampled_from([4, 8])) if field_off in (0, 8) else 4
        value = draw(interesting(width * 8))
        return ("element", page, idx, field_off, width, value)
    if kind == "zero":
        return ("zero", page)
    if kind == "copy":
        src = draw(st.integers(0, npages - 1))
        return ("copy", src, page)
    if kind == "truncate":
        return ("truncate", draw(st.integers(1, len(data))))
    if kind == "meta":
        index = draw(st.sampled_from([0, 1]))
        fld = draw(st.sampled_from(["magic", "version", "pageSize", "root", "freelist",
                                    "pgid", "txid"]))
        bits = 32 if fld in ("magic", "version", "pageSize") else 64
        value = draw(st.one_of(interesting(bits), st.integers(0, hwm + 4)))
        fix = draw(st.booleans())
        return ("meta", index, fld, value, fix)
    # random bytes somewhere inside a page
    off = draw(st.integers(0, ps - 1))
    blob = draw(st.binary(min_size=1, max_size=64))
    return ("bytes", page, off, blob)


def apply(buf: bytearray, ps: int, m) -> bytearray:
    kind = m[0]
    if kind == "flip":
        for bit in m[1]:
            if bit // 8 < len(buf):
                buf[bit // 8] ^= 1 << (bit % 8)
    elif kind == "header":
        _, page, fld, value = m
        off = page * ps
        if off + S.PAGE_HEADER_SIZE > len(buf):
            return buf
        hdr = S.page.parse(bytes(buf[off: off + S.PAGE_HEADER_SIZE]))
        hdr[fld] = value
        buf[off: off + S.PAGE_HEADER_SIZE] = S.page.build(hdr)
    elif kind == "element":
        _, page, idx, field_off, width, value = m
        off = page * ps + S.PAGE_HEADER_SIZE + idx * S.LEAF_ELEMENT_SIZE + field_off
        if off + width <= len(buf):
            buf[off: off + width] = value.to_bytes(width, "little")
    elif kind == "zero":
        buf[m[1] * ps: (m[1] + 1) * ps] = bytes(ps)
    elif kind == "copy":
        _, src, dst = m
        buf[dst * ps: (dst + 1) * ps] = buf[src * ps: (src + 1) * ps]
    elif kind == "truncate":
        del buf[m[1]:]
    elif kind == "meta":
        _, index, fld, value, fix = m
        off = index * ps + S.PAGE_HEADER_SIZE
        if off + S.META_SIZE > len(buf):
            return buf
        meta = S.meta.parse(bytes(buf[off: off + S.META_SIZE]))
        if fld == "root":
            meta.root.root = value
        else:
            meta[fld] = value
        raw = S.meta.build(meta)
        if fix:
            meta.checksum = S.fnv64a(raw[: S.META_CHECKSUM_SPAN])
            raw = S.meta.build(meta)
        buf[off: off + S.META_SIZE] = raw
    elif kind == "bytes":
        _, page, off, blob = m
        start = page * ps + off
        buf[start: start + len(blob)] = blob[: max(0, len(buf) - start)]
    return buf


@st.composite
def mutated(draw):
    """(shape, mutations, bytes) of a committed fixture with 1-4 mutations."""
    shape = draw(st.sampled_from(SHAPES))
    muts = draw(st.lists(mutation(shape), min_size=1, max_size=4))
    data, ps, _ = original(shape)
    buf = bytearray(data)
    for m in muts:
        buf = apply(buf, ps, m)
    return shape, muts, bytes(buf)

