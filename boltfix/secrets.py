"""Every masking rule: what of the bytes boltfix prints is secret, and how
it is hidden.

Unless ``--show-secrets``, every output masks, with ``*`` bytes of the same
length (so every offset stays true):

* etcd's ``authUsers`` values (:data:`SECRET_BUCKETS`): the password (a
  bcrypt hash) and every length-delimited field but name, roles and options
  (:func:`user_secret_ranges`); the whole value when it does not parse;
* bcrypt-looking strings anywhere the bucket is unknown (free and orphan
  records, hexdumps: :func:`redact_secrets`, :func:`bcrypt_ranges`);
* Kubernetes secrets in etcd's ``key`` values (:func:`kv_secret_ranges`,
  :func:`mask_kv`): a Secret's ``data``/``stringData`` values and its
  last-applied annotation, OAuth tokens and k3s bootstrap data whole
  (which keys and kinds: :func:`boltfix.k8s.key_secrecy`); a Secret that
  does not parse is masked whole;
* a HashiCorp raft-boltdb log's ``Data`` (Vault's storage, Consul's
  tokens), in its ``logs`` bucket and in free or orphan records that
  decode as a raft log (:func:`mask_raft_log`); the whole value when it
  does not decode;
* in a hexdump or a page view, every Secret value a range of the file
  touches (:func:`file_secret_spans`, :class:`RangeMask`,
  :class:`PreviewMask`).

:func:`masked_record` and :func:`big_masked` choose the rule by bucket for
``dump``, :func:`get_value` for ``get``.  The decoders show a hidden value
as :data:`boltfix.text.REDACTED`.
"""

from __future__ import annotations

import json
import re
import struct
from bisect import bisect_right
from typing import Optional, Tuple

from boltfix import bigrecord, raftboltdb, resident
from boltfix.bigbytes import MAX_RANGES, Source, Span, is_span, keep_span, pattern_ranges
from boltfix.etcdkeys import KEY_BUCKET
from boltfix.k8s import (
    ENC_PREFIX,
    LAST_APPLIED,
    MAGIC,
    REGISTRY_PREFIXES,
    WHOLE_SECRET_PREFIXES,
    key_secrecy,
    map_entry,
    unknown_parts,
)
from boltfix.protowire import WIRE_LEN, ProtoError, fields, iter_fields, parse_json
from boltfix.resident import TRIM_BYTES, release

#: Buckets whose raw values hold secrets (bcrypt password hashes).  A caller
#: that prints raw value bytes (hexdumps, ``get``) must hide these unless the
#: user asked for secrets.
SECRET_BUCKETS: frozenset = frozenset({b"authUsers"})

# ---------------------------------------------------------------- markers
#: markers of a Secret in bytes that no longer parse (free pages, damage)
SECRET_KEYS = tuple(p + b"secrets/" for p in REGISTRY_PREFIXES)
SECRET_MARKERS = SECRET_KEYS + (b"\x12\x06Secret", b'"kind":"Secret"',
                                  b'"kind": "Secret"') + WHOLE_SECRET_PREFIXES

#: (the C core's k8s_maybe_secret has the same list; it counts "\\u" only
#: in a JSON value, the one place an escape can spell a kind)
QUICK_MARKERS = (b"Secret", b"\\u", b"oauth") + SECRET_KEYS + WHOLE_SECRET_PREFIXES
QUICK_MARKERS_NO_ESCAPE = tuple(m for m in QUICK_MARKERS if m != b"\\u")


def is_k8s_candidate(kv: bytes, value: bytes | None) -> bool:
    """The C core's hand-back rule for dump's ``key`` records, in Python
    (``_speedups.c``'s k8s_candidate): ``kv`` a raw KeyValue, ``value`` its
    field 5 (``None`` when ``kv`` is no clean KeyValue).  True for a value
    that may be a Kubernetes object (only those get a "k8s" member,
    :func:`boltfix.k8s.decode_value`) and for a KeyValue that may hold a secret
    (:func:`kv_secret_ranges`' quick markers; the JSON escape ``\\u`` only
    in a JSON value, the one place an escape can spell a kind)."""
    if value is None:
        return True
    if value[:4] == MAGIC or value[:8] == ENC_PREFIX or value[:1] == b"{":
        return True
    return any(map(kv.__contains__, QUICK_MARKERS_NO_ESCAPE))


# ---------------------------------------------------------------- bcrypt
# bcrypt hashes as etcd stores them in authUsers ($2a$10$ + 53 chars)
_BCRYPT = re.compile(rb"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


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


def bcrypt_ranges(view):
    """The ranges :func:`redact_secrets` masks, found in windows
    (:func:`boltfix.bigbytes.pattern_ranges`: a huge value is never copied
    whole); None when there are too many to list (mask all)."""
    return pattern_ranges(_BCRYPT, view, 59)  # a bcrypt hash is at most 60 bytes


# ---------------------------------------------------------------- Kubernetes
def _protobuf_secret_ranges(value: bytes) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    u = unknown_parts(value)
    raw, roff = u["raw"]
    if u.get("contentEncoding"):
        raise ValueError("content encoding")
    for no, wt, val, off in fields(raw, roff):
        if wt != WIRE_LEN:
            continue
        if no in (2, 4):  # data, stringData: mask each entry's value
            _k, v, voff = map_entry(val, off)
            ranges.append((voff, voff + len(v)))
        elif no == 1:
            for mno, mwt, mval, moff in fields(val, off):
                if mno == 12 and mwt == WIRE_LEN:
                    k, v, voff = map_entry(mval, moff)
                    if k == LAST_APPLIED:
                        ranges.append((voff, voff + len(v)))
    return ranges


def _json_secret_ranges(value: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the string contents under data/stringData (and the
    last-applied annotation) of a JSON Secret, found with json's scanner."""
    text = value.decode("utf-8")
    dec = json.JSONDecoder()
    ranges: list[tuple[int, int]] = []

    def members(i):
        """(key, value_start, value_end) of the object starting at text[i]."""
        end_obj = dec.raw_decode(text, i)[1]  # validates the whole object
        j = i + 1
        out = []
        while True:
            while text[j] in " \t\r\n,":
                j += 1
            if text[j] == "}":
                return out, end_obj
            key, j = json.decoder.scanstring(text, j + 1)
            while text[j] in " \t\r\n:":
                j += 1
            _v, k = dec.raw_decode(text, j)
            out.append((key, j, k))
            j = k

    def strings_in(start, end):
        # every string inside [start, end): a secret's values and, to be
        # safe, anything nested under them
        j = start
        while j < end:
            if text[j] == '"':
                _s, k = json.decoder.scanstring(text, j + 1)
                ranges.append((j + 1, k - 1))
                j = k
            else:
                j += 1

    i = len(text) - len(text.lstrip())
    top, _ = members(i)
    for key, s, e in top:
        if key in ("data", "stringData") and text[s] == "{":
            for _k, vs, ve in members(s)[0]:
                strings_in(vs, ve)
        elif key == "metadata" and text[s] == "{":
            for mk, ms, _me in members(s)[0]:
                if mk == "annotations" and text[ms] == "{":
                    for ak, vs, ve in members(ms)[0]:
                        if ak == LAST_APPLIED.decode():
                            strings_in(vs, ve)
    if text.isascii():
        return ranges
    # character offsets -> byte offsets
    return [(len(text[:a].encode()), len(text[:b].encode())) for a, b in ranges]


def _looks_secret_kind(value: bytes) -> bool:
    if b"Secret" not in value and b"\\u" not in value:
        return False  # the kind is spelt out (or JSON-escaped) where it is Secret
    if value.startswith(MAGIC):
        try:
            return unknown_parts(value).get("kind") == "Secret"
        except (ProtoError, ValueError):
            return b"\x12\x06Secret" in value[:64]
    if value[:1] == b"{":
        ok, obj = parse_json(value)
        return ok and isinstance(obj, dict) and obj.get("kind") == "Secret"
    return False


def secret_ranges(value: bytes, user_key: bytes | None = None) -> list[tuple[int, int]]:
    """Byte ranges of ``value`` (a KeyValue.value) that are secret; ``[]``
    when nothing is.  A Secret that does not decode (or is encrypted) is
    one range over everything after the magic / envelope header."""
    value = keep_span(value)
    how = key_secrecy(bytes(user_key) if user_key else None)
    if how == "whole":
        return [(0, len(value))] if value else []
    if not how and not _looks_secret_kind(value):
        return []
    try:
        if value.startswith(MAGIC):
            return _protobuf_secret_ranges(value)
        if value[:1] == b"{":
            return _json_secret_ranges(value)
    except (ProtoError, ValueError, IndexError, RecursionError):
        pass
    if value.startswith(ENC_PREFIX):
        # (a huge value's header is looked for in its first MB: a header
        # past it leaves the whole value masked)
        head = (bytes(value[:1 << 20]) if is_span(value) else value).split(b":", 5)
        skip = sum(len(h) + 1 for h in head[:5]) if len(head) == 6 else 0
        return [(skip, len(value))] if skip < len(value) else []
    start = len(MAGIC) if value.startswith(MAGIC) else 0
    return [(start, len(value))] if start < len(value) else []


def _masked(data: bytes, ranges) -> bytes | None:
    """``data`` with ``ranges`` replaced by ``*`` (same length), or None
    when there are none."""
    if not ranges:
        return None
    out = bytearray(data)
    for a, b in ranges:
        out[a:b] = b"*" * (b - a)
    return bytes(out)


def mask_value(value: bytes, user_key: bytes | None = None) -> bytes | None:
    """``value`` with its secret ranges replaced by ``*`` (same length), or
    ``None`` when nothing in it is secret."""
    return _masked(value, secret_ranges(value, user_key))


_SCAN_PIECE = 1 << 20  # bytes of a range looked at per copy for stray markers


def kv_view_secret_ranges(view) -> list[tuple[int, int]]:
    """:func:`kv_secret_ranges` of a KeyValue that is a view of the map:
    a huge one as a :class:`~boltfix.bigbytes.Span` (read in pieces, never
    copied whole), a small one as bytes."""
    return kv_secret_ranges(Span(view) if len(view) >= resident.BIG_VALUE else bytes(view))


def kv_secret_ranges(kv: bytes) -> list[tuple[int, int]]:
    """Secret byte ranges of a raw ``mvccpb.KeyValue`` (a ``key`` bucket
    value).  A KeyValue that does not parse but shows a Secret's marker is
    masked whole: its structure cannot say what is metadata."""
    kv = keep_span(kv)
    # quick no: a Secret's KeyValue holds one of these literally (its key,
    # the kind in typeMeta or JSON, or a JSON escape that may spell it)
    if not any(map(kv.__contains__, QUICK_MARKERS)):
        return []
    try:
        key, value, voff = None, b"", -1
        for no, wt, val, off in iter_fields(kv):
            if wt == WIRE_LEN and no == 1:
                key = val
            elif wt == WIRE_LEN and no == 5:
                value, voff = val, off
    except ProtoError:
        if any(m in kv for m in SECRET_MARKERS):
            return [(0, len(kv))]
        return []
    if voff < 0:
        return []
    return [(voff + a, voff + b) for a, b in secret_ranges(value, key)]


def mask_kv(kv: bytes) -> bytes | None:
    """A raw ``mvccpb.KeyValue`` with the secrets of its Kubernetes value
    masked by ``*`` (same length, so every offset stays true), or ``None``
    when it holds no secret."""
    return _masked(kv, kv_secret_ranges(kv))


# ---------------------------------------------------------------- etcd's buckets
def redact_user_value(value) -> bytes:
    """An ``authpb.User`` value with its password (field 2) and any other
    length-delimited field except name (1), roles (3) and options (4) masked
    with ``*``; the whole value when it does not parse."""
    raw = bytes(value)
    return Source(raw, user_secret_ranges(raw)).bytes(0, len(raw))


def user_secret_ranges(value) -> Optional[list]:
    """The byte ranges :func:`redact_user_value` masks (bcrypt-looking
    strings, and those fields), None for the whole value.  ``value``: bytes,
    or a huge value's memoryview (read in pieces, never copied whole)."""
    view = memoryview(value)
    ranges = bcrypt_ranges(view)
    if ranges is None:
        return None
    try:
        for field_no, wt, payload, off in iter_fields(
                Span(view) if view.nbytes >= bigrecord.BIG_VALUE else bytes(view)):
            if wt == WIRE_LEN and field_no not in (1, 3, 4):
                ranges.append((off, off + len(payload)))
                if len(ranges) > MAX_RANGES:
                    return None
    except Exception:
        return None
    return ranges


def big_masked(path, value, live: bool, show_secrets: bool) -> Tuple[Source, bool]:
    """A huge value (a memoryview) as :func:`masked_record` masks a small
    one: a :class:`~boltfix.bigbytes.Source` with the same ranges shown as
    ``*``, and whether it is marked redacted.  ``live``: the record is the
    tree's (in bucket ``path``); else its bucket is unknown."""
    view = memoryview(value)
    if show_secrets:
        return Source(view), False
    if live:
        if path is not None and len(path) == 1 and path[0] in SECRET_BUCKETS:
            return Source(view, user_secret_ranges(view)), True
        if path is not None and tuple(path) == KEY_BUCKET:
            ranges = kv_secret_ranges(Span(view))  # a Kubernetes Secret's data
            return Source(view, ranges), bool(ranges)
        return Source(view), False
    # the bucket is unknown: bcrypt-looking strings, then any KeyValue's secrets
    ranges = bcrypt_ranges(view)
    first = Source(view, ranges)
    src = Source(view, None if ranges is None else
                 ranges + kv_secret_ranges(Span(first)))
    return src, src.differs()


def masked_record(path, value, live: bool, show_secrets: bool):
    """A record's value as dump may print it, and whether it was masked.
    ``live``: the tree's record, in bucket ``path``: an ``authUsers`` value
    loses its password (:func:`redact_user_value`), a ``key`` value its
    Kubernetes secrets (:func:`mask_kv`).  Else (a free or orphan record,
    its bucket unknown): bcrypt-looking strings, then any KeyValue's
    secrets."""
    if show_secrets:
        return value, False
    if live:
        if path is not None and len(path) == 1 and path[0] in SECRET_BUCKETS:
            return redact_user_value(value), True
        if path is not None and tuple(path) == KEY_BUCKET:
            masked = mask_kv(value)  # a Kubernetes Secret's data
            return (value, False) if masked is None else (masked, True)
        return value, False
    raw = bytes(value)
    masked = redact_secrets(raw)
    masked = mask_kv(masked) or masked  # the bucket is unknown: any KeyValue
    return masked, masked != raw


def raft_log_ranges(value) -> Optional[list]:
    """The byte ranges of a raft-boltdb log value :func:`mask_raft_log`
    masks (its ``Data`` payload: :func:`boltfix.raftboltdb.data_range`),
    None for the whole value (it does not decode)."""
    got = raftboltdb.data_range(value)
    if got is None:
        return None
    return [got] if got[1] > got[0] else []


def raft_data_spans(key_size: int, value) -> list:
    """The ``Data`` range of a leaf value that reads as a raft-boltdb log
    (an 8-byte index key, a msgpack map holding ``Data``), for the views
    that show a page's bytes whatever its bucket (``page``, ``page --hex``):
    what ``dump`` and ``get`` mask in ``logs``.  [] for any other value."""
    if key_size != 8 or len(value) < 16 or not (
            0x80 <= value[0] <= 0x8F or value[0] in (0xDE, 0xDF)):
        return []
    got = raftboltdb.data_range(value)
    return [got] if got is not None and got[1] > got[0] else []


def mask_raft_log(value) -> Tuple[bytes, bool]:
    """A raft-boltdb ``logs`` value with its ``Data`` masked by ``*`` (same
    length; the whole value when it does not decode), and whether anything
    was masked."""
    raw = bytes(value)
    ranges = raft_log_ranges(raw)
    if ranges is None:
        return b"*" * len(raw), bool(raw)
    masked = _masked(raw, ranges)
    return (raw, False) if masked is None else (masked, True)


def get_value(bucket_path, value, show_secrets: bool):
    """``get``'s value as it may be shown, and what was redacted (a note for
    stderr) or None.  A huge value (a memoryview) comes back a memoryview or
    a :class:`~boltfix.bigbytes.Source`, to write in pieces."""
    big = len(value) >= bigrecord.BIG_VALUE
    secret = len(bucket_path) == 1 and bucket_path[0] in SECRET_BUCKETS
    if show_secrets or not (secret or tuple(bucket_path) == KEY_BUCKET):
        return (value if big else bytes(value)), None
    if big:
        src, redacted = big_masked(bucket_path, value, True, False)
        value = src if src.masked else value
    elif secret:
        value, redacted = redact_user_value(value), True
    else:
        masked = mask_kv(bytes(value))
        value, redacted = (bytes(value), False) if masked is None else (masked, True)
    if not redacted:
        return value, None
    return value, ("password hash redacted" if secret else "Kubernetes Secret data redacted")


# ---------------------------------------------------------------- ranges of the file
_BACK_PAGES = 4096  # how far back a leaf's overflow run is looked for
#: bytes of values read to mask one range shown (bbolt's largest value is
#: 2 GiB less 2); past them (a damaged page whose elements all claim one huge
#: value, each read again) a value is masked whole, unread
SPAN_READ_BUDGET = 2 << 30


#: an application's rule for views that do not know a value's bucket:
#: ``rule(key, value)`` -> the ranges of ``value`` to mask (``view_secret_ranges``
#: of boltfix.containerd, boltfix.vault, boltfix.docker; the front layer picks it
#: by the file's layout)
AppRule = Optional[object]


def _app_ranges(rule, key, value, is_bucket: bool = False) -> list:
    """``rule``'s ranges of a leaf value (none without a rule); the whole
    value when the rule fails.  A bucket's value is looked into when it is
    an inline bucket (its records are in it: :func:`_inline_app_ranges`)."""
    if rule is None:
        return []
    try:
        if is_bucket:
            return _inline_app_ranges(rule, value)
        return list(rule(bytes(key), value))
    except Exception:
        return [(0, len(value))]


def _inline_app_ranges(rule, value) -> list:
    """``rule``'s ranges of each record of an inline bucket's value (a
    16-byte bucket header with root 0, then a leaf page holding no bucket:
    bbolt inlines only buckets without sub-buckets), bounded by the value."""
    n = len(value)
    if n < 32 or struct.unpack_from("<Q", value, 0)[0] != 0:
        return []
    flags, count = struct.unpack_from("<HH", value, 24)
    if flags != 0x02:
        return []
    out = []
    for i in range(min(count, (n - 32) // 16)):
        el = 32 + 16 * i
        eflags, pos, ksize, vsize = struct.unpack_from("<IIII", value, el)
        k = el + pos
        v, e = k + ksize, min(k + ksize + vsize, n)
        if eflags & 1 or v >= n:
            continue
        out.extend((v + a, v + b) for a, b in rule(bytes(value[k:v]), value[v:e]))
    return out


def stray_spans(buf, page_size: int, start: int, end: int) -> list:
    """For a hexdump of an application file whose values are secret by
    their bucket (containerd's, Vault's, Docker's: a page does not say its
    bucket): the bytes of ``[start, end)`` no page of the file accounts for,
    masked whole: pages that are not a page of their own id (an overflow
    page's garbage header, stale bytes of freed runs) and the tail of a
    page past its last element (bbolt reuses page buffers, so a tail may
    hold another page's old values).  Headers, element headers, keys and
    values stay (the rule masks the values)."""
    size = len(buf)
    end = min(end, size)
    out: list = []
    reach = 0
    first, last = start // page_size, max(start, end - 1) // page_size
    for q in range(max(0, first - _BACK_PAGES), last + 1):
        off = q * page_size
        if off < reach:
            continue
        if off + 16 > size:
            out.append((off, end))
            break
        pid, flags, count, overflow = struct.unpack_from("<QHHI", buf, off)
        run_end = min((q + overflow + 1) * page_size, size)
        if pid != q or flags not in (0x01, 0x02, 0x04, 0x10):
            if off + page_size > start:
                out.append((max(off, start), min(off + page_size, end)))
            continue
        reach = run_end
        if run_end <= start:
            continue
        used = _page_used(buf, off, flags, count, run_end)
        if used < run_end:
            out.append((max(used, start), min(run_end, end)))
    return [(a, b) for a, b in out if a < b]


def _page_used(buf, off: int, flags: int, count: int, run_end: int) -> int:
    """Where a page's meaningful bytes end: its last element's key or value,
    its freelist ids, its meta (a whole page when unsure)."""
    if flags == 0x04:
        return min(off + 16 + 64, run_end)
    if flags == 0x10:
        n = count
        base = off + 16
        if count == 0xFFFF and base + 8 <= run_end:
            n = struct.unpack_from("<Q", buf, base)[0] + 1
        return min(base + 8 * n, run_end)
    count = min(count, (run_end - off - 16) // 16)
    used = off + 16 + 16 * count
    for i in range(count):
        el = off + 16 + 16 * i
        if flags == 0x02:
            _f, pos, ksize, vsize = struct.unpack_from("<IIII", buf, el)
            used = max(used, el + pos + ksize + vsize)
        else:
            pos, ksize = struct.unpack_from("<II", buf, el)
            used = max(used, el + pos + ksize)
    return min(used, run_end)


def mask_file_range(buf, page_size: int, start: int, data: bytes) -> bytes:
    """``data`` (the file's bytes from ``start``) with every Kubernetes
    secret in it masked, for hexdumps: :func:`file_secret_spans` of the
    range ``data`` covers, applied to it."""
    out = bytearray(data)
    for a, b in file_secret_spans(buf, page_size, start, start + len(data), data):
        out[a - start:b - start] = b"*" * (b - a)
    return bytes(out)


def file_secret_spans(buf, page_size: int, start: int, end: int,
                      data=None, app: AppRule = None) -> list[tuple[int, int]]:
    """The absolute byte ranges of ``buf[start:end]`` that hold a
    Kubernetes secret (clipped to it, in no order), for hexdumps.

    The leaves whose page run overlaps the range are found from their
    headers (also a leaf that starts up to ``_BACK_PAGES`` pages before, so
    an overflow page shown alone is masked too); each element's value is
    masked as :func:`kv_secret_ranges` says, over the whole range shown
    (each value read once, as a view of the map: a range shown in pieces
    asks for all of it once and masks each piece with the answer).
    A Secret's marker outside every parsed element (damage) masks from
    there to the end of the range.  The markers are looked for in ``data``
    when given (the bytes shown, from ``start``), else in ``buf``.  ``app``:
    an application's rule (:data:`AppRule`) for each plain value too."""
    size = len(buf)
    end = min(end, size) if data is None else end
    trim = max(1, TRIM_BYTES // page_size)  # headers read between two drops
    spans: list[tuple[int, int]] = []
    left = SPAN_READ_BUDGET
    first, last = start // page_size, max(start, end - 1) // page_size
    covered: list[tuple[int, int]] = []
    for q in range(max(0, first - _BACK_PAGES), last + 1):
        off = q * page_size
        if off + 16 > size:
            break
        if q % trim == 0:
            release(buf)  # each header read maps its page: a long run maps the file
        pid, flags, count, overflow = struct.unpack_from("<QHHI", buf, off)
        if pid != q or flags != 0x02 or q + overflow < first:
            continue
        run_end = min((q + overflow + 1) * page_size, size)
        count = min(count, (run_end - off - 16) // 16)
        for i in range(count):
            el = off + 16 + 16 * i
            eflags, pos, ksize, vsize = struct.unpack_from("<IIII", buf, el)
            k = el + pos
            v = k + ksize
            e = v + vsize
            if (eflags & 1 and app is None) or v >= run_end:
                continue
            # a value cut by the end of the run (or file) is judged on what is
            # there: a KeyValue cut short that names a Secret is masked whole
            e = min(e, run_end)
            if e <= start or k >= end:
                continue
            covered.append((k, e))
            left -= e - v
            ranges = kv_view_secret_ranges(buf[v:e]) if left >= 0 else [(0, e - v)]
            if left >= 0:
                ranges = list(ranges) + raft_data_spans(ksize, buf[v:e])
                if app is not None:
                    ranges += _app_ranges(app, buf[k:v], buf[v:e], bool(eflags & 1))
            for a, b in ranges:
                a, b = max(v + a, start), min(v + b, end)
                if a < b:
                    spans.append((a, b))
    cut = _first_stray_marker(buf if data is None else data,
                              start if data is None else 0, end - start, covered,
                              0 if data is None else start)
    if cut is not None:
        spans.append((cut, end))
    return spans


def _first_stray_marker(buf, lo: int, n: int, covered, shift: int):
    """The absolute offset of the first Secret marker in ``buf[lo:lo + n]``
    that lies in no element of ``covered``, or None; read a piece at a
    time (``shift`` turns an offset in ``buf`` into a file offset)."""
    # the elements merged into sorted disjoint ranges: a marker inside one
    # skips to its end (a value full of markers is not looked at per marker)
    merged: list[list[int]] = []
    for k, e in sorted(covered):
        if merged and k <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([k, e])
    starts = [k for k, _e in merged]
    reach = max(map(len, SECRET_MARKERS)) - 1
    best = None
    for a in range(lo, lo + n, _SCAN_PIECE):
        b = min(a + _SCAN_PIECE + reach, lo + n)
        piece = bytes(buf[a:b])
        for marker in SECRET_MARKERS:
            i = piece.find(marker)
            while 0 <= i < _SCAN_PIECE:
                absolute = a + i + shift
                j = bisect_right(starts, absolute) - 1
                if j < 0 or absolute >= merged[j][1]:
                    best = absolute if best is None else min(best, absolute)
                    break
                i = piece.find(marker, merged[j][1] - a - shift)
        release(buf)
        if best is not None:
            return best
    return best


def _disjoint(spans) -> list:
    """``(start, end)`` ranges sorted and merged where they overlap or touch."""
    out: list = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out



class RangeMask:
    """``buf[start:end]`` as a hexdump shows it, a piece at a time (pieces
    asked for in ascending order): password hashes masked in each piece with
    the bytes around it looked at too (:func:`redact_range`), and the
    Kubernetes secrets :func:`file_secret_spans` finds over the whole
    range, once: a secret is masked whatever piece or page edge cuts it."""

    def __init__(self, buf, page_size: int, start: int, end: int, app: AppRule = None):
        self.buf = buf
        spans = file_secret_spans(buf, page_size, start, end, app=app)
        if app is not None:  # values secret by their bucket: nothing unaccounted shown
            spans += stray_spans(buf, page_size, start, end)
        self.spans = _disjoint(spans)
        self._j = 0  # the first span that may reach into the next piece

    def piece(self, a: int, b: int) -> bytearray:
        """The masked bytes ``[a, b)``."""
        data = bytearray(redact_range(self.buf, a, b))
        spans, j = self.spans, self._j
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        self._j = j
        for s, e in spans[j:]:
            if s >= b:
                break
            s, e = max(s, a), min(e, b)
            data[s - a:e - a] = b"*" * (e - s)
        return data


class PreviewMask:
    """The first ``n`` bytes of a leaf value, its password hashes and
    Kubernetes secrets masked as the whole value says (a value shown whole
    is masked as before: hashes, then the KeyValue's secrets).  Past
    SPAN_READ_BUDGET bytes of values read for one page (a damaged page
    whose elements all claim one huge value), a preview is masked whole."""

    def __init__(self, app: AppRule = None):
        self.left = SPAN_READ_BUDGET
        self.app = app  # an application's rule (AppRule) for plain values

    def __call__(self, value, n: int, key_size: int = 0, key=None,
                 is_bucket: bool = False) -> bytes:
        if len(value) > self.left:
            return b"*" * n
        self.left -= len(value)
        raft = raft_data_spans(key_size, value)  # a raft log's Data (secrets of Vault, Consul)
        if self.app is not None and key is not None:
            raft = raft + _app_ranges(self.app, key, value, is_bucket)
        if n == len(value) and not raft:
            data = redact_secrets(value)
            return mask_kv(data) or data  # a Kubernetes Secret's data
        data = bytearray(redact_range(value, 0, n))  # a hash cut by the preview's end too
        for a, b in list(kv_view_secret_ranges(value)) + raft:  # the whole value, in pieces
            a, b = max(a, 0), min(b, n)
            if a < b:
                data[a:b] = b"*" * (b - a)
        return bytes(data)
