"""boltfix.salvage.rules: what the planner places, and under which rule, on
files written by the real bbolt 1.3.6 and etcd 3.5, damaged with
support/damage.py.  Every placed record is compared with the intact file's
tree (read before the damage); the whole repair is tests/unit/test_salvage.py."""

from __future__ import annotations

from boltfix.reader import DB
from boltfix.salvage import rules
from boltfix.salvage.inputs import PruneLog, inputs_from_walk, root_lost_inputs
from boltfix.walk import Walker
from support import damage
from support.salvage import ETCD, tree_records, zero_key_branch, zero_page, zero_roots


def _plan(path, is_etcd: bool = False):
    """The walk's inputs and the salvage plan, as repair's second pass makes them."""
    with DB(path) as db:
        log = PruneLog()
        w = Walker(db, log)
        w.count_all()
        inp = inputs_from_walk(db, w, log)
        return inp, rules.plan_salvage(db, inp, None, is_etcd)


def _placed(plan, bucket) -> dict:
    """key -> value of what the plan places in ``bucket``."""
    return {p.key: bytes(p.value) for p in plan.extras.get(bucket, [])}


def _intact(path, bucket, pages=None) -> dict:
    """key -> value of ``bucket``'s records in the file's tree (on ``pages``)."""
    return {k: v for (b, k), (v, pg) in tree_records(path).items()
            if b == bucket and (pages is None or pg in pages)}


def test_walk_subtree_reads_a_healthy_bucket_as_the_walk_does():
    path = damage.FIXTURES / "nested.db"
    bucket = (b"nested", b"paged")
    with DB(path) as db:
        top = damage.find_bucket(db, bucket).root
        nodes = damage.tree(db, top)
        sub = rules.walk_subtree(db, top, bucket)
    assert sub.problems == 0 and sub.top == top
    assert {r.key: bytes(r.value) for r in sub.records} == _intact(path, bucket)
    assert sub.leaves == sorted(n.pgid for n in nodes if not n.children)


def test_walk_subtree_counts_the_problems_of_a_damaged_one(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    damage.KINDS["branch-to-self"].apply(path)
    with DB(path) as db:
        top = damage.find_bucket(db, (b"nested", b"paged")).root
        sub = rules.walk_subtree(db, top, (b"nested", b"paged"))
    assert sub.problems > 0
    keys = [r.key for r in sub.records]
    assert keys == sorted(set(keys))  # what it kept is still in order, once


def test_a_clean_file_plans_nothing(tmp_path):
    inp, plan = _plan(damage.copy_fixture("nested", tmp_path))
    assert inp.pruned == [] and plan.extras == {} and plan.evidence == []


def test_rule_1_places_the_child_behind_a_broken_pointer(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    bucket = (b"nested", b"paged")
    d = damage.branch_past_pgid(path)
    # the pointer now points past the high-water mark; the old child is intact
    want = _intact(damage.FIXTURES / "nested.db", bucket, {d.extra["old_child"]})
    _inp, plan = _plan(path)
    assert want and _placed(plan, bucket) == want
    assert {p.rule for p in plan.extras[bucket]} == {"rule 1"}
    assert {p.page for p in plan.extras[bucket]} == {d.extra["old_child"]}


def test_rule_1_never_places_a_copy_of_a_zeroed_leaf(tmp_path):
    """A leaf destroyed at a valid position is the child itself, gone."""
    path = damage.copy_fixture("nested", tmp_path)
    d = damage.zeroed_page(path)
    inp, plan = _plan(path)
    assert [p.page for p in inp.pruned] == list(d.pages)
    assert plan.extras == {}


def test_rule_2_places_the_children_of_a_zeroed_branch(tmp_path):
    """With a synced freelist, the unreached, unfreed children of a zeroed
    branch are current and tile its range."""
    path = damage.copy_fixture("deep", tmp_path)
    branch = damage.first_branch(path, (b"deep",), depth=1)
    below = set(damage.subtree_pages(path, (b"deep",), branch.pgid))
    want = _intact(path, (b"deep",), below)
    zero_page(path, branch.pgid)
    inp, plan = _plan(path)
    assert inp.free is not None
    assert want and _placed(plan, (b"deep",)) == want
    assert {p.rule for p in plan.extras[(b"deep",)]} == {"rule 2"}


def test_rule_3_rebuilds_etcds_key_bucket_only_for_an_etcd_file(tmp_path):
    path = damage.copy_fixture(str(ETCD / "etcd-3.5.db"), tmp_path)
    want = _intact(path, (b"key",))
    zero_key_branch(path)
    inp, plan = _plan(path, is_etcd=True)
    assert inp.free is None  # etcd does not sync its freelist: rule 2 proves nothing
    assert want and _placed(plan, (b"key",)) == want
    assert all(p.rule.startswith("rule 3") for p in plan.extras[(b"key",)])
    # the same pages in a file not known as etcd's: evidence only
    _inp, generic = _plan(path, is_etcd=False)
    assert generic.extras == {} and generic.evidence


def test_rule_4_recognises_etcd_by_content_and_rebuilds_its_key_bucket(tmp_path):
    path = damage.copy_fixture(str(ETCD / "etcd-3.5.db"), tmp_path)
    want = _intact(path, (b"key",))
    zero_roots(path)
    with DB(path) as db:
        assert rules.etcd_by_content(db, root_lost_inputs(db))
        plan = rules.plan_root_lost(db)
    assert plan.root_lost and plan.etcd
    assert _placed(plan, (b"key",)) == want
    # the key bucket and an empty meta bucket are created at the top
    top = {p.key: p for p in plan.extras[()]}
    assert set(top) == {b"key", b"meta"} and all(p.new_bucket for p in top.values())


def test_rule_4_in_a_generic_file_keeps_everything_as_evidence(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    zero_roots(path)
    with DB(path) as db:
        assert not rules.etcd_by_content(db, root_lost_inputs(db))
        plan = rules.plan_root_lost(db)
    assert plan is not None and plan.extras == {} and plan.evidence
