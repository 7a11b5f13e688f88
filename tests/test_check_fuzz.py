"""Fuzz ``check()`` with mutated real bbolt files.

Hypothesis mutates the bytes of the committed fixtures (bit flips, page
header and element fields, zeroed and copied pages, truncation, meta fields
with a recomputed checksum) and asserts that opening raises nothing but
:class:`boltfix.errors.BoltError` and that ``check()`` always returns a
:class:`CheckResult` in bounded time.  Runs derandomized, so CI is
reproducible; the whole file takes well under a minute.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from boltfix import structs as S
from boltfix.check import CheckResult, check
from boltfix.errors import BoltError, Finding
from boltfix.reader import DB

SHAPES = ("nested", "freed", "nofreelist", "page16k", "overflow", "deep")
TIME_LIMIT = 5.0  # seconds per example

# BOLTFIX_FUZZ_EXAMPLES=5000 BOLTFIX_FUZZ_RANDOM=1 explores beyond the fixed CI seed.
FUZZ = settings(
    max_examples=int(os.environ.get("BOLTFIX_FUZZ_EXAMPLES", "250")),
    derandomize=not os.environ.get("BOLTFIX_FUZZ_RANDOM"),
    deadline=None,  # timed explicitly below, with a clear message
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@lru_cache(maxsize=None)
def original(shape: str) -> tuple:
    """(bytes, page size, pgid of the meta in use) of a committed fixture."""
    data = oracle.fixture(shape).read_bytes()
    with DB(oracle.fixture(shape)) as db:
        return data, db.page_size, db.meta.pgid


INTERESTING_U64 = [0, 1, 2, 3, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF,
                   1 << 32, 1 << 62, 0xFFFFFFFFFFFFFFFF]


def interesting(bits: int):
    mask = (1 << bits) - 1
    return st.one_of(st.sampled_from(sorted({v & mask for v in INTERESTING_U64})),
                     st.integers(0, mask))


# ---------------------------------------------------------------- mutations
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
    shape = draw(st.sampled_from(SHAPES))
    muts = draw(st.lists(mutation(shape), min_size=1, max_size=4))
    data, ps, _ = original(shape)
    buf = bytearray(data)
    for m in muts:
        buf = apply(buf, ps, m)
    return shape, muts, bytes(buf)


# ---------------------------------------------------------------- the checks
class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"open + check did not finish in {TIME_LIMIT}s")


def check_bytes(data: bytes):
    """Write ``data`` to a temp file, open and check it; the CheckResult or None
    when the open was refused with a BoltError.  A run past TIME_LIMIT is
    interrupted (SIGALRM) and fails the example."""
    fd, path = tempfile.mkstemp(suffix=".db", prefix="boltfix-fuzz-")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        start = time.monotonic()
        try:
            db = DB(path)
        except BoltError:
            return None
        try:
            result = check(db)
            # the reader's own API answers or raises BoltError, never worse
            try:
                for page in db.pages():
                    page.elements()
                db.freelist()
            except BoltError:
                pass
        finally:
            db.close()
        elapsed = time.monotonic() - start
        assert elapsed < TIME_LIMIT, f"check took {elapsed:.1f}s"
        return result
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.unlink(path)


def _valid_result(result: CheckResult) -> None:
    assert isinstance(result, CheckResult)
    assert result.total == sum(result.counts.values())
    assert len(result.findings) <= result.total
    for f in result.findings:
        assert isinstance(f, Finding) and f.code and f.message
        f.to_json()
    result.to_json()


@FUZZ
@given(mutated())
def test_check_never_raises_or_hangs(case):
    shape, muts, data = case
    result = check_bytes(data)
    if result is not None:
        _valid_result(result)


@FUZZ
@given(st.sampled_from(SHAPES), st.integers(0, 2**32 - 1))
def test_truncation_anywhere(shape, where):
    data, ps, hwm = original(shape)
    cut = where % len(data)
    result = check_bytes(data[: max(1, cut)])
    if result is not None:
        _valid_result(result)
        if cut < hwm * ps and cut >= 2 * ps:
            assert not result.clean


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(st.binary(min_size=1, max_size=20000))
def test_random_files_open_or_refuse(data):
    result = check_bytes(data)
    if result is not None:
        _valid_result(result)
