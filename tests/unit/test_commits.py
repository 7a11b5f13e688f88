"""boltfix.commits, its pieces one by one on files the real bbolt wrote one
transaction at a time (support.oracle): the metas' order, the choice on a
whole file, what a newer commit holds that the older one does not, and
etcd's facts of a tree.  (The choice on real crashes, every kind:
tests/oracle/test_crash_commits.py.)"""

from __future__ import annotations

import pytest

from boltfix import commits as C
from boltfix import findings as F
from boltfix.leaves import Tree
from boltfix.navigate import top_level_names
from boltfix.reader import DB
from support import crashmix, etcdfiles, oracle


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


# ---------------------------------------------------------------- pages both trees reach
@pytest.fixture(scope="module")
def nested_history(tmp_path_factory):
    """The file after each commit of real bbolt 1.3.6 writing
    ``crashmix.nested_ops`` (NoFreelistSync), 0 the start."""
    path = tmp_path_factory.mktemp("nested-history") / "db"
    path.write_bytes(oracle.fixture("nofreelist").read_bytes())
    captures = [path.read_bytes()]
    for op in crashmix.nested_ops():
        if op[0] == "put":
            oracle.put(path, op[1], op[2], op[3])
        else:
            oracle.delete_keys(path, op[1], op[2])
        captures.append(path.read_bytes())
    return captures


def _judged_newest(db):
    """(the newest meta's judgement with its reach, the older meta)."""
    newest, older = C.valid_metas(db)
    return C.judge(db, C.meta_candidate(newest), keep_reached=True), older


def _places(db, root) -> dict:
    """Every branch and leaf page of the tree at ``root``: (bucket path, is root)."""
    out, stack = {}, [(root, (), True)]
    while stack:
        pgid, path, is_root = stack.pop()
        if pgid not in out and 2 <= pgid < db.pages_in_file:
            out[pgid] = (path, is_root)
            stack.extend(C._tree_children(db, pgid, path))
    return out


def _moved_pages(db) -> list:
    """Pages both metas' trees reach under different bucket paths."""
    newest, older = C.valid_metas(db)
    a, b = _places(db, newest.root), _places(db, older.root)
    return [p for p in a.keys() & b.keys() if a[p] != b[p]]


def test_a_disagreement_counts_only_when_the_older_tree_is_whole(nested_history, tmp_path):
    """Commit 6's pages written but its meta's first sector still commit
    4's (the crash inside Commit): the newest valid meta (5) is whole; the
    older (4) had pages commit 6 reused, so the trees disagree on shared
    pages.  The older tree is the mix (not whole): the newest is kept."""
    path = tmp_path / "crash.db"
    path.write_bytes(crashmix.crash(nested_history[5], nested_history[6], "meta-old-sector", 6))
    with DB(path) as db:
        newest, older_meta = _judged_newest(db)
        assert newest.whole
        judged = [newest]
        older = C._shared_pages_disagree(db, newest, older_meta, judged)
        assert older is not None and not older.whole  # they disagree; the older is the mix
        assert newest.whole and not newest.counts[F.COMMIT_PAGE_OTHER_BUCKET]
        choice = C.choose(db)
    assert choice.rule == C.NEWEST


def test_a_page_shared_under_another_path_is_caught_only_by_full_paths(nested_history,
                                                                         tmp_path):
    """Commit 10's writes lost: its root page holds an old leaf of bucket
    ``fresh``, whose entry ``sub`` names the page that is ``fresh/sub``'s
    root in commit 9's whole tree.  By full bucket paths (etcd's files) the
    newest tree is a mix; by bucket names (what MoveBucket keeps) it is not."""
    path = tmp_path / "crash.db"
    path.write_bytes(crashmix.crash(nested_history[9], nested_history[10], "lost", 10))
    with DB(path) as db:
        assert _moved_pages(db)
        newest, older_meta = _judged_newest(db)
        assert newest.whole
        assert C._shared_pages_disagree(db, newest, older_meta, [newest]) is None
        older = C._shared_pages_disagree(db, newest, older_meta, [newest], strict=True)
        assert older is not None and older.whole
        assert newest.counts[F.COMMIT_PAGE_OTHER_BUCKET] == 1 and not newest.whole
        (finding,) = newest.findings
        assert finding.code == F.COMMIT_PAGE_OTHER_BUCKET and finding.bucket == (b"sub",)


@pytest.mark.parametrize("put", [None, (b"moved-too", b"v")], ids=["move", "move-and-put"])
def test_move_bucket_is_a_whole_commit(nested_history, tmp_path, put):
    """bbolt 1.4.3's ``MoveBucket`` (``nested/level2/level3`` to the root,
    with or without a put into it in the same transaction) keeps the
    bucket's pages under another path: the newest commit is whole and kept
    (a full-path comparison would call it a mix)."""
    path = tmp_path / "moved.db"
    path.write_bytes(nested_history[-1])
    oracle.move_bucket(path, [b"nested", b"level2"], [], b"level3", put=put)
    with DB(path) as db:
        assert _moved_pages(db)  # the case the names are for
        choice = C.choose(db)
        assert choice.rule == C.NEWEST and choice.judgement.whole
        assert not choice.judgement.counts[F.COMMIT_PAGE_OTHER_BUCKET]
        newest, older_meta = _judged_newest(db)
        older = C._shared_pages_disagree(db, newest, older_meta, [newest], strict=True)
        assert older is not None and newest.counts[F.COMMIT_PAGE_OTHER_BUCKET]
    assert oracle.oracle_check(path, version="1.4.3").ok


def test_comparing_shared_pages_reads_about_the_pages_the_commit_changed(nested_history,
                                                                         tmp_path, monkeypatch):
    """After one real put deep in nested buckets, the two descents read
    the pages the commit rewrote and the old copies it freed (at most twice
    the pages it wrote, plus the two roots), not the tree."""
    path = tmp_path / "f.db"
    path.write_bytes(nested_history[-1])
    oracle.put(path, [b"nested", b"level2", b"level3"], b"one-more", b"v")
    written = crashmix.written_pages(nested_history[-1], path.read_bytes(), 4096)
    decoded = []
    children = C._tree_children
    monkeypatch.setattr(C, "_tree_children", lambda db, p, path: decoded.append(p) or
                        children(db, p, path))
    with DB(path) as db:
        assert db.page_size == 4096
        newest, older_meta = _judged_newest(db)
        tree = len(_places(db, newest.candidate.tree.root))
        decoded.clear()
        assert C._shared_pages_disagree(db, newest, older_meta, [newest]) is None
    assert 0 < len(decoded) <= 2 * len(written) + 2 and len(decoded) * 4 < tree, \
        (len(decoded), len(written), tree)
