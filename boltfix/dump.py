"""``boltfix dump``: every record of a bbolt file, streamed, etcd-aware,
including what the tree no longer reaches.

The line format, the encodings and the text-or-hex rule live in
:mod:`boltfix.record`.

States (``--include``, default ``live``): ``live`` records are reached from
the meta's root and come first, in tree order (a bucket's entry, then its
contents, keys ascending).  ``free`` records come from leaf pages in the
synced freelist, or, when the freelist is not synced (etcd), from pages
below the high-water mark that the tree does not reach.  ``orphan`` records
come from leaf pages that are neither reachable nor free (only possible with
a synced freelist) and from pages at or past the high-water mark.  Free and
orphan records follow the live ones, free first, each in page order; their
elements are bounds-checked, and stale data is what it is: a forensic view.
A record the tree reaches through a page whose header id is not its position
is written with state ``bad-self-id``, not ``live`` (salvage rule 5).

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

Text format (``--format text``): see :mod:`boltfix.record`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from boltfix import bigrecord as BIG
from boltfix import etcd as E
from boltfix import k8s as K8S
from boltfix import record as R
from boltfix import resident
from boltfix import structs as S
from boltfix.bigbytes import MAX_RANGES, Source, Span
from boltfix.errors import BoltError, Finding
from boltfix.pagemap import (
    BEYOND_HWM,
    FREELIST,
    FREELIST_RUN,
    LISTED,
    OVERFLOW,
    REACHED,
    UNREACHED,
    PageMap,
)
from boltfix.reader import DB
from boltfix.reader import leaf_elements as _leaf_elements
from boltfix.record import ENCODERS, FREE, LIVE, ORPHAN, STATES  # noqa: F401  (re-exported)
from boltfix.render import bcrypt_ranges, name_text, redact_secrets
from boltfix.salvage import self_id_ok
from boltfix.walk import (
    LOSS_CODES,
    Batch,
    Bucket,
    InlineRun,
    Leaves,
    Record,
    Walker,
    clean_inline,
    top_level_names,
)

#: a record the tree reaches through a page whose header id is not its position
MISPLACED = "bad-self-id"


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

    def write(self, line) -> None:
        if type(line) is BIG.BigLine:  # a huge value's line: written in pieces
            self.flush()
            for piece in line.pieces():
                self.stream.write(piece)
            self.lines += 1
            self.first = False
            self.stream.flush()
            return
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


# ---------------------------------------------------------------- names
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
        for field_no, wt, payload, off in E.iter_fields(
                Span(view) if view.nbytes >= BIG.BIG_VALUE else bytes(view)):
            if wt == E.WIRE_LEN and field_no not in (1, 3, 4):
                ranges.append((off, off + len(payload)))
                if len(ranges) > MAX_RANGES:
                    return None
    except Exception:
        return None
    return ranges


def big_masked(path, value, state: str, show_secrets: bool) -> Tuple[Source, bool]:
    """A huge value (a memoryview) as :meth:`Dumper._maybe_redact` masks a
    small one: a :class:`~boltfix.bigbytes.Source` with the same ranges
    shown as ``*``, and whether it is marked redacted."""
    view = memoryview(value)
    if show_secrets:
        return Source(view), False
    if state == LIVE:
        if path is not None and len(path) == 1 and path[0] in E.SECRET_BUCKETS:
            return Source(view, user_secret_ranges(view)), True
        if path is not None and len(path) == 1 and path[0] == b"key":
            ranges = K8S.kv_secret_ranges(Span(view))  # a Kubernetes Secret's data
            return Source(view, ranges), bool(ranges)
        return Source(view), False
    # the bucket is unknown: bcrypt-looking strings, then any KeyValue's secrets
    ranges = bcrypt_ranges(view)
    first = Source(view, ranges)
    src = Source(view, None if ranges is None else
                 ranges + K8S.kv_secret_ranges(Span(first)))
    return src, src.differs()


def get_value(bucket_path, value, show_secrets: bool):
    """``get``'s value as it may be shown, and what was redacted (a note for
    stderr) or None.  A huge value (a memoryview) comes back a memoryview or
    a :class:`~boltfix.bigbytes.Source`, to write in pieces."""
    big = len(value) >= BIG.BIG_VALUE
    secret = len(bucket_path) == 1 and bucket_path[0] in E.SECRET_BUCKETS
    if show_secrets or not (secret or tuple(bucket_path) == (b"key",)):
        return (value if big else bytes(value)), None
    if big:
        src, redacted = big_masked(bucket_path, value, LIVE, False)
        value = src if src.masked else value
    elif secret:
        value, redacted = redact_user_value(value), True
    else:
        masked = K8S.mask_kv(bytes(value))
        value, redacted = (bytes(value), False) if masked is None else (masked, True)
    if not redacted:
        return value, None
    return value, ("password hash redacted" if secret else "Kubernetes Secret data redacted")


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

    # -- record rendering (the format itself is boltfix.record's)
    def _path_json(self, path) -> str:
        return R.path_json(path, self.enc)

    def _line(self, pathj: str, path, key, value, is_bucket, page, state,
              guess=None, etcd_bucket=None) -> str:
        """One JSONL line, its value masked and decoded as the options say."""
        if not is_bucket and len(value) >= BIG.BIG_VALUE:
            return self._big_line(pathj, path, key, value, page, state, guess, etcd_bucket)
        redacted = False
        if not is_bucket:
            value, redacted = self._maybe_redact(path, value, state)
        d = None
        if etcd_bucket is not None:
            d = self._etcd(etcd_bucket, key, None if is_bucket else value)
        return R.jsonl_line(self.enc, pathj, key, value, is_bucket, page, state, guess,
                            redacted, d)

    def _big_line(self, pathj, path, key, value, page, state, guess, etcd_bucket):
        """:meth:`_line` of a huge value: the same line, its huge parts
        written in pieces (boltfix.bigrecord)."""
        src, redacted = big_masked(path, value, state, self.opts.show_secrets)
        bigs: list = []
        d = None if etcd_bucket is None else self._etcd(etcd_bucket, key, Span(src), bigs)
        big, ve = BIG.value_big(src, self.opts.encoding)
        vj = BIG.mark_json(bigs, big)
        enc = self.enc
        stand_in = object()  # the value's place in the line

        def encode(b):
            return (vj, ve) if b is stand_in else enc(b)

        return BIG.BigLine(R.jsonl_line(encode, pathj, key, stand_in, False, page, state,
                                        guess, redacted, d), bigs)

    def _big_text(self, head, path, key, value, page, state, etcd_bucket):
        """:meth:`_text` of a huge value, the same way."""
        src, redacted = big_masked(path, value, state, self.opts.show_secrets)
        bigs: list = []
        d = None if etcd_bucket is None else self._etcd(etcd_bucket, key, Span(src), bigs)
        if d is not None and '"k8s":' in d:
            line = self._k8s_text(head, key, d, redacted)
            if line is not None:
                return BIG.BigLine(line, bigs)
        vtxt = BIG.mark_json(bigs, BIG.text_big(src))
        return BIG.BigLine(R.text_kv_line(head, key, src, redacted, d, vtxt), bigs)

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

    def _etcd(self, bucket: bytes, key, value, bigs: Optional[list] = None) -> Optional[str]:
        """The ``etcd`` member as JSON; with ``bigs``, ``value`` is a huge
        value's Span and its huge parts are marks (boltfix.bigrecord.dumps)."""
        if value is not None and type(value) is not Span:
            value = bytes(value)
        try:
            # a key record's value was masked by _maybe_redact already
            d = E.decode_record(bucket, bytes(key), value,
                                show_secrets=self.opts.show_secrets or bucket == b"key")
        except Exception as exc:  # decode_record never raises on bytes; belt and braces
            d = {"error": f"internal decoder error: {type(exc).__name__}"}
        if d is None:
            return None
        if self.opts.k8s_object and "k8s" in d and value is not None:
            # value is already masked where secret (_maybe_redact)
            d["k8s"]["object"] = E._jsonable(K8S.decode_object(
                E.decode_key_value(value).get("value", b"")))
        if bigs is not None:
            return BIG.dumps(d, bigs)
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    def _text(self, path, key, value, is_bucket, page, state, guess=None,
              etcd_bucket=None) -> str:
        """One ``--format text`` line."""
        head = R.text_head(path, state, page, guess)
        if is_bucket:
            d = self._etcd(etcd_bucket, key, None) if etcd_bucket is not None else None
            return R.text_bucket_line(head, key, value, d)
        if len(value) >= BIG.BIG_VALUE:
            return self._big_text(head, path, key, value, page, state, etcd_bucket)
        value, redacted = self._maybe_redact(path, value, state)
        d = self._etcd(etcd_bucket, key, value) if etcd_bucket is not None else None
        if d is not None and '"k8s":' in d:
            line = self._k8s_text(head, key, d, redacted)
            if line is not None:
                return line
        return R.text_kv_line(head, key, value, redacted, d)

    @staticmethod
    def _k8s_text(head: str, key, d: str, redacted: bool) -> Optional[str]:
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
        line = f"{head}  {name_text(key)}  {ukey}  rev={rev.get('main')}  {K8S.summary(k)}"
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
        (:meth:`Walker.walk_leaves`), through a :class:`_LiveWriter`."""
        self.out.flush()
        live = _LiveWriter(self, start)
        prefix = None if live.user_prefix is not None else self.opts.prefix
        try:
            for bucket, leaves in walker.walk_leaves(start, prefix, inline_runs=True):
                if bucket is not live.bucket:
                    live.enter(bucket)
                if type(leaves) is InlineRun:
                    live.emit_run(leaves, walker)
                elif live.c_pieces is not None and leaves.bucket_entry is None:
                    live.emit_leaves(leaves)
                else:
                    for batch in leaves.batches():
                        live.emit(batch)
        except _Limit:
            live.write_out()
            live.stream.flush()
            raise
        else:
            live.write_out()
            live.stream.flush()
        finally:
            self.result.records[LIVE] += live.count - live.misplaced
            if live.misplaced:  # rule 5: not the tree's records (see _LiveWriter.emit)
                self.result.records[MISPLACED] = live.misplaced
            self.emitted += live.count

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
        # the headers read (a continuation run's too) stay mapped: the map
        # is dropped every TRIM_BYTES of pages (boltfix.resident)
        trim = max(resident.TRIM_BYTES // ps, 1)
        next_trim = trim
        for pgid in pages:
            if pgid <= skip_until:
                continue
            if pgid >= next_trim:
                resident.release(buf)
                next_trim = pgid + trim
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
                    if q >= next_trim:
                        resident.release(buf)
                        next_trim = q + trim
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
                    walker.count_all()
                free, orphan, classes = classify(db, walker)
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


class _LiveWriter:
    """:meth:`Dumper.dump_live`'s writer: the current bucket's line pieces,
    the output pieces not yet written, and the ``--limit`` left.

    With the C core, runs of clean pages in ``--format jsonl`` with hex or
    auto encoding, of plain buckets and of etcd's ``key`` bucket (its
    ``"etcd"`` member included), are written by :meth:`Leaves.write_jsonl`
    from the map: about one 256 KB chunk per call, the line's pieces
    (:func:`record.c_pieces`) given from here; a leaf with a record only
    Python can write (non-ASCII text, an unusual etcd record) comes back to
    :meth:`emit`.  There, for ``--encoding hex`` a record is five byte
    strings (:func:`record.live_hex_pieces`) put on a list that is joined
    and written once per chunk: no dict, no ``json.dumps``, no per-record
    string concatenation.  Plain records in the other encodings go on the
    list as str pieces the same way (joined and encoded per write); bucket
    entries, etcd's top-level buckets, secrets and ``--format text`` are one
    line per record.  The first page goes out at once (``| head`` sees it).
    """

    def __init__(self, dumper: "Dumper", start: Bucket):
        opts = dumper.opts
        #: etcdctl's --prefix: key records selected by their etcd key (in emit)
        self.user_prefix = (opts.prefix if dumper.etcd and is_user_prefix(start, opts.prefix)
                            else None)
        self.dumper = dumper
        self.stream = dumper.out.stream
        self.chunk = dumper.out.chunk
        self.text = opts.fmt == "text"
        self.hex = opts.fmt == "jsonl" and opts.encoding == "hex" and not dumper.etcd
        #: the lines Leaves.write_jsonl writes (in C when it is built)
        self.jsonl_c = (opts.fmt == "jsonl" and opts.encoding in ("hex", "auto")
                        and self.user_prefix is None)
        self.automatic = opts.encoding == "auto"
        self.left = None if dumper.limit is None else dumper.limit - dumper.emitted
        self.count = 0
        # output pieces: bytes on the hex path, else str encoded per write
        self.parts: list = []
        self.size = 0  # about how many bytes are on parts
        self.first = True
        self.bucket = None
        self.path = ()
        self.pathj = ""
        self.pre = b""
        self.top_etcd = None
        self.secret = False
        self.c_pieces = None  # the C writer's line pieces for this bucket, or None
        self.c_mode = 0  # write_jsonl's etcd mode: 0 plain, 1 "etcd" member, 2 mask only
        self.misplaced = 0  # records marked MISPLACED (rule 5)
        self.tainted = None  # a sub-bucket path whose entry lies on such a page

    def enter(self, bucket: Bucket) -> None:
        """The records that follow are ``bucket``'s."""
        d = self.dumper
        self.bucket = bucket
        path = self.path = bucket.path
        if self.tainted is not None and path[:len(self.tainted)] != self.tainted:
            self.tainted = None
        self.pathj = d._path_json(path)
        self.pre = R.hex_prefix(self.pathj)
        self.top_etcd = path[0] if d.etcd and len(path) == 1 else None
        secret = len(path) == 1 and path[0] in E.SECRET_BUCKETS and not d.opts.show_secrets
        # etcd's key bucket may hold Kubernetes Secrets: its records go
        # through emit()'s _line (masking) unless C vouches for them
        k8s_mask = path == (b"key",) and not d.opts.show_secrets
        self.secret = secret or k8s_mask
        # the C writer takes plain buckets and etcd's key bucket (its
        # records' "etcd" member too; it hands back what may be
        # Kubernetes' or secret); the other etcd buckets and secrets are
        # written by emit()
        self.c_pieces = None
        self.c_mode = 1 if self.top_etcd is not None else (2 if k8s_mask else 0)
        if self.jsonl_c and not secret and self.top_etcd in (None, b"key") \
                and self.tainted is None:
            self.c_pieces = R.c_pieces(self.pathj, self.top_etcd is not None)

    def write_out(self) -> None:
        """Write the pieces; the first write is flushed at once (| head sees it)."""
        parts = self.parts
        if self.hex:
            self.stream.write(b"".join(parts))
        else:
            self.stream.write("".join(parts).encode("utf-8", "surrogateescape"))
        if self.first:
            self.stream.flush()
            self.first = False
        parts.clear()
        self.size = 0

    def _write_pieces(self, pieces) -> None:
        """Bytes written as they come (lines the C core wrote, a huge value's
        line a piece at a time: never joined), after what is on :attr:`parts`."""
        if self.parts:
            self.write_out()
        for piece in pieces:
            self.stream.write(piece)
        if self.first:
            self.stream.flush()
            self.first = False

    def emit_leaves(self, leaves: Leaves) -> None:
        """Clean pages through the C writer; a leaf it hands back through emit()."""
        i = 0
        while i < leaves.page_count:
            left = self.left
            data, i, n, batch = leaves.write_jsonl(
                i, self.c_pieces, self.automatic, self.c_mode, self.chunk,
                -1 if left is None else left - self.count)
            if data:
                self._write_pieces((data,))
            self.count += n
            if left is not None and self.count >= left:
                raise _Limit()
            if batch is not None:
                self.emit(batch)

    def emit(self, batch: Batch) -> None:
        """One page's records (or one bucket entry) through the Python writers."""
        if self.tainted is not None or not self_id_ok(self.dumper.db, batch):
            return self._emit_misplaced(batch)
        keys, values, page = batch.keys, batch.values, batch.page
        if self.user_prefix is not None and batch.bucket_entry is None \
                and self.path == (b"key",):
            keys, values = user_key_filter(keys, values, self.user_prefix)
        n = len(keys)
        left = self.left
        if left is not None and n > left - self.count:
            n = left - self.count
            keys = keys[:n]
            values = values[:n]
        if batch.bucket_entry is not None:
            self._put(self._render(keys[0], values[0], True, page))
        elif not self.secret and self.top_etcd is None and BIG.has_big(values):
            self._emit_big(keys, values, page)
        else:
            self._emit_plain(keys, values, page)
        self.count += n
        if self.size >= self.chunk or self.first:
            self.write_out()
        if left is not None and self.count >= left:
            raise _Limit()

    def emit_run(self, run: InlineRun, walker: Walker) -> None:
        """Small sub-buckets of the current bucket (:class:`~boltfix.walk.InlineRun`):
        each entry's line, then its records' lines, the bytes :meth:`enter`
        and :meth:`emit` write for each sub-bucket, without a Bucket or an
        item per sub-bucket.  Below a tainted entry, on a page rule 5 keeps
        out, or with a ``--limit`` to count to, they go the general way."""
        if self.tainted is not None or self.left is not None \
                or not self_id_ok(self.dumper.db, run):
            for bucket, leaves in run.expand(walker, self.bucket):
                if bucket is not self.bucket:
                    self.enter(bucket)
                for batch in leaves.batches():
                    self.emit(batch)
            return
        page = run.page
        # an entry's line: the general one where it is decoded (etcd's buckets)
        lean = not self.text and self.top_etcd is None
        if lean and self.jsonl_c:
            data = run.write_jsonl(self.pathj, self.automatic, self.dumper.db.page_size)
            if data is not None:
                self._write_pieces((data,))
                self.count += len(run) + run.records
                return
        saved = self.path, self.pathj, self.pre, self.secret, self.top_etcd
        path = self.path
        enc = self.dumper.enc
        try:
            for name, value, n in zip(run.keys, run.values, run.counts):
                self.path, self.pathj, self.pre, self.secret, self.top_etcd = saved
                self._put(R.live_bucket_line(enc, saved[1], name, value, page) if lean
                          else self._render(name, value, True, page))
                if n:
                    # what enter() sets for a bucket below the top level (no
                    # secret bucket, no etcd bucket); a canonical inline
                    # bucket is clean: walk.clean_inline takes it whole
                    records = clean_inline(value[S.BUCKET_HEADER_SIZE:])
                    if records is None:  # canonical when the walk read it
                        raise BoltError(f"page {page} changed while it was read", page=page)
                    self.path = path + (name,)
                    self.pathj = R.path_json_below(saved[1], path, name, enc)
                    self.pre = R.hex_prefix(self.pathj)
                    self.secret, self.top_etcd = False, None
                    self._emit_plain([r[2] for r in records], [r[3] for r in records], page)
        finally:
            self.path, self.pathj, self.pre, self.secret, self.top_etcd = saved
        self.count += len(run) + run.records
        if self.size >= self.chunk or self.first:
            self.write_out()

    def _emit_big(self, keys, values, page: int) -> None:
        """Records of which some have a big value: those are written in
        pieces (boltfix.bigrecord), the others as in :meth:`_emit_plain`."""
        for i, (key, value) in enumerate(zip(keys, values)):
            if len(value) < BIG.BIG_VALUE:
                self._emit_plain(keys[i:i + 1], values[i:i + 1], page)
                continue
            self._put(self._render(key, value, False, page))

    def _emit_plain(self, keys, values, page: int) -> None:
        """Kv records of one page on :attr:`parts`, each whole."""
        n = len(keys)
        if self.hex and not self.secret:
            R.live_hex_pieces(self.parts, self.pre, keys, values, page)
            # keys too: a page of keys that share bytes is many records of big keys
            self.size += 2 * (sum(map(len, values)) + sum(map(len, keys))) + 100 * n
        elif not self.text and not self.secret and self.top_etcd is None:
            R.live_kv_pieces(self.parts, self.dumper.enc, self.pathj, keys, values, page)
            # keys too: a page of keys that share bytes is many records of big keys
            self.size += 2 * (sum(map(len, values)) + sum(map(len, keys))) + 100 * n
        elif self.hex and not BIG.has_big(values):
            self._put("".join([self._render(key, value, False, page)
                               for key, value in zip(keys, values)]))
        else:
            for key, value in zip(keys, values):
                self._put(self._render(key, value, False, page))

    def _emit_misplaced(self, batch: Batch) -> None:
        """Rule 5, as repair applies it (salvage.rule_5): the tree reaches
        these records through a page whose header id is not its position (a
        misdirected write, a copied page), or below a bucket entry on such
        a page.  They are dumped with ``"state": "bad-self-id"`` (their
        values masked as for records of an unknown bucket), not as live."""
        keys, values = batch.keys, batch.values
        if self.user_prefix is not None and batch.bucket_entry is None \
                and self.path == (b"key",):
            keys, values = user_key_filter(keys, values, self.user_prefix)
        n = len(keys)
        if self.left is not None:
            n = min(n, self.left - self.count)
        for key, value in zip(keys[:n], values[:n]):
            self._put(self._render(key, value, batch.bucket_entry is not None, batch.page,
                                   MISPLACED))
        entry = batch.bucket_entry
        if entry is not None and entry.child is not None and self.tainted is None:
            self.tainted = entry.child.path
        self.count += n
        self.misplaced += n
        self.write_out()
        if self.left is not None and self.count >= self.left:
            raise _Limit()

    def _render(self, key, value, is_bucket: bool, page: int, state: str = LIVE) -> str:
        d = self.dumper
        if self.text:
            return d._text(self.path, key, value, is_bucket, page, state,
                           etcd_bucket=self.top_etcd)
        return d._line(self.pathj, self.path, key, value, is_bucket, page, state,
                       etcd_bucket=self.top_etcd)

    def _put(self, line) -> None:
        if type(line) is BIG.BigLine:  # a huge value's line: written in pieces
            self._write_pieces(line.pieces())
            return
        if self.hex:
            line = line.encode("utf-8", "surrogateescape")
        self.parts.append(line)
        self.size += len(line)



_KNOWN_FLAGS = (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG, S.FREELIST_PAGE_FLAG, S.META_PAGE_FLAG)
# page classes for classify()
C_REACHED, C_FREE, C_ORPHAN, C_OTHER = 1, 2, 3, 4
# page map state -> class (free and orphan are set by classify itself)
_MAP_CLASS = bytes(
    C_FREE if b == UNREACHED | LISTED else
    C_REACHED if b & 0x7F in (REACHED, OVERFLOW) else
    0 if b & 0x7F in (UNREACHED, BEYOND_HWM) else C_OTHER
    for b in range(256))
_CLASS = {FREE: C_FREE, ORPHAN: C_ORPHAN}


def _has_header(buf, q: int, ps: int) -> bool:
    pid, flags = S.PAGE_HEADER.unpack_from(buf, q * ps)[:2]
    return pid == q and flags in _KNOWN_FLAGS


def classify(db: DB, walker: Walker) -> Tuple[List[int], List[int], bytearray]:
    """Free and orphan candidate pages, and a class per page of the file,
    from the walk's :class:`PageMap`.

    Free: the synced freelist's ids (that are not reachable), or without a
    synced (readable) freelist, the unreached pages below the high-water mark.
    Orphan: with a synced freelist, unreached pages below the HWM that are
    neither free nor the freelist itself; in every case the pages at or past
    the HWM that are in the file.
    """
    pm = PageMap(db, walker)
    classes = pm.states.translate(_MAP_CLASS)  # a bytearray: one copy of the map
    limit = pm.limit
    if pm.readable:
        free = list(pm.positions(UNREACHED | LISTED, 2, limit))
        orphan = list(pm.positions(UNREACHED, 2, limit))
    else:
        # a freelist that could not be read at all counts as not synced: its
        # own page is a candidate like any other page the tree does not reach
        free = [i for i in range(2, limit)
                if pm.states[i] in (UNREACHED, FREELIST, FREELIST_RUN)]
        orphan = []
        for i in free:
            classes[i] = C_FREE
    if not pm.has_tree:
        # no tree at all: everything is an orphan
        orphan = free + orphan
        free = []
    for i in orphan:
        classes[i] = C_ORPHAN
    beyond = range(max(limit, 2), pm.pages_in_file)
    for start in range(beyond.start, beyond.stop, 1 << 22):  # no map-sized temporary
        stop = min(beyond.stop, start + (1 << 22))
        classes[start:stop] = bytes([C_ORPHAN]) * (stop - start)
    return free, _Pages(orphan, beyond), classes


class _Pages:
    """Page ids: a list, then a range (the pages past the high-water mark,
    never made into a list)."""

    def __init__(self, ids: List[int], tail: range):
        self.ids = ids
        self.tail = tail

    def __len__(self) -> int:
        return len(self.ids) + len(self.tail)

    def __iter__(self):
        yield from self.ids
        yield from self.tail


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
    for bucket, leaves in walker.walk_leaves(inline_runs=True):
        if type(leaves) is InlineRun:
            # small sub-buckets: their nodes whole, and none in ``nodes``
            # (nothing of theirs follows)
            nodes[bucket.path]["buckets"].extend(
                {"name": key, "sequence": R.bucket_sequence(value),
                 "inline": True, "root": 0, "keys": count, "buckets": []}
                for key, value, count in zip(leaves.keys, leaves.values, leaves.counts))
        elif leaves.bucket_entry is None:
            nodes[bucket.path]["keys"] += leaves.count
        else:
            _tree_node(nodes, bucket, leaves.bucket_entry)
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
