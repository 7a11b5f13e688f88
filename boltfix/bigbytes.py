"""A huge value as the decoders and the maskers read it: never copied whole.

A record's value of at least :data:`~boltfix.resident.BIG_VALUE` bytes that
``dump`` or ``get`` must mask or decode (etcd's buckets, ``authUsers``,
free and orphan records) is read through two objects:

* :class:`Span`: the value's bytes (a view of the input's map) with their
  offset in the record's value.  The wire decoders (:mod:`boltfix.etcd`,
  :mod:`boltfix.k8s`) index and slice it as they do bytes; a slice shorter
  than :data:`MIN_SPAN` is real ``bytes`` (tags, lengths, names), a longer
  one is a :class:`Span` again, so the decoders' own code runs unchanged
  and only a huge payload stays a view.  A rendering of a Span is a
  :class:`Big` token that the line writer (:mod:`boltfix.bigrecord`) fills
  in piece by piece.
* :class:`Source`: the value with its secret byte ranges shown as ``*``
  (the same bytes :func:`boltfix.k8s._masked` gives), read in pieces.

Secret ranges are found on the Span too (:func:`pattern_ranges` for the
bcrypt pattern, in windows); a value with more than :data:`MAX_RANGES`
ranges is masked whole (more masked, never less).
"""

from __future__ import annotations

import bisect
import secrets
from typing import Iterator, List, Optional, Tuple

from boltfix import resident

__all__ = ["MIN_SPAN", "MAX_DECODE", "MAX_RANGES", "Span", "Source", "Big",
           "pattern_ranges", "contains", "is_span", "keep_span"]

#: a slice of a Span at least this long stays a Span (a view), a shorter
#: one is bytes (the tests make it small to meet every boundary)
MIN_SPAN = resident.BIG_VALUE

#: text a decoder must parse whole (JSON, a UTF-8 name) is copied up to
#: this size; past it, decoding raises ValueError (what malformed input
#: raises: the decoders' callers turn it into an "error", a masker masks
#: the whole value)
MAX_DECODE = 16 << 20

_INF = float("inf")

#: secret ranges one value may have; past it the whole value is masked
MAX_RANGES = 1 << 16


class Span:
    """Bytes ``[off, off + n)`` of a :class:`Source` (masked as it says)."""

    __slots__ = ("src", "off", "n")

    def __init__(self, src, off: int = 0, n: Optional[int] = None):
        self.src = src if type(src) is Source else Source(src)
        self.off = off
        self.n = len(self.src) - off if n is None else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            if step != 1:
                return bytes(self)[i]  # never used on a big one
            if stop - start < MIN_SPAN:
                return self.src.bytes(self.off + start, self.off + stop) if stop > start \
                    else b""
            return Span(self.src, self.off + start, stop - start)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("index out of range")
        return self.src.byte(self.off + i)

    def __bytes__(self) -> bytes:
        return self.src.bytes(self.off, self.off + self.n)

    def __eq__(self, other) -> bool:
        if isinstance(other, Span):
            other = bytes(other) if other.n < MIN_SPAN else None
        if not isinstance(other, (bytes, bytearray, memoryview)):
            return NotImplemented
        other = memoryview(other)
        if other.nbytes != self.n:
            return False
        pos = 0
        for part in self.pieces():
            if part != other[pos:pos + len(part)]:
                return False
            pos += len(part)
        return True

    def __ne__(self, other) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __contains__(self, needle) -> bool:
        return contains(self.pieces, needle)

    def startswith(self, prefix) -> bool:
        """Whether the bytes start with ``prefix`` (or one of a tuple of them)."""
        if isinstance(prefix, tuple):
            return any(map(self.startswith, prefix))
        return bytes(self[:len(prefix)]) == prefix

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The bytes decoded whole; ValueError past :data:`MAX_DECODE` bytes."""
        if self.n > MAX_DECODE:
            raise ValueError(f"{self.n} bytes: too big to decode whole")
        return bytes(self).decode(encoding, errors)

    def source(self) -> "Source":
        """These bytes as a Source of their own (for the line writer)."""
        return self.src.part(self.off, self.off + self.n)

    def pieces(self, size: Optional[int] = None) -> Iterator[bytes]:
        """The (masked) bytes in pieces of at most ``size`` bytes."""
        return self.source().pieces(size)

    def __repr__(self) -> str:
        return f"Span({self.n} bytes at {self.off})"


def is_span(data) -> bool:
    """Whether ``data`` is a huge value's :class:`Span`."""
    return type(data) is Span


def keep_span(value):
    """``bytes(value)``, but a huge value's :class:`Span` stays one (the
    decoders read it as bytes, never copied whole)."""
    return value if type(value) is Span else bytes(value)


def contains(pieces, needle: bytes) -> bool:
    """``needle in`` the bytes that ``pieces()`` yields, pieces overlapping
    by ``len(needle) - 1``."""
    carry = b""
    keep = len(needle) - 1
    for part in pieces():
        data = carry + bytes(part)
        if needle in data:
            return True
        carry = data[max(len(data) - keep, 0):] if keep else b""
    return False


def pattern_ranges(pattern, view, reach: int) -> Optional[List[Tuple[int, int]]]:
    """The ranges of ``pattern.finditer`` over the whole of ``view`` (the
    same matches, left to right, none overlapping), found in windows of
    :data:`~boltfix.resident.PIECE` bytes and ``reach`` more: ``reach + 1``
    must bound a match's length, and the pattern must not look around a
    match (no anchors, no look-behind).  None past :data:`MAX_RANGES`."""
    view = view if type(view) is memoryview else memoryview(view)
    n = view.nbytes
    step = resident.PIECE
    out: List[Tuple[int, int]] = []
    resume = 0
    for start in range(0, n, step):
        window = bytes(view[start:start + step + reach])
        resident.release(view)
        for m in pattern.finditer(window, max(resume - start, 0)):
            if m.start() >= step:  # the next window sees it whole
                break
            out.append((start + m.start(), start + m.end()))
            resume = start + m.end()
            if len(out) > MAX_RANGES:
                return None
    return out


class Source:
    """A value (bytes-like) with byte ``ranges`` shown as ``*``, in pieces.

    ``ranges`` need not be sorted nor disjoint; None means the whole value."""

    __slots__ = ("view", "ranges")

    def __init__(self, view, ranges=()):
        self.view = view if type(view) is memoryview else memoryview(view)
        n = self.view.nbytes
        if ranges is None:
            ranges = [(0, n)]
        merged: List[Tuple[int, int]] = []
        for a, b in sorted((max(a, 0), min(b, n)) for a, b in ranges):
            if a >= b:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.ranges = merged

    def __len__(self) -> int:
        return self.view.nbytes

    @property
    def masked(self) -> bool:
        """Whether any byte range is masked."""
        return bool(self.ranges)

    def _masked_at(self, i: int) -> bool:
        k = bisect.bisect_right(self.ranges, (i, _INF)) - 1
        return k >= 0 and self.ranges[k][0] <= i < self.ranges[k][1]

    def byte(self, i: int) -> int:
        """Byte ``i``, as masked."""
        return 0x2A if self.ranges and self._masked_at(i) else self.view[i]

    def bytes(self, start: int, stop: int) -> bytes:
        """The masked bytes ``[start, stop)`` (a small range: the map is
        not dropped after it)."""
        part = self.part(start, stop)
        if not part.ranges:
            return bytes(part.view)
        buf = bytearray(part.view)
        for a, b in part.ranges:
            buf[a:b] = b"*" * (b - a)
        return bytes(buf)

    def differs(self) -> bool:
        """Whether masking changed a byte (a range not all ``*`` already)."""
        for a, b in self.ranges:
            for start in range(a, b, resident.PIECE):
                if bytes(self.view[start:min(b, start + resident.PIECE)]).strip(b"*"):
                    return True
        return False

    def part(self, start: int, stop: int) -> "Source":
        """The bytes ``[start, stop)``, with their masked ranges."""
        out = Source.__new__(Source)
        out.view = self.view[start:stop]
        rs = self.ranges
        k = bisect.bisect_right(rs, (start, _INF)) - 1  # the last range from <= start
        k = max(k, 0)
        sel = []
        while k < len(rs) and rs[k][0] < stop:
            a, b = rs[k]
            if b > start:
                sel.append((max(a, start) - start, min(b, stop) - start))
            k += 1
        out.ranges = sel
        return out

    def pieces(self, size: Optional[int] = None) -> Iterator[bytes]:
        """The masked bytes, at most ``size`` (default PIECE) per piece."""
        ranges = self.ranges
        i = 0
        off = 0
        for part in resident.pieces(self.view, size):
            end = off + part.nbytes
            while i < len(ranges) and ranges[i][1] <= off:
                i += 1
            if i == len(ranges) or ranges[i][0] >= end:
                yield part
            else:
                buf = bytearray(part)
                j = i
                while j < len(ranges) and ranges[j][0] < end:
                    a, b = max(ranges[j][0], off), min(ranges[j][1], end)
                    buf[a - off:b - off] = b"*" * (b - a)
                    j += 1
                yield bytes(buf)
            off = end


class Big:
    """A huge part of a rendering, written in pieces by
    :mod:`boltfix.bigrecord`: ``kind`` says how (``"etcd"``:
    :func:`boltfix.bigrecord.render_bytes`; ``"value"``: a JSONL value in
    ``--encoding`` ``arg``; ``"text"``: a ``--format text`` value), ``src``
    (a :class:`Source`) what, ``text`` whether the text-or-hex rule said
    text.  In a JSON document it stands as :meth:`mark`, a string no file
    can spell (it holds a random nonce)."""

    __slots__ = ("kind", "src", "arg", "text")
    _NONCE = secrets.token_hex(8)

    def __init__(self, kind: str, src: "Source", arg=None, text: bool = False):
        self.kind = kind
        self.src = src
        self.arg = arg
        self.text = text

    @classmethod
    def mark(cls, i: int) -> str:
        """The string that stands for the ``i``-th Big of a line."""
        return f"\ue000big-{cls._NONCE}-{i}\ue000"
