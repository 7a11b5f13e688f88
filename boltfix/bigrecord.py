"""One record with a big value, written as it is read: in pieces.

A dump line holds its value encoded: a 200 MB value is a 400 MB hex string,
built whole, then encoded to bytes, then joined with the rest of the chunk
(dump took 626 MB to 1 GB on it).  A value of at least
:data:`~boltfix.resident.BIG_VALUE` bytes is instead encoded and written
:data:`~boltfix.resident.PIECE` bytes at a time, the input's map dropped
from RSS after each piece (:func:`boltfix.resident.pieces`).

The line itself is still :func:`boltfix.record.jsonl_line` (or
:func:`~boltfix.record.text_kv_line`), built with a
:class:`~boltfix.bigbytes.Big` mark where each huge part goes: the value,
and the parts of the ``etcd`` decoding that hold a huge payload
(:func:`dumps`).  A
:class:`BigLine` writes the line's text and fills each mark in pieces.  A
value to mask is a :class:`~boltfix.bigbytes.Source` (its secret ranges
shown as ``*``, piece by piece), so a secret never leaves it whole nor
cut: the mask is applied to the bytes before any encoding.

The bytes are exactly those of a line built whole: every encoding used
here works character by character (hex, JSON string escapes, control
escapes) or on whole 3-byte groups (base64, :data:`~boltfix.resident.PIECE`
being a multiple of 3), so the pieces' encodings add up to the whole's;
where the text-or-hex rule (:func:`boltfix.record.as_text`) decides, a
first pass over the pieces decides it.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from binascii import hexlify
from typing import Iterator, List, Optional, Tuple

from boltfix import record as R
from boltfix import resident
from boltfix.bigbytes import Big, Source
from boltfix.resident import BIG_VALUE

__all__ = ["BIG_VALUE", "has_big", "json_value", "format_pieces", "BigLine", "dumps"]

#: \t \n \r deleted: what is left of a text value must be printable (as_text)
_DROP_TEXT_CONTROLS = {ord(c): None for c in R.TEXT_CONTROLS}


def has_big(values) -> bool:
    """Whether any of ``values`` is to be written in pieces."""
    return max(map(len, values), default=0) >= BIG_VALUE


def _pieces(value, size: Optional[int] = None):
    if type(value) is Source:
        return value.pieces(size)
    return resident.pieces(value, size)


def _decoded(value, errors: str = "strict", size: Optional[int] = None) -> Iterator[str]:
    """The UTF-8 text of ``value``, piece by piece (a character cut by a
    piece's end is completed by the next); UnicodeDecodeError as decode's."""
    dec = codecs.getincrementaldecoder("utf-8")(errors)
    for part in _pieces(value, size):
        yield dec.decode(part)
    yield dec.decode(b"", True)


def is_text(value, line: bool) -> bool:
    """:func:`boltfix.record.as_text` is not None, decided piece by piece."""
    try:
        for s in _decoded(value):
            if not s.isprintable() and (
                    line or not s.translate(_DROP_TEXT_CONTROLS).isprintable()):
                return False
    except UnicodeDecodeError:
        return False
    return True


def _is_utf8(value) -> bool:
    try:
        for _ in _decoded(value):
            pass
    except UnicodeDecodeError:
        return False
    return True


def _hex(value) -> Iterator[bytes]:
    for part in _pieces(value):
        yield hexlify(part)


def _json_text(value, ascii_only: bool, errors: str = "strict") -> Iterator[bytes]:
    """The inside of a JSON string of the text (no quotes), in pieces."""
    enc = R._json_str_ascii if ascii_only else R._json_str
    for s in _decoded(value, errors):
        if s:
            yield enc(s)[1:-1].encode("utf-8", "surrogateescape")


def json_value(value, encoding: str) -> Tuple[Iterator[bytes], Optional[str]]:
    """(the pieces of :data:`boltfix.record.ENCODERS` ``[encoding](value)``,
    ``"hex"`` when auto chose hex, else None)."""
    if encoding == "hex":
        return _quoted(_hex(value)), None
    if encoding == "base64":
        return _quoted(base64.b64encode(p) for p in _pieces(value)), None
    if encoding == "utf8":
        if _is_utf8(value):
            return _quoted(_json_text(value, False)), None
        return _quoted(_json_text(value, True, "surrogateescape")), None
    if is_text(value, line=False):  # auto
        return _quoted(_json_text(value, False)), None
    return _quoted(_hex(value)), "hex"


def _quoted(pieces) -> Iterator[bytes]:
    yield b'"'
    yield from pieces
    yield b'"'


def _etcd_bytes(big: Big, ascii_only: bool) -> Iterator[bytes]:
    """:func:`boltfix.etcd.render_bytes` as JSON: the text, or ``{"hex"}``."""
    if big.text:
        yield from _quoted(_json_text(big.src, ascii_only))
    else:
        yield b'{"hex":"'
        yield from _hex(big.src)
        yield b'"}'


def _render(big: Big, ascii_only: bool) -> Iterator[bytes]:
    if big.kind == "etcd":
        return _etcd_bytes(big, ascii_only)
    if big.kind == "value":
        return big.arg  # json_value's pieces, made when the line was
    # "text": record.name_text of the value
    if big.text:
        return _pieces(big.src)  # text is valid UTF-8: the value's own bytes
    return _prefixed(b"0x", _hex(big.src))


def _prefixed(head: bytes, pieces) -> Iterator[bytes]:
    yield head
    yield from pieces


def etcd_big(src: Source) -> Big:
    """:func:`boltfix.etcd.render_bytes` of a huge :class:`Span`'s bytes."""
    return Big("etcd", src, text=is_text(src, line=False))


def value_big(src: Source, encoding: str) -> Tuple[Big, Optional[str]]:
    """A JSONL value, and ``"hex"`` when ``auto`` chose hex."""
    pieces, ve = json_value(src, encoding)
    return Big("value", src, pieces), ve


def text_big(src: Source) -> Big:
    """A ``--format text`` value (:func:`boltfix.record.name_text`)."""
    return Big("text", src, text=len(src) > 0 and is_text(src, line=True))


def dumps(obj, bigs: List[Big], ensure_ascii: bool = False) -> str:
    """``json.dumps`` (dump's compact form) with each :class:`Big` as its
    mark, appended to ``bigs``."""
    def mark(o):
        if type(o) is not Big:
            raise TypeError(f"not JSON serializable: {type(o).__name__}")
        bigs.append(o)
        return Big.mark(len(bigs) - 1)

    return json.dumps(obj, ensure_ascii=ensure_ascii, separators=(",", ":"), default=mark)


def mark_json(bigs: List[Big], big: Big) -> str:
    """A JSON string standing for ``big`` in a line (appended to ``bigs``)."""
    bigs.append(big)
    return '"' + Big.mark(len(bigs) - 1) + '"'


class BigLine:
    """A record line with marks (:func:`dumps`, :func:`mark_json`): its
    text, each mark written as its :class:`Big` in pieces.  A mark in a
    JSON string made with ``ensure_ascii`` (``\\ue000...``) is filled with
    ASCII JSON."""

    def __init__(self, text: str, bigs: List[Big]):
        self.text = text
        self.bigs = bigs

    def pieces(self) -> Iterator[bytes]:
        nonce = re.escape(Big.mark(0).split("-")[1])
        mark = re.compile('"(\ue000|\\\\ue000)big-' + nonce + r'-(\d+)(?:\ue000|\\ue000)"')
        pos = 0
        text = self.text
        for m in mark.finditer(text):
            i = int(m.group(2))
            if i >= len(self.bigs):  # pragma: no cover - no file can spell the nonce
                continue
            yield text[pos:m.start()].encode("utf-8", "surrogateescape")
            yield from _render(self.bigs[i], m.group(1) != "\ue000")
            pos = m.end()
        yield text[pos:].encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- keys / get
def format_pieces(value, encoding: str) -> Iterator[bytes]:
    """:func:`boltfix.record.format_bytes` (``keys``/``get``), in pieces."""
    if encoding == "raw" or (encoding == "auto" and is_text(value, line=True)):
        yield from _pieces(value)
    elif encoding in ("hex", "auto"):
        yield from _hex(value)
    elif encoding == "base64":
        for part in _pieces(value):
            yield base64.b64encode(part)
    else:  # utf8: control characters escaped (R.escape_controls), a piece at a time
        for s in _decoded(value, "surrogateescape"):
            yield R.escape_text(s).encode("utf-8")
