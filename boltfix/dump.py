"""``boltfix dump``: every record of a bbolt file, streamed, etcd-aware,
including what the tree no longer reaches.

JSONL record format (one JSON object per line, stable)
------------------------------------------------------
Keys appear in this order; optional ones only when they apply::

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
     "value_redacted": true,       # the value was masked (see Secrets)
     "etcd": {...}}                # etcd decoding on: etcd.decode_record()

Encodings (``--encoding``), applied to every name, key and value:

* ``hex``: lower-case hex of the exact bytes.
* ``base64``: standard base64 (with padding) of the exact bytes.
* ``utf8``: always a JSON string.  Bytes that are not valid UTF-8 come out as
  lone surrogates ``\\udc80``..``\\udcff`` (Python's ``surrogateescape``), so
  ``s.encode("utf-8", "surrogateescape")`` gives the bytes back.
* ``auto`` (default): a JSON string when the bytes are UTF-8 text whose
  characters are all printable (tab, newline and carriage return allowed),
  else lower-case hex; a hex field is marked by ``key_encoding`` /
  ``value_encoding`` = ``"hex"``, and ``path_encoding`` lists ``"utf8"`` or
  ``"hex"`` per path element.  Absent marker = text.

States (``--include``, default ``live``): ``live`` records are reached from
the meta's root and come first, in tree order (a bucket's entry, then its
contents, keys ascending).  ``free`` records come from leaf pages in the
synced freelist, or, when the freelist is not synced (etcd), from pages
below the high-water mark that the tree does not reach.  ``orphan`` records
come from leaf pages that are neither reachable nor free (only possible with
a synced freelist) and from pages at or past the high-water mark.  Free and
orphan records follow the live ones, free first, each in page order; their
elements are bounds-checked, and stale data is what it is: a forensic view.

Secrets: values in etcd's ``authUsers`` bucket hold bcrypt password hashes.
Unless ``--show-secrets``, the password field of such a value (and any
length-delimited field other than name and roles; the whole value when it
does not parse) is replaced by ``*`` bytes of the same length and the record
carries ``"value_redacted": true``.  Free and orphan values, whose bucket is
unknown, have bcrypt-looking strings masked the same way (and are marked when
something was masked).  The ``etcd`` decoding shows the password as
``"<redacted>"``.  Kubernetes Secrets in etcd's ``key`` bucket (live, free
and orphan records alike) have their data masked the same way
(:func:`boltfix.k8s.mask_kv`; the README says exactly what is masked), and
the ``etcd`` member of a record holding a Kubernetes object carries ``"k8s"``
(:func:`boltfix.k8s.decode_value`; ``--k8s-object`` adds ``"object"``).

Text format (``--format text``): one line per record::

    nested/level2  key-1 = value-1
    nested  level2/  [bucket seq 3]
    [free p12] ?  key-9 = old-value

names, keys and values as text when printable, else ``0x``-hex.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from boltfix import etcd as E
from boltfix import k8s as K8S
from boltfix import structs as S
from boltfix.errors import Finding
from boltfix.reader import DB
from boltfix.render import name_text, redact_secrets
from boltfix.reader import leaf_elements as _leaf_elements
from boltfix import walk as _walk
from boltfix.walk import LOSS_CODES, Batch, Bucket, Record, Run, Walker

LIVE, FREE, ORPHAN = "live", "free", "orphan"
STATES = (LIVE, FREE, ORPHAN)
ENCODINGS = ("auto", "utf8", "hex", "base64")

_TEXT_CONTROLS = frozenset("\t\n\r")


# ---------------------------------------------------------------- output
class Output:
    """Buffered byte writer: first record goes out at once, then big chunks."""

    # 256 KB: the C hex writer's buffer stays in the CPU's cache between
    # chunks (measured 8.2 GB/s of output against 6.9 with 1 MB)
    def __init__(self, stream=None, chunk: int = 256 << 10):
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.parts: List[str] = []
        self.size = 0
        self.chunk = chunk
        self.first = True
        self.lines = 0

    def write(self, line: str) -> None:
        self.parts.append(line)
        self.size += len(line)
        self.lines += 1
        if self.size >= self.chunk or self.first:
            self.first = False
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = "".join(self.parts).encode("utf-8", "surrogateescape")
            self.parts = []
            self.size = 0
            self.stream.write(data)
        self.stream.flush()


# ---------------------------------------------------------------- encodings
def _is_text(b: bytes) -> Optional[str]:
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if s.isprintable() or all(c.isprintable() or c in _TEXT_CONTROLS for c in s):
        return s
    return None


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
    s = _is_text(b)
    if s is None:
        return '"' + b.hex() + '"', "hex"
    return _json_str(s), None


ENCODERS = {"hex": _enc_hex, "base64": _enc_base64, "utf8": _enc_utf8, "auto": _enc_auto}


def decode_name(text: str) -> List[bytes]:
    """Candidate bytes for a name typed on the command line: the literal
    text first, then, for ``0x<hex>``, the hex bytes."""
    out = [os.fsencode(text)]
    if text.startswith("0x") and len(text) > 2:
        try:
            out.append(bytes.fromhex(text[2:]))
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------- secrets
def redact_user_value(value) -> bytes:
    """An ``authpb.User`` value with its password (field 2) and any other
    length-delimited field except name (1), roles (3) and options (4) masked
    with ``*``; the whole value when it does not parse."""
    raw = bytes(value)
    out = bytearray(redact_secrets(raw))
    try:
        for field_no, wt, payload, off in E._iter_fields(raw):
            if wt == E.WIRE_LEN and field_no not in (1, 3, 4):
                out[off: off + len(payload)] = b"*" * len(payload)
    except Exception:
        return b"*" * len(raw)
    return bytes(out)


# ---------------------------------------------------------------- options
@dataclass
class DumpOptions:
    bucket: Sequence[str] = ()  # names as typed (see decode_name)
    prefix: Optional[bytes] = None
    fmt: str = "jsonl"  # jsonl | text
    encoding: str = "auto"
    decode: str = "auto"  # auto | none | etcd
    include: Sequence[str] = (LIVE,)
    limit: Optional[int] = None
    show_secrets: bool = False
    #: add the decoded Kubernetes object to each "k8s" member ("object")
    k8s_object: bool = False
    #: called with the number of pages walked so far (a progress bar)
    progress: Optional[Callable[[int], None]] = None


@dataclass
class DumpResult:
    records: dict = field(default_factory=lambda: {LIVE: 0, FREE: 0, ORPHAN: 0})
    findings: List[Finding] = field(default_factory=list)
    #: problems that are not walk findings (bucket not found, no meta, ...)
    notes: List[str] = field(default_factory=list)
    etcd: bool = False
    free_pages_scanned: int = 0
    orphan_pages_scanned: int = 0
    bucket_missing: bool = False
    limited: bool = False

    @property
    def errors(self) -> List[Finding]:
        """Findings that kept records out of the dump (walk.LOSS_CODES)."""
        return list(dict.fromkeys(f for f in self.findings if f.code in LOSS_CODES))

    @property
    def damaged(self) -> bool:
        return bool(self.errors) or self.bucket_missing


class _Limit(Exception):
    pass


# ---------------------------------------------------------------- lookups
def find_in_bucket(walker: Walker, bucket: Bucket, key: bytes) -> Optional[Record]:
    """The record for ``key`` in ``bucket`` (a fresh walker: two lookups may
    pass the same pages)."""
    return Walker(walker.db, report=walker.report).find(bucket, key)


def open_path(walker: Walker, names: Sequence[str]) -> Tuple[Optional[Bucket], str]:
    """Open the nested bucket named by ``names``; (bucket, "") or (None, why)."""
    cur = walker.root_bucket()
    if cur is None:
        return None, "no valid meta page"
    for name in names:
        rec = None
        for cand in decode_name(name):
            rec = find_in_bucket(walker, cur, cand)
            if rec is not None:
                break
        if rec is None:
            return None, f"bucket {name!r} not found in {_path_text(cur.path)}"
        if not rec.is_bucket:
            return None, f"{name!r} in {_path_text(cur.path)} is a key, not a bucket"
        child = walker.open_bucket(cur, rec)
        if child is None:
            return None, f"bucket {name!r} in {_path_text(cur.path)} is malformed"
        cur = child
    return cur, ""


def _path_text(path) -> str:
    return "/".join(name_text(p) for p in path) if path else "the root"


def walk_from(walker: Walker, start: Bucket, prefix: Optional[bytes] = None
              ) -> Iterator[Tuple[Bucket, Record]]:
    """Like :meth:`Walker.walk` but from ``start``; ``prefix`` filters the
    keys of ``start`` itself (a matching sub-bucket comes whole) and stops
    the walk once keys have passed it.  (:meth:`Walker.walk_batches` with
    ``start`` and ``prefix``, a record at a time.)"""
    for bucket, batch in walker.walk_batches(start, prefix):
        yield from zip(repeat(bucket), batch.records())


def is_user_prefix(bucket: Bucket, prefix: Optional[bytes]) -> bool:
    """Whether ``prefix`` selects etcd ``key`` bucket records by their user
    key (etcdctl's ``--prefix``): a prefix starting with ``/`` in the
    top-level ``key`` bucket.  (As a revision it would be above 2**61.)"""
    return prefix is not None and prefix[:1] == b"/" and tuple(bucket.path) == (b"key",)


def user_key_filter(keys, values, prefix: bytes):
    """The (keys, values) of a page whose KeyValue's user key starts with ``prefix``."""
    pairs = [(k, v) for k, v in zip(keys, values)
             if (K8S.kv_user_key(v) or b"").startswith(prefix)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def key_lists(walker: Walker, bucket: Bucket, prefix: Optional[bytes] = None):
    """``boltfix keys``: the keys of ``bucket`` a page at a time; with
    ``prefix``, those starting with it, or in an etcd db's ``key`` bucket
    with a ``/`` prefix, the revisions whose user key starts with it."""
    if prefix is None:
        yield from walker.key_lists(bucket)
    elif is_user_prefix(bucket, prefix) and E.looks_like_etcd(top_level_names(walker.db)):
        for b, batch in walker.walk_batches(bucket):
            if b is bucket and batch.bucket_entry is None:
                yield user_key_filter(batch.keys, batch.values, prefix)[0]
    else:
        for page_keys in walker.key_lists(bucket):
            yield [k for k in page_keys if bytes(k).startswith(prefix)]


def top_level_names(db: DB) -> List[bytes]:
    """Top-level bucket names (quiet, separate walker)."""
    w = Walker(db)
    top = w.root_bucket()
    if top is None:
        return []
    return [r.key for r in w.records(top) if r.is_bucket]


# ---------------------------------------------------------------- dumper
class Dumper:
    def __init__(self, db: DB, out: Output, opts: DumpOptions):
        self.db = db
        self.out = out
        self.opts = opts
        self.result = DumpResult()
        self.enc = ENCODERS[opts.encoding]
        self.limit = opts.limit
        self.emitted = 0
        if opts.decode == "etcd":
            self.etcd = True
        elif opts.decode == "none":
            self.etcd = False
        else:
            self.etcd = E.looks_like_etcd(top_level_names(db))
        self.result.etcd = self.etcd

    # -- record rendering
    def _path_json(self, path) -> str:
        if path is None:
            return '{"path":null'
        encs = [self.enc(p) for p in path]
        s = '{"path":[' + ",".join(e[0] for e in encs) + "]"
        if any(e[1] for e in encs):
            s += ',"path_encoding":[' + ",".join(
                '"hex"' if e[1] else '"utf8"' for e in encs) + "]"
        return s

    def _line(self, pathj: str, path, key, value, is_bucket, page, state,
              guess=None, etcd_bucket=None) -> str:
        """One JSONL line (generic path; the hex live path has its own)."""
        enc = self.enc
        kj, ke = enc(key)
        parts = [pathj, ',"key":', kj]
        if ke:
            parts.append(',"key_encoding":"hex"')
        redacted = False
        seq = None
        if is_bucket:
            parts.append(',"value":null,"type":"bucket"')
            if len(value) >= S.BUCKET_HEADER_SIZE:
                seq = S.BUCKET_HEADER.unpack_from(value, 0)[1]
            parts.append(',"sequence":%s' % ("null" if seq is None else seq))
        else:
            value, redacted = self._maybe_redact(path, value, state)
            vj, ve = enc(value)
            parts += [',"value":', vj]
            if ve:
                parts.append(',"value_encoding":"hex"')
            parts.append(',"type":"kv"')
        parts.append(',"page":%d,"state":"%s"' % (page, state))
        if guess is not None:
            parts.append(',"bucket_guess":' + self._path_json(guess)[len('{"path":'):])
        if redacted:
            parts.append(',"value_redacted":true')
        if etcd_bucket is not None:
            d = self._etcd(etcd_bucket, key, None if is_bucket else value)
            if d is not None:
                parts.append(',"etcd":' + d)
        parts.append("}\n")
        return "".join(parts)

    def _maybe_redact(self, path, value, state):
        if self.opts.show_secrets:
            return value, False
        if state == LIVE:
            if path is not None and len(path) == 1 and path[0] in E.SECRET_BUCKETS:
                return redact_user_value(value), True
            if path is not None and len(path) == 1 and path[0] == b"key":
                masked = K8S.mask_kv(value)  # a Kubernetes Secret's data
                return (value, False) if masked is None else (masked, True)
            return value, False
        raw = bytes(value)
        masked = redact_secrets(raw)
        masked = K8S.mask_kv(masked) or masked  # the bucket is unknown: any KeyValue
        return masked, masked != raw

    def _etcd(self, bucket: bytes, key, value) -> Optional[str]:
        try:
            # a key record's value was masked by _maybe_redact already
            d = E.decode_record(bucket, bytes(key), None if value is None else bytes(value),
                                show_secrets=self.opts.show_secrets or bucket == b"key")
        except Exception as exc:  # decode_record never raises on bytes; belt and braces
            d = {"error": f"internal decoder error: {type(exc).__name__}"}
        if d is None:
            return None
        if self.opts.k8s_object and "k8s" in d and value is not None:
            # value is already masked where secret (_maybe_redact)
            d["k8s"]["object"] = E._jsonable(K8S.decode_object(
                E.decode_key_value(bytes(value)).get("value", b"")))
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    def _text(self, path, key, value, is_bucket, page, state, guess=None,
              etcd_bucket=None) -> str:
        if state == LIVE:
            head = ""
        else:
            head = f"[{state} p{page}] "
        if path is None:
            ptxt = ("?" + "/".join(name_text(p) for p in guess) + "?") if guess else "?"
        else:
            ptxt = "/".join(name_text(p) for p in path) if path else "/"
        if is_bucket:
            seq = (S.BUCKET_HEADER.unpack_from(value, 0)[1]
                   if len(value) >= S.BUCKET_HEADER_SIZE else "?")
            line = f"{head}{ptxt}  {name_text(key)}/  [bucket seq {seq}]"
        else:
            value, redacted = self._maybe_redact(path, value, state)
            d = self._etcd(etcd_bucket, key, value) if etcd_bucket is not None else None
            if d is not None and '"k8s":' in d:
                line = self._k8s_text(head, ptxt, key, d, redacted)
                if line is not None:
                    return line
            if d is not None and not d.startswith('{"error"') and '"error":' not in d:
                # etcd's meaning says it all; the raw bytes are in the JSON format
                return f"{head}{ptxt}  {name_text(key)} => {d}\n"
            vtxt = '""' if len(value) == 0 else name_text(value)
            line = f"{head}{ptxt}  {name_text(key)} = {vtxt}"
            if redacted:
                line += "  [redacted]"
            if d is not None:
                line += "  etcd=" + d
            return line + "\n"
        if etcd_bucket is not None:
            d = self._etcd(etcd_bucket, key, None)
            if d is not None:
                line += "  etcd=" + d
        return line + "\n"

    def _k8s_text(self, head, ptxt, key, d: str, redacted: bool) -> Optional[str]:
        """A key record holding a Kubernetes object: its one-line summary
        (``--k8s-object`` adds the object as JSON)."""
        obj = json.loads(d)
        k = obj.get("k8s")
        if not isinstance(k, dict):
            return None
        rev = obj.get("revision") or {}
        ukey = obj.get("key", "")
        ukey = (name_text(ukey.encode("utf-8", "surrogateescape")) if isinstance(ukey, str)
                else "0x" + str((ukey or {}).get("hex", "")))
        line = (f"{head}{ptxt}  {name_text(key)}  {ukey}"
                f"  rev={rev.get('main')}  {K8S.summary(k)}")
        if redacted:
            line += "  [secret data redacted]"
        if "object" in k:
            # ASCII: no control character of the file reaches a terminal raw
            line += "  " + json.dumps(k["object"], separators=(",", ":"))
        return line + "\n"

    def _count(self, state: str) -> None:
        self.result.records[state] += 1
        self.emitted += 1
        if self.limit is not None and self.emitted >= self.limit:
            raise _Limit()

    # -- live
    def dump_live(self, walker: Walker, start: Bucket) -> None:
        """Live records in tree order, a page's run of records at a time
        (:meth:`Walker.walk_batches`).

        With the C core, runs of clean pages in ``--format jsonl`` with hex
        or auto encoding, of plain buckets and of etcd's ``key`` bucket (its
        ``"etcd"`` member included), are written by :func:`_speedups.jsonl`
        from the map: about one 256 KB chunk per call, the line's pieces
        given from here; a leaf with a record only Python can write
        (non-ASCII text, an unusual etcd record) is handed back to emit().
        Otherwise, for ``--encoding hex`` a record is five byte strings (path
        and key prefix, the key's hex, the middle, the value's hex --
        hexlify of the zero-copy view --, the page's tail) put on a list
        that is joined and written once per chunk: no dict, no
        ``json.dumps``, no per-record string concatenation.  Plain records
        in the other encodings go on the list as str pieces the same way
        (joined and encoded per write); bucket entries, etcd's top-level
        buckets, secrets and ``--format text`` are one line per record.  The
        first page goes out at once (``| head`` sees it).
        """
        opts = self.opts
        out = self.out
        out.flush()
        stream = out.stream
        chunk = out.chunk
        hexlify = binascii.hexlify
        etcd = self.etcd
        text = opts.fmt == "text"
        fast = opts.fmt == "jsonl" and opts.encoding == "hex" and not etcd
        user_prefix = opts.prefix if etcd and is_user_prefix(start, opts.prefix) else None
        write_c = (getattr(_walk._speedups, "jsonl", None)
                   if opts.fmt == "jsonl" and opts.encoding in ("hex", "auto")
                   and user_prefix is None else None)
        automatic = opts.encoding == "auto"
        buf, ps = walker.buf, walker.page_size
        enc = self.enc
        mid = b'","value":"'
        path = ()
        pathj = ""
        pre = b""
        top_etcd = None
        secret = False
        c_pieces = None  # the C writer's line pieces for the current bucket, or None
        c_mode = 0  # _speedups.jsonl's etcd_key: 0 plain, 1 "etcd" member, 2 mask only
        left = None if self.limit is None else self.limit - self.emitted
        count = 0
        # output pieces: bytes on the hex fast path, else str encoded per write
        parts: list = []
        size = 0  # about how many bytes are on parts
        if fast:
            join = b"".join
        else:
            def join(pieces):
                return "".join(pieces).encode("utf-8", "surrogateescape")
        first = True

        def write_out():
            # the first page goes out at once (| head sees it), then a chunk at a time
            nonlocal first, size
            stream.write(join(parts))
            if first:
                stream.flush()
                first = False
            parts.clear()
            size = 0

        def emit(batch: Batch) -> None:
            """One page's records (or one bucket entry) through the Python writers."""
            nonlocal count, size
            keys = batch.keys
            values = batch.values
            page = batch.page
            if user_prefix is not None and batch.bucket_entry is None and path == (b"key",):
                keys, values = user_key_filter(keys, values, user_prefix)
            n = len(keys)
            if left is not None and n > left - count:
                n = left - count
                keys = keys[:n]
                values = values[:n]
            if batch.bucket_entry is not None:
                if text:
                    line = self._text(path, keys[0], values[0], True, page, LIVE,
                                      etcd_bucket=top_etcd)
                else:
                    line = self._line(pathj, path, keys[0], values[0], True, page, LIVE,
                                      etcd_bucket=top_etcd)
                if fast:
                    line = line.encode("utf-8", "surrogateescape")
                parts.append(line)
                size += len(line)
            elif fast and not secret:
                tail = b'","type":"kv","page":%d,"state":"live"}\n' % page
                for key, value in zip(keys, values):
                    parts.extend((pre, hexlify(key), mid, hexlify(value), tail))
                size += 2 * sum(map(len, values)) + 100 * n
            elif fast:
                data = "".join([self._line(pathj, path, key, value, False, page, LIVE)
                                for key, value in zip(keys, values)]
                               ).encode("utf-8", "surrogateescape")
                parts.append(data)
                size += len(data)
            elif not text and not secret and top_etcd is None:
                # what _line builds for a live kv record, as pieces
                tail = ',"type":"kv","page":%d,"state":"live"}\n' % page
                for key, value in zip(keys, values):
                    kj, ke = enc(key)
                    vj, ve = enc(value)
                    parts.extend((pathj, ',"key":', kj,
                                  ',"key_encoding":"hex","value":' if ke else ',"value":', vj,
                                  ',"value_encoding":"hex"' + tail if ve else tail))
                size += 2 * sum(map(len, values)) + 100 * n
            else:
                render = self._text if text else partial(self._line, pathj)
                for key, value in zip(keys, values):
                    line = render(path, key, value, False, page, LIVE, etcd_bucket=top_etcd)
                    parts.append(line)
                    size += len(line)
            count += n
            if size >= chunk or first:
                write_out()
            if left is not None and count >= left:
                raise _Limit()

        def emit_run(run: Run) -> None:
            """Clean pages through the C writer; a leaf it hands back through emit()."""
            nonlocal count, first
            leaves = run.leaves
            i = 0
            while i < len(leaves):
                data, i, n, python = _walk.call_c(write_c, buf, ps, leaves, i, c_pieces,
                                                  automatic, c_mode, chunk,
                                                  -1 if left is None else left - count)
                if data:
                    if parts:
                        write_out()
                    stream.write(data)
                    if first:
                        stream.flush()
                        first = False
                count += n
                if left is not None and count >= left:
                    raise _Limit()
                if python:
                    for batch in walker.run_batches(leaves[i:i + 1]):
                        emit(batch)
                    i += 1

        cur = None
        try:
            for bucket, item in walker.walk_batches(
                    start, None if user_prefix is not None else opts.prefix,
                    runs=write_c is not None):
                if bucket is not cur:
                    cur = bucket
                    path = bucket.path
                    pathj = self._path_json(path)
                    pre = (pathj + ',"key":"').encode()
                    top_etcd = path[0] if etcd and len(path) == 1 else None
                    secret = (len(path) == 1 and path[0] in E.SECRET_BUCKETS
                              and not opts.show_secrets)
                    # etcd's key bucket may hold Kubernetes Secrets: its
                    # records go through _line (masking) unless C vouches
                    k8s_mask = len(path) == 1 and path[0] == b"key" and not opts.show_secrets
                    # the C writer takes plain buckets and etcd's key bucket
                    # (its records' "etcd" member too, handing back what may
                    # be Kubernetes'); the other etcd buckets and secrets
                    # are written here
                    c_pieces = None
                    c_mode = 1 if top_etcd is not None else (2 if k8s_mask else 0)
                    secret = secret or k8s_mask
                    if (write_c is not None and (not secret or k8s_mask)
                            and top_etcd in (None, b"key")):
                        c_pieces = ((pathj + ',"key":').encode("utf-8", "surrogateescape"),
                                    b',"value":', b',"key_encoding":"hex"',
                                    b',"value_encoding":"hex"', b',"type":"kv","page":',
                                    b',"state":"live"}\n' if top_etcd is None
                                    else b',"state":"live","etcd":')
                if type(item) is not Run:
                    emit(item)
                elif c_pieces is not None:
                    emit_run(item)
                else:
                    for batch in walker.run_batches(item.leaves):
                        emit(batch)
        except _Limit:
            stream.write(join(parts))
            stream.flush()
            raise
        else:
            stream.write(join(parts))
            stream.flush()
        finally:
            self.result.records[LIVE] += count
            self.emitted += count

    # -- free / orphan
    def dump_unreached(self, state: str, pages: Sequence[int], classes: bytearray) -> int:
        """Scan candidate pages (sorted) for leaf pages whose elements parse.

        ``classes[p]`` tells what page ``p`` is: the candidate's own class
        code for pages of the same state; a continuation run is cut at the
        first page of another class, or one that has its own valid header.
        Returns the number of leaf pages found.
        """
        db = self.db
        buf = db.buf
        ps = db.page_size
        npages = db.pages_in_file
        want = _CLASS[state]
        found = 0
        skip_until = -1
        for pgid in pages:
            if pgid <= skip_until:
                continue
            try:
                off = pgid * ps
                pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(buf, off)
                if pid != pgid or flags not in _KNOWN_FLAGS:
                    continue
                # the usable run: continuation pages of the same class without
                # a header of their own
                last = pgid
                while last < pgid + overflow and last + 1 < npages:
                    q = last + 1
                    if classes[q] != want or _has_header(buf, q, ps):
                        break
                    last = q
                skip_until = last
                if flags != S.LEAF_PAGE_FLAG:
                    continue
                found += 1
                self._emit_leaf(state, pgid, off, count, (last + 1) * ps)
            except _Limit:
                raise
            except Exception as exc:  # never let stale bytes stop the dump
                self.result.notes.append(f"{state} page {pgid} skipped: "
                                         f"{type(exc).__name__}: {exc}")
        return found

    def _emit_leaf(self, state, pgid, off, count, end, inline_in: Optional[bytes] = None,
                   buf=None) -> None:
        """The elements of a leaf in a free or orphan page that still parse.

        A bucket entry whose value holds an inline bucket is followed by
        that bucket's own records, with ``bucket_guess`` set to its name
        (the innermost name: the path above it is not known).
        """
        buf = self.db.buf if buf is None else buf
        guessing = self.opts.decode != "none"
        text = self.opts.fmt == "text"
        for idx, eflags, key, value, problem in _leaf_elements(buf, off, count, end):
            if problem:
                continue
            is_bucket = bool(eflags & S.BUCKET_LEAF_FLAG)
            guess = None if inline_in is None else (inline_in,)
            if guess is None and guessing and not is_bucket and E.revision_bucket_guess(key):
                guess = (b"key",)
            eb = b"key" if guess == (b"key",) else None
            if text:
                self.out.write(self._text(None, key, value, is_bucket, pgid, state, guess, eb))
            else:
                self.out.write(self._line('{"path":null', None, key, value, is_bucket, pgid,
                                          state, guess, eb))
            self._count(state)
            if is_bucket and inline_in is None:
                self._emit_inline(state, pgid, key, value)

    def _emit_inline(self, state, pgid, name: bytes, value) -> None:
        """The records of an inline bucket value found in a free/orphan leaf."""
        if len(value) < S.BUCKET_HEADER_SIZE + S.PAGE_HEADER_SIZE:
            return
        root, _ = S.BUCKET_HEADER.unpack_from(value, 0)
        if root != 0:
            return
        page = value[S.BUCKET_HEADER_SIZE:]
        _, flags, count, _ = S.PAGE_HEADER.unpack_from(page, 0)
        if flags == S.LEAF_PAGE_FLAG:
            # elements are checked against the value's own bytes only
            self._emit_leaf(state, pgid, 0, count, len(page), inline_in=bytes(name), buf=page)

    # -- main
    def run(self) -> DumpResult:
        db = self.db
        opts = self.opts
        res = self.result
        walker = Walker(db, report=res.findings.append, progress=opts.progress)
        full_walk = False
        try:
            if LIVE in opts.include:
                if db.meta is None:
                    res.notes.append("no valid meta page: the tree cannot be read "
                                     "(try --meta 0 or --meta 1, or --include orphan)")
                else:
                    names = opts.bucket
                    if not names and self.etcd and (opts.prefix or b"")[:1] == b"/":
                        names = ("key",)  # etcdctl's --prefix: etcd keys, in `key`
                    start, why = open_path(walker, names)
                    if start is None:
                        res.bucket_missing = True
                        res.notes.append(why)
                    else:
                        self.dump_live(walker, start)
                        full_walk = not opts.bucket and opts.prefix is None
            if FREE in opts.include or ORPHAN in opts.include:
                if not full_walk:
                    walker = Walker(db)  # quiet: only to learn what is reachable
                    for _ in walker.walk_batches(runs=True):
                        pass
                free, orphan, classes = classify(db, walker.reached)
                if FREE in opts.include:
                    res.free_pages_scanned = len(free)
                    self.dump_unreached(FREE, free, classes)
                if ORPHAN in opts.include:
                    res.orphan_pages_scanned = len(orphan)
                    self.dump_unreached(ORPHAN, orphan, classes)
        except _Limit:
            res.limited = True
        self.out.flush()
        return res


_KNOWN_FLAGS = (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG, S.FREELIST_PAGE_FLAG, S.META_PAGE_FLAG)
# page classes for classify()
C_REACHED, C_FREE, C_ORPHAN, C_OTHER = 1, 2, 3, 4
_CLASS = {FREE: C_FREE, ORPHAN: C_ORPHAN}


def _has_header(buf, q: int, ps: int) -> bool:
    pid, flags = S.PAGE_HEADER.unpack_from(buf, q * ps)[:2]
    return pid == q and flags in _KNOWN_FLAGS


def classify(db: DB, reached: bytearray) -> Tuple[List[int], List[int], bytearray]:
    """Free and orphan candidate pages, and a class per page of the file.

    Free: the synced freelist's ids (that are not reachable), or without a
    synced (readable) freelist, the unreached pages below the high-water mark.
    Orphan: with a synced freelist, unreached pages below the HWM that are
    neither free nor the freelist itself; in every case the pages at or past
    the HWM that are in the file.
    """
    n = db.pages_in_file
    limit = db.page_limit
    classes = bytearray(n)
    for i in range(min(2, n)):
        classes[i] = C_OTHER
    for i, r in enumerate(reached):
        if r:
            classes[i] = C_REACHED
    fl = db.freelist() if db.meta is not None else None
    # a freelist that could not be read at all counts as not synced
    synced = fl is not None and (fl.count > 0 or not fl.findings)
    free: List[int] = []
    if synced:
        # the freelist page's own run
        try:
            p = db.page(fl.pgid)
            for i in range(fl.pgid, min(fl.pgid + p.overflow + 1, limit)):
                if not classes[i]:
                    classes[i] = C_OTHER
        except Exception:
            pass
        for pid in fl.ids(db):
            if 2 <= pid < limit and not classes[pid]:
                classes[pid] = C_FREE
                free.append(pid)
        free.sort()
        orphan = [i for i in range(2, limit) if not classes[i]]
        for i in orphan:
            classes[i] = C_ORPHAN
    else:
        free = [i for i in range(2, limit) if not classes[i]]
        for i in free:
            classes[i] = C_FREE
        orphan = []
    if db.meta is None:
        # no tree at all: everything is an orphan
        orphan = free + orphan
        for i in orphan:
            classes[i] = C_ORPHAN
        free = []
    beyond = list(range(max(limit, 2), n))
    for i in beyond:
        classes[i] = C_ORPHAN
    return free, orphan + beyond, classes


def dump(db: DB, opts: DumpOptions, stream=None) -> DumpResult:
    """Dump ``db`` to ``stream`` (default: stdout's byte buffer)."""
    return Dumper(db, Output(stream), opts).run()


# ---------------------------------------------------------------- buckets
def bucket_tree(db: DB, report: Optional[Callable[[Finding], None]] = None) -> List[dict]:
    """The bucket tree: ``[{"name": bytes, "sequence", "inline", "root",
    "keys" (own plain keys), "buckets": [...]}]`` in key order."""
    walker = Walker(db, report=report)
    top: List[dict] = []
    nodes = {(): {"buckets": top}}
    for bucket, item in walker.walk_batches(runs=True):
        if type(item) is Run:
            nodes[bucket.path]["keys"] += item.records
            continue
        for rec in item.records():
            _tree_node(nodes, bucket, rec)
    return top


def _tree_node(nodes: dict, bucket: Bucket, rec: Record) -> None:
    """bucket_tree's bookkeeping for one record."""
    if not rec.is_bucket:
        nodes[bucket.path]["keys"] += 1
        return
    child = rec.child
    node = {"name": rec.key,
            "sequence": child.sequence if child else None,
            "inline": child.is_inline if child else None,
            "root": child.root if child else None,
            "keys": 0, "buckets": []}
    nodes[bucket.path]["buckets"].append(node)
    nodes[bucket.path + (rec.key,)] = node
