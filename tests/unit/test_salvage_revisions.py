"""Rule 3's proofs about compaction, on the records of a real etcd 3.4 db
(fixtures/etcd/etcd-3.4.db, compacted at the revision its expected.json
names): what may vouch for a revision at or below the compaction point,
and what shows a revision was removed whatever that point is."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from boltfix.etcd import decode_key_value
from boltfix.etcdkeys import main_revision
from boltfix.reader import DB
from boltfix.salvage import revisions
from boltfix.walk import Walker
from support import etcddbs, oracle
from support.salvage import ETCD, intact_records, truncate_past_root

DB_PATH = ETCD / "etcd-3.4.db"
COMPACT = json.loads((ETCD / "etcd-3.4.expected.json").read_text())["compact_revision"]


def key_leaves(path=DB_PATH) -> list[list[tuple[bytes, bytes]]]:
    """The `key` bucket's leaves, each as its (revision key, value) records."""
    pages = defaultdict(list)
    with DB(path) as db:
        for b, r in Walker(db).walk():
            if b.path == (b"key",):
                pages[r.page].append((r.key, bytes(r.value)))
    return [pages[p] for p in sorted(pages, key=lambda p: pages[p][0][0])]


def test_a_post_compaction_leaf_vouches_and_pre_compaction_content_does_not():
    leaves = key_leaves()
    low = [[(k, v) for k, v in leaf if main_revision(k) <= COMPACT] for leaf in leaves]
    assert any(low)
    # the committed tree is compacted: none of its leaves looks pre-compaction
    assert not any(revisions._pre_compaction(rs, COMPACT) for rs in low)
    records = [kv for leaf in leaves for kv in leaf]
    some = next(rs for rs in low if rs)
    # a tombstone at or below the point: keyIndex.compact drops it
    tomb = next((k, v) for k, v in records if len(k) == 18)
    assert revisions._pre_compaction(some + [tomb], COMPACT)
    # two revisions of one user key (the tree holds such pairs across the
    # point): at or below it, only the newest of them would have stayed
    by_user = defaultdict(list)
    for k, v in records:
        if len(k) == 17:
            by_user[decode_key_value(v)["key"]].append((k, v))
    pair = next(rs[:2] for rs in by_user.values() if len(rs) >= 2)
    assert not revisions._pre_compaction(pair[:1], COMPACT)
    assert revisions._pre_compaction(pair, COMPACT)
    other = pair[1]
    assert revisions._pre_compaction([other] + [kv for kv in some if kv != other] + [pair[0]],
                                     COMPACT)
    # a tombstone exactly at the point ends a generation etcd 3.5.15+/3.6
    # keeps (doCompact: tomb >= atRev): alone, it shows nothing
    at = main_revision(tomb[0])
    assert not revisions._pre_compaction([tomb], at)
    assert revisions._pre_compaction([tomb], at + 1)


@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_every_compacted_tree_the_real_etcd_writes_looks_post_compaction(version):
    """The committed `key` tree of each version's db, compacted at the
    revision its expected.json names: no leaf looks pre-compaction (3.6 and
    3.7 keep the tombstones of the prefix delete made exactly at the
    compaction revision; their leaves vouch), and 3.4/3.5.1 keep none."""
    point = etcddbs.expected(version)["compact_revision"]
    low = [[(k, v) for k, v in leaf if main_revision(k) <= point]
           for leaf in key_leaves(etcddbs.etcd_db(version))]
    assert any(low)
    assert not any(revisions._pre_compaction(rs, point) for rs in low)
    at_point = [k for rs in low for k, _ in rs if len(k) == 18]
    assert all(main_revision(k) == point for k in at_point)
    assert bool(at_point) == (version not in ("3.4", "3.5")), len(at_point)


def test_a_leaf_read_whole_that_lacks_a_revision_inside_its_span_shows_it_removed():
    leaves = [leaf for leaf in key_leaves() if len(leaf) >= 3]
    a, b = leaves[0], leaves[1]
    copies = defaultdict(list)
    for page, leaf in ((1000, a), (1001, b)):
        for k, v in leaf:
            copies[k].append((v, page))
    spans = [(a[0][0], a[-1][0], 1000), (b[0][0], b[-1][0], 1001)]
    assert revisions._removed(copies, spans) == set()
    # leaf a, read whole, lacks its middle revision, which a stale page 1002 holds
    k, v = a[len(a) // 2]
    copies[k] = [(v, 1002)]
    assert revisions._removed(copies, spans) == {k}
    # the same revision outside every span a page read whole covers: not shown removed
    assert revisions._removed(copies, [spans[1]]) == set()


def test_copies_of_meta_without_a_compaction_mark_bound_nothing(tmp_path):
    """The root lost and the surviving copies of `meta` hold no compaction
    mark (here the marks' names are overwritten in place, same length): such
    copies predate every compaction, so the point is unknown and no revision
    is placed; they are all in lost+found."""
    import shutil

    from boltfix.repair import repair
    src = tmp_path / "damaged.db"
    shutil.copyfile(DB_PATH, src)
    truncate_past_root(src)
    data = src.read_bytes()
    assert b"finishedCompactRev" in data
    data = data.replace(b"finishedCompactRev", b"finishedCompactXXX").replace(
        b"scheduledCompactRev", b"scheduledCompactXXX")
    src.write_bytes(data)
    out, lf = tmp_path / "fixed.db", tmp_path / "lf.db"
    rep = repair(src, out, lost_found=lf)
    facts = rep.salvage["facts"]
    assert facts["compact_revision"] is None and facts["compact_revision_from"].startswith("unknown")
    assert rep.salvage["salvaged_records"] == 0
    assert not [k for k in tree_records_of(out) if k[0] == (b"key",)]
    kept = {e["key"] for e in oracle.oracle_dump(lf) if b"records" in e["path"]}
    intact = {k for b, k in intact_records(DB_PATH) if b == (b"key",)}
    assert len(kept & intact) > 100


def tree_records_of(path) -> set:
    with DB(path) as db:
        return {(b.path, r.key) for b, r in Walker(db).walk() if not r.is_bucket}
