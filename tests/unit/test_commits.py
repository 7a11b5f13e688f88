"""boltfix.commits, its pieces one by one on files the real bbolt wrote one
transaction at a time (support.oracle): the metas' order, the choice on a
whole file, what a newer commit holds that the older one does not, and
etcd's facts of a tree.  (The choice on real crashes, every kind:
tests/oracle/test_crash_commits.py.)"""

from __future__ import annotations

import pytest

from boltfix import commits as C
from boltfix.leaves import Tree
from boltfix.navigate import top_level_names
from boltfix.reader import DB
from boltfix.repair import repair
from support import etcdfiles, oracle


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A file of 20 keys in bucket ``b`` only, written by the real bbolt: one
    transaction per key."""
    path = tmp_path_factory.mktemp("commits") / "base.db"
    path.write_bytes(oracle.fixture("nested").read_bytes())
    with DB(path) as db:
        names = top_level_names(db, Tree.of(db.meta))
    oracle.delete_keys(path, [], names)  # one transaction: an empty file
    for i in range(20):
        oracle.put(path, [b"b"], b"k%02d" % i, b"v%02d" % i)
    return path


def _after(history, tmp_path, step) -> tuple:
    """A copy of ``history`` after one more real transaction ``step(path)``:
    (newest meta's tree, the previous meta's tree, path)."""
    path = tmp_path / "f.db"
    path.write_bytes(history.read_bytes())
    step(path)
    with DB(path) as db:
        newest, older = C.valid_metas(db)
        assert newest.txid == older.txid + 1
        return Tree.of(newest), Tree.of(older), path


def test_valid_metas_newest_first_and_a_whole_file_keeps_its_newest(history):
    with DB(history) as db:
        metas = C.valid_metas(db)
        assert [m.txid for m in metas] == sorted((m.txid for m in db.metas), reverse=True)
        choice = C.choose(db)
    assert choice.rule == C.NEWEST
    assert choice.candidate.meta.txid == metas[0].txid
    # records: the 20 keys and bucket b's entry in the root
    assert (choice.judgement.records, choice.judgement.buckets) == (21, 1)
    assert choice.judgement.whole and choice.judgement.top == [b"b"]
    assert choice.passed_over is None


@pytest.mark.parametrize("step,expect", [
    (lambda p: oracle.put(p, [b"b"], b"k99", b"new"), {"added": 1, "changed": 0, "deleted": 0}),
    (lambda p: oracle.put(p, [b"b"], b"k05", b"other"), {"added": 0, "changed": 1, "deleted": 0}),
    (lambda p: oracle.delete_keys(p, [b"b"], [b"k03", b"k04", b"k07"]),
     {"added": 0, "changed": 0, "deleted": 3}),
], ids=["added", "changed", "deleted"])
def test_newer_commit_loss_counts_one_real_transaction(history, tmp_path, step, expect):
    newer, kept, path = _after(history, tmp_path, step)
    with DB(path) as db:
        loss = C.newer_commit_loss(db, newer, kept)
    assert {k: loss[k] for k in expect} == expect
    assert loss["buckets_total"] == 1 and loss["unread"] == []
    (bucket,) = loss["buckets"]
    assert bucket["bucket"] == ["b"]
    if expect["added"]:
        assert bucket["ranges"] == [["k99", "k99"]]
    if expect["changed"]:
        assert bucket["ranges"] == [["k05", "k05"]]


def test_the_same_tree_loses_nothing(history):
    with DB(history) as db:
        tree = Tree.of(C.valid_metas(db)[0])
        loss = C.newer_commit_loss(db, tree, tree)
    assert (loss["added"], loss["changed"], loss["deleted"], loss["buckets"]) == (0, 0, 0, [])


def test_range_keys_are_cut_for_people():
    assert C._range_key(b"short") == "short"
    long = b"x" * (C.RANGE_KEY_BYTES + 100)
    text = C._range_key(long)
    assert text.startswith("x" * C.RANGE_KEY_BYTES) and text.endswith(f"({len(long)} bytes)")


def test_etcd_facts_read_by_descent(tmp_path):
    p = tmp_path / "etcd.db"
    recs = etcdfiles.key_records()
    etcdfiles.write_etcd(p, key_recs=recs)
    with DB(p) as db:
        facts = C.etcd_facts(db, Tree.of(db.meta))
    assert facts == {"consistent_index": 7,
                     "max_revision": int.from_bytes(recs[-1][0][:8], "big")}


def _entries(path, version: str = oracle.DEFAULT_VERSION) -> list:
    """Real bbolt's records of ``path``: (bucket path, key, type, value)."""
    return [(tuple(e["path"]), e["key"], e["type"], e["value"])
            for e in oracle.oracle_dump(path, version=version)]


@pytest.mark.parametrize("put", [None, (b"moved-too", b"v")], ids=["move", "move-and-put"])
def test_a_moved_bucket_is_a_whole_commit(tmp_path, put):
    """bbolt 1.4.3's ``MoveBucket`` (``nested/level2/level3`` to the root,
    alone or with a put into it in the same transaction) moves the bucket's
    entry and leaves its pages where they are: the two metas' trees share
    them under different bucket paths.  That is a whole commit: kept, and
    repaired into exactly the records bbolt reads."""
    path = tmp_path / "moved.db"
    path.write_bytes(oracle.fixture("nofreelist").read_bytes())
    before = _entries(path)
    oracle.move_bucket(path, [b"nested", b"level2"], [], b"level3", put=put)
    after = _entries(path, version="1.4.3")
    assert after != before and any(e[0][:1] == (b"level3",) for e in after)
    with DB(path) as db:
        choice = C.choose(db)
        newest, older = C.valid_metas(db)
    assert newest.txid == older.txid + 1 and choice.candidate.meta is newest
    assert choice.rule == C.NEWEST and choice.judgement.whole
    out = tmp_path / "fixed.db"
    repair(path, out)
    assert _entries(out) == after
