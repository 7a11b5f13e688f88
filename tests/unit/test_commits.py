"""boltfix.commits, its pieces one by one on files the real bbolt wrote one
transaction at a time (support.oracle): the metas' order, the choice on a
whole file, what a newer commit holds that the older one does not, and
etcd's facts of a tree.  (The choice on real crashes, every kind:
tests/oracle/test_crash_commits.py.)"""

from __future__ import annotations

import pytest

from boltfix import commits as C
from boltfix import findings as F
from boltfix.check import check
from boltfix.findings import NEWEST_COMMIT_DAMAGED
from boltfix.leaves import Tree
from boltfix.navigate import top_level_names
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.walk import Walker
from support import FIXTURES, damage, etcdfiles, oracle
from support.salvage import zero_roots


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


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """Every crafted damage kind applied once."""
    return damage.apply_every_kind(tmp_path_factory.mktemp("kinds"))


@pytest.mark.parametrize("kind", list(damage.KINDS))
def test_check_says_what_repair_keeps(kind, every_kind, tmp_path):
    """check's ``newest-commit-damaged`` ("repair rolls back") is said
    exactly when repair's own choice is to roll back: a freelist's run over
    tree pages is the freelist's damage, not the tree's, in both."""
    path, _ = every_kind[kind]
    with DB(path) as db:
        said = [f for f in check(db).findings if f.code == NEWEST_COMMIT_DAMAGED]
    rule = (repair(path, tmp_path / "out.db").to_json()["commits"] or {}).get("rule")
    assert bool(said) == (rule in (C.ROLLED_BACK, C.ROLLED_BACK_FURTHER)), (said, rule)


# ---------------------------------------------------------------- rule 0 and a freelist's type
def _newest_index(path) -> int:
    with DB(path) as db:
        return C.valid_metas(db)[0].index


def test_a_newest_meta_failing_its_checksum_only_is_mended(tmp_path):
    """A synced file whose newest meta fails its checksum only: its tree and
    freelist cover every page exactly once, txid one above: kept (rule 0)."""
    src = damage.copy_fixture("nested", tmp_path, "d.db")
    bad = _newest_index(src)
    damage.meta_bad_checksum(src)
    with DB(src) as db:
        choice = C.choose(db)
        assert choice.rule == C.MENDED, choice.reason
        assert choice.candidate.meta.index == bad
        assert choice.candidate.txid == db.metas[1 - bad].txid + 1


@pytest.mark.parametrize("shape,change", [
    ("nested", "txid"),  # two above the other meta: not the next commit
    ("nested", "root"),  # another root page: not the commit's tree
    ("nested", "pgid"),  # a higher high-water mark: pages neither reached nor free
    ("nofreelist", None),  # no synced freelist: nothing proves the fields
])
def test_a_bad_checksum_meta_is_not_mended_without_proof(tmp_path, shape, change):
    """The proofs rule 0 asks for, one missing at a time: the other meta's
    tree is kept, as bbolt's open keeps it."""
    src = damage.copy_fixture(shape, tmp_path, "d.db")
    bad = _newest_index(src)
    m = damage.read_meta(src, bad)
    fields = {"txid": {"txid": m.txid + 1}, "root": {"root": m.root.root + 1},
              "pgid": {"pgid": m.pgid + 1}, None: {"checksum": m.checksum ^ 1}}[change]
    damage.write_meta(src, bad, fix_checksum=False, **fields)
    with DB(src) as db:
        assert not db.metas[bad].valid
        choice = C.choose(db)
        assert choice.rule != C.MENDED, choice.reason
        assert choice.candidate.meta.index == 1 - bad


def test_a_freelist_page_of_the_wrong_type_only_vs_an_older_page(tmp_path):
    """The newest freelist page with a leaf's type but a freelist's ids (the
    tree and they cover every page once): the newest commit.  The same page
    holding a leaf page's bytes, as a lost write leaves an older page: its
    writes did not all reach the disk, rolled back."""
    src = damage.copy_fixture("freed", tmp_path, "d.db")
    fl, _ = damage.freelist_ids(src)
    lost = tmp_path / "lost.db"
    lost.write_bytes(src.read_bytes())
    damage.freelist_wrong_type(src)
    with DB(src) as db:
        assert C.choose(db).rule == C.NEWEST
        ps, leaf = db.page_size, Tree.of(db.meta).root
        while db.page(leaf).flags != damage.S.LEAF_PAGE_FLAG:
            leaf = db.page(leaf).elements()[0].child
        old = bytearray(db.buf[leaf * ps:(leaf + 1) * ps])
    old[0:8] = fl.to_bytes(8, "little")  # a page of an older commit at that position
    with open(lost, "r+b") as f:
        f.seek(fl * ps)
        f.write(old)
    with DB(lost) as db:
        choice = C.choose(db)
        assert choice.rule == C.ROLLED_BACK, choice.reason
        assert choice.passed_over.counts[F.COMMIT_FREELIST_LOST] == 1


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


#: a member/snap/db the real etcd 3.6.16 wrote (fixtures/README.md), cut at
#: its high-water mark: it holds a stale root leaf whose `key` page was reused
STALE_ROOT = FIXTURES / "etcd" / "etcd-3.6-stale-root.db"


def _etcd_state(path) -> tuple:
    """(meta/consistent_index, compaction revision, {revision key: value})
    of the tree the file's newest meta names."""
    buckets: dict = {}
    with DB(path) as db:
        for bucket, rec in Walker(db).walk():
            if not rec.is_bucket:
                buckets.setdefault(bucket.path, {})[bytes(rec.key)] = bytes(rec.value)
    meta = buckets[(b"meta",)]
    return (int.from_bytes(meta[b"consistent_index"], "big"),
            int.from_bytes(meta[b"scheduledCompactRev"][:8], "big"), buckets[(b"key",)])


def test_a_stale_root_leaf_on_a_reused_key_page_is_not_kept(tmp_path):
    """Both metas' root leaves zeroed in a real etcd 3.6 file: a stale root
    leaf (an older commit's consistent_index) names as its `key` bucket a
    page reused since, which holds later revisions.  Kept, etcd would
    replay its WAL above that consistent_index over revisions it already
    holds.  The `key` bucket's history proves the mix
    (etcd-create-revision-missing); the tree kept is one commit's: every
    revision above the compaction up to its highest, each as the file held
    it, none made by a raft entry above its consistent_index (this file was
    never restored: each revision is one applied entry)."""
    src, out = tmp_path / "d.db", tmp_path / "o.db"
    src.write_bytes(STALE_ROOT.read_bytes())
    _, _, before = _etcd_state(src)
    zero_roots(src)
    report = repair(src, out, lost_found=tmp_path / "lf.db")
    index, compacted, kept = _etcd_state(out)
    top = max(int.from_bytes(k[:8], "big") for k in kept)
    assert top <= index + 1
    assert all(before.get(k) == v for k, v in kept.items())
    assert {k for k in kept if int.from_bytes(k[:8], "big") > compacted} == \
        {k for k in before if compacted < int.from_bytes(k[:8], "big") <= top}
    rejected = [j for j in report.commits["judged"]
                if j["counts"].get(F.ETCD_CREATE_REVISION_MISSING)]
    assert rejected and all(not j["whole"] for j in rejected)
    assert report.commits["kept"]["root"] not in {j["root"] for j in rejected}
