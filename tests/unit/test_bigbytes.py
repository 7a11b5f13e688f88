"""boltfix.bigbytes: a huge value's Span and Source read as bytes would be, and
the secret patterns found in windows as finditer finds them."""

from __future__ import annotations

from boltfix import bigbytes, resident
from support.protobuf import BCRYPT

OTHER_HASH = b"$2b$12$" + b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def test_source_and_span_read_as_bytes():
    """Source masks ranges in every piece; Span slices, indexes, compares
    and finds like the masked bytes."""
    data = bytes(range(256)) + bytes(range(256))[::-1] + b"x" * 256
    ranges = [(5, 9), (8, 20), (300, 301), (700, 900)]
    masked = bytearray(data)
    for a, b in ranges:
        b = min(b, len(data))
        masked[a:b] = b"*" * (b - a)
    masked = bytes(masked)
    src = bigbytes.Source(data, ranges)
    for size in (1, 2, 7, 64, 1000):
        assert b"".join(src.pieces(size)) == masked
    span = bigbytes.Span(src)
    for a, b in [(0, 5), (4, 10), (250, 760), (0, 768), (767, 768)]:
        part = span[a:b]
        assert bytes(part) == masked[a:b] and len(part) == b - a
    assert [span[i] for i in (0, 6, 299, 300, -1)] == [masked[i] for i in (0, 6, 299, 300, -1)]
    assert span == masked and span != data
    assert (b"\x00\x01\x02" in span) and (b"**\x14" in span) and (b"\x06\x07" not in span)
    assert span.startswith(b"\x00\x01") and not span.startswith(b"\x01")
    assert bigbytes.Source(data, None).pieces(1000).__next__() == b"*" * 768


def test_pattern_ranges_are_finditer(monkeypatch):
    """bcrypt hashes found in windows are those of one pass over the whole."""
    from boltfix.secrets import _BCRYPT, bcrypt_ranges

    data = (b"xx" + BCRYPT + b"$2a$10$" + BCRYPT + OTHER_HASH[:-1] + b"$2y$07$" + b"a" * 80) * 5
    want = [m.span() for m in _BCRYPT.finditer(data)]
    assert len(want) >= 10
    for piece in (3, 30, 59, 60, 61, 200):
        monkeypatch.setattr(resident, "PIECE", piece)
        assert bcrypt_ranges(memoryview(data)) == want, piece
