"""Hexdumps: a classic hexdump with absolute file offsets, streamed.

What a hexdump must not show is :mod:`boltfix.secrets`' (:class:`~boltfix.secrets.RangeMask`).
"""

from __future__ import annotations

import array
import sys

from boltfix.resident import release
from boltfix.secrets import RangeMask

#: the text column's byte -> character (printable ASCII as itself, else '.')
_TEXT_COLUMN = bytes(b if 32 <= b < 127 else 0x2E for b in range(256))


class Hexdump:
    """A classic hexdump with absolute file offsets, fed a piece at a time:
    repeated lines folded as '*' (across pieces too), the last line always
    shown.  Every piece but the last must be a multiple of ``width`` bytes."""

    def __init__(self, base: int = 0, width: int = 16):
        self.offset, self.width = base, width
        self.prev = None  # the last line's hex column, for folding
        self.folded = False

    def lines(self, data, last: bool) -> list:
        """The lines of the next piece ``data``; ``last``: the dump ends with it."""
        width = self.width
        width3 = width * 3
        hexes = bytes(data).hex(" ")  # one C call per piece, not per byte
        text = bytes(data).translate(_TEXT_COLUMN).decode("ascii")
        n = len(text)
        out = []
        prev, folded, base = self.prev, self.folded, self.offset
        for i in range(0, n, width):
            h = hexes[3 * i: 3 * i + width3 - 1]
            if h == prev and (i + width < n or not last):
                if not folded:
                    out.append("*")
                    folded = True
                continue
            folded = False
            prev = h
            out.append(f"{base + i:08x}  {h:<{width3 - 1}}  |{text[i:i + width]}|")
        self.prev, self.folded, self.offset = prev, folded, base + n
        return out

    def text(self, data, last: bool) -> str:
        """:meth:`lines` as text, each line ending in a newline.  A piece of
        16-byte lines with no line equal to the one before (no fold), at
        offsets of 8 hex digits, is laid out column by column in C (strided
        slice assignments), not a line at a time: about twice as fast."""
        data = bytes(data)
        m = len(data) // 16
        if self.width != 16 or m < 64 or self.offset + 16 * m > 1 << 32:
            lines = self.lines(data, last)
            return "\n".join(lines) + "\n" if lines else ""
        full = data[:16 * m]
        if _repeats(full) or full[:16].hex(" ") == self.prev:
            lines = self.lines(data, last)
            return "\n".join(lines) + "\n" if lines else ""
        offsets = array.array("I", range(self.offset, self.offset + 16 * m, 16))
        if sys.byteorder == "little":
            offsets.byteswap()
        digits = offsets.tobytes().hex().encode()
        hexes = full.hex(" ").encode()
        text = full.translate(_TEXT_COLUMN)
        out = bytearray(b" " * (78 * m))  # 8 + 2 + 47 + 3 + 16 + 1 + newline
        for j in range(8):
            out[j::78] = digits[j::8]
        for j in range(47):
            out[10 + j::78] = hexes[j::48]
        out[59::78] = b"|" * m
        for j in range(16):
            out[60 + j::78] = text[j::16]
        out[76::78] = b"|" * m
        out[77::78] = b"\n" * m
        self.prev, self.folded = full[-16:].hex(" "), False
        self.offset += 16 * m
        tail = self.lines(data[16 * m:], last) if len(data) > 16 * m else []
        return out.decode("ascii") + ("\n".join(tail) + "\n" if tail else "")


def _repeats(full: bytes) -> bool:
    """Whether a 16-byte line of ``full`` equals the one before it: where
    ``full`` XOR itself shifted by a line holds 16 zero bytes at a line's
    start (three big-int operations in C, not a comparison per line)."""
    n = len(full) - 16
    x = (int.from_bytes(full[16:], "little") ^ int.from_bytes(full[:n], "little")
         ).to_bytes(n, "little")
    i = x.find(_ZERO_LINE)
    while i >= 0 and i % 16:
        i = x.find(_ZERO_LINE, i + 1)
    return i >= 0


_ZERO_LINE = bytes(16)


def hexdump(data: bytes, base: int = 0, width: int = 16) -> str:
    """A classic hexdump with absolute file offsets; repeated lines folded as '*'."""
    return "\n".join(Hexdump(base, width).lines(data, last=True))


#: bytes of a range hexdumped per piece by :func:`hexdump_range` (a
#: multiple of 16; its text is about 1 MB)
HEX_PIECE = 256 << 10


def hexdump_range(buf, page_size: int, start: int, end: int, show_secrets: bool = False,
                  app=None):
    """The hexdump of ``buf[start:end]`` (:func:`hexdump`'s text and a final
    newline), in pieces of text of about 1 MB: the bytes are read, masked and
    formatted :data:`HEX_PIECE` at a time, the map's pages dropped after each.

    Unless ``show_secrets``, the bytes are masked as
    :class:`boltfix.secrets.RangeMask` says (password hashes, Kubernetes
    secrets: whatever piece or page edge cuts one), and ``app``'s
    (:data:`boltfix.secrets.AppRule`: containerd's, Vault's, Docker's values).
    """
    mask = None if show_secrets else RangeMask(buf, page_size, start, end, app)
    dump = Hexdump(start)
    if end <= start:
        yield "\n"
        return
    for a in range(start, end, HEX_PIECE):
        b = min(a + HEX_PIECE, end)
        data = bytes(buf[a:b]) if mask is None else mask.piece(a, b)
        text = dump.text(data, last=b == end)
        if text:  # (a piece all folded into an earlier '*' has none)
            yield text
        release(buf)
