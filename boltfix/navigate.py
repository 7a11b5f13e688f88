"""Finding your way in a tree: a bucket by the names typed on the command
line, a key in a bucket, the names of the top-level buckets.

Every lookup goes through :class:`~boltfix.walk.Walker`, so every page on
the way passes the walk's checks.
"""

from __future__ import annotations

import os
from typing import Iterator, List, Optional, Sequence, Tuple

from boltfix.leaves import Bucket, Record, Tree
from boltfix.reader import DB
from boltfix.text import name_text
from boltfix.walk import Walker


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


def find_in_bucket(walker: Walker, bucket: Bucket, key: bytes) -> Optional[Record]:
    """The record for ``key`` in ``bucket`` (a fresh walker: two lookups may
    pass the same pages)."""
    return Walker(walker.db, report=walker.report).find(bucket, key)


def find_key(walker: Walker, bucket: Bucket, name: str) -> Optional[Record]:
    """The record of the key typed as ``name`` (its literal bytes, then
    ``0x<hex>``) in ``bucket``, or None (the name ``get`` and ``open_path``
    are given)."""
    for cand in decode_name(name):
        rec = find_in_bucket(walker, bucket, cand)
        if rec is not None:
            return rec
    return None


def open_path(walker: Walker, names: Sequence[str]) -> Tuple[Optional[Bucket], str]:
    """Open the nested bucket named by ``names``; (bucket, "") or (None, why)."""
    cur = walker.root_bucket()
    if cur is None:
        return None, "no valid meta page"
    for name in names:
        rec = find_key(walker, cur, name)
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


def top_level_names(db: DB, tree: Optional[Tree] = None) -> List[bytes]:
    """Names of the root bucket's bucket entries (of ``tree``, default the
    meta in use's), read with a quiet throwaway walker: the one rule by
    which check, inspect, dump and repair tell whether a file is etcd's.
    A plain key in the root is not a bucket (bbolt allows none there)."""
    w = Walker(db, tree=tree)
    root = w.root_bucket()
    if root is None:
        return []
    return [r.key for r in w.records(root) if r.is_bucket]


def top_bucket_batches(db: DB, names: Sequence[bytes],
                       tree: Optional[Tree] = None) -> Iterator[Tuple[bytes, object]]:
    """``(name, batch)`` for the records directly in each top-level bucket
    ``names`` (in that order; a missing one is left out, sub-buckets are
    not entered): an application's own buckets, read a page of records at
    a time.  One quiet walk a bucket (a walker reaches each page once; the
    main walk reports the tree's findings)."""
    for name in names:
        w = Walker(db, tree=tree)
        root = w.root_bucket()
        if root is None:
            return
        rec = w.find(root, name)
        bucket = w.open_bucket(root, rec) if rec is not None and rec.is_bucket else None
        if bucket is None:
            continue
        for b, batch in w.walk_batches(bucket):
            if b is bucket and batch.bucket_entry is None:
                yield name, batch
