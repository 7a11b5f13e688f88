"""``boltfix check``: every problem in a bbolt file, as data.

The checker runs the safe walk (:mod:`boltfix.walk`) over every bucket, then
checks the meta pages, the file length and the freelist against what the
walk reached.  Each kind of message bbolt's ``tx.Check`` emits has a
counterpart code here (see ``BBOLT_EQUIVALENT``), and the checker also finds
what bbolt misses or dies on (cycles, pages past the end of the file,
element bounds, inline buckets, key ranges on bbolt 1.3.6).

Time is linear in the file; memory is two bytes per page plus at most
``max_findings`` stored findings (the rest are only counted).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from boltfix import structs as S
from boltfix.errors import ERROR, WARNING, Finding
from boltfix.pagemap import UNREACHED, PageMap, positions
from boltfix.reader import DB, Meta
from boltfix.walk import Batch, Bucket, InlineRun, Walker, top_level_names

# bbolt tx.Check wording -> boltfix code
BBOLT_EQUIVALENT = {
    "already freed": "already-freed",
    "out of bounds": "page-out-of-bounds",
    "multiple references": "multiple-references",
    "reachable freed": "reachable-freed",
    "invalid type": "invalid-page-type",
    "unreachable unfreed": "unreachable-unfreed",
    "unexpected page type": "freelist-invalid-type",
    "needs to be": "key-order",
}

META_MESSAGES = {
    "meta-truncated": "is cut off by the end of the file",
    "meta-bad-magic": "has a bad magic number",
    "meta-bad-version": "has an unknown version",
    "meta-bad-checksum": "fails its checksum",
    "meta-bad-page-size": "has a page size that is not a power of two in 512..65536",
    "meta-root-out-of-bounds": "has a root page at or above its high-water mark",
    "meta-freelist-out-of-bounds": "has a freelist page at or above its high-water mark",
}


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
NEVER_STOP_BBOLT = frozenset({
    "file-partial-page", "inline-bucket-nested", "etcd-missing-consistent-index",
    "meta-bad-header", *META_MESSAGES,
})


def fails_check(finding: Finding) -> bool:
    """Does this finding make ``check`` exit 1 by default?  (The one rule.)"""
    return finding.severity != WARNING or finding.code not in NEVER_STOP_BBOLT


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
        return sum(self.counts.values())

    @property
    def truncated(self) -> int:
        return self.total - len(self.findings)


@dataclass
class CheckResult:
    findings: List[Finding]
    counts: dict
    total: int
    stats: dict = field(default_factory=dict)
    #: findings that fail check by default (the rest never stop bbolt or etcd)
    failing: int = 0

    @property
    def clean(self) -> bool:
        return self.total == 0

    def failed(self, strict: bool = False) -> bool:
        """Exit 1?  Any finding with ``strict``, else only those :func:`fails_check` names."""
        return bool(self.total if strict else self.failing)

    def to_json(self) -> dict:
        return {
            "clean": self.clean,
            "failing": self.failing,
            "total": self.total,
            "counts": dict(self.counts),
            "shown": len(self.findings),
            "stats": self.stats,
            "findings": [f.to_json() for f in self.findings],
        }


def check(db: DB, *, max_findings: Optional[int] = None,
          progress: Optional[Callable[[int], None]] = None) -> CheckResult:
    """Check the whole file; never raises on file contents."""
    report = Collector(max_findings)
    check_metas(db, report)
    check_file_length(db, report)
    walker = Walker(db, report, progress)
    stats = walk_everything(db, walker, report)
    if stats.get("etcd"):  # what etcd would serve, when the key bucket lost data
        from boltfix import etcdstate

        etcdstate.check_findings(db, report, stats)
    check_freelist(db, walker, report, stats)
    stats.update(pages_reached=walker.pages_walked, records=walker.records_yielded)
    return CheckResult(report.findings, dict(report.counts), report.total, stats,
                       report.failing)


# ---------------------------------------------------------------- metas
def check_metas(db: DB, report) -> None:
    used = db.meta
    for m in db.metas:
        if m.header_flags is not None and (m.header_flags != S.META_PAGE_FLAG):
            report(Finding("meta-bad-header",
                           f"meta page {m.index}'s header has flags {m.header_flags:#x}, not meta",
                           WARNING if m.valid else ERROR, m.index))
        for code in m.problems:
            # A bad meta that is not the newest is the lesser harm: bbolt
            # falls back to the other one.  Still damage, so still reported.
            severity = ERROR if used is None or _newer_than(m, used) else WARNING
            report(Finding(code, f"meta page {m.index} {META_MESSAGES[code]}", severity,
                           m.index, detail=_meta_detail(m)))
    if used is None:
        report(Finding("meta-both-invalid",
                       "both meta pages are invalid: bbolt will refuse to open this file",
                       ERROR, None))
        return
    other = db.metas[1 - used.index]
    if not other.valid and _newer_than(other, used):
        report(Finding("meta-not-newest",
                       f"meta {other.index} looks newer (txid {other.txid}) but is invalid: "
                       f"the last write was torn; meta {used.index} (txid {used.txid}) is used",
                       ERROR, other.index))


def _newer_than(m: Meta, used: Meta) -> bool:
    return m.magic == S.MAGIC and m.version == S.VERSION and m.txid > used.txid


def _meta_detail(m: Meta) -> dict:
    return {"txid": m.txid, "pgid": m.pgid, "root": m.root, "page_size": m.page_size}


def check_file_length(db: DB, report) -> None:
    if db.meta is None:
        return
    if db.pages_in_file < db.meta.pgid:
        report(Finding(
            "file-truncated",
            f"the file holds {db.pages_in_file} pages ({db.size} bytes) but the meta's "
            f"high-water mark is {db.meta.pgid}: pages {db.pages_in_file}..{db.meta.pgid - 1} "
            "are missing (bbolt dies with SIGBUS touching them)",
            ERROR, db.pages_in_file,
            detail={"pages_in_file": db.pages_in_file, "pgid": db.meta.pgid}))
    if db.size % db.page_size:
        report(Finding("file-partial-page",
                       f"the file size {db.size} is not a multiple of the page size {db.page_size}",
                       WARNING, db.pages_in_file))


# ---------------------------------------------------------------- tree
def walk_everything(db: DB, walker: Walker, report) -> dict:
    """Walk every bucket; run the etcd checks when the file is etcd's."""
    from boltfix import etcd

    stats = {"buckets": 0, "keys": 0}
    if db.meta is None:
        return stats
    top = top_level_names(db)
    is_etcd = etcd.looks_like_etcd(top)
    stats["etcd"] = is_etcd
    seen_consistent_index = False
    # a page of records at a time, or many clean pages at once: nothing
    # here needs a Record per element, and most buckets only a count
    for bucket, leaves in walker.walk_leaves(inline_runs=True):
        if type(leaves) is InlineRun:
            # small sub-buckets with nothing to report (names and keys within
            # bbolt's limit): only counted; never etcd's checked buckets,
            # which sit in the root
            stats["buckets"] += len(leaves)
            stats["keys"] += leaves.records
            continue
        _check_key_sizes(bucket, leaves, report)
        if leaves.bucket_entry is not None:
            stats["buckets"] += 1
            continue
        stats["keys"] += leaves.count
        if not is_etcd or bucket.path not in ETCD_CHECKED:
            continue
        if bucket.path == (b"key",):
            batches = (b for b, suspect in leaves.etcd_key_batches() if suspect)
        else:
            batches = leaves.batches()
        for batch in batches:
            seen_consistent_index |= _check_etcd_batch(bucket, batch, report)
    if is_etcd and not seen_consistent_index:
        report(Finding("etcd-missing-consistent-index",
                       "etcd file without meta/consistent_index: etcd cannot tell which "
                       "WAL entries are applied", WARNING, None, (), (b"meta",)))
    return stats


def key_too_long(key, page: int, bucket: tuple, index: int,
                 is_bucket: bool) -> Optional[Finding]:
    """``key-too-long`` when a key (or bucket name) is longer than bbolt's
    MaxKeySize: bbolt reads such a key but its Put refuses one
    (ErrKeyTooLarge), so no bbolt wrote it.  check reports it, repair drops
    it (the one rule for both)."""
    if len(key) <= S.MAX_KEY_SIZE:
        return None
    return Finding("key-too-long",
                   f"key of {len(key)} bytes on page {page} is longer than bbolt's limit "
                   f"of {S.MAX_KEY_SIZE}", page=page, bucket=bucket,
                   detail={"index": index, "bucket_entry": is_bucket})


def _check_key_sizes(bucket: Bucket, leaves, report) -> None:
    """Report keys over bbolt's limit.  Of many pages taken by the C core,
    only a page whose run is longer than the limit can hold one."""
    if leaves.count == 1 and leaves.pages is None and len(leaves.last) <= S.MAX_KEY_SIZE:
        return  # one record already read (a bucket entry, an inline bucket's record)
    for batch in leaves.batches_over(S.MAX_KEY_SIZE):
        if max(map(len, batch.keys), default=0) <= S.MAX_KEY_SIZE:
            continue
        for rec in batch.records():
            finding = key_too_long(rec.key, rec.page, bucket.path, rec.index, rec.is_bucket)
            if finding is not None:
                report(finding)


#: the etcd buckets whose records check looks at
ETCD_CHECKED = frozenset({(b"key",), (b"meta",)})


def _check_etcd_batch(bucket: Bucket, batch: Batch, report) -> bool:
    """Check one batch of etcd's ``key`` or ``meta`` bucket; True when it
    holds meta's consistent_index."""
    from boltfix import etcd

    if bucket.path != (b"key",):
        return b"consistent_index" in batch.keys
    for key, value in zip(batch.keys, batch.values):
        for code, message in etcd.check_key_record(key, value):
            report(Finding(code, message, WARNING, batch.page, (), bucket.path,
                           {"key": key.hex()}))
    return False


# ---------------------------------------------------------------- freelist
def check_freelist(db: DB, walker: Walker, report, stats: dict) -> PageMap:
    """The freelist against what the walk reached, through the one page map
    (its freelist findings are reported as it is built); returns the map."""
    pm = PageMap(db, walker, report)
    stats["freelist"] = "synced" if pm.synced else "not synced"
    if not pm.synced:
        # No synced freelist (etcd): the free pages are exactly the ones the
        # tree does not reach, so 'unreachable unfreed' cannot happen.
        stats["free_pages"] = pm.count(UNREACHED, 0, pm.limit)
        return pm
    stats["free_pages"] = pm.listed
    state = pm.reach_list()  # 0 = neither, 1 = reached, 2 = free, 3 = both
    for pid in positions(state, 3):
        report(Finding("reachable-freed", f"page {pid} is reachable but listed as free",
                       ERROR, pid, detail={"bbolt": f"page {pid}: reachable freed"}))
    for pid in positions(state, 0):
        report(Finding("unreachable-unfreed",
                       f"page {pid} is neither reachable nor free (leaked)", ERROR, pid,
                       detail={"bbolt": f"page {pid}: unreachable unfreed"}))
    return pm


