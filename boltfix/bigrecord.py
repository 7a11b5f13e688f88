"""One record with a big value, written as it is read: in pieces.

A dump line holds its value encoded: a 200 MB value is a 400 MB hex string,
built whole, then encoded to bytes, then joined with the rest of the chunk
(dump took 626 MB to 1 GB on it).  A value of at least
:data:`~boltfix.resident.BIG_VALUE` bytes is instead encoded and written
:data:`~boltfix.resident.PIECE` bytes at a time, the input's map dropped
from RSS after each piece (:func:`boltfix.resident.pieces`).  The bytes are
exactly those of :func:`boltfix.record.jsonl_line` and
:func:`boltfix.record.text_kv_line`: every encoding used here works
character by character (hex, JSON string escapes) or on whole 3-byte groups
(base64, :data:`~boltfix.resident.PIECE` being a multiple of 3), so the
pieces' encodings add up to the whole's; where the text-or-hex rule
(:func:`boltfix.record.as_text`) decides, a first pass over the pieces
decides it.

Only plain records come here (no mask to apply, no etcd decoding): those
lines still hold their value whole (README, "Limits on hostile input").
"""

from __future__ import annotations

import base64
import codecs
from binascii import hexlify
from typing import Iterator, Optional, Tuple

from boltfix import record as R
from boltfix import resident
from boltfix.resident import BIG_VALUE

__all__ = ["BIG_VALUE", "has_big", "jsonl_line_pieces", "text_line_pieces", "format_pieces"]

#: \t \n \r deleted: what is left of a text value must be printable (as_text)
_DROP_TEXT_CONTROLS = {ord(c): None for c in R.TEXT_CONTROLS}


def has_big(values) -> bool:
    """Whether any of ``values`` is to be written in pieces."""
    return max(map(len, values), default=0) >= BIG_VALUE


def _decoded(value, errors: str = "strict", size: Optional[int] = None) -> Iterator[str]:
    """The UTF-8 text of ``value``, piece by piece (a character cut by a
    piece's end is completed by the next); UnicodeDecodeError as decode's."""
    dec = codecs.getincrementaldecoder("utf-8")(errors)
    for part in resident.pieces(value, size):
        yield dec.decode(part)
    yield dec.decode(b"", True)


def _is_text(value, line: bool) -> bool:
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
    for part in resident.pieces(value):
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
        return _quoted(base64.b64encode(p) for p in resident.pieces(value)), None
    if encoding == "utf8":
        if _is_utf8(value):
            return _quoted(_json_text(value, False)), None
        return _quoted(_json_text(value, True, "surrogateescape")), None
    if _is_text(value, line=False):  # auto
        return _quoted(_json_text(value, False)), None
    return _quoted(_hex(value)), "hex"


def _quoted(pieces) -> Iterator[bytes]:
    yield b'"'
    yield from pieces
    yield b'"'


def jsonl_line_pieces(enc_name: str, pathj: str, key, value, page: int,
                      state: str = R.LIVE) -> Iterator[bytes]:
    """:func:`boltfix.record.jsonl_line` of a plain kv record (no guess, no
    mask, no etcd member), in pieces."""
    kj, ke = R.ENCODERS[enc_name](key)
    head = pathj + ',"key":' + kj + (',"key_encoding":"hex"' if ke else "") + ',"value":'
    yield head.encode("utf-8", "surrogateescape")
    pieces, ve = json_value(value, enc_name)
    yield from pieces
    tail = (',"value_encoding":"hex"' if ve else "") + \
        ',"type":"kv","page":%d,"state":"%s"}\n' % (page, state)
    yield tail.encode()


def text_line_pieces(head: str, key, value) -> Iterator[bytes]:
    """:func:`boltfix.record.text_kv_line` of a plain record (not redacted,
    no etcd meaning), in pieces: ``head  key = value``."""
    yield f"{head}  {R.name_text(key)} = ".encode("utf-8", "surrogateescape")
    if _is_text(value, line=True):
        # text is valid UTF-8: written out, it is the value's own bytes
        yield from resident.pieces(value)
    else:
        yield b"0x"
        yield from _hex(value)
    yield b"\n"


def format_pieces(value, encoding: str) -> Iterator[bytes]:
    """:func:`boltfix.record.format_bytes` (``keys``/``get``), in pieces."""
    if encoding == "raw" or (encoding == "auto" and _is_text(value, line=True)):
        yield from resident.pieces(value)
    elif encoding in ("hex", "auto"):
        yield from _hex(value)
    elif encoding == "base64":
        for part in resident.pieces(value):
            yield base64.b64encode(part)
    else:  # utf8: control characters escaped, character by character (a
        # list entry per character: small pieces)
        for s in _decoded(value, "surrogateescape", min(resident.PIECE, 64 << 10)):
            yield R.escape_controls(s.encode("utf-8", "surrogateescape"))
