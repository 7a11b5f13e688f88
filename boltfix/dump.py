"""``boltfix dump``: every record of a bbolt file, streamed, etcd-aware,
including what the tree no longer reaches.

The line format lives in :mod:`boltfix.record`, the encodings and the
text-or-hex rule in :mod:`boltfix.text`, the masking rules in
:mod:`boltfix.secrets`, the free/orphan page scan in :mod:`boltfix.unreached`.

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
(:func:`boltfix.secrets.mask_kv`; docs/dump.md says exactly what is masked), and
the ``etcd`` member of a record holding a Kubernetes object carries ``"k8s"``
(:func:`boltfix.k8s.decode_value`; ``--k8s-object`` adds ``"object"``).

HashiCorp raft-boltdb stores (Consul's, Nomad's, Vault's ``raft.db``,
told by their buckets: :func:`boltfix.raftboltdb.looks_like_raft`): each
``logs`` and ``conf`` record gets a ``"raft"`` member
(:func:`boltfix.raftboltdb.decode_record`: index, term, type, the log's
``Data`` by length and type), and a log's ``Data`` is masked in the raw
value unless ``--show-secrets`` (:func:`boltfix.secrets.mask_raft_log`),
whatever ``--decode`` says (``raft_mask``: masked, not decoded);
free and orphan records that decode as a raft log get the same, with
``bucket_guess`` ``["logs"]``.

Text format (``--format text``): see :mod:`boltfix.record`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from boltfix import bigrecord as BIG
from boltfix import containerd as CD
from boltfix import docker as DK
from boltfix import etcd as E
from boltfix import findings as F
from boltfix import k8s as K8S
from boltfix import raftboltdb as RB
from boltfix import record as R
from boltfix import secrets
from boltfix import structs as S
from boltfix import vault as VT
from boltfix.bigbytes import Span
from boltfix.browse import is_user_prefix, user_key_filter
from boltfix.errors import BoltError
from boltfix.etcdkeys import KEY, KEY_BUCKET, revision_bucket_guess
from boltfix.findings import Finding
from boltfix.leaves import Batch, Bucket, InlineRun, Leaves, clean_inline
from boltfix.navigate import open_path, top_level_names
from boltfix.reader import DB, leaf_elements
from boltfix.record import FREE, LIVE, ORPHAN
from boltfix.text import ENCODERS, name_text
from boltfix.unreached import C_FREE, C_ORPHAN, classify, leaf_pages
from boltfix.walk import Walker, self_id_ok

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
        """Add a line (str), or write a huge value's line (a BigLine) in pieces."""
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
        """Write what is gathered, and flush the stream."""
        if self.parts:
            data = "".join(self.parts).encode("utf-8", "surrogateescape")
            self.parts = []
            self.size = 0
            self.stream.write(data)
        self.stream.flush()


# ---------------------------------------------------------------- options
@dataclass
class DumpOptions:
    """What ``dump`` prints: the CLI's options."""

    bucket: Sequence[str] = ()  # names as typed (see decode_name)
    prefix: Optional[bytes] = None
    fmt: str = "jsonl"  # jsonl | text
    encoding: str = "auto"
    decode: str = "auto"  # auto | none | etcd | raft | containerd | vault | docker
    include: Sequence[str] = (LIVE,)
    limit: Optional[int] = None
    show_secrets: bool = False
    #: add the decoded Kubernetes object to each "k8s" member ("object")
    k8s_object: bool = False
    #: called with the number of pages walked so far (a progress bar)
    progress: Optional[Callable[[int], None]] = None


@dataclass
class DumpResult:
    """What a dump met: records per state, findings, notes, pages scanned."""

    records: dict = field(default_factory=lambda: {LIVE: 0, FREE: 0, ORPHAN: 0})
    findings: List[Finding] = field(default_factory=list)
    #: problems that are not walk findings (bucket not found, no meta, ...)
    notes: List[str] = field(default_factory=list)
    etcd: bool = False
    #: the file is a HashiCorp raft-boltdb store (its records decoded)
    raft: bool = False
    #: the file is containerd's metadata (records under v1 decoded)
    containerd: bool = False
    #: the file is Vault's FSM (data's kinds told, config decoded)
    vault: bool = False
    #: the file is Docker's volume store or libnetwork's local-kv.db
    docker: bool = False
    free_pages_scanned: int = 0
    orphan_pages_scanned: int = 0
    bucket_missing: bool = False
    limited: bool = False

    @property
    def errors(self) -> List[Finding]:
        """Findings that kept records out of the dump (findings.WALK_LOSS)."""
        return list(dict.fromkeys(f for f in self.findings if f.code in F.WALK_LOSS))

    @property
    def damaged(self) -> bool:
        """Some records could not be read (or the bucket asked for is missing)."""
        return bool(self.errors) or self.bucket_missing


class _Limit(Exception):
    pass


# ---------------------------------------------------------------- dumper
class Dumper:
    """One dump: its live records, then the free and orphan ones, as the options say."""

    def __init__(self, db: DB, out: Output, opts: DumpOptions):
        self.db = db
        self.out = out
        self.opts = opts
        self.result = DumpResult()
        self.enc = ENCODERS[opts.encoding]
        self.limit = opts.limit
        self.emitted = 0
        self.raft = opts.decode == "raft"
        self.containerd = opts.decode == "containerd"
        self.vault = opts.decode == "vault"
        self.docker = opts.decode == "docker"
        if opts.decode == "etcd":
            self.etcd = True
        elif opts.decode in ("none", "raft", "containerd", "vault", "docker"):
            self.etcd = False
        else:
            top = top_level_names(db)
            self.etcd = E.looks_like_etcd(top)
            self.raft = not self.etcd and RB.looks_like_raft(top)
            self.containerd = (not self.etcd and CD.looks_like_containerd(top)
                               and CD.recognise(db) is not None)
            self.vault = not self.etcd and VT.looks_like_vault(top)
            self.docker = (not self.etcd and DK.kind_of(top) is not None
                           and DK.recognise(db) is not None)
        self.result.etcd = self.etcd
        self.result.raft = self.raft
        self.result.containerd = self.containerd
        self.result.vault = self.vault
        self.result.docker = self.docker
        #: the applications whose records are the Python writer's: (module,
        #: member name, whether it adds its member); one that only masks
        #: keeps a containerd or Vault file's secrets hidden whatever
        #: --decode says
        self.apps = [(mod, label, True) for mod, label, on in
                     ((CD, "containerd", self.containerd), (VT, "vault", self.vault),
                      (DK, "docker", self.docker)) if on]
        #: a raft-boltdb store whose records are not decoded (--decode
        #: none, etcd, ...): its logs' Data is still masked
        self.raft_mask = False
        if not opts.show_secrets:
            top = top_level_names(db)
            self.raft_mask = not self.raft and RB.looks_like_raft(top)
            if not self.containerd and CD.looks_like_containerd(top) \
                    and CD.recognise(db) is not None:
                self.apps.append((CD, "containerd", False))
            if not self.vault and VT.looks_like_vault(top):
                self.apps.append((VT, "vault", False))
            if not self.docker and DK.kind_of(top) is not None and DK.recognise(db) is not None:
                self.apps.append((DK, "docker", False))

    def app_of(self, path):
        """The entry of :attr:`apps` whose records ``path``'s are, or None."""
        for app in self.apps:
            mod = app[0]
            if (mod is CD and path[:1] == (CD.V1,)) or \
                    (mod is VT and len(path) == 1 and path[0] in (VT.DATA, VT.CONFIG)) or \
                    (mod is DK and len(path) == 1 and bytes(path[0]) in DK.APPLICATIONS):
                return app
        return None

    # -- record rendering (the format itself is boltfix.record's)
    def _path_json(self, path) -> str:
        return R.path_json(path, self.enc)

    def _line(self, pathj: str, path, key, value, is_bucket, page, state,
              guess=None, etcd_bucket=None, raft_bucket=None, app=None) -> str:
        """One JSONL line, its value masked and decoded as the options say
        (``app``: an application's entry of :attr:`Dumper.apps`, or None)."""
        if raft_bucket is not None:
            value, redacted, d = self._raft(raft_bucket, key, value, is_bucket)
            return R.jsonl_line(self.enc, pathj, key, value, is_bucket, page, state, guess,
                                redacted, None, d)
        if app is not None:
            value, redacted, d = self._app(app, path, key, value, is_bucket)
            return R.jsonl_line(self.enc, pathj, key, value, is_bucket, page, state, guess,
                                redacted, None, d, label=app[1])
        if not is_bucket and len(value) >= BIG.BIG_VALUE:
            return self._big_line(pathj, path, key, value, page, state, guess, etcd_bucket)
        redacted = False
        if not is_bucket:
            value, redacted = secrets.masked_record(path, value, state == LIVE,
                                                    self.opts.show_secrets)
        d = None
        if etcd_bucket is not None:
            d = self._etcd(etcd_bucket, key, None if is_bucket else value)
        return R.jsonl_line(self.enc, pathj, key, value, is_bucket, page, state, guess,
                            redacted, d)

    def _big_line(self, pathj, path, key, value, page, state, guess, etcd_bucket):
        """:meth:`_line` of a huge value: the same line, its huge parts
        written in pieces (boltfix.bigrecord)."""
        src, redacted = secrets.big_masked(path, value, state == LIVE, self.opts.show_secrets)
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
        src, redacted = secrets.big_masked(path, value, state == LIVE, self.opts.show_secrets)
        bigs: list = []
        d = None if etcd_bucket is None else self._etcd(etcd_bucket, key, Span(src), bigs)
        if d is not None and '"k8s":' in d:
            line = self._k8s_text(head, key, d, redacted)
            if line is not None:
                return BIG.BigLine(line, bigs)
        vtxt = BIG.mark_json(bigs, BIG.text_big(src))
        return BIG.BigLine(R.text_kv_line(head, key, src, redacted, d, vtxt), bigs)

    def _raft(self, bucket: bytes, key, value, is_bucket: bool):
        """A raft-boltdb record: (its value, a log's ``Data`` masked unless
        --show-secrets; whether masked; the ``raft`` member as JSON or None)."""
        if is_bucket:
            return value, False, None
        raw = bytes(value)
        show = self.opts.show_secrets
        d = None
        try:
            # the decoding shows a log's Data only with --show-secrets
            if self.raft:
                d = RB.decode_record(bucket, bytes(key), raw, show)
        except Exception as exc:  # decode_record never raises on bytes; belt and braces
            d = {"error": f"internal decoder error: {type(exc).__name__}"}
        redacted = False
        if bucket == RB.LOGS and not show:
            raw, redacted = secrets.mask_raft_log(raw)
        if d is None:
            return raw, redacted, None
        if bucket == RB.LOGS:
            return raw, redacted, RB.log_json(d)
        return raw, redacted, json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    def _app(self, app, path, key, value, is_bucket: bool):
        """An application's record (containerd's, Vault's; ``app``: its
        entry of :attr:`apps`): (its value, what is secret masked unless
        --show-secrets; whether masked; the application's member as JSON)."""
        mod = app[0]
        raw = value if is_bucket else bytes(value)
        show = self.opts.show_secrets
        redacted = False
        if not is_bucket and not show:
            raw_masked, redacted = mod.mask(path, key, raw)
        else:
            raw_masked = raw
        if not app[2]:
            return raw_masked, redacted, None
        plain = None if is_bucket else raw
        as_json = getattr(mod, "decode_json", None)
        if as_json is not None:  # the same JSON, written without a dict per record
            return raw_masked, redacted, as_json(path, bytes(key), plain, show)
        d = mod.decode_record(path, bytes(key), plain, show)
        if d is None:
            return raw_masked, redacted, None
        return raw_masked, redacted, json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    def _etcd(self, bucket: bytes, key, value, bigs: Optional[list] = None) -> Optional[str]:
        """The ``etcd`` member as JSON; with ``bigs``, ``value`` is a huge
        value's Span and its huge parts are marks (boltfix.bigrecord.dumps)."""
        if value is not None and type(value) is not Span:
            value = bytes(value)
        try:
            # a key record's value was masked by secrets.masked_record already
            d = E.decode_record(bucket, bytes(key), value,
                                show_secrets=self.opts.show_secrets or bucket == KEY)
        except Exception as exc:  # decode_record never raises on bytes; belt and braces
            d = {"error": f"internal decoder error: {type(exc).__name__}"}
        if d is None:
            return None
        if self.opts.k8s_object and "k8s" in d and value is not None:
            # value is already masked where secret (secrets.masked_record)
            d["k8s"]["object"] = BIG.jsonable(K8S.decode_object(
                E.decode_key_value(value).get("value", b"")))
        if bigs is not None:
            return BIG.dumps(d, bigs)
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    def _text(self, path, key, value, is_bucket, page, state, guess=None,
              etcd_bucket=None, raft_bucket=None, app=None) -> str:
        """One ``--format text`` line."""
        head = R.text_head(path, state, page, guess)
        if app is not None:
            value, redacted, d = self._app(app, path, key, value, is_bucket)
            if is_bucket:
                return R.text_bucket_line(head, key, value, None)
            return R.text_kv_line(head, key, value, redacted, d, label=app[1])
        if raft_bucket is not None:
            value, redacted, d = self._raft(raft_bucket, key, value, is_bucket)
            if is_bucket:
                return R.text_bucket_line(head, key, value, None)
            return R.text_kv_line(head, key, value, redacted, d, label="raft")
        if is_bucket:
            d = self._etcd(etcd_bucket, key, None) if etcd_bucket is not None else None
            return R.text_bucket_line(head, key, value, d)
        if len(value) >= BIG.BIG_VALUE:
            return self._big_text(head, path, key, value, page, state, etcd_bucket)
        value, redacted = secrets.masked_record(path, value, state == LIVE, self.opts.show_secrets)
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
    def dump_unreached(self, state: str, pages: Sequence[int], classes: bytearray) -> None:
        """The records of the leaf pages among ``pages`` (sorted candidates
        of ``state``) whose elements still parse
        (:func:`boltfix.unreached.leaf_pages`)."""
        want = C_FREE if state == FREE else C_ORPHAN

        def skipped(pgid: int, exc: Exception) -> None:
            self.result.notes.append(f"{state} page {pgid} skipped: "
                                     f"{type(exc).__name__}: {exc}")

        for pgid, off, count, end in leaf_pages(self.db, pages, classes, want, skipped):
            try:
                self._emit_leaf(state, pgid, off, count, end)
            except _Limit:
                raise
            except Exception as exc:  # never let stale bytes stop the dump
                skipped(pgid, exc)

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
        for idx, eflags, key, value, problem in leaf_elements(buf, off, count, end):
            if problem:
                continue
            is_bucket = bool(eflags & S.BUCKET_LEAF_FLAG)
            guess = None if inline_in is None else (inline_in,)
            if guess is None and guessing and not is_bucket and revision_bucket_guess(key):
                guess = KEY_BUCKET
            eb = KEY if guess == KEY_BUCKET else None
            rb = None
            if guess is None and (self.raft or self.raft_mask) and not is_bucket and len(key) == 8 \
                    and RB.looks_like_log(value):
                guess, rb = RB.LOGS_BUCKET, RB.LOGS  # a raft log: its Data masked
            if text:
                self.out.write(self._text(None, key, value, is_bucket, pgid, state, guess, eb,
                                          rb))
            else:
                self.out.write(self._line('{"path":null', None, key, value, is_bucket, pgid,
                                          state, guess, eb, rb))
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
        """Dump what the options include; the result (records are on the output)."""
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
                        names = (KEY.decode(),)  # etcdctl's --prefix: etcd keys, in `key`
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
        #: raft-boltdb's ``logs`` or ``conf`` when the records are theirs
        self.top_raft = None
        #: an application's records (containerd's under ``v1``, Vault's data and config)
        self.app = None
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
        secret = (len(path) == 1 and path[0] in secrets.SECRET_BUCKETS
                  and not d.opts.show_secrets)
        # etcd's key bucket may hold Kubernetes Secrets: its records go
        # through emit()'s _line (masking) unless C vouches for them
        k8s_mask = path == KEY_BUCKET and not d.opts.show_secrets
        self.secret = secret or k8s_mask
        # the C writer takes plain buckets and etcd's key bucket (its
        # records' "etcd" member too; it hands back what may be
        # Kubernetes' or secret); the other etcd buckets and secrets are
        # written by emit()
        self.c_pieces = None
        self.c_mode = 1 if self.top_etcd is not None else (2 if k8s_mask else 0)
        if self.jsonl_c and not secret and self.top_etcd in (None, KEY) \
                and self.tainted is None:
            self.c_pieces = R.c_pieces(self.pathj, self.top_etcd is not None)
        self.top_raft = (path[0] if (d.raft or d.raft_mask) and len(path) == 1
                         and path[0] in (RB.LOGS, RB.CONF) else None)
        if self.top_raft is not None:
            # each record decoded (and a log's Data masked): the Python writer's
            self.secret = True
            self.c_pieces = None
        self.app = d.app_of(path)
        if self.app is not None:
            # an application's records decoded (and secrets masked): the Python writer's
            self.secret = True
            self.c_pieces = None

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
                and self.path == KEY_BUCKET:
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
        if self.tainted is not None or self.left is not None or self.app is not None \
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
                and self.path == KEY_BUCKET:
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
        # raft's records are its top-level buckets' own (not a sub-bucket's)
        rb = self.top_raft if len(self.path) == 1 else None
        if self.text:
            return d._text(self.path, key, value, is_bucket, page, state,
                           etcd_bucket=self.top_etcd, raft_bucket=rb, app=self.app)
        return d._line(self.pathj, self.path, key, value, is_bucket, page, state,
                       etcd_bucket=self.top_etcd, raft_bucket=rb, app=self.app)

    def _put(self, line) -> None:
        if type(line) is BIG.BigLine:  # a huge value's line: written in pieces
            self._write_pieces(line.pieces())
            return
        if self.hex:
            line = line.encode("utf-8", "surrogateescape")
        self.parts.append(line)
        self.size += len(line)



def dump(db: DB, opts: DumpOptions, stream=None) -> DumpResult:
    """Dump ``db`` to ``stream`` (default: stdout's byte buffer)."""
    return Dumper(db, Output(stream), opts).run()


