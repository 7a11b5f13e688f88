"""boltfix.unreached: the pages the tree does not reach, and their leaves."""

from __future__ import annotations

import pytest

from boltfix import structs as S
from boltfix.pagemap import LISTED, UNREACHED, PageMap
from boltfix.reader import DB
from boltfix.unreached import C_FREE, C_ORPHAN, classify, leaf_pages, scan_orphans
from boltfix.walk import Walker
from support import damage, oracle


def _walked(db):
    w = Walker(db)
    w.count_all()
    return w


@pytest.mark.parametrize("shape", oracle.SHAPES)
def test_free_pages_are_the_page_maps(shape):
    with DB(oracle.fixture(shape)) as db:
        w = _walked(db)
        free, orphan, classes = classify(db, w)
        pm = PageMap(db, w)
        if pm.readable:  # a synced freelist: its unreached ids
            assert free == list(pm.positions(UNREACHED | LISTED, 2, pm.limit))
        else:  # etcd's way: every unreached page below the high-water mark
            assert set(free) >= set(pm.positions(UNREACHED, 2, pm.limit))
        assert all(classes[p] == C_FREE for p in free)
        assert all(classes[p] == C_ORPHAN for p in orphan)
        assert not set(free) & set(orphan)


@pytest.mark.parametrize("shape", ["freed", "nofreelist"])
def test_leaf_pages_are_leaves_with_their_own_id(shape):
    with DB(oracle.fixture(shape)) as db:
        free, orphan, classes = classify(db, _walked(db))
        skipped = []
        got = list(leaf_pages(db, free, classes, C_FREE, lambda p, e: skipped.append(p)))
        assert got, "the fixture frees leaf pages"
        for pgid, off, count, end in got:
            pid, flags, hcount, _ = S.PAGE_HEADER.unpack_from(db.buf, off)
            assert (pid, flags, hcount) == (pgid, S.LEAF_PAGE_FLAG, count)
            assert off == pgid * db.page_size < end <= db.size
        assert not skipped


def test_orphans_of_a_zeroed_branch(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    branch = damage.first_branch(path, (b"nested", b"paged"))
    ps = damage.page_size_of(path)
    with open(path, "r+b") as f:
        f.seek(branch.pgid * ps)
        f.write(bytes(ps))
    with DB(path) as db:
        w = _walked(db)
        pm = PageMap(db, w)
        reached = pm.reach_list()
        orphans = scan_orphans(db, reached, pm.limit, None)
        assert orphans and all(not reached[o.pgid] for o in orphans)
        assert all(o.flags in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG) for o in orphans)
        assert branch.pgid not in {o.pgid for o in orphans}  # zeros are no page
        assert set(branch.children) <= {o.pgid for o in orphans}
