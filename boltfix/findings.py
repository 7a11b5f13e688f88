"""Findings as data: :class:`Finding`, the :class:`Collector` that keeps
them, and ONE registry of every code boltfix can report (:data:`REGISTRY`).

Like e2fsck's ``problem.h``/``problem.c``: each code is declared once,
below, with everything the rest of boltfix needs to know about it:

* ``severity``: the usual one (a few codes are reported as either: a bad
  meta is an error when it is the newer one, else a warning);
* ``loss``: :data:`WALK` when the walk did not yield the records behind it
  (a reader of the walk -- dump, repair -- cannot have them), :data:`REPAIR`
  when repair itself drops records for it (bbolt or etcd could not take
  them), None when nothing is lost;
* ``stops``: whether bbolt or etcd stop on it (a warning that never does
  makes ``check`` exit 0 unless ``--strict``: :func:`fails_check`);
* ``pointer``/``broken_pointer``/``unclaimed``: how salvage reads it (a
  pruned pointer with its key range; one whose pointer itself broke, so the
  real child may lie elsewhere; a subtree lost with no range);
* ``bbolt``: the words of bbolt's ``tx.Check`` message for the same problem;
* ``anchor``: the heading in docs/ that documents it (``tests/test_docs.py``
  holds every anchor to a heading).

Code constants (``PAGE_CYCLE = "page-cycle"`` ...) are what the modules
pass to :class:`Finding`: a code is written as a string only here.  The
groups other modules use (:data:`WALK_LOSS`, :data:`REPAIR_LOSS`,
:data:`POINTER`, :data:`BROKEN_POINTER`, :data:`UNCLAIMED`,
:data:`NEVER_STOP`, :data:`BBOLT_EQUIVALENT`) are derived from it.

A new finding: one :func:`_code` line here (and its row in docs/findings.md's
table; ``tests/test_docs.py`` holds both to each other).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional

from boltfix.text import name_text

ERROR = "error"
WARNING = "warning"

#: loss groups: the walk did not yield the records; repair dropped them
WALK = "walk"
REPAIR = "repair"

CHECK_ANCHOR = "#finding-codes"
REPAIR_ANCHOR = "#repair"
SERVED_ANCHOR = "#etcd-what-etcd-will-serve-from-a-repaired-db"
COMMIT_ANCHOR = "#which-commit-repair-keeps"
DATA_DIR_ANCHOR = "#wal-and-the-data-dir"
RAFT_ANCHOR = "#raft-boltdb"
CONTAINERD_ANCHOR = "#containerd-metadata"
DOCKER_ANCHOR = "#docker"


@dataclass(frozen=True)
class Code:
    """One registered finding code and what boltfix knows about it."""

    code: str
    severity: str = ERROR
    loss: Optional[str] = None
    stops: bool = True
    pointer: bool = False
    broken_pointer: bool = False
    unclaimed: bool = False
    bbolt: str = ""
    anchor: str = CHECK_ANCHOR
    what: str = ""


#: code -> :class:`Code`, in the order of docs/findings.md's table
REGISTRY: Dict[str, Code] = {}


def _code(code: str, **facts) -> str:
    """Register ``code`` (once) and return it, for the constant it names."""
    if code in REGISTRY:
        raise ValueError(f"finding code {code} registered twice")
    REGISTRY[code] = Code(code, **facts)
    return code


# ---------------------------------------------------------------- metas and file
# (the meta codes are also Meta.problems; ``what`` completes "meta page N ...")
META_TRUNCATED = _code("meta-truncated", stops=False,
                       what="is cut off by the end of the file")
META_BAD_MAGIC = _code("meta-bad-magic", stops=False, what="has a bad magic number")
META_BAD_VERSION = _code("meta-bad-version", stops=False, what="has an unknown version")
META_BAD_CHECKSUM = _code("meta-bad-checksum", stops=False, what="fails its checksum")
META_BAD_PAGE_SIZE = _code("meta-bad-page-size", stops=False,
                           what="has a page size that is not a power of two in 512..65536")
META_ROOT_OUT_OF_BOUNDS = _code("meta-root-out-of-bounds", stops=False,
                                what="has a root page at or above its high-water mark")
META_FREELIST_OUT_OF_BOUNDS = _code("meta-freelist-out-of-bounds", stops=False,
                                    what="has a freelist page at or above its high-water mark")
META_BAD_HEADER = _code("meta-bad-header", stops=False,
                        what="a meta page's header flags are not meta's")
META_BOTH_INVALID = _code("meta-both-invalid", what="neither meta is usable")
META_NOT_NEWEST = _code("meta-not-newest", what="the newer meta is torn; the older one is used")
FILE_TRUNCATED = _code("file-truncated", what="the file is shorter than the high-water mark")
FILE_PARTIAL_PAGE = _code("file-partial-page", severity=WARNING, stops=False,
                          what="the file size is not a multiple of the page size")

# ---------------------------------------------------------------- pointers
PAGE_OUT_OF_BOUNDS = _code("page-out-of-bounds", loss=WALK, pointer=True, broken_pointer=True,
                           bbolt="out of bounds",
                           what="a page or its overflow run at/above the high-water mark")
PAGE_PAST_EOF = _code("page-past-eof", loss=WALK, pointer=True,
                      what="a page or its run past the end of the file")
PAGE_ID_MISMATCH = _code("page-id-mismatch",
                         what="a page's header id is not its position")
INVALID_PAGE_TYPE = _code("invalid-page-type", loss=WALK, pointer=True, bbolt="invalid type",
                          what="not a branch/leaf where one is expected")
MULTIPLE_REFERENCES = _code("multiple-references", loss=WALK, pointer=True,
                            broken_pointer=True, bbolt="multiple references",
                            what="a page reached twice")
PAGE_CYCLE = _code("page-cycle", loss=WALK, pointer=True, broken_pointer=True,
                   what="a branch element points at itself or an ancestor")
BRANCH_EMPTY = _code("branch-empty", loss=WALK, pointer=True,
                     what="a branch page with count 0 that cannot be recovered")
LEAF_EMPTY = _code("leaf-empty", severity=WARNING,
                   what="a leaf below a branch with count 0")

# ---------------------------------------------------------------- elements and keys
ELEMENT_COUNT_OVERFLOW = _code("element-count-overflow", loss=WALK,
                               what="the element array runs past the page run")
ELEMENT_OUT_OF_BOUNDS = _code("element-out-of-bounds", loss=WALK,
                              what="a key or value outside the page run")
KEY_EMPTY = _code("key-empty", loss=WALK, what="an empty key")
KEY_TOO_LONG = _code("key-too-long", loss=REPAIR, unclaimed=True,
                     what="a key or bucket name longer than bbolt's 32768-byte limit")
ELEMENT_COUNT_CORRUPT = _code("element-count-corrupt",
                              what="the count is damaged; element 0's pos gives it back")
PAGE_OVERFLOW_TOO_LARGE = _code("page-overflow-too-large", severity=WARNING,
                                what="a page claims more overflow pages than it needs")
KEY_ORDER = _code("key-order", loss=WALK, bbolt="needs to be",
                  what="keys not strictly increasing")
KEY_OUT_OF_RANGE = _code("key-out-of-range", loss=WALK,
                         what="a key outside the range its ancestors' branch keys allow")
PAGE_TYPE_RECOVERED = _code("page-type-recovered",
                            what="a page whose type alone is wrong, read as the leaf or branch "
                                 "its parent's element names")
CHILD_KEY_MISMATCH = _code("child-key-mismatch", loss=WALK, pointer=True,
                           what="a page that is not the child its parent's element names "
                                "(first key not the branch key, keys outside its range)")

# ---------------------------------------------------------------- buckets
BUCKET_VALUE_SHORT = _code("bucket-value-short", loss=WALK, unclaimed=True,
                           what="a bucket value shorter than a bucket header")
BUCKET_VALUE_SIZE_RECOVERED = _code(
    "bucket-value-size-recovered",
    what="a bucket value shorter than a bucket header whose element's bytes still hold the "
         "whole header where bbolt laid it out: read as one, nothing lost")
INLINE_BUCKET_MALFORMED = _code("inline-bucket-malformed", loss=WALK, unclaimed=True,
                                what="an inline bucket's page is malformed")
ROOT_ENTRY_NOT_BUCKET = _code("root-entry-not-bucket", loss=WALK, unclaimed=True,
                              what="a plain key in the root bucket")
BUCKET_TOO_DEEP = _code("bucket-too-deep", loss=WALK,
                        what="a bucket entry more than 2,048 levels deep")
INLINE_BUCKET_NESTED = _code("inline-bucket-nested", severity=WARNING, stops=False,
                             what="an inline bucket holding a sub-bucket")

# ---------------------------------------------------------------- freelist
FREELIST_INVALID_TYPE = _code("freelist-invalid-type", bbolt="unexpected page type",
                              what="the meta's freelist page is no freelist")
FREELIST_COUNT_OVERFLOW = _code("freelist-count-overflow",
                                what="the freelist's count runs past its page")
FREELIST_RESERVED_PAGE = _code("freelist-reserved-page",
                               what="the freelist lists a meta page")
FREELIST_OUT_OF_BOUNDS = _code("freelist-out-of-bounds",
                               what="the freelist (or an id it lists) at/above the HWM")
FREELIST_SELF = _code("freelist-self", what="the freelist lists its own page")
ALREADY_FREED = _code("already-freed", bbolt="already freed",
                      what="a page listed twice in the freelist")
REACHABLE_FREED = _code("reachable-freed", bbolt="reachable freed",
                        what="a page both reachable and free")
UNREACHABLE_UNFREED = _code("unreachable-unfreed", bbolt="unreachable unfreed",
                            what="a page neither reachable nor free (leaked)")

# ---------------------------------------------------------------- etcd
ETCD_BAD_REVISION_KEY = _code("etcd-bad-revision-key", severity=WARNING,
                              what="a `key` bucket key that is no revision")
ETCD_BAD_KEY_VALUE = _code("etcd-bad-key-value", severity=WARNING,
                           what="a `key` bucket value that is no mvccpb.KeyValue")
ETCD_NESTED_BUCKET = _code("etcd-nested-bucket", severity=WARNING,
                           what="a bucket inside one of etcd's buckets (etcd nests none)")
ETCD_MISSING_CONSISTENT_INDEX = _code("etcd-missing-consistent-index", severity=WARNING,
                                      stops=False, what="no meta/consistent_index")
ETCD_REVISIONS_LOST = _code("etcd-revisions-lost", severity=WARNING, anchor=SERVED_ANCHOR,
                            what="main revisions of the `key` bucket lost")
ETCD_KEY_AT_RISK = _code("etcd-key-at-risk", severity=WARNING, anchor=SERVED_ANCHOR,
                         what="a user key etcd may now serve wrongly")
NEWEST_COMMIT_DAMAGED = _code(
    "newest-commit-damaged", anchor=COMMIT_ANCHOR,
    what="the newest commit is damaged and the previous commit's tree is whole: repair "
         "rolls back to it")
FILE_COPIED_WHILE_WRITTEN = _code(
    "file-copied-while-written", anchor=COMMIT_ANCHOR,
    what="the metas are older than pages their trees reach; a newer whole tree is in the file")
COMMIT_REACHES_FREE_PAGE = _code(
    "commit-reaches-free-page", anchor=COMMIT_ANCHOR,
    what="the newest commit's tree reaches pages its own freelist and the previous "
         "commit's both list as free (pages older than the commit)")
COMMIT_FREELIST_LOST = _code(
    "commit-freelist-lost", anchor=COMMIT_ANCHOR,
    what="the newest commit's freelist page holds no freelist while the previous "
         "commit's does (its writes did not all reach the disk)")
COMMIT_DROPS_PAGES = _code(
    "commit-drops-pages", anchor=COMMIT_ANCHOR,
    what="the newest commit's tree neither reaches nor frees pages of the previous "
         "commit's tree (a commit frees every page it stops using: its pages are stale)")
ETCD_COMMIT_OLDER = _code("etcd-commit-older", anchor=COMMIT_ANCHOR,
                          what="the newest commit's tree holds an older consistent_index or "
                               "revision than the previous commit's (its pages are stale)")
ETCD_CREATE_REVISION_MISSING = _code(
    "etcd-create-revision-missing", anchor=COMMIT_ANCHOR,
    what="a tree no meta names holds a `key` revision whose key's creating revision is "
         "neither in the bucket nor compacted (its `key` pages are another commit's)")
ETCD_KEY_LOST = _code("etcd-key-lost", severity=WARNING, anchor=SERVED_ANCHOR,
                      what="a key with no surviving revision that a copy names")

# ---------------------------------------------------------------- etcd WAL and data dir
WAL_TORN_TAIL = _code(
    "wal-torn-tail", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="the last WAL segment ends in a torn write (etcd's wal.Repair truncates it)")
WAL_DATA_AFTER_END = _code(
    "wal-data-after-end", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="non-zero bytes after the end of a segment's records")
WAL_CRC_MISMATCH = _code(
    "wal-crc-mismatch", anchor=DATA_DIR_ANCHOR,
    what="a WAL record's CRC-32C does not match, not at a torn tail")
WAL_BAD_RECORD = _code(
    "wal-bad-record", anchor=DATA_DIR_ANCHOR,
    what="a WAL record that does not decode, not at a torn tail")
WAL_BAD_ENTRY = _code(
    "wal-bad-entry", anchor=DATA_DIR_ANCHOR,
    what="an entry, state, metadata or snapshot record etcd cannot unmarshal")
WAL_UNKNOWN_RECORD_TYPE = _code(
    "wal-unknown-record-type", anchor=DATA_DIR_ANCHOR,
    what="a WAL record of an unknown type")
WAL_UNEXPECTED_END = _code(
    "wal-unexpected-end", anchor=DATA_DIR_ANCHOR,
    what="a segment other than the last ends mid-record")
WAL_LENGTH_PAST_END = _code(
    "wal-length-past-end", anchor=DATA_DIR_ANCHOR,
    what="a segment other than the last claims a record past its end")
WAL_CRC_CHAIN = _code(
    "wal-crc-chain", anchor=DATA_DIR_ANCHOR,
    what="a segment's crc record does not continue the chain")
WAL_SEQ_GAP = _code(
    "wal-seq-gap", anchor=DATA_DIR_ANCHOR,
    what="WAL segment sequence numbers jump")
WAL_INDEX_GAP = _code(
    "wal-index-gap", anchor=DATA_DIR_ANCHOR,
    what="WAL entries skip an index")
WAL_METADATA_CONFLICT = _code(
    "wal-metadata-conflict", anchor=DATA_DIR_ANCHOR,
    what="two WAL metadata records differ")
WAL_NO_SEGMENTS = _code(
    "wal-no-segments", anchor=DATA_DIR_ANCHOR,
    what="no WAL segment")
WAL_UNREADABLE = _code(
    "wal-unreadable", anchor=DATA_DIR_ANCHOR,
    what="a WAL segment that cannot be read")
WAL_BAD_NAME = _code(
    "wal-bad-name", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="a file in the WAL dir that etcd ignores")
WAL_RECORD_TOO_LARGE = _code(
    "wal-record-too-large", severity=WARNING, anchor=DATA_DIR_ANCHOR,
    what="a WAL record of 10 MB or more")
DATADIR_SNAPSHOT_DB_MISSING = _code(
    "datadir-snapshot-db-missing", anchor=DATA_DIR_ANCHOR,
    what="the newest raft snapshot is above the db's consistent_index and no .snap.db exists")
DATADIR_SNAPSHOT_DB_BEHIND = _code(
    "datadir-snapshot-db-behind", anchor=DATA_DIR_ANCHOR,
    what="a .snap.db whose own index is below its snapshot's (etcd refuses to start)")
DATADIR_WAL_AFTER_SNAPSHOT = _code(
    "datadir-wal-after-snapshot", anchor=DATA_DIR_ANCHOR,
    what="no WAL segment reaches back to the snapshot")
DATADIR_WAL_SNAPSHOT_MISSING = _code(
    "datadir-wal-snapshot-missing", anchor=DATA_DIR_ANCHOR,
    what="no WAL snapshot record for the snapshot")
DATADIR_WAL_GAP = _code(
    "datadir-wal-gap", anchor=DATA_DIR_ANCHOR,
    what="WAL entries missing after the snapshot")
DATADIR_COMMIT_OUT_OF_RANGE = _code(
    "datadir-commit-out-of-range", anchor=DATA_DIR_ANCHOR,
    what="the HardState's commit is past the last entry")
DATADIR_NO_WAL = _code(
    "datadir-no-wal", anchor=DATA_DIR_ANCHOR,
    what="no WAL: etcd would bootstrap a new member")
DATADIR_DB_MISSING = _code(
    "datadir-db-missing", anchor=DATA_DIR_ANCHOR,
    what="no backend and no snapshot to bring one")
DATADIR_DB_UNREADABLE = _code(
    "datadir-db-unreadable", anchor=DATA_DIR_ANCHOR,
    what="a backend bbolt cannot open")
DATADIR_DB_DAMAGED = _code(
    "datadir-db-damaged", anchor=DATA_DIR_ANCHOR,
    what="a backend with damage that stops bbolt or etcd: etcd panics on it")
DATADIR_REWIND_LIMITED = _code(
    "datadir-rewind-limited", severity=WARNING, anchor=DATA_DIR_ANCHOR,
    what="revisions the db lost that the WAL cannot re-apply (the raft snapshot is above them)")
DATADIR_REWIND_UNSURE = _code(
    "datadir-rewind-unsure", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="changes other than key revisions after the rewind point, which etcd re-applies")
DATADIR_DB_REBUILT = _code(
    "datadir-db-rebuilt", severity=WARNING, anchor=DATA_DIR_ANCHOR,
    what="a db nothing could be recovered from, replaced by an empty one the whole WAL refills")
DATADIR_MULTI_MEMBER = _code(
    "datadir-multi-member", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="a member of a cluster of several: remove and re-add it from a healthy member")
DATADIR_SNAP_BROKEN = _code(
    "datadir-snap-broken", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="a .snap file etcd renames .broken")
DATADIR_SNAP_ORPHAN = _code(
    "datadir-snap-orphan", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="a .snap file no WAL snapshot record names")
DATADIR_DB_AHEAD = _code(
    "datadir-db-ahead", severity=WARNING, anchor=DATA_DIR_ANCHOR,
    what="a db whose consistent_index is past the WAL's last entry")
DATADIR_READY_DELAYED = _code(
    "datadir-ready-delayed", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="etcd 3.6+ becomes ready only after its member publish passes the db's "
         "consistent_index (each attempt at or below it times out)")
DATADIR_ACKED_ENTRIES_LOST = _code(
    "datadir-acked-entries-lost", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="a member of several whose WAL lost entries it had acknowledged: raft panics on a "
         "running leader's heartbeat")
DATADIR_WAL_CUT = _code(
    "datadir-wal-cut", severity=WARNING, anchor=DATA_DIR_ANCHOR,
    what="repair --data-dir cut the WAL before a record etcd refuses (not a torn tail)")
DATADIR_MEMBER_MISMATCH = _code(
    "datadir-member-mismatch", severity=WARNING, anchor=DATA_DIR_ANCHOR, stops=False,
    what="a WAL whose member is not among the db's members")

# ---------------------------------------------------------------- raft-boltdb
RAFT_LOG_GAP = _code("raft-log-gap", severity=WARNING, anchor=RAFT_ANCHOR,
                     what="raft-boltdb: indexes missing between the first and last log")
RAFT_TERM_DECREASES = _code("raft-term-decreases", severity=WARNING, anchor=RAFT_ANCHOR,
                            what="raft-boltdb: a log's term below the previous log's")
RAFT_LOG_UNDECODABLE = _code("raft-log-undecodable", severity=WARNING, anchor=RAFT_ANCHOR,
                             what="raft-boltdb: a `logs` record that is no msgpack raft.Log "
                                  "under an 8-byte index")

# ---------------------------------------------------------------- containerd
CONTAINERD_IMAGE_TARGET_MISSING = _code(
    "containerd-image-target-missing", severity=WARNING, anchor=CONTAINERD_ANCHOR, stops=False,
    what="containerd: an image's target digest is absent from its namespace's content/blob")
CONTAINERD_SNAPSHOT_MISSING = _code(
    "containerd-snapshot-missing", severity=WARNING, anchor=CONTAINERD_ANCHOR, stops=False,
    what="containerd: a container's snapshotKey names no snapshot of its snapshotter")
CONTAINERD_PARENT_MISSING = _code(
    "containerd-parent-missing", severity=WARNING, anchor=CONTAINERD_ANCHOR, stops=False,
    what="containerd: a snapshot's parent is absent")

# ---------------------------------------------------------------- docker
DOCKER_ENDPOINT_NETWORK_MISSING = _code(
    "docker-endpoint-network-missing", severity=WARNING, anchor=DOCKER_ANCHOR, stops=False,
    what="docker: a libnetwork endpoint whose network record is absent")
DOCKER_RECORD_UNDECODABLE = _code(
    "docker-record-undecodable", severity=WARNING, anchor=DOCKER_ANCHOR, stops=False,
    what="docker: a volume record that is no JSON, or a libnetwork value shorter than its "
         "8-byte index or with no JSON after it")
DOCKER_VOLUME_NAME_MISMATCH = _code(
    "docker-volume-name-mismatch", severity=WARNING, anchor=DOCKER_ANCHOR, stops=False,
    what="docker: a volume record whose JSON Name is not its key")

# ---------------------------------------------------------------- repair's own
ETCD_UNLOADABLE_RECORD = _code("etcd-unloadable-record", loss=REPAIR, anchor=REPAIR_ANCHOR,
                               what="a `key` record etcd cannot load, dropped")
RAFT_LOG_INDEX_MISMATCH = _code(
    "raft-log-index-mismatch", severity=WARNING, loss=REPAIR, anchor=RAFT_ANCHOR,
    what="raft-boltdb: a `logs` record not under its own Index (StoreLogs puts each log "
         "under uint64ToBytes(Index)), dropped by repair")
DOCKER_KV_VALUE_SHORT = _code(
    "docker-kv-value-short", loss=REPAIR, anchor=DOCKER_ANCHOR,
    what="docker: a libnetwork value shorter than libkv's 8-byte index (libnetwork's List "
         "panics on it), dropped by repair (check reports it as docker-record-undecodable)")
PAGE_RECORDS_NOT_PLACED = _code("page-records-not-placed", loss=REPAIR, anchor=REPAIR_ANCHOR,
                                what="records of a page with a wrong self-id kept out")


def _group(**facts) -> FrozenSet[str]:
    return frozenset(c.code for c in REGISTRY.values()
                     if all(getattr(c, k) == v for k, v in facts.items()))


#: findings whose records the walk did not yield
WALK_LOSS = _group(loss=WALK)
#: what repair drops: the walk's losses and its own
REPAIR_LOSS = WALK_LOSS | _group(loss=REPAIR)
#: walk findings that prune a pointer: the subtree behind it was not walked
POINTER = _group(pointer=True)
#: of those, the ones where the pointer itself is broken (salvage rule 1)
BROKEN_POINTER = _group(broken_pointer=True)
#: findings that lose a subtree without a pointer range (salvage)
UNCLAIMED = _group(unclaimed=True)
#: Warnings that never stop bbolt or etcd: ``check`` shows them but exits 0
#: for them unless ``--strict``.  Trailing bytes past the last whole page
#: (bbolt maps and ignores them); a bad meta that is not the newer one (bbolt
#: opens the other, and its next commit rewrites this one); a valid meta whose
#: page header flags are off (bbolt's validate never reads them); a sub-bucket
#: inside an inline bucket (bbolt reads it); an etcd file without
#: consistent_index (etcd starts from 0).  Not here, though warnings:
#: page-overflow-too-large (bbolt frees the next page with the run: "page
#: already freed" later), leaf-empty (records lost), etcd-bad-* (etcd exits
#: at start).
NEVER_STOP = _group(stops=False)
#: the meta codes (``Meta.problems``) and what each says about its meta
META_PROBLEMS = {c: REGISTRY[c].what for c in (
    META_TRUNCATED, META_BAD_MAGIC, META_BAD_VERSION, META_BAD_CHECKSUM,
    META_BAD_PAGE_SIZE, META_ROOT_OUT_OF_BOUNDS, META_FREELIST_OUT_OF_BOUNDS)}
#: bbolt tx.Check wording -> boltfix code
BBOLT_EQUIVALENT = {c.bbolt: c.code for c in REGISTRY.values() if c.bbolt}


# ---------------------------------------------------------------- Finding
@dataclass(frozen=True)
class Finding:
    """One problem in a file: a stable code, where it is, and what it means."""

    code: str
    message: str
    severity: str = ERROR
    page: Optional[int] = None
    #: page ids from the bucket's root page down to ``page`` (``"path"`` in JSON)
    pages: tuple = ()
    #: bucket names (bytes) from the top level down
    bucket: tuple = ()
    #: extra machine-readable facts (field, offset, key range, bbolt wording)
    detail: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        """The finding as ``--json`` prints it (names by the text-or-hex rule)."""
        out = {
            "code": self.code,
            "severity": self.severity,
            "page": self.page,
            "path": list(self.pages),
            "bucket": [name_text(b) for b in self.bucket],
            "message": self.message,
        }
        if self.detail:
            out["detail"] = {k: (name_text(v) if isinstance(v, (bytes, bytearray)) else v)
                             for k, v in self.detail.items()}
        return out


def fails_check(finding: Finding) -> bool:
    """Does this finding make ``check`` exit 1 by default?  (The one rule.)"""
    return finding.severity != WARNING or finding.code not in NEVER_STOP


class Collector:
    """Keeps the first ``limit`` findings and counts every one by code."""

    def __init__(self, limit: Optional[int] = None):
        self.limit = limit
        self.findings: List[Finding] = []
        self.counts: Counter = Counter()
        self.severities: Counter = Counter()
        #: findings that fail check by default (:func:`fails_check`)
        self.failing = 0

    def __call__(self, finding: Finding) -> None:
        self.counts[finding.code] += 1
        self.severities[finding.severity] += 1
        self.failing += fails_check(finding)
        if self.limit is None or len(self.findings) < self.limit:
            self.findings.append(finding)

    @property
    def total(self) -> int:
        """Every finding seen, kept or not."""
        return sum(self.counts.values())

    @property
    def truncated(self) -> int:
        """Findings counted but not kept (past ``limit``)."""
        return self.total - len(self.findings)
