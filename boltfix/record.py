"""The record format: one dump line, the encodings, and the one text-or-hex rule.

Every output that shows a key, a value or a bucket name decides "text or
hex" with :func:`as_text`: ``dump``'s JSONL and text lines, ``keys``/``get``
(:func:`format_bytes`, :func:`format_key_lines`), ``buckets --json``, the
tables (``render.name_text``), etcd's decodings (``etcd.render_bytes``), and
the C writer (``_speedups.jsonl``, which writes only what this rule calls
printable ASCII text and hands every other non-hex case back to Python).

JSONL record format (one JSON object per line, stable)
------------------------------------------------------
Keys appear in this order (:data:`FIELDS`); optional ones only when they apply::

    {"path": [NAME, ...] | null,   # bucket names from the top level; [] for a
                                   # top-level bucket's own entry; null when
                                   # unknown (free/orphan records)
     "path_encoding": [E, ...],    # --encoding auto only, only when some
                                   # path element is not text ("utf8"|"hex")
     "key": K,
     "key_encoding": "hex",        # --encoding auto only, only when K is hex
     "value": V | null,            # null for a bucket entry
     "value_encoding": "hex",      # --encoding auto only, only when V is hex
     "type": "kv" | "bucket",
     "sequence": N,                # bucket entries only (the bucket's sequence)
     "page": PGID,                 # page holding the element (for an inline
                                   # bucket: the page holding its parent entry)
     "state": "live" | "free" | "orphan",
     "bucket_guess": [NAME, ...],  # free/orphan only, when the bucket can be
                                   # told (an etcd revision key -> ["key"]; a
                                   # record inside an inline bucket value ->
                                   # [that bucket's name], innermost only)
     "value_redacted": true,       # the value was masked (see dump.py: Secrets)
     "etcd": {...}}                # etcd decoding on: etcd.decode_record()

Encodings (``--encoding``, :data:`ENCODINGS`), applied to every name, key and value:

* ``hex``: lower-case hex of the exact bytes.
* ``base64``: standard base64 (with padding) of the exact bytes.
* ``utf8``: always a JSON string.  Bytes that are not valid UTF-8 come out as
  lone surrogates ``\\udc80``..``\\udcff`` (Python's ``surrogateescape``), so
  ``s.encode("utf-8", "surrogateescape")`` gives the bytes back.
* ``auto`` (default): a JSON string when :func:`as_text` says text, else
  lower-case hex; a hex field is marked by ``key_encoding`` /
  ``value_encoding`` = ``"hex"``, and ``path_encoding`` lists ``"utf8"`` or
  ``"hex"`` per path element.  Absent marker = text.

Text format (``--format text``): one line per record::

    nested/level2  key-1 = value-1
    nested  level2/  [bucket seq 3]
    [free p12] ?  key-9 = old-value

names, keys and values as text when printable (``as_text(..., line=True)``),
else ``0x``-hex.
"""

from __future__ import annotations

import base64
import json
import re
from binascii import hexlify
from typing import List, Optional, Tuple

from boltfix import structs as S

#: the order of a JSONL record's keys
FIELDS = ("path", "path_encoding", "key", "key_encoding", "value", "value_encoding",
          "type", "sequence", "page", "state", "bucket_guess", "value_redacted", "etcd")
ENCODINGS = ("auto", "utf8", "hex", "base64")
LIVE, FREE, ORPHAN = "live", "free", "orphan"
STATES = (LIVE, FREE, ORPHAN)

#: the controls text may hold where they are escaped (JSON strings)
TEXT_CONTROLS = frozenset("\t\n\r")
_DROP_CONTROLS = dict.fromkeys(map(ord, TEXT_CONTROLS))


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
    # (without its TEXT_CONTROLS, the text must be printable: str.translate
    # and isprintable run in C, where a loop per character did not)
    if s.isprintable() or (not line and s.translate(_DROP_CONTROLS).isprintable()):
        return s
    return None


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
_json_str = json.encoder.encode_basestring
_json_str_ascii = json.encoder.encode_basestring_ascii


def _enc_hex(b) -> Tuple[str, Optional[str]]:
    return '"' + b.hex() + '"', None


def _enc_base64(b) -> Tuple[str, Optional[str]]:
    return '"' + base64.b64encode(b).decode("ascii") + '"', None


def _enc_utf8(b) -> Tuple[str, Optional[str]]:
    b = bytes(b)
    try:
        return _json_str(b.decode("utf-8")), None
    except UnicodeDecodeError:
        return _json_str_ascii(b.decode("utf-8", "surrogateescape")), None


def _enc_auto(b) -> Tuple[str, Optional[str]]:
    b = bytes(b)
    s = as_text(b)
    if s is None:
        return '"' + b.hex() + '"', "hex"
    return _json_str(s), None


#: encoding name -> f(bytes) -> (JSON string, "hex" when auto chose hex else None)
ENCODERS = {"hex": _enc_hex, "base64": _enc_base64, "utf8": _enc_utf8, "auto": _enc_auto}


# ---------------------------------------------------------------- JSONL lines
def path_json(path, enc) -> str:
    """The line's opening: ``{"path":[...]`` (and ``path_encoding``), or null."""
    if path is None:
        return '{"path":null'
    encs = [enc(p) for p in path]
    s = '{"path":[' + ",".join(e[0] for e in encs) + "]"
    if any(e[1] for e in encs):
        s += ',"path_encoding":[' + ",".join(
            '"hex"' if e[1] else '"utf8"' for e in encs) + "]"
    return s


def path_json_below(pathj: str, path, name, enc) -> str:
    """:func:`path_json` of ``path + (name,)``, given ``pathj`` (that of
    ``path``): the name appended when neither needs ``path_encoding``."""
    nj, ne = enc(name)
    # (inside a JSON string a quote is escaped: this text is only the member)
    if ne or not path or ',"path_encoding":[' in pathj:  # hex somewhere: the whole rule
        return path_json(tuple(path) + (name,), enc)
    return pathj[:-1] + "," + nj + "]"


def bucket_sequence(value) -> Optional[int]:
    """A bucket entry's sequence, None when its value is too short."""
    if len(value) >= S.BUCKET_HEADER_SIZE:
        return S.BUCKET_HEADER.unpack_from(value, 0)[1]
    return None


def jsonl_line(enc, pathj: str, key, value, is_bucket: bool, page: int, state: str,
               guess=None, redacted: bool = False, etcd_json: Optional[str] = None) -> str:
    """One JSONL record, every key in :data:`FIELDS` order.  ``value`` is
    already masked when ``redacted``; ``etcd_json`` is the decoding as JSON."""
    kj, ke = enc(key)
    parts = [pathj, ',"key":', kj]
    if ke:
        parts.append(',"key_encoding":"hex"')
    if is_bucket:
        seq = bucket_sequence(value)
        parts.append(',"value":null,"type":"bucket"')
        parts.append(',"sequence":%s' % ("null" if seq is None else seq))
    else:
        vj, ve = enc(value)
        parts += [',"value":', vj]
        if ve:
            parts.append(',"value_encoding":"hex"')
        parts.append(',"type":"kv"')
    parts.append(',"page":%d,"state":"%s"' % (page, state))
    if guess is not None:
        parts.append(',"bucket_guess":' + path_json(guess, enc)[len('{"path":'):])
    if redacted:
        parts.append(',"value_redacted":true')
    if etcd_json is not None:
        parts.append(',"etcd":' + etcd_json)
    parts.append("}\n")
    return "".join(parts)


def live_bucket_line(enc, pathj: str, name, value, page: int) -> str:
    """:func:`jsonl_line` of a live bucket entry that is not decoded (below
    etcd's top-level buckets), in one join: what a run of small sub-buckets
    writes per entry."""
    nj, ne = enc(name)
    seq = bucket_sequence(value)
    return "".join((pathj, ',"key":', nj, ',"key_encoding":"hex"' if ne else "",
                    ',"value":null,"type":"bucket","sequence":',
                    "null" if seq is None else str(seq),
                    ',"page":%d,"state":"live"}\n' % page))


def live_kv_pieces(parts: list, enc, pathj: str, keys, values, page: int) -> None:
    """:func:`jsonl_line` for plain live records (no secret, no etcd), as
    str pieces appended to ``parts``: no line built per record."""
    tail = ',"type":"kv","page":%d,"state":"live"}\n' % page
    for key, value in zip(keys, values):
        kj, ke = enc(key)
        vj, ve = enc(value)
        parts.extend((pathj, ',"key":', kj,
                      ',"key_encoding":"hex","value":' if ke else ',"value":', vj,
                      ',"value_encoding":"hex"' + tail if ve else tail))


def live_hex_pieces(parts: list, pre: bytes, keys, values, page: int) -> None:
    """The same in ``--encoding hex``, as bytes: five pieces per record (``pre``
    is :func:`hex_prefix`)."""
    mid = b'","value":"'
    tail = b'","type":"kv","page":%d,"state":"live"}\n' % page
    for key, value in zip(keys, values):
        parts.extend((pre, hexlify(key), mid, hexlify(value), tail))


def hex_prefix(pathj: str) -> bytes:
    return (pathj + ',"key":"').encode()


def c_pieces(pathj: str, etcd_key: bool) -> tuple:
    """The pieces of a live kv line the C writer puts around the key and the
    value (``_speedups.jsonl``): what :func:`jsonl_line` writes there."""
    return ((pathj + ',"key":').encode("utf-8", "surrogateescape"),
            b',"value":', b',"key_encoding":"hex"',
            b',"value_encoding":"hex"', b',"type":"kv","page":',
            b',"state":"live","etcd":' if etcd_key else b',"state":"live"}\n')


# ---------------------------------------------------------------- text lines
def text_head(path, state: str, page: int, guess=None) -> str:
    """A ``--format text`` line's state tag and bucket path."""
    head = "" if state == LIVE else f"[{state} p{page}] "
    if path is None:
        ptxt = ("?" + "/".join(name_text(p) for p in guess) + "?") if guess else "?"
    else:
        ptxt = "/".join(name_text(p) for p in path) if path else "/"
    return head + ptxt


def text_bucket_line(head: str, key, value, etcd_json: Optional[str]) -> str:
    seq = bucket_sequence(value)
    line = f"{head}  {name_text(key)}/  [bucket seq {'?' if seq is None else seq}]"
    if etcd_json is not None:
        line += "  etcd=" + etcd_json
    return line + "\n"


def text_kv_line(head: str, key, value, redacted: bool, etcd_json: Optional[str],
                 vtxt: Optional[str] = None) -> str:
    """``vtxt``: the value's text when the caller has it (a huge value's mark)."""
    if etcd_json is not None and not etcd_json.startswith('{"error"') \
            and '"error":' not in etcd_json:
        # etcd's meaning says it all; the raw bytes are in the JSON format
        return f"{head}  {name_text(key)} => {etcd_json}\n"
    if vtxt is None:
        vtxt = '""' if len(value) == 0 else name_text(value)
    line = f"{head}  {name_text(key)} = {vtxt}"
    if redacted:
        line += "  [redacted]"
    if etcd_json is not None:
        line += "  etcd=" + etcd_json
    return line + "\n"


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
