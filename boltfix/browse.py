"""What ``buckets``, ``keys`` and ``get`` read: the bucket tree, a bucket's
keys (with etcdctl's ``--prefix`` on etcd's ``key`` bucket), one value."""

from __future__ import annotations

from typing import Callable, List, Optional

from boltfix import structs as S
from boltfix.etcd import looks_like_etcd
from boltfix.etcdkeys import KEY_BUCKET, user_key
from boltfix.findings import Finding
from boltfix.leaves import Bucket, InlineRun, Record
from boltfix.navigate import top_level_names
from boltfix.reader import DB
from boltfix.walk import Walker


def is_user_prefix(bucket: Bucket, prefix: Optional[bytes]) -> bool:
    """Whether ``prefix`` selects etcd ``key`` bucket records by their user
    key (etcdctl's ``--prefix``): a prefix starting with ``/`` in the
    top-level ``key`` bucket.  (As a revision it would be above 2**61.)"""
    return prefix is not None and prefix[:1] == b"/" and tuple(bucket.path) == KEY_BUCKET


def user_key_filter(keys, values, prefix: bytes):
    """The (keys, values) of a page whose KeyValue's user key starts with ``prefix``."""
    pairs = [(k, v) for k, v in zip(keys, values)
             if (user_key(v) or b"").startswith(prefix)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def key_lists(walker: Walker, bucket: Bucket, prefix: Optional[bytes] = None):
    """``boltfix keys``: the keys of ``bucket`` a page at a time; with
    ``prefix``, those starting with it, or in an etcd db's ``key`` bucket
    with a ``/`` prefix, the revisions whose user key starts with it."""
    if prefix is None:
        yield from walker.key_lists(bucket)
    elif is_user_prefix(bucket, prefix) and looks_like_etcd(top_level_names(walker.db)):
        for b, batch in walker.walk_batches(bucket):
            if b is bucket and batch.bucket_entry is None:
                yield user_key_filter(batch.keys, batch.values, prefix)[0]
    else:
        for page_keys in walker.key_lists(bucket):
            yield [k for k in page_keys if bytes(k).startswith(prefix)]


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
                {"name": key, "sequence": S.bucket_sequence(value),
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
