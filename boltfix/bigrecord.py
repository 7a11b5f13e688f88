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
where the text-or-hex rule (:func:`boltfix.text.as_text`) decides, a
first pass over the pieces decides it.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from binascii import hexlify
from typing import Any, Iterator, List, Optional, Tuple

from boltfix import resident
from boltfix import text as T
from boltfix.bigbytes import Big, Source, Span
from boltfix.protowire import check_bytes
from boltfix.resident import BIG_VALUE

__all__ = ["BIG_VALUE", "has_big", "json_value", "format_pieces", "BigLine", "dumps",
           "render_bytes", "jsonable"]

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
    """:func:`boltfix.text.as_text` is not None, decided piece by piece
    (:func:`boltfix.text.printable` on each)."""
    try:
        for s in _decoded(value):
            if not T.printable(s, line):
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
    enc = T.json_str_ascii if ascii_only else T.json_str
    for s in _decoded(value, errors):
        if s:
            yield enc(s)[1:-1].encode("utf-8", "surrogateescape")


def json_value(value, encoding: str) -> Tuple[Iterator[bytes], Optional[str]]:
    """(the pieces of :data:`boltfix.text.ENCODERS` ``[encoding](value)``,
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
    """:func:`render_bytes` as JSON: the text, or ``{"hex"}``."""
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
    # "text": text.name_text of the value
    if big.text:
        return _pieces(big.src)  # text is valid UTF-8: the value's own bytes
    return _prefixed(b"0x", _hex(big.src))


def _prefixed(head: bytes, pieces) -> Iterator[bytes]:
    yield head
    yield from pieces


def etcd_big(src: Source) -> Big:
    """:func:`render_bytes` of a huge :class:`Span`'s bytes."""
    return Big("etcd", src, text=is_text(src, line=False))


def value_big(src: Source, encoding: str) -> Tuple[Big, Optional[str]]:
    """A JSONL value, and ``"hex"`` when ``auto`` chose hex."""
    pieces, ve = json_value(src, encoding)
    return Big("value", src, pieces), ve


def text_big(src: Source) -> Big:
    """A ``--format text`` value (:func:`boltfix.text.name_text`)."""
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
        """The line's bytes: its text, each mark written as its Big in pieces."""
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
    """:func:`boltfix.text.format_bytes` (``keys``/``get``), in pieces."""
    if encoding == "raw" or (encoding == "auto" and is_text(value, line=True)):
        yield from _pieces(value)
    elif encoding in ("hex", "auto"):
        yield from _hex(value)
    elif encoding == "base64":
        for part in _pieces(value):
            yield base64.b64encode(part)
    else:  # utf8: control characters escaped (T.escape_controls), a piece at a time
        for s in _decoded(value, "surrogateescape"):
            yield T.escape_text(s).encode("utf-8")


# ---------------------------------------------------------------- bytes as JSON values
def render_bytes(b) -> Any:
    """Bytes as a JSON value (the decoders' convention, :mod:`boltfix.etcd`):
    text by :func:`boltfix.text.as_text`, else ``{"hex": ...}``; a huge
    payload's :class:`~boltfix.bigbytes.Span` becomes a :class:`Big` mark,
    written in pieces."""
    b = check_bytes(b, "value")
    if type(b) is Span:
        return etcd_big(b.source())
    s = T.as_text(b)
    return {"hex": b.hex()} if s is None else s


def jsonable(value: Any) -> Any:
    """Recursively render bytes inside plain decoder output."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value  # most of a decoded record: nothing to render
    if isinstance(value, (bytes, bytearray, memoryview)):
        return render_bytes(bytes(value))
    if t is Span:
        return render_bytes(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
