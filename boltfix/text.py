"""The one text-or-hex rule, and the encodings of bytes.

Every output that shows a key, a value or a bucket name decides "text or
hex" with :func:`as_text` (a huge value decides it piece by piece with
:func:`printable`, the same test): ``dump``'s JSONL and text lines
(:mod:`boltfix.record`), ``keys``/``get`` (:func:`format_bytes`,
:func:`format_key_lines`), ``buckets --json``, the tables
(:func:`name_text`), findings' JSON, etcd's decodings
(``bigrecord.render_bytes``), and the C writer (``_speedups.jsonl``, which
writes only what this rule calls printable ASCII text and hands every other
non-hex case back to Python).

A foundation module (it imports nothing of boltfix): a finding's JSON
names its buckets by this rule, and findings are the foundation's.

Encodings (``--encoding``, :data:`ENCODINGS`), applied to every name, key
and value: see :mod:`boltfix.record`.
"""

from __future__ import annotations

import base64
import json
import re
from binascii import hexlify
from typing import List, Optional, Tuple

ENCODINGS = ("auto", "utf8", "hex", "base64")

#: the controls text may hold where they are escaped (JSON strings)
TEXT_CONTROLS = frozenset("\t\n\r")
_DROP_CONTROLS = dict.fromkeys(map(ord, TEXT_CONTROLS))

#: what a value hidden by a masking rule reads as in a decoding
REDACTED = "<redacted>"


# ---------------------------------------------------------------- the rule
def as_text(data, line: bool = False) -> Optional[str]:
    """The bytes as text, or None when they must be shown as hex.

    Text is valid UTF-8 whose characters are all printable; ``\\t``, ``\\n``
    and ``\\r`` are allowed too, except in a ``line`` for people (a table
    cell, a ``--format text`` line), where they would break the line.
    """
    try:
        s = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return s if printable(s, line) else None


def printable(s: str, line: bool = False) -> bool:
    """The rule on decoded text (or a piece of it): every character
    printable, ``\\t``, ``\\n`` and ``\\r`` allowed too unless ``line``."""
    # (without its TEXT_CONTROLS, the text must be printable: str.translate
    # and isprintable run in C, where a loop per character did not)
    return s.isprintable() or (not line and s.translate(_DROP_CONTROLS).isprintable())


def name_text(data) -> str:
    """A bucket name, key or value in a line for people: text, else 0x-hex."""
    data = bytes(data)
    if data:
        s = as_text(data, line=True)
        if s is not None:
            return s
    return "0x" + data.hex()


# ---------------------------------------------------------------- JSON encoders
# json.dumps(s, ensure_ascii=False) is encode_basestring(s), and json.dumps(s)
# is encode_basestring_ascii(s) (both in C): the same bytes without building a
# JSONEncoder per call.
json_str = json.encoder.encode_basestring
json_str_ascii = json.encoder.encode_basestring_ascii


def _enc_hex(b) -> Tuple[str, Optional[str]]:
    return '"' + b.hex() + '"', None


def _enc_base64(b) -> Tuple[str, Optional[str]]:
    return '"' + base64.b64encode(b).decode("ascii") + '"', None


def _enc_utf8(b) -> Tuple[str, Optional[str]]:
    b = bytes(b)
    try:
        return json_str(b.decode("utf-8")), None
    except UnicodeDecodeError:
        return json_str_ascii(b.decode("utf-8", "surrogateescape")), None


def _enc_auto(b) -> Tuple[str, Optional[str]]:
    b = bytes(b)
    s = as_text(b)
    if s is None:
        return '"' + b.hex() + '"', "hex"
    return json_str(s), None


#: encoding name -> f(bytes) -> (JSON string, "hex" when auto chose hex else None)
ENCODERS = {"hex": _enc_hex, "base64": _enc_base64, "utf8": _enc_utf8, "auto": _enc_auto}


# ---------------------------------------------------------------- keys / get
# keys/get write to a terminal as often as to a pipe: a control character
# (an escape sequence, a carriage return) must never reach it raw.  ``auto``
# uses the strict rule of a line for people (no control at all), ``utf8``
# escapes the controls; only ``raw`` writes the bytes as they are.

#: printable ASCII: deleting it from an ASCII key leaves its control characters
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def escape_controls(data) -> bytes:
    """Bytes with every control character written as ``\\xNN`` (and ``\\`` as
    ``\\\\``, so it stays unambiguous): text that is safe on a terminal
    (:func:`escape_text` of the bytes decoded with ``surrogateescape``)."""
    return escape_text(bytes(data).decode("utf-8", "surrogateescape")).encode("utf-8")


#: runs of backslashes and of characters that are not printable below
#: U+0100 or a byte that is not UTF-8 (U+DC80..U+DCFF): those come out as
#: ``\\xNN`` of that byte, a run at a time (one character class: sre scans
#: it fastest).  Other characters that are not printable (U+2028,
#: unassigned ones) are rare: a second pass (:func:`_rare_pattern`)
_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\xa0\xad\udc80-\udcff]+")
_RARE = None


def _rare_pattern():
    """The characters above U+00FF that are not printable (str.isprintable),
    but U+DC80..U+DCFF; built once, when first needed."""
    global _RARE
    if _RARE is None:
        ranges = []
        start = None
        for o in range(0x100, 0x110001):
            bad = o < 0x110000 and not chr(o).isprintable() and not 0xDC80 <= o <= 0xDCFF
            if bad and start is None:
                start = o
            elif not bad and start is not None:
                ranges.append((start, o - 1))
                start = None
        _RARE = re.compile("[" + "".join(
            f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")
    return _RARE


def _escape_run(m) -> str:
    run = m.group()
    if "\\" in run:
        return "\\\\".join(map(_escape_bytes, run.split("\\")))
    return _escape_bytes(run)


def _escape_bytes(run: str) -> str:
    if not run:
        return ""
    return "\\x" + run.encode("latin1", "surrogateescape").hex("x").replace("x", "\\x")


def _escape_rare(m) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def escape_text(text: str) -> str:
    """``text`` (decoded with ``surrogateescape``) with every character that
    is not printable written as ``\\xNN`` (a byte that is not UTF-8: that
    byte) or ``\\uNNNN``, and ``\\`` as ``\\\\``: safe on a terminal, and
    unambiguous.  Runs are escaped by a regex, not a loop per character."""
    if text.isprintable() and "\\" not in text:
        return text
    text = _ESCAPE.sub(_escape_run, text)
    if not text.isprintable():
        text = _rare_pattern().sub(_escape_rare, text)
    return text


def format_bytes(data, encoding: str) -> bytes:
    """One key or value for ``keys``/``get``: ``raw`` the bytes, ``utf8``
    text with control characters escaped, ``hex``, ``base64``, or ``auto``:
    text when :func:`as_text` with ``line=True`` (no control character at
    all, as bbolt's CLI), else hex."""
    data = bytes(data)
    if encoding == "raw":
        return data
    if encoding == "utf8":
        return escape_controls(data)
    if encoding == "hex":
        return data.hex().encode()
    if encoding == "base64":
        return base64.b64encode(data)
    return data if as_text(data, line=True) is not None else data.hex().encode()


def format_key_lines(keys, encoding: str) -> List[bytes]:
    """:func:`format_bytes` for a page of keys at once, each line ended."""
    if encoding == "hex":
        return [hexlify(k) + b"\n" for k in keys]
    if encoding == "raw":
        return [bytes(k) + b"\n" for k in keys]
    if encoding != "auto":
        return [format_bytes(k, encoding) + b"\n" for k in keys]
    out = []
    for k in keys:
        if k.isascii():  # the common case, without decoding
            out.append((k if not k.translate(None, _PRINTABLE_ASCII) else hexlify(k)) + b"\n")
        else:
            out.append(format_bytes(k, encoding) + b"\n")
    return out


def mask_ranges(value: bytes, ranges) -> Tuple[bytes, bool]:
    """``value`` with each ``(lo, hi)`` of ``ranges`` as ``*`` bytes (the
    same length, so offsets in a page stay true); whether any was masked."""
    if not ranges:
        return value, False
    buf = bytearray(value)
    for lo, hi in ranges:
        buf[lo:hi] = b"*" * (hi - lo)
    return bytes(buf), True
