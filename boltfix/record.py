"""The record format: one dump line, JSONL or text.

Whether bytes are text is :mod:`boltfix.text`'s one rule
(:func:`~boltfix.text.as_text`); the encodings are its
:data:`~boltfix.text.ENCODERS`.

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
     "etcd": {...},                # etcd decoding on: etcd.decode_record()
     "raft": {...},                # a raft-boltdb store's logs/conf records:
                                   # raftboltdb.decode_record()
     "containerd": {...},          # containerd metadata's records under v1:
                                   # containerd.decode_record()
     "vault": {...},               # Vault FSM's data/config records:
                                   # vault.decode_record()
     "docker": {...}}              # Docker's volumes / libnetwork records:
                                   # docker.decode_record()

Encodings (``--encoding``, :data:`boltfix.text.ENCODINGS`), applied to every name, key and value:

* ``hex``: lower-case hex of the exact bytes.
* ``base64``: standard base64 (with padding) of the exact bytes.
* ``utf8``: always a JSON string.  Bytes that are not valid UTF-8 come out as
  lone surrogates ``\\udc80``..``\\udcff`` (Python's ``surrogateescape``), so
  ``s.encode("utf-8", "surrogateescape")`` gives the bytes back.
* ``auto`` (default): a JSON string when :func:`~boltfix.text.as_text` says text, else
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

from binascii import hexlify
from typing import Optional

from boltfix.structs import bucket_sequence
from boltfix.text import name_text

#: the order of a JSONL record's keys
FIELDS = ("path", "path_encoding", "key", "key_encoding", "value", "value_encoding",
          "type", "sequence", "page", "state", "bucket_guess", "value_redacted", "etcd",
          "raft", "containerd", "vault", "docker")
LIVE, FREE, ORPHAN = "live", "free", "orphan"
STATES = (LIVE, FREE, ORPHAN)


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


def jsonl_line(enc, pathj: str, key, value, is_bucket: bool, page: int, state: str,
               guess=None, redacted: bool = False, etcd_json: Optional[str] = None,
               raft_json: Optional[str] = None, label: str = "raft") -> str:
    """One JSONL record, every key in :data:`FIELDS` order.  ``value`` is
    already masked when ``redacted``; ``etcd_json`` (``raft_json``) is the
    etcd (application's) decoding as JSON; ``label``: the application
    member's name (``raft``, ``containerd``)."""
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
    if raft_json is not None:
        parts.append(',"%s":' % label + raft_json)
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
    """The bytes of an ``--encoding hex`` line up to its key."""
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


def text_bucket_line(head: str, key, value, etcd_json: Optional[str],
                     label: str = "etcd") -> str:
    """A ``--format text`` line of a bucket entry (``label``: the decoding's name)."""
    seq = bucket_sequence(value)
    line = f"{head}  {name_text(key)}/  [bucket seq {'?' if seq is None else seq}]"
    if etcd_json is not None:
        line += f"  {label}=" + etcd_json
    return line + "\n"


def text_kv_line(head: str, key, value, redacted: bool, etcd_json: Optional[str],
                 vtxt: Optional[str] = None, label: str = "etcd") -> str:
    """``vtxt``: the value's text when the caller has it (a huge value's
    mark); ``label``: the decoding's name (``etcd``, ``raft``)."""
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
        line += f"  {label}=" + etcd_json
    return line + "\n"
