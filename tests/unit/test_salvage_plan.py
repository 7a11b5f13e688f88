"""boltfix.salvage.plan: the plan's report and the page sets as ints (the
walk's pruned pointers as the rules read them: test_salvage_inputs.py)."""

from __future__ import annotations

import pytest

from boltfix.salvage.plan import Placed, Plan, bitmap, has_page, pages_of


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
