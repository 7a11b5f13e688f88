"""boltfix.salvage.inputs: the walk's report as the rules read it (the
pruned pointers with their exact key ranges, the page map, the inputs when
the root is lost, the second pass's de-duplicated findings), on files
written by the real bbolt 1.3.6 and etcd 3.5, damaged with support/damage.py."""

from __future__ import annotations

import pytest

from boltfix import findings as F
from boltfix.findings import Collector, Finding
from boltfix.leaves import Tree
from boltfix.reader import DB
from boltfix.salvage.inputs import (
    Dedupe,
    PruneLog,
    inputs_from_walk,
    orphans_of,
    root_lost_inputs,
)
from boltfix.walk import Walker
from support import damage
from support.salvage import ETCD, zero_key_branch, zero_roots


def _inputs(db: DB, collector=None):
    """The walk of ``db``'s tree and its inputs, as repair builds them."""
    log = PruneLog(collector)
    w = Walker(db, log)
    w.count_all()
    return w, inputs_from_walk(db, w, log)


def test_prune_log_keeps_pointers_and_counts_the_rest():
    c = Collector(limit=0)
    log = PruneLog(c)
    for code in (F.PAGE_CYCLE, F.BUCKET_VALUE_SHORT, F.PAGE_ID_MISMATCH, F.KEY_ORDER):
        log(Finding(code, "m"))
    assert [f.code for f in log.pruned] == [F.PAGE_CYCLE]
    assert log.unclaimed == 2 and log.mismatch == 1 and c.total == 4


def test_inputs_carry_the_pruned_ranges(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    damage.KINDS["branch-to-self"].apply(path)
    with DB(path) as db:
        _w, inp = _inputs(db)
    assert inp.pruned and all(p.code in F.POINTER for p in inp.pruned)
    cycle = next(p for p in inp.pruned if p.code == F.PAGE_CYCLE)
    assert cycle.broken_pointer and cycle.bucket == (b"nested", b"paged")
    assert len(inp.reached) == inp.page_limit == min(inp.hwm, db.pages_in_file)


def test_a_pointer_past_the_high_water_mark_keeps_its_element_key(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    nodes = damage.bucket_tree(path, (b"nested", b"paged"))  # read before the damage
    d = damage.branch_past_pgid(path)
    branch, target = d.extra["branch"], d.extra["target"]
    with DB(path) as db:
        _w, inp = _inputs(db)
    (pr,) = [p for p in inp.pruned if p.page == target]
    assert pr.parent == branch and pr.broken_pointer and pr.exact
    # the element's own key (the intact page's) is the range's lower bound
    # and counts as trusted; the next element's key is its upper bound
    node = next(n for n in nodes if n.pgid == branch)
    i = node.children.index(d.extra["old_child"])
    assert pr.key == pr.lo == node.keys[i]
    assert pr.hi == (node.keys[i + 1] if i + 1 < len(node.keys) else None)


@pytest.mark.parametrize("shape", ["nested", "freed", "deep"])
def test_reached_and_free_pages_cover_the_file_without_overlap(tmp_path, shape):
    """bbolt's tx.Check invariant on a clean file: every page below the
    high-water mark is reached by the tree or listed free, never both."""
    path = damage.copy_fixture(shape, tmp_path)
    _fl, ids = damage.freelist_ids(path)
    with DB(path) as db:
        _w, inp = _inputs(db)
        hwm = db.meta.pgid
    reached = {i for i, b in enumerate(inp.reached) if b}
    assert inp.pruned == [] and not inp.truncated and inp.hwm == hwm
    assert inp.free == frozenset(ids)
    assert not reached & inp.free
    assert reached | inp.free == set(range(hwm))


def test_the_older_metas_freelist_is_read_for_its_own_tree(tmp_path):
    """Repair may walk the older meta's tree: its free set is then that
    meta's own freelist, not the meta in use's."""
    path = damage.copy_fixture("freed", tmp_path)
    with DB(path) as db:
        older = min(db.metas, key=lambda m: m.txid)
        assert older is not db.meta and older.freelist != db.meta.freelist
        _w, newest = _inputs(db)
        log = PruneLog()
        w = Walker(db, log, tree=Tree.of(older))
        w.count_all()
        inp = inputs_from_walk(db, w, log, older)
    with DB(path, meta=older.index) as db:  # the older freelist, read on its own
        fl = db.freelist()
        assert fl is not None and not fl.findings
        want = frozenset(fl.ids(db))
    assert inp.free == want != newest.free
    assert inp.hwm == older.pgid


def test_a_file_without_a_synced_freelist_has_no_free_set(tmp_path):
    path = damage.copy_fixture("nofreelist", tmp_path)
    with DB(path) as db:
        _w, inp = _inputs(db)
    assert inp.free is None and inp.pruned == []


def test_orphans_are_the_unreached_pages_of_a_zeroed_key_branch(tmp_path):
    path = damage.copy_fixture(str(ETCD / "etcd-3.5.db"), tmp_path)
    with DB(path) as db:
        root = damage.find_bucket(db, (b"key",)).root
        leaves = {n.pgid for n in damage.tree(db, root) if n.pgid != root}
    zero_key_branch(path)
    with DB(path) as db:
        _w, inp = _inputs(db)
        orphans = orphans_of(db, inp)
    got = {o.pgid for o in orphans}
    assert got and all(not inp.reached[p] for p in got)
    assert leaves <= got  # every child of the zeroed root is still on its page
    assert root not in got  # zeros are no page


def test_root_lost_inputs_take_the_newest_valid_meta(tmp_path):
    path = damage.copy_fixture(str(ETCD / "etcd-3.5.db"), tmp_path)
    metas = [damage.read_meta(path, i) for i in (0, 1)]
    newest = max(metas, key=lambda m: m.txid)
    zero_roots(path)
    with DB(path) as db:
        inp = root_lost_inputs(db)
        assert inp.hwm == newest.pgid and inp.page_limit == min(newest.pgid, db.pages_in_file)
        assert not any(inp.reached) and len(inp.reached) == db.pages_in_file
        assert inp.pruned == [] and inp.tree.hwm == newest.pgid
        # etcd's freelist is not synced: no free set to trust
        assert inp.free is None
        # with nothing reached, every leaf the zeroed roots pointed into is an orphan
        assert orphans_of(db, inp)


def test_dedupe_drops_what_the_collector_already_holds():
    c = Collector()
    first = Finding(F.PAGE_CYCLE, "a cycle", page=7, pages=(7,))
    c(first)
    d = Dedupe(c)
    d(Finding(F.PAGE_CYCLE, "a cycle", page=7, pages=(7,)))  # the first pass's, met again
    assert c.total == 1
    d(Finding(F.PAGE_CYCLE, "a cycle", page=8, pages=(8,)))
    assert c.total == 2 and c.counts[F.PAGE_CYCLE] == 2
    assert d.total == c.total and d.findings is c.findings  # the rest passes through
