"""HashiCorp raft-boltdb stores (the ``raft.db`` of Consul, Nomad and Vault),
read in their own terms: the content layer of issue 23.

A file is raft-boltdb's by its bucket layout, never by its name
(:func:`looks_like_raft`).  The layout, read in the sources:

* ``github.com/hashicorp/raft-boltdb`` v2.3.1, ``v2/bolt_store.go``: two
  top-level buckets, ``logs`` (``dbLogs``) and ``conf`` (``dbConf``), made
  by ``initialize``.  ``StoreLogs`` puts each log under
  ``uint64ToBytes(log.Index)`` (``v2/util.go``: 8 bytes, big-endian) with the
  value ``encodeMsgPack(log)``; ``DeleteRange(min, max)`` deletes keys
  ``min..max``; ``Set``/``SetUint64`` put ``conf`` values, a uint64 as 8
  big-endian bytes.
* ``v2/util.go``: ``encodeMsgPack`` encodes with
  ``github.com/hashicorp/go-msgpack/v2/codec``'s ``MsgpackHandle`` (a
  struct as a map of its field names; ``[]byte`` as a msgpack str, the
  handle's WriteExt being off; ``time.Time`` by its ``MarshalBinary`` bytes
  while ``TimeNotBuiltin``, else the msgpack timestamp extension -1).
* ``github.com/hashicorp/raft`` v1.7.2, ``log.go``: ``type Log struct {Index
  uint64; Term uint64; Type LogType; Data []byte; Extensions []byte;
  AppendedAt time.Time}`` and ``LogType`` (uint8): 0 LogCommand, 1 LogNoop,
  2 LogAddPeerDeprecated, 3 LogRemovePeerDeprecated, 4 LogBarrier,
  5 LogConfiguration.
* The ``conf`` keys raft itself stores (raft v1.7.2 ``raft.go``:
  ``keyCurrentTerm``, ``keyLastVoteTerm``, ``keyLastVoteCand``):
  ``CurrentTerm`` and ``LastVoteTerm`` (uint64), ``LastVoteCand`` (the
  candidate's address or id, bytes).

Values are decoded with the ``msgpack`` package, bounded by the value's own
length, and nothing here raises on hostile bytes: a value that does not
decode gives ``{"error": ...}``.  A log's ``Data`` may hold secrets (Vault's
storage, Consul's ACL tokens): unless ``show_secrets`` only its length and
msgpack type are shown, and :func:`data_range` says which bytes of the raw
value ``dump`` masks (:func:`boltfix.secrets.mask_raft_log`).
"""

from __future__ import annotations

import datetime
import json
import struct
from collections import Counter
from typing import Iterable, Optional, Tuple

import msgpack

from boltfix import findings as F
from boltfix.findings import WARNING, Finding
from boltfix.navigate import top_bucket_batches
from boltfix.reader import DB
from boltfix.text import REDACTED, name_text

__all__ = [
    "APPLICATION", "LOGS", "CONF", "LOGS_BUCKET", "CONF_BUCKET", "LOG_TYPES",
    "looks_like_raft", "decode_index", "decode_log", "data_range", "decode_conf",
    "decode_record", "log_json", "RaftFacts", "scan", "check_findings", "index_mismatch",
]

#: the name ``inspect`` gives the application
APPLICATION = "raft-boltdb"
LOGS = b"logs"
CONF = b"conf"
LOGS_BUCKET = (LOGS,)
CONF_BUCKET = (CONF,)
#: ``conf`` keys holding a big-endian uint64
CONF_UINT64 = (b"CurrentTerm", b"LastVoteTerm")
CONF_CANDIDATE = b"LastVoteCand"
#: raft's LogType names (log.go)
LOG_TYPES = {0: "LogCommand", 1: "LogNoop", 2: "LogAddPeerDeprecated",
             3: "LogRemovePeerDeprecated", 4: "LogBarrier", 5: "LogConfiguration"}
#: gaps kept by name in :class:`RaftFacts` (all are counted)
GAPS_SHOWN = 20
#: the longest error text kept from msgpack
_ERROR_TEXT = 200


def _name_set(names: Iterable) -> set:
    out = set()
    for n in names:
        if isinstance(n, str):
            out.add(n.encode("utf-8", "surrogateescape"))
        else:
            out.add(bytes(n))
    return out


def looks_like_raft(top_level_bucket_names: Iterable) -> bool:
    """True when the root holds raft-boltdb's ``logs`` and ``conf`` buckets
    and nothing else (``initialize`` makes exactly these two)."""
    names = _name_set(top_level_bucket_names)
    return names == {LOGS, CONF}


def decode_index(key) -> Optional[int]:
    """A ``logs`` key as its index (8 bytes, big-endian), or None."""
    return int.from_bytes(key, "big") if len(key) == 8 else None


def index_mismatch(key, value) -> Optional[str]:
    """Why a ``logs`` record is not where raft-boltdb put it, or None.

    ``StoreLogs`` puts each log under ``uint64ToBytes(log.Index)``: a key
    that is not 8 bytes, or a value whose ``Index`` decodes to another
    index, is in the wrong place (a stale or misdirected write).  A value
    that is no raft.Log proves nothing here (``raft-log-undecodable``)."""
    if value is None:
        return None
    if len(key) != 8:
        return f"a logs key of {len(key)} bytes is no uint64ToBytes(Index)"
    try:
        log = msgpack.unpackb(bytes(value), raw=True, strict_map_key=False)
    except Exception:
        return None
    return _mismatch(key, log)


def _mismatch(key, log) -> Optional[str]:
    """``log`` (a value unpacked) not under its own Index: why, else None.
    Only a value that is a raft.Log (Index, Term and Type unsigned
    integers) proves a place; anything else is ``raft-log-undecodable``."""
    if not isinstance(log, dict):
        return None
    index = _int(log.get(b"Index"))
    if index is None or _int(log.get(b"Term")) is None or _int(log.get(b"Type")) is None:
        return None
    want = int.from_bytes(key, "big")
    if index != want:
        return f"its Index is {index}, its key says {want}"
    return None


# ---------------------------------------------------------------- one log
#: the last value :func:`_unpack_map` read, and what it read: dump decodes
#: a log and then masks its Data, one value twice in a row (the value is
#: kept alive here, so its identity cannot be reused)
_LAST: list = [None, None]


def _unpack_map(value: bytes):
    """The top-level msgpack map of ``value``: ``[(key, object, start, end)]``
    (offsets of each value's encoding), bounded by ``len(value)``.  Raises
    on anything that is not exactly one map."""
    if value is _LAST[0]:
        return _LAST[1]
    out = _fast_map(value)
    if out is None:
        out = _general_map(value)
    _LAST[0], _LAST[1] = value, out
    return out


#: msgpack heads of a byte or text string whose length follows: its bytes
_LENGTH_HEADS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}


def _fast_map(value: bytes):
    """:func:`_unpack_map` for the shape raft-boltdb's go-msgpack writes
    (a fixmap of fixstr keys; unsigned integers, byte or text strings, nil),
    read without building an Unpacker, which costs more than the log; None
    for any other shape (the general reader decides, and raises where it
    must).  Same results as msgpack with ``raw=True``."""
    n = len(value)
    if not n or not 0x80 <= value[0] <= 0x8F:
        return None
    pos, out = 1, []
    for _ in range(value[0] & 0x0F):
        if pos >= n or not 0xA0 <= value[pos] <= 0xBF:
            return None
        end = pos + 1 + (value[pos] & 0x1F)
        key = value[pos + 1:end]
        if end >= n:
            return None
        start, b = end, value[end]
        if b <= 0x7F:
            obj, pos = b, end + 1
        elif 0xCC <= b <= 0xCF:
            pos = end + 1 + (1 << (b - 0xCC))
            obj = int.from_bytes(value[end + 1:pos], "big")
        elif 0xA0 <= b <= 0xBF:
            pos = end + 1 + (b & 0x1F)
            obj = value[end + 1:pos]
        elif b in _LENGTH_HEADS:
            head = end + 1 + _LENGTH_HEADS[b]
            if head > n:
                return None
            pos = head + int.from_bytes(value[end + 1:head], "big")
            obj = value[head:pos]
        elif b == 0xC0:
            obj, pos = None, end + 1
        else:
            return None
        if pos > n:
            return None
        out.append((key, obj, start, pos))
    return out if pos == n else None


def _general_map(value: bytes):
    """:func:`_unpack_map` by msgpack's Unpacker, for every shape."""
    unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max(len(value), 1),
                                strict_map_key=False)
    unpacker.feed(value)
    n = unpacker.read_map_header()
    if n > len(value):
        raise ValueError(f"map of {n} entries in {len(value)} bytes")
    out = []
    for _ in range(n):
        key = unpacker.unpack()
        start = unpacker.tell()
        obj = unpacker.unpack()
        out.append((key, obj, start, unpacker.tell()))
    if unpacker.tell() != len(value):
        raise ValueError(f"{len(value) - unpacker.tell()} bytes after the map")
    return out


def _kind(value: bytes, start: int) -> str:
    """The msgpack family of the object encoded at ``value[start]``."""
    b = value[start]
    if b == 0xC0:
        return "nil"
    if 0xA0 <= b <= 0xBF or 0xD9 <= b <= 0xDB:
        return "str"
    if 0xC4 <= b <= 0xC6:
        return "bin"
    return "other"


#: the last AppendedAt second :func:`_go_time` formatted, and its text
_LAST_SECOND: list = [None, ""]


#: days since 1 January of year 1 -> that date's text (containerd's times
#: are many seconds of a few days); emptied when it holds this many
_DATES: dict = {}
_DATES_KEPT = 4096


def _go_date(days: int) -> str:
    """The date ``days`` after 1 January of year 1 (UTC, proleptic
    Gregorian, as Go's), ``Y-MM-DD`` with the year unpadded as glibc's
    strftime %Y writes it; OverflowError outside years 1 to 9999."""
    got = _DATES.get(days)
    if got is None:
        when = datetime.date(1, 1, 1) + datetime.timedelta(days=days)
        got = f"{when.year}-{when.month:02d}-{when.day:02d}"
        if len(_DATES) >= _DATES_KEPT:
            _DATES.clear()
        _DATES[days] = got
    return got


def _go_time(obj) -> Optional[str]:
    """An ``AppendedAt`` as ISO-8601 UTC: Go's ``MarshalBinary`` bytes
    (version 1 or 2: seconds since year 1, nanoseconds, zone offset) or a
    msgpack timestamp; None when it is neither."""
    try:
        if isinstance(obj, msgpack.Timestamp):
            return obj.to_datetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if isinstance(obj, bytes) and len(obj) in (15, 16) and obj[0] in (1, 2):
            sec, nsec = struct.unpack_from(">qi", obj, 1)
            if not 0 <= nsec < 10**9:
                return None
            if sec != _LAST_SECOND[0]:  # logs come in bursts: one second, many logs
                days, rest = divmod(sec, 86400)
                hour, rest = divmod(rest, 3600)
                _LAST_SECOND[:] = [sec, f"{_go_date(days)}T{hour:02d}:{rest // 60:02d}:"
                                        f"{rest % 60:02d}"]
            return f"{_LAST_SECOND[1]}.{nsec:09d}Z"
    except (OverflowError, ValueError, struct.error):
        return None
    return None


#: a Go time as ISO-8601 UTC (containerd's timestamps too)
go_time = _go_time


def _int(obj) -> Optional[int]:
    return obj if isinstance(obj, int) and not isinstance(obj, bool) and obj >= 0 else None


def _bytes_member(value: bytes, obj, start: int, show: bool) -> dict:
    """``Data`` or ``Extensions``: its length and msgpack type, and, shown,
    its bytes by the text-or-hex rule."""
    kind = _kind(value, start)
    if kind == "nil":
        return {"type": "nil", "length": 0}
    if not isinstance(obj, bytes):
        return {"type": kind, "error": "not a byte string"}
    out = {"type": kind, "length": len(obj)}
    out["value"] = name_text(obj) if show else REDACTED
    return out


_ORDER = ("index", "term", "type", "type_name", "data", "extensions", "appended_at",
          "unknown_fields")


def decode_log(value, key=None, show_secrets: bool = False) -> dict:
    """A ``logs`` value (a msgpack ``raft.Log``) as JSON-ready data:
    ``index``, ``term``, ``type``, ``type_name``, ``data`` (length, msgpack
    type, the bytes only with ``show_secrets``), ``extensions``,
    ``appended_at``; ``key_index`` and ``index_matches_key`` when ``key`` is
    given.  ``{"error": ...}`` when it does not decode; never raises."""
    try:
        return _decode_log(bytes(value), key, show_secrets)
    except Exception as exc:  # msgpack's own errors, and any other: never raise
        return {"error": f"msgpack: {type(exc).__name__}: {str(exc)[:_ERROR_TEXT]}"}


def _decode_log(value: bytes, key, show: bool) -> dict:
    fields = _unpack_map(value)
    out: dict = {}
    unknown = []
    for name, obj, start, _end in fields:
        if name == b"Index":
            out["index"] = _int(obj)
        elif name == b"Term":
            out["term"] = _int(obj)
        elif name == b"Type":
            t = _int(obj)
            out["type"] = t
            out["type_name"] = LOG_TYPES.get(t, str(t)) if t is not None else None
        elif name == b"Data":
            out["data"] = _bytes_member(value, obj, start, show)
        elif name == b"Extensions":
            out["extensions"] = _bytes_member(value, obj, start, True)
        elif name == b"AppendedAt":
            out["appended_at"] = _go_time(obj)
        else:
            unknown.append(name_text(name) if isinstance(name, bytes) else repr(name)[:80])
    if unknown:
        out["unknown_fields"] = unknown[:20]
    # raft's order (log.go), not the encoding's (go-msgpack writes the
    # fields sorted by name, AppendedAt first; a hostile map, any order)
    out = {k: out[k] for k in _ORDER if k in out}
    if "index" not in out or "term" not in out or "type" not in out:
        return {"error": "not a raft.Log (no Index, Term or Type)", **out}
    if out["index"] is None or out["term"] is None or out["type"] is None:
        return {"error": "Index, Term or Type is not an unsigned integer", **out}
    if key is not None:
        ki = decode_index(key)
        out["key_index"] = ki
        out["index_matches_key"] = ki == out["index"]
    return out


#: the members of a decoded log :func:`log_json` writes itself, in order,
#: with how: ``int`` (an int or null), ``str`` (a known-safe text or null)
_PLAIN_LOG = (("index", "int"), ("term", "int"), ("type", "int"), ("type_name", "str"),
              ("data", "bytes"), ("extensions", "bytes"), ("appended_at", "str"),
              ("key_index", "int"), ("index_matches_key", "bool"))
_SAFE_TEXT = frozenset(LOG_TYPES.values()) | {REDACTED}


def log_json(d: dict) -> str:
    """``json.dumps(d)`` (compact, ``ensure_ascii=False``) of a decoded log,
    written directly when every member is one :func:`decode_log` makes from
    a clean log (numbers, its own names, a masked or empty Data, a time):
    the JSON module costs more than the decoding.  Anything else goes
    through ``json.dumps``, which the tests hold this to."""
    parts = []
    for name, how in _PLAIN_LOG:
        if name not in d:
            continue
        v = d[name]
        if how == "int" and (v is None or type(v) is int):
            text = "null" if v is None else str(v)
        elif how == "bool" and type(v) is bool:
            text = "true" if v else "false"
        elif how == "str" and (v is None or v in _SAFE_TEXT or _is_time(v)):
            text = "null" if v is None else f'"{v}"'
        elif how == "bytes" and _plain_bytes(v):
            text = (f'{{"type":"{v["type"]}","length":{v["length"]}'
                    + (f',"value":"{REDACTED}"}}' if "value" in v else "}"))
        else:
            return json.dumps(d, ensure_ascii=False, separators=(",", ":"))
        parts.append(f'"{name}":{text}')
    if len(parts) != len(d):
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))
    return "{" + ",".join(parts) + "}"


def _is_time(v) -> bool:
    """A text :func:`_go_time` made: digits, ``-``, ``:``, ``.``, ``T``, ``Z``."""
    return (type(v) is str and v.isascii() and v.isprintable() and '"' not in v
            and "\\" not in v)


def _plain_bytes(v) -> bool:
    """A ``Data``/``Extensions`` member that is masked, or nil: exactly
    what :func:`_bytes_member` makes of them."""
    if type(v) is not dict or type(v.get("length")) is not int:
        return False
    if len(v) == 3:
        return v.get("value") == REDACTED and v.get("type") in ("str", "bin")
    return len(v) == 2 and v.get("type") == "nil"


def data_range(value) -> Optional[Tuple[int, int]]:
    """The byte range of a log's ``Data`` payload in its raw value (what is
    masked), ``(0, 0)`` when it has none, None when the value does not
    decode as a raft.Log (mask it whole)."""
    try:
        raw = bytes(value)
        for name, obj, _start, end in _unpack_map(raw):
            if name == b"Data":
                return (end - len(obj), end) if isinstance(obj, bytes) else (0, 0)
        return (0, 0)
    except Exception:
        return None


def looks_like_log(value) -> bool:
    """Does ``value`` decode as a raft.Log (a free or orphan record's test)?"""
    if len(value) < 16 or not (0x80 <= value[0] <= 0x8F or value[0] in (0xDE, 0xDF)):
        return False
    return "error" not in decode_log(value)


# ---------------------------------------------------------------- conf
def decode_conf(key, value) -> dict:
    """A ``conf`` record: ``CurrentTerm``/``LastVoteTerm`` as integers,
    ``LastVoteCand`` as text (or hex), anything else as its bytes."""
    key, value = bytes(key), bytes(value)
    name = name_text(key)
    if key in CONF_UINT64:
        if len(value) != 8:
            return {"key": name, "error": f"{len(value)} bytes, not a uint64",
                    "hex": value[:64].hex()}
        return {"key": name, "value": int.from_bytes(value, "big")}
    return {"key": name, "value": name_text(value)}


def decode_record(bucket: bytes, key, value, show_secrets: bool = False) -> Optional[dict]:
    """The ``raft`` member of a dump line: a ``logs`` or ``conf`` record
    decoded, None for a bucket entry or another bucket."""
    if value is None:
        return None
    if bucket == LOGS:
        return decode_log(value, key, show_secrets)
    if bucket == CONF:
        return decode_conf(key, value)
    return None


# ---------------------------------------------------------------- the whole store
class RaftFacts:
    """Facts about a raft-boltdb store, one record at a time: bounded memory
    (counters, the first :data:`GAPS_SHOWN` gaps).  ``report``, when given,
    gets the findings (gaps, terms that fall, logs that do not decode)."""

    def __init__(self, report=None):
        self.report = report
        self.count = 0
        self.first = None
        self.last = None
        self.prev_term = None
        self.min_term = None
        self.max_term = None
        self.types: Counter = Counter()
        self.gaps = []
        self.gap_count = 0
        self.missing = 0
        self.term_decreases = 0
        self.undecodable = 0
        self.index_mismatches = 0
        self.conf = {}

    def _find(self, code: str, message: str, page: int, detail: dict) -> None:
        if self.report is not None:
            self.report(Finding(code, message, WARNING, page, (), LOGS_BUCKET, detail))

    def see_log(self, key, value, page: int = 0) -> None:
        """One ``logs`` record, in key order."""
        index = decode_index(key)
        if index is None:
            self.undecodable += 1
            self.index_mismatches += 1
            self._find(F.RAFT_LOG_INDEX_MISMATCH, f"logs key of {len(key)} bytes on page {page} "
                       "is no 8-byte index (repair drops it)", page,
                       {"key": bytes(key)[:64].hex()})
            return
        # the term and type only: unpackb is what a fast look needs
        try:
            log = msgpack.unpackb(bytes(value), raw=True, strict_map_key=False)
        except Exception:
            log = None
        why = _mismatch(key, log)
        if why is not None:
            # not where StoreLogs put it: repair drops it, so it counts for nothing here
            self.index_mismatches += 1
            self._find(F.RAFT_LOG_INDEX_MISMATCH, f"raft log under key {index} on page {page} "
                       f"is in the wrong place: {why} (repair drops it)", page,
                       {"index": index, "key": bytes(key).hex()})
            return
        self.count += 1
        if self.first is None:
            self.first = index
        elif index > self.last + 1:
            lo, hi = self.last + 1, index - 1
            self.gap_count += 1
            self.missing += hi - lo + 1
            if len(self.gaps) < GAPS_SHOWN:
                self.gaps.append([lo, hi])
            self._find(F.RAFT_LOG_GAP, f"raft log indexes {lo}..{hi} are missing between "
                       f"{self.last} and {index}", page, {"first_missing": lo, "last_missing": hi,
                                                          "count": hi - lo + 1})
        self.last = index
        term = log.get(b"Term") if isinstance(log, dict) else None
        typ = log.get(b"Type") if isinstance(log, dict) else None
        if _int(term) is None or _int(typ) is None:
            self.undecodable += 1
            d = decode_log(value)
            self._find(F.RAFT_LOG_UNDECODABLE, f"raft log {index} on page {page} does not "
                       f"decode: {d.get('error', 'no Term or Type')}", page,
                       {"index": index})
            return
        self.types[LOG_TYPES.get(typ, str(typ))] += 1
        if self.prev_term is not None and term < self.prev_term:
            self.term_decreases += 1
            self._find(F.RAFT_TERM_DECREASES, f"raft log {index} has term {term}, below the "
                       f"previous log's {self.prev_term}", page,
                       {"index": index, "term": term, "previous_term": self.prev_term})
        self.prev_term = term
        self.min_term = term if self.min_term is None else min(self.min_term, term)
        self.max_term = term if self.max_term is None else max(self.max_term, term)

    def see_conf(self, key, value) -> None:
        """One ``conf`` record (raft's stable store); at most 100 kept."""
        if len(self.conf) < 100:
            d = decode_conf(key, value)
            self.conf[d["key"]] = d.get("value", d)

    def to_json(self) -> dict:
        """The facts as ``inspect --json``'s ``raft`` member."""
        return {
            "application": APPLICATION,
            "logs": {
                "count": self.count,
                "first_index": self.first,
                "last_index": self.last,
                "terms": {"min": self.min_term, "max": self.max_term},
                "types": dict(sorted(self.types.items())),
                "gaps": {"count": self.gap_count, "missing_indexes": self.missing,
                         "first": self.gaps},
                "term_decreases": self.term_decreases,
                "undecodable": self.undecodable,
                "index_mismatches": self.index_mismatches,
            },
            "current_term": self.conf.get("CurrentTerm"),
            "last_vote_term": self.conf.get("LastVoteTerm"),
            "last_vote_candidate": self.conf.get("LastVoteCand"),
            "conf": self.conf,
        }


def scan(db: DB, report=None, tree=None) -> RaftFacts:
    """Walk the ``logs`` and ``conf`` buckets (a walk of their own, quiet:
    the main walk reports the tree's findings), a page of records at a time;
    findings to ``report``."""
    facts = RaftFacts(report)
    for name, batch in top_bucket_batches(db, (LOGS, CONF), tree):
        for key, value in zip(batch.keys, batch.values):
            if name == LOGS:
                facts.see_log(key, value, batch.page)
            else:
                facts.see_conf(key, value)
    return facts


def check_findings(db: DB, report) -> dict:
    """``check``'s raft-boltdb findings (gaps, falling terms, logs that do
    not decode); the facts for its stats."""
    return scan(db, report).to_json()
