"""The checks of one tree: every bucket walked, etcd's records, the freelist.

What :func:`boltfix.check.check` runs on the tree of the meta in use, and
:mod:`boltfix.commits` on every tree it judges (another meta's, a root no
meta names): the walk's findings, keys over bbolt's limit, etcd's
``key``/``meta`` records and nested buckets, and the synced freelist of the
tree's own meta against what the walk reached.
"""

from __future__ import annotations

from typing import Optional

from boltfix import etcd
from boltfix import findings as F
from boltfix import structs as S
from boltfix.etcdkeys import KEY_BUCKET, META_BUCKET
from boltfix.findings import ERROR, WARNING, Finding
from boltfix.leaves import Batch, Bucket, InlineRun, Record
from boltfix.navigate import top_level_names
from boltfix.pagemap import UNREACHED, PageMap, positions
from boltfix.reader import DB, Meta
from boltfix.text import name_text
from boltfix.walk import Walker


# ---------------------------------------------------------------- tree
def walk_everything(db: DB, walker: Walker, report) -> dict:
    """Walk every bucket; run the etcd checks when the file is etcd's."""
    stats = {"buckets": 0, "keys": 0}
    if walker.tree is None:
        return stats
    top = top_level_names(db, walker.tree)
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
            if is_etcd:  # (never in the root: an etcd bucket holds them)
                for key in leaves.keys:
                    _etcd_nested(bucket, Record(key, b"", S.BUCKET_LEAF_FLAG, leaves.page, 0),
                                 report)
            continue
        _check_key_sizes(bucket, leaves, report)
        if leaves.bucket_entry is not None:
            stats["buckets"] += 1
            if is_etcd and bucket.path:
                _etcd_nested(bucket, leaves.bucket_entry, report)
            continue
        stats["keys"] += leaves.count
        if not is_etcd or bucket.path not in ETCD_CHECKED:
            continue
        if bucket.path == KEY_BUCKET:
            if len(leaves.last) >= 8:  # keys ascend: the last is the highest revision
                stats.setdefault("etcd_meta", {})["max_revision"] = \
                    int.from_bytes(leaves.last[:8], "big")
            batches = (b for b, suspect in leaves.etcd_key_batches() if suspect)
        else:
            batches = leaves.batches()
        for batch in batches:
            seen_consistent_index |= _check_etcd_batch(bucket, batch, report, stats)
    if is_etcd and not seen_consistent_index:
        report(Finding(F.ETCD_MISSING_CONSISTENT_INDEX,
                       "etcd file without meta/consistent_index: etcd cannot tell which "
                       "WAL entries are applied", WARNING, None, (), META_BUCKET))
    return stats


def key_too_long(key, page: int, bucket: tuple, index: int,
                 is_bucket: bool) -> Optional[Finding]:
    """``key-too-long`` when a key (or bucket name) is longer than bbolt's
    MaxKeySize: bbolt reads such a key but its Put refuses one
    (ErrKeyTooLarge), so no bbolt wrote it.  check reports it, repair drops
    it (the one rule for both)."""
    if len(key) <= S.MAX_KEY_SIZE:
        return None
    return Finding(F.KEY_TOO_LONG,
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


def _etcd_nested(bucket: Bucket, entry, report) -> None:
    """etcd never nests a bucket (server/storage/schema: every bucket is
    created in the root; etcd reads its buckets' values with ForEach, and a
    sub-bucket's nil value does not unmarshal): a bucket entry below the top
    level of an etcd file is a page that is not that bucket's (an older
    page a lost write left there), or damage."""
    report(Finding(F.ETCD_NESTED_BUCKET,
                   f"bucket {name_text(entry.key)} inside etcd's bucket "
                   f"{'/'.join(map(name_text, bucket.path))}: etcd nests no bucket",
                   WARNING, entry.page, (), bucket.path, {"key": bytes(entry.key).hex()}))


#: the etcd buckets whose records check looks at
ETCD_CHECKED = frozenset({KEY_BUCKET, META_BUCKET})


#: ``meta`` bucket values the walk keeps (``stats["etcd_meta"]``): which
#: commit a tree is (repair's choice between trees: boltfix.commits)
ETCD_META_KEPT = (b"consistent_index", b"term")


def _check_etcd_batch(bucket: Bucket, batch: Batch, report, stats: dict) -> bool:
    """Check one batch of etcd's ``key`` or ``meta`` bucket; True when it
    holds meta's consistent_index."""
    if bucket.path != KEY_BUCKET:
        kept = stats.setdefault("etcd_meta", {})
        for key, value in zip(batch.keys, batch.values):
            if key in ETCD_META_KEPT and len(value) == 8:
                kept[key.decode()] = int.from_bytes(value, "big")
        return b"consistent_index" in batch.keys
    for key, value in zip(batch.keys, batch.values):
        for code, message in etcd.check_key_record(key, value):
            report(Finding(code, message, WARNING, batch.page, (), bucket.path,
                           {"key": key.hex()}))
    return False


# ---------------------------------------------------------------- freelist
def check_freelist(db: DB, walker: Walker, report, stats: dict,
                   meta: Optional[Meta] = None) -> PageMap:
    """The freelist (of ``meta``, default the meta in use: the one whose
    tree the walker walked) against what the walk reached, through the one
    page map (its freelist findings are reported as it is built); returns
    the map."""
    pm = PageMap(db, walker, report, meta)
    stats["freelist"] = "synced" if pm.synced else "not synced"
    if not pm.synced:
        # No synced freelist (etcd): the free pages are exactly the ones the
        # tree does not reach, so 'unreachable unfreed' cannot happen.
        stats["free_pages"] = pm.count(UNREACHED, 0, pm.limit)
        return pm
    stats["free_pages"] = pm.listed
    state = pm.reach_list()  # 0 = neither, 1 = reached, 2 = free, 3 = both
    for pid in positions(state, 3):
        report(Finding(F.REACHABLE_FREED, f"page {pid} is reachable but listed as free",
                       ERROR, pid, detail={"bbolt": f"page {pid}: reachable freed"}))
    for pid in positions(state, 0):
        report(Finding(F.UNREACHABLE_UNFREED,
                       f"page {pid} is neither reachable nor free (leaked)", ERROR, pid,
                       detail={"bbolt": f"page {pid}: unreachable unfreed"}))
    return pm


