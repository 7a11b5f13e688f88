"""Small text helpers for people (tables, hexdumps), and secret masking.

Whether bytes are shown as text is :mod:`boltfix.record`'s one rule
(:func:`~boltfix.record.as_text`); :func:`name_text` is its line form.
"""

from __future__ import annotations

import array
import re as _re
import sys

from boltfix.record import name_text  # noqa: F401  (the one rule, for people)


def short(data, limit: int = 64) -> str:
    """A value shortened for tables."""
    text = name_text(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# bcrypt hashes as etcd stores them in authUsers ($2a$10$ + 53 chars)
_BCRYPT = _re.compile(rb"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


def redact_secrets(data: bytes) -> bytes:
    """Mask password hashes in raw bytes (same length, so offsets stay true)."""
    return _BCRYPT.sub(lambda m: b"*" * len(m.group(0)), bytes(data))


#: a bcrypt hash is 60 bytes: this much on each side of a shown range finds
#: one that straddles its edge (a page boundary, whatever the page size)
_SECRET_REACH = 59


def redact_range(buf, start: int, end: int) -> bytes:
    """``buf[start:end]`` with password hashes masked, including a hash that
    only partly lies inside the range (the bytes around it are looked at too)."""
    lo, hi = max(0, start - _SECRET_REACH), min(len(buf), end + _SECRET_REACH)
    return redact_secrets(buf[lo:hi])[start - lo: end - lo]


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


def hexdump_range(buf, page_size: int, start: int, end: int, show_secrets: bool = False):
    """The hexdump of ``buf[start:end]`` (:func:`hexdump`'s text and a final
    newline), in pieces of text of about 1 MB: the bytes are read, masked and
    formatted :data:`HEX_PIECE` at a time, the map's pages dropped after each.

    Unless ``show_secrets``, password hashes are masked in each piece with
    the bytes around it looked at too (:func:`redact_range`), and Kubernetes
    secrets as :func:`boltfix.k8s.file_secret_spans` finds them over the
    whole range, once: a secret is masked whatever piece or page edge cuts it.
    """
    from boltfix.resident import release

    spans = []
    if not show_secrets:
        from boltfix.k8s import file_secret_spans

        spans = _disjoint(file_secret_spans(buf, page_size, start, end))
    dump = Hexdump(start)
    if end <= start:
        yield "\n"
        return
    j = 0  # the first span that may reach into the piece
    for a in range(start, end, HEX_PIECE):
        b = min(a + HEX_PIECE, end)
        if show_secrets:
            data = bytes(buf[a:b])
        else:
            data = bytearray(redact_range(buf, a, b))
            while j < len(spans) and spans[j][1] <= a:
                j += 1
            for s, e in spans[j:]:
                if s >= b:
                    break
                s, e = max(s, a), min(e, b)
                data[s - a:e - a] = b"*" * (e - s)
        text = dump.text(data, last=b == end)
        if text:  # (a piece all folded into an earlier '*' has none)
            yield text
        release(buf)


def _disjoint(spans) -> list:
    """``(start, end)`` ranges sorted and merged where they overlap or touch."""
    out: list = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def bcrypt_ranges(view):
    """The ranges :func:`redact_secrets` masks, found in windows
    (:func:`boltfix.bigbytes.pattern_ranges`: a huge value is never copied
    whole); None when there are too many to list (mask all)."""
    from boltfix.bigbytes import pattern_ranges

    return pattern_ranges(_BCRYPT, view, 59)  # a bcrypt hash is at most 60 bytes
