"""What the salvage tests share: the records of a file's trees, and damage
that takes an etcd file's root or its ``key`` bucket's root."""

from __future__ import annotations

from boltfix.etcdkeys import main_revision
from boltfix.leaves import Bucket
from boltfix.reader import DB
from boltfix.salvage.inputs import orphans_of, root_lost_inputs
from boltfix.walk import Walker
from support import REPO, damage

#: the committed etcd dbs
ETCD = REPO / "fixtures" / "etcd"


def tree_records(path, meta=None) -> dict:
    """(bucket path, key) -> (value, page) of one meta's tree, plain records only."""
    with DB(path, meta=meta) as db:
        return {(b.path, r.key): (bytes(r.value), r.page)
                for b, r in Walker(db).walk() if not r.is_bucket}


def intact_records(path) -> dict:
    """Both metas' trees: (bucket path, key) -> set of values."""
    out: dict = {}
    for m in (0, 1):
        for k, (v, _) in tree_records(path, m).items():
            out.setdefault(k, set()).add(v)
    return out


def zero_page(path, pgid: int) -> None:
    """Page ``pgid`` overwritten with zeros."""
    ps = damage.page_size_of(path)
    with open(path, "r+b") as f:
        f.seek(pgid * ps)
        f.write(bytes(ps))


def roots(path):
    """Both metas' root pages, ascending."""
    with DB(path) as db:
        return sorted({m.root for m in db.metas})


def key_root(path) -> int:
    """The root page of etcd's ``key`` bucket."""
    with DB(path) as db:
        return damage.find_bucket(db, (b"key",)).root


def truncate_past_root(path) -> None:
    """The file ends below every meta's root page (etcd#13406 once the cut
    also takes the root)."""
    cut = min(roots(path)) - 1
    with open(path, "r+b") as f:
        f.truncate(cut * damage.page_size_of(path))


def zero_roots(path) -> None:
    """Both metas' root leaves zeroed."""
    for r in roots(path):
        zero_page(path, r)


def zero_key_branch(path) -> None:
    """The key bucket's root branch page zeroed: every leaf is an orphan."""
    zero_page(path, key_root(path))



def unprovable_low(rep, missing, damaged, point: int, lost_found) -> set:
    """Of the ``key`` revisions a repair left out (``missing``: (bucket
    path, key)), those nothing in the damaged file proves current: at or
    below the compaction point ``point`` and held by no old tree written
    after that compaction (:func:`vouched_low`; which old trees survive
    depends on the pages etcd's map freelist reused), when repair kept no
    older whole tree.  Each of them must be in lost+found: asserted here,
    so nothing on an intact page is silently dropped."""
    if (rep.commits or {}).get("rule") == "rolled-back-further":
        return set()
    low = {k for k in missing if k[0] == (b"key",) and main_revision(k[1]) <= point}
    if low:
        low -= {((b"key",), k) for k in vouched_low(damaged, point)}
    if low:
        kept = {k for (path, k), _ in tree_records(lost_found).items() if path[-1:] == (b"records",)}
        assert {k for _, k in low} <= kept, sorted(k for _, k in low if k not in kept)[:3]
    return low


def vouched_low(path, point: int) -> set:
    """The revision keys at or below ``point`` that an old tree written
    after the compaction at ``point`` holds: a root leaf (any page, read
    with the walk's checks) whose ``meta`` bucket says finishedCompactRev ==
    scheduledCompactRev == ``point``, its ``key`` bucket as the walk reads it."""
    out = set()
    with DB(path) as db:
        for o in orphans_of(db, root_lost_inputs(db)):
            w = Walker(db)
            top = Bucket(path=(), root=o.pgid, sequence=0)
            entries = {r.key: r for r in w.records(top) if r.is_bucket}
            meta = w.open_bucket(top, entries[b"meta"]) if b"meta" in entries else None
            key = w.open_bucket(top, entries[b"key"]) if b"key" in entries else None
            if meta is None or key is None:
                continue
            marks = {r.key: bytes(r.value) for r in Walker(db).records(meta)}
            done = marks.get(b"finishedCompactRev", b"")
            if len(done) < 8 or done != marks.get(b"scheduledCompactRev") or \
                    main_revision(done) != point:
                continue
            out.update(r.key for r in Walker(db).records(key) if main_revision(r.key) <= point)
    return out


def zero_roots_and_key_roots(path) -> None:
    """Both metas' root leaves zeroed, and the ``key`` root page that the
    committed tree or any old root leaf names: the key bucket's leaves all
    orphans, and no tree left whose ``key`` bucket rule 3 could read to see
    which revisions at or below the compaction point compaction kept (a
    run's layout comes close when bbolt's map freelist reused the pages of
    the old trees written after the compaction)."""
    tops = {key_root(path)}
    zero_roots(path)
    with DB(path) as db:
        for o in orphans_of(db, root_lost_inputs(db)):
            w = Walker(db)
            top = Bucket(path=(), root=o.pgid, sequence=0)
            entry = next((r for r in w.records(top) if r.key == b"key" and r.is_bucket), None)
            child = w.open_bucket(top, entry) if entry is not None else None
            if child is not None and child.root:
                tops.add(child.root)
    for pgid in sorted(tops):
        zero_page(path, pgid)
