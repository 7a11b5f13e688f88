"""boltfix.salvage.plan and .inputs: the plan's report, the page sets as
ints, and the walk's pruned pointers as the rules read them."""

from __future__ import annotations

import pytest

from boltfix import findings as F
from boltfix.findings import Collector, Finding
from boltfix.reader import DB
from boltfix.salvage.inputs import PruneLog, inputs_from_walk
from boltfix.salvage.plan import Placed, Plan, bitmap, has_page, pages_of
from boltfix.walk import Walker
from support import damage


@pytest.mark.parametrize("pages", [[], [0], [3, 7, 64], list(range(0, 300, 7))])
def test_page_sets_as_ints(pages):
    marks = bytearray(320)
    for p in pages:
        marks[p] = 5
    b = bitmap(marks)
    assert pages_of(b) == pages
    assert all(has_page(b, p) == (p in pages) for p in range(320))
    assert not (b & bitmap(bytes(320)))


def test_plan_report_counts_what_was_placed():
    plan = Plan(etcd=True)
    plan.extras[(b"key",)] = [Placed(b"k", b"v", 0, 5, "rule 3")]
    plan.counts[((b"key",), "rule 3")] += 2
    plan.counts[((b"key",), "rule 1")] -= 1  # a record the tree already held
    out = plan.to_json()
    assert out["salvaged"] == {"key": {"rule 3": 2}} and out["salvaged_records"] == 2
    assert "etcd_restore" not in out
    plan.root_lost = True
    assert "etcd_restore" in plan.to_json()


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
        log = PruneLog()
        w = Walker(db, log)
        w.count_all()
        inp = inputs_from_walk(db, w, log)
    assert inp.pruned and all(p.code in F.POINTER for p in inp.pruned)
    cycle = next(p for p in inp.pruned if p.code == F.PAGE_CYCLE)
    assert cycle.broken_pointer and cycle.bucket == (b"nested", b"paged")
    assert len(inp.reached) == inp.page_limit == min(inp.hwm, db.pages_in_file)
