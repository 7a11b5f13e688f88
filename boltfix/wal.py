"""Reading etcd's write-ahead log (``member/wal/*.wal``) as etcd reads it.

The operations layer over :mod:`boltfix.raftlog`: files in, records,
entries and findings out.  Streaming: one record is in memory at a time
(a 64 MB segment is read a record at a time), and a record is read only
when its length fits in what is left of the file, so a length word that
claims 2**55 bytes allocates nothing (a finding says so).

What etcd does, and where (etcd's repo at v3.4.23 ``wal/``, v3.5.21
``server/wal/``, v3.6.14 and v3.7.1 ``server/storage/wal/``):

* **Names** (``util.go``): ``%016x-%016x.wal`` = sequence, then the raft
  index the segment starts after; other names are ignored (``*.tmp``
  silently).  ``selectWALFiles`` takes the newest segment whose index is
  <= the snapshot's, and ``isValidSeq`` requires the sequence numbers from
  there on to grow by one (a quirk: a first segment numbered 0 is never
  compared, so a gap right after segment 0 passes this check and is caught
  by the CRC chain instead).
* **Framing** (``decoder.go``/``encoder.go``): an 8-byte little-endian word,
  the low 56 bits the record's length, the top byte ``0x80 | pad`` when
  the data is padded to 8 bytes.  A zero word (or the file's end) ends a
  segment: preallocated space.  3.5+ refuses a length past the end of the
  file as ``io.ErrUnexpectedEOF`` (a torn tail when in the last segment);
  3.4 refuses records of 10 MB or more (``ErrMaxWALEntrySizeLimitExceeded``,
  never repaired).
* **CRC** (``decoder.go``, ``wal.go`` ``ReadAll``): CRC-32C (Castagnoli),
  rolling over the data of every record but ``crc`` records; a ``crc``
  record (type 4, the first record of each segment) carries the running
  value of the segment before, and must equal it (``ErrCRCMismatch``)
  unless the reader's value is still 0 (the first segment it reads).
* **Torn tail** (``decoder.isTornEntry``, ``repair.go``): in the last
  segment only, a record that fails to unmarshal or its CRC, and one of
  whose 512-byte sectors is all zeros, is a torn write: ``ReadAll`` returns
  ``io.ErrUnexpectedEOF``, and etcd's server (``storage.go`` ``readWAL``,
  3.6+ ``bootstrap.go`` ``openWALFromSnapshot``) calls ``wal.Repair``,
  which copies the segment to ``.broken`` and truncates it at the end of
  the last good record, then reads again.  Anything else (a CRC mismatch
  with no zero sector, in any segment, or in a segment that is not the
  last) is corruption: "failed to read WAL, cannot be repaired".
* **Entries** (``ReadAll``): an entry at or below the snapshot's index is
  skipped; one that leaves a gap is ``ErrSliceOutOfRange``; one at or below
  the last index read overwrites the tail from there (raft's log
  truncation, figure 7 of the raft paper).  Two metadata records that
  differ are ``ErrMetadataConflict``; an unknown record type is "unexpected
  block type".
"""

from __future__ import annotations

import bisect
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional

from boltfix import findings as F
from boltfix import raftlog as R
from boltfix.findings import ERROR, WARNING, Finding

FRAME_BYTES = 8
SECTOR = 512  # decoder.go minSectorSize
#: etcd 3.4's decoder refuses records this large (decoder.go)
MAX_RECORD_34 = 10 * 1024 * 1024
_NAME = re.compile(r"^([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16})\.wal$")
#: bytes read at once while streaming a segment
_CHUNK = 1 << 20


def parse_wal_name(name: str) -> Optional[tuple]:
    """``(seq, index)`` of a segment name, None when etcd ignores the file."""
    m = _NAME.match(name)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def wal_name(seq: int, index: int) -> str:
    """etcd's WAL segment file name (``wal.walName``)."""
    return f"{seq:016x}-{index:016x}.wal"


def frame_size(word: int) -> tuple:
    """A length word -> ``(data bytes, padding bytes)`` (decoder.go decodeFrameSize)."""
    rec = word & ((1 << 56) - 1)
    pad = (word >> 56) & 0x7 if word & (1 << 63) else 0
    return rec, pad


def torn(data: bytes, file_off: int) -> bool:
    """decoder.isTornEntry: some 512-byte sector of ``data`` (which starts at
    ``file_off`` in the file) is all zeros."""
    cur = 0
    n = len(data)
    while cur < n:
        chunk = min(SECTOR - (file_off % SECTOR), n - cur)
        if not any(data[cur:cur + chunk]):
            return True
        file_off += chunk
        cur += chunk
    return False


@dataclass
class Segment:
    """One WAL segment file: its name, sequence and first index."""
    name: str
    path: str
    seq: int
    index: int
    size: int = 0


@dataclass
class Record:
    """One record as read: where it is, what it is."""
    segment: Segment
    offset: int
    type: int
    crc: int
    data: bytes
    #: the entry's ordinal among entry records (entries only)
    ordinal: int = -1


def list_segments(wal_dir: str, report: Callable[[Finding], None]) -> List[Segment]:
    """The segments etcd would consider, sorted by name (``readWALNames``:
    ``fileutil.ReadDir`` sorts names)."""
    try:
        names = sorted(os.listdir(wal_dir))
    except OSError as exc:
        report(Finding(F.WAL_UNREADABLE, f"cannot list {wal_dir}: {exc.strerror}",
                       detail={"path": wal_dir}))
        return []
    out = []
    for name in names:
        parsed = parse_wal_name(name)
        if parsed is None:
            if not name.endswith(".tmp"):
                report(Finding(F.WAL_BAD_NAME, f"{name}: not a WAL segment name; etcd "
                               "ignores it", WARNING, detail={"segment": name}))
            continue
        path = os.path.join(wal_dir, name)
        try:
            st = os.stat(path)
        except OSError as exc:
            report(Finding(F.WAL_UNREADABLE, f"{name}: {exc.strerror}",
                           detail={"segment": name}))
            continue
        if not stat.S_ISREG(st.st_mode):
            report(Finding(F.WAL_UNREADABLE, f"{name}: not a regular file",
                           detail={"segment": name}))
            continue
        out.append(Segment(name, path, parsed[0], parsed[1], st.st_size))
    return out


def check_sequence(segments: List[Segment], report) -> bool:
    """``isValidSeq`` with its quirk, and the gap it misses reported too."""
    ok = True
    for a, b in zip(segments, segments[1:]):
        if b.seq != a.seq + 1:
            etcd_sees = a.seq != 0
            ok &= not etcd_sees
            report(Finding(F.WAL_SEQ_GAP,
                           f"WAL segments jump from sequence {a.seq} ({a.name}) to {b.seq} "
                           f"({b.name}): {b.seq - a.seq - 1 if b.seq > a.seq else 0} segment(s) "
                           "missing" + ("" if etcd_sees else
                                        " (etcd's isValidSeq skips a first segment numbered "
                                        "0; the CRC chain catches it)"),
                           detail={"after": a.name, "before": b.name}))
    return ok


class _Stream:
    """A segment read a piece at a time, never more than asked for."""

    def __init__(self, fh, size: int):
        self.fh = fh
        self.size = size
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        self.pos += len(data)
        return data


@dataclass
class WalRead:
    """What reading the WAL found: findings, and the facts etcd reads."""
    segments: List[Segment] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    metadata: Optional[dict] = None
    hard_state: Optional[dict] = None
    snapshots: List[dict] = field(default_factory=list)
    #: the final log (after raft's overwrites): runs [start, end), ordinal
    runs: List[list] = field(default_factory=list)
    records: int = 0
    entries_read: int = 0
    overwritten: int = 0
    #: where etcd's read stops: None (end of the WAL), "torn" (the last
    #: segment's torn tail: etcd repairs and starts), "error" (refuses)
    stop: Optional[str] = None
    stop_at: Optional[dict] = None

    @property
    def first_index(self) -> Optional[int]:
        """The first raft index the readable entries hold."""
        return self.runs[0][0] if self.runs else None

    @property
    def last_index(self) -> Optional[int]:
        """The last raft index the readable entries hold."""
        return self.runs[-1][1] - 1 if self.runs else None

    def fatal(self) -> List[Finding]:
        """Findings that would stop etcd reading this WAL."""
        return [f for f in self.findings if f.severity == ERROR]


class WalReader:
    """Reads segments in order with etcd's CRC chain and torn-tail rules.

    ``records()`` yields every valid :class:`Record` (a ``crc`` record
    included) and fills :attr:`result`; reading goes on past what stops etcd
    only where the framing still holds (a CRC mismatch mid-file: the
    records after it are still shown, marked by the finding), so a dump
    shows what the file holds.  ``start_after`` is the snapshot index:
    entries at or below it are skipped, as ``ReadAll`` skips them.
    """

    def __init__(self, segments: List[Segment], *, start_after: int = 0):
        self.segments = segments
        self.start_after = start_after
        self.result = WalRead(segments=list(segments))
        self._crc = 0
        self._ordinal = 0
        self._etcd_stopped = False

    def report(self, f: Finding) -> None:
        """Keep a finding of the read."""
        self.result.findings.append(f)

    def _stop(self, kind: str, seg: Segment, off: int) -> None:
        if not self._etcd_stopped:
            self._etcd_stopped = True
            self.result.stop = kind
            self.result.stop_at = {"segment": seg.name, "offset": off}

    def records(self) -> Iterator[Record]:
        """The WAL's records in order across segments, each frame's CRC
        checked (crc32c chained as etcd's ``wal/decoder.go``)."""
        from crc32c import crc32c

        n = len(self.segments)
        for i, seg in enumerate(self.segments):
            last = i == n - 1
            try:
                fh = open(seg.path, "rb")
            except OSError as exc:
                self.report(Finding(F.WAL_UNREADABLE, f"{seg.name}: {exc.strerror}",
                                    detail={"segment": seg.name}))
                self._stop("error", seg, 0)
                return
            with fh:
                try:
                    size = os.fstat(fh.fileno()).st_size
                    yield from self._segment(seg, _Stream(fh, size), last, crc32c)
                except OSError as exc:
                    self.report(Finding(F.WAL_UNREADABLE, f"{seg.name}: {exc.strerror}",
                                        detail={"segment": seg.name}))
                    self._stop("error", seg, 0)
                    return

    def _segment(self, seg: Segment, s: _Stream, last: bool, crc32c) -> Iterator[Record]:
        while True:
            off = s.pos
            word_b = s.read(FRAME_BYTES)
            if not word_b:
                return  # end of file
            if len(word_b) < FRAME_BYTES:
                self._short(seg, off, last, f"{len(word_b)} byte(s) of a length word")
                return
            word = int.from_bytes(word_b, "little")
            if word == 0:
                self._after_zero(seg, s, off, last)
                return
            rec_n, pad = frame_size(word)
            left = s.size - off - FRAME_BYTES - pad
            if rec_n > left:
                self._short(seg, off, last, f"a length word claiming {rec_n:,} bytes "
                            f"(+{pad} padding) where {max(left, 0):,} are left",
                            code=F.WAL_LENGTH_PAST_END)
                return
            if rec_n >= MAX_RECORD_34 - pad:
                self.report(Finding(
                    F.WAL_RECORD_TOO_LARGE,
                    f"{seg.name} at {off}: a record of {rec_n:,} bytes: etcd 3.4 refuses "
                    "records of 10 MB or more (ErrMaxWALEntrySizeLimitExceeded); 3.5+ reads it",
                    WARNING, detail={"segment": seg.name, "offset": off, "bytes": rec_n}))
            data = s.read(rec_n + pad)
            if len(data) < rec_n + pad:  # the file shrank while read
                self._short(seg, off, last, "a record cut off by the end of the file")
                return
            body = data[:rec_n]
            try:
                rec = R.decode_record(body)
            except R.ProtoError as exc:
                if self._bad(seg, off, last, data, f"record does not unmarshal: {exc}",
                             F.WAL_BAD_RECORD):
                    return
                continue
            if rec["type"] == R.CRC:
                if self._crc != 0 and rec["crc"] != self._crc:
                    self.report(Finding(
                        F.WAL_CRC_CHAIN,
                        f"{seg.name} at {off}: the crc record carries {rec['crc']:#010x} but "
                        f"the segments before end at {self._crc:#010x}: a segment is missing "
                        "or from another WAL (etcd: ErrCRCMismatch)",
                        detail={"segment": seg.name, "offset": off}))
                    self._stop("error", seg, off)
                self._crc = rec["crc"]
            else:
                self._crc = crc32c(rec["data"], self._crc)
                if rec["crc"] != self._crc:
                    if self._bad(seg, off, last, data,
                                 f"CRC-32C mismatch (record says {rec['crc']:#010x}, data "
                                 f"gives {self._crc:#010x})", F.WAL_CRC_MISMATCH):
                        return
                    # the chain goes on from the record's own value; the
                    # record itself is not trusted (not shown, not decoded)
                    self._crc = rec["crc"]
                    continue
            if rec["type"] not in R.RECORD_TYPES:
                self.report(Finding(F.WAL_UNKNOWN_RECORD_TYPE,
                                    f"{seg.name} at {off}: record type {rec['type']} "
                                    "(etcd: unexpected block type)",
                                    detail={"segment": seg.name, "offset": off}))
                self._stop("error", seg, off)
                continue
            r = Record(seg, off, rec["type"], rec["crc"], rec["data"])
            self.result.records += 1
            if self._take(r):
                yield r

    # -- what the records say
    def _take(self, r: Record) -> bool:
        res = self.result
        if r.type == R.ENTRY:
            try:
                e = R.decode_entry(r.data)
            except R.ProtoError as exc:
                self.report(Finding(F.WAL_BAD_ENTRY, f"{r.segment.name} at {r.offset}: entry "
                                    f"does not unmarshal as raftpb.Entry: {exc} (etcd panics)",
                                    detail={"segment": r.segment.name, "offset": r.offset}))
                self._stop("error", r.segment, r.offset)
                return False
            r.ordinal = self._ordinal
            self._ordinal += 1
            res.entries_read += 1
            self._place(e["index"], r)
        elif r.type == R.STATE:
            hs = self._payload(r, R.decode_hard_state, "state")
            if hs is not None:
                res.hard_state = hs
        elif r.type == R.METADATA:
            md = self._payload(r, R.decode_metadata, "metadata")
            if md is None:
                return True
            if res.metadata is not None and md != {k: res.metadata[k] for k in md}:
                self.report(Finding(
                    F.WAL_METADATA_CONFLICT,
                    f"{r.segment.name} at {r.offset}: metadata (member {md['node_id']:x}, "
                    f"cluster {md['cluster_id']:x}) differs from the first (member "
                    f"{res.metadata['node_id']:x}, cluster {res.metadata['cluster_id']:x}): "
                    "segments of two WALs (etcd: ErrMetadataConflict)",
                    detail={"segment": r.segment.name, "offset": r.offset}))
                self._stop("error", r.segment, r.offset)
            elif res.metadata is None:
                res.metadata = dict(md, segment=r.segment.name)
        elif r.type == R.SNAPSHOT:
            snap = self._payload(r, R.decode_wal_snapshot, "snapshot")
            if snap is None:
                return True
            snap["segment"] = r.segment.name
            res.snapshots.append(snap)
        return True

    def _payload(self, r: Record, decode, what: str):
        """A state/metadata/snapshot record decoded, or None (reported:
        etcd's MustUnmarshal panics on it)."""
        try:
            return decode(r.data)
        except R.ProtoError as exc:
            self._bad_payload(r, what, exc)
            return None

    def _bad_payload(self, r: Record, what: str, exc) -> None:
        self.report(Finding(F.WAL_BAD_ENTRY, f"{r.segment.name} at {r.offset}: {what} record "
                            f"does not unmarshal: {exc} (etcd panics)",
                            detail={"segment": r.segment.name, "offset": r.offset}))
        self._stop("error", r.segment, r.offset)

    def _place(self, index: int, r: Record) -> None:
        """ReadAll's ``ents = append(ents[:up], e)``, as runs of the final log."""
        if index <= self.start_after:
            return
        runs = self.result.runs
        if not runs:
            if index != self.start_after + 1 and self.start_after:
                self._gap(index, self.start_after, r)
            runs.append([index, index + 1, r.ordinal])
            return
        end = runs[-1][1]
        if index == end:
            runs[-1][1] += 1
            return
        if index > end:
            self._gap(index, end - 1, r)
            runs.append([index, index + 1, r.ordinal])
            return
        # an overwrite: raft truncated its log at ``index``
        dropped = end - index
        self.result.overwritten += dropped
        while runs and runs[-1][0] >= index:
            runs.pop()
        if runs:
            runs[-1][1] = index
        runs.append([index, index + 1, r.ordinal])

    def _gap(self, index: int, last: int, r: Record) -> None:
        self.report(Finding(F.WAL_INDEX_GAP,
                            f"{r.segment.name} at {r.offset}: entry {index} follows entry "
                            f"{last}: entries {last + 1}..{index - 1} are missing (etcd: "
                            "ErrSliceOutOfRange, failed to read WAL)",
                            detail={"segment": r.segment.name, "offset": r.offset,
                                    "missing": [last + 1, index - 1]}))
        self._stop("error", r.segment, r.offset)

    # -- the ends of segments
    def _bad(self, seg: Segment, off: int, last: bool, data: bytes, why: str,
             code: str) -> bool:
        """A record that fails: torn (last segment, a zero sector: etcd
        repairs, the read ends) or corrupt (reported; the read goes on)."""
        if last and torn(data, off + FRAME_BYTES):
            self._torn(seg, off, why + "; a 512-byte sector of it is all zeros")
            return True
        where = "in the middle of" if not last else "before the end of"
        self.report(Finding(code, f"{seg.name} at {off}: {why}, {where} the WAL and not a "
                            "torn write (no zero sector): etcd refuses to start (failed to "
                            "read WAL, cannot be repaired)",
                            detail={"segment": seg.name, "offset": off}))
        self._stop("error", seg, off)
        return False

    def _short(self, seg: Segment, off: int, last: bool, what: str,
               code: str = F.WAL_UNEXPECTED_END) -> None:
        if last:
            self._torn(seg, off, f"the last segment ends in {what}")
            return
        self.report(Finding(code, f"{seg.name} at {off}: {what}, in a segment that is not the "
                            "last: etcd refuses to start (unexpected EOF, cannot be repaired)",
                            detail={"segment": seg.name, "offset": off}))
        self._stop("error", seg, off)

    def _torn(self, seg: Segment, off: int, why: str) -> None:
        self.report(Finding(F.WAL_TORN_TAIL,
                            f"{seg.name} at {off}: torn tail ({why}); etcd's wal.Repair keeps "
                            f"a .broken copy and truncates the segment at {off}: the records "
                            "from there on are dropped and etcd starts",
                            WARNING, detail={"segment": seg.name, "offset": off}))
        self._stop("torn", seg, off)

    def _after_zero(self, seg: Segment, s: _Stream, off: int, last: bool) -> None:
        """Past a zero length word: preallocated zeros, or a torn write's
        leftovers (etcd zeroes them in the last segment: ZeroToEnd)."""
        nonzero = None
        pos = off + FRAME_BYTES
        while True:
            chunk = s.read(_CHUNK)
            if not chunk:
                break
            stripped = chunk.lstrip(b"\0")
            if stripped:
                nonzero = pos + len(chunk) - len(stripped)
                break
            pos += len(chunk)
        if nonzero is None:
            return
        if last:
            self.report(Finding(F.WAL_DATA_AFTER_END,
                                f"{seg.name}: non-zero bytes at {nonzero} after the records end "
                                f"at {off}: leftovers of a torn write; etcd zeroes them when it "
                                "opens the WAL", WARNING,
                                detail={"segment": seg.name, "offset": off, "nonzero": nonzero}))
        else:
            self.report(Finding(F.WAL_DATA_AFTER_END,
                                f"{seg.name}: a zero length word at {off} ends the segment, but "
                                f"non-zero bytes follow at {nonzero}: etcd goes on with the "
                                "next segment and never reads them (the CRC chain then decides)",
                                WARNING,
                                detail={"segment": seg.name, "offset": off, "nonzero": nonzero}))


def final_ordinals(runs: List[list]):
    """A test for "is this entry record in the final log": from
    :attr:`WalRead.runs`, ``keep(index, ordinal)``."""
    starts = [r[2] for r in runs]

    def keep(index: int, ordinal: int) -> bool:
        i = bisect.bisect_right(starts, ordinal) - 1
        return i >= 0 and runs[i][0] <= index < runs[i][1]

    return keep


def read_wal(wal_dir: str, *, start_after: int = 0) -> WalRead:
    """First pass over a WAL directory: every finding and the facts etcd
    reads (metadata, HardState, snapshot records, the final log's runs);
    :func:`iter_entries` then streams the entries."""
    findings: List[Finding] = []
    segments = list_segments(wal_dir, findings.append)
    reader = WalReader(segments, start_after=start_after)
    reader.result.findings[:0] = findings
    if not segments and not any(f.code == F.WAL_UNREADABLE for f in findings):
        reader.report(Finding(F.WAL_NO_SEGMENTS, f"{wal_dir}: no WAL segment "
                              "(%016x-%016x.wal): etcd: ErrFileNotFound",
                              detail={"path": wal_dir}))
    check_sequence(segments, reader.report)
    for _ in reader.records():
        pass
    return reader.result


def iter_entries(result: WalRead, *, start_after: int = 0) -> Iterator[tuple]:
    """Second pass: the final log's entries in order, as ``(Record, entry
    dict)`` (the entry's ``data`` still raw bytes)."""
    keep = final_ordinals(result.runs)
    reader = WalReader(result.segments, start_after=start_after)
    for r in reader.records():
        if r.type != R.ENTRY:
            continue
        e = R.decode_entry(r.data)
        if keep(e["index"], r.ordinal):
            yield r, e
