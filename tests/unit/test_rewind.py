"""boltfix.rewind on the committed etcd fixtures (the real etcd 3.4/3.5 dbs
and WALs): the db's revisions and meta against what etcd itself reported
when the fixture was made (``*.expected.json``), the WAL's revision map, the
plan, the rewound copy and the repaired data dir.  Rewinds checked against a
real etcd are tests/oracle/test_etcd_datadir_repair.py."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest

from boltfix import datadir as D
from boltfix import raftlog as R
from boltfix import rewind as RW
from boltfix import wal as W
from boltfix import walapply as A
from boltfix.check import check
from boltfix.reader import DB
from boltfix.repair import RepairRefused
from support import REPO
from support.salvage import tree_records

FIX = REPO / "fixtures" / "etcd"
VERSIONS = ["3.4", "3.5"]


def _expected(version: str) -> dict:
    return json.loads((FIX / f"etcd-{version}.expected.json").read_text())


def _wal_map(version: str = "3.5", capture=None):
    """The WAL's revision map from its start (an empty store at revision 1)."""
    st = A.Store()
    st.rev = 1
    return RW.revision_map(W.read_wal(str(FIX / f"wal-{version}")), st, "wal-start", 0,
                           capture=capture)


def _data_dir(tmp_path, version: str = "3.5"):
    d = tmp_path / "in"
    (d / "member" / "snap").mkdir(parents=True)
    shutil.copytree(FIX / f"wal-{version}", d / "member" / "wal")
    shutil.copy(FIX / f"etcd-{version}.db", d / "member" / "snap" / "db")
    return d


# ---------------------------------------------------------------- the db
@pytest.mark.parametrize("version", VERSIONS)
def test_db_meta_and_revisions_match_what_etcd_reported(version):
    path = str(FIX / f"etcd-{version}.db")
    exp = _expected(version)
    meta = RW.db_meta(path)
    assert meta[b"finishedCompactRev"] == meta[b"scheduledCompactRev"] == exp["compact_revision"]
    assert meta[b"consistent_index"] == D.judge_db(path, full_check=False)["consistent_index"]
    dbr = RW.db_revisions(path)
    assert dbr.max_rev == exp["revision"] and not dbr.nested and dbr.meta == meta
    live = {k.decode(): n for k, n in dbr.newest.items() if not n[2]}
    assert set(live) == set(exp["keys"])
    assert all(live[k][0] == exp["key_meta"][k]["mod_revision"] for k in live)


def test_db_revisions_above_a_floor_answer_as_the_whole_history():
    path = str(FIX / "etcd-3.5.db")
    full = RW.db_revisions(path)
    mains = sorted({main for main, _s in full.records})
    floor = mains[len(mains) * 2 // 3]  # a revision the db holds: kept below, not above
    part = RW.db_revisions(path, floor=floor)
    assert part.records == {r: v for r, v in full.records.items() if r[0] > floor}
    assert 0 < len(part.records) < len(full.records)
    for rev in (floor, floor + 5, full.max_rev):
        assert part.count_above(rev) == full.count_above(rev)
        assert part.max_at_or_below(rev) == full.max_at_or_below(rev)
        for key in list(full.newest)[::40]:
            assert part.newest_at_or_below(key, rev) == full.newest_at_or_below(key, rev)
    with pytest.raises(ValueError):
        part.newest_at_or_below(next(iter(full.newest)), floor - 1)
    # the limit: None as soon as more records than allowed lie at or below rev
    assert RW.db_revisions(path, limit=(10, full.max_rev)) is None
    assert RW.db_revisions(path, limit=(len(full.records), full.max_rev)) is not None


# ---------------------------------------------------------------- the WAL
def test_the_revision_map_numbers_each_write_once():
    m, _ = _wal_map()
    revs = [rev for _i, rev, _c in m.writes]
    assert revs == list(range(2, 2 + len(revs)))  # each write takes the next revision
    assert m.rev[-1] == revs[-1] and m.exact
    for idx, rev, _changes in m.writes:
        assert m.entry_of(rev) == idx and m.at(idx)[0] == rev
    assert m.at(0) == (1, 0, 0) and m.at(10 ** 9) is None
    assert m.rev == sorted(m.rev)
    # the compaction request's revision is the one in effect after it
    res = W.read_wal(str(FIX / "wal-3.5"))
    for _r, e in W.iter_entries(res):
        p = R.decode_entry_payload(e, True)
        if p.get("kind") == "compaction":
            assert m.at(e["index"])[2] == p["compaction"]["revision"]
            break
    else:
        pytest.fail("the fixture WAL holds a compaction")
    assert any(k == "lease_grant" for _i, k in m.other)


def test_a_replay_resumed_from_a_captured_store_goes_on_identically():
    m, _ = _wal_map()
    mid = m.index[len(m.index) // 2]
    m2, st = _wal_map(capture=mid)
    assert st.rev == m.at(mid)[0]
    rest, _ = RW.revision_map(W.read_wal(str(FIX / "wal-3.5")), st, "db", mid)
    assert rest.anchor_rev == m.at(mid)[0]
    assert rest.index == [i for i in m.index if i > mid]
    assert rest.rev == [r for i, r in zip(m.index, m.rev) if i > mid]
    assert rest.writes == [w for w in m.writes if w[0] > mid]


def test_written_by_sees_that_the_fixture_db_is_another_history():
    """The committed WAL and db come from two runs: the db holds records
    the WAL's replay did not write."""
    m, _ = _wal_map()
    dbr = RW.db_revisions(str(FIX / "etcd-3.5.db"))
    want = {(rev, sub): (key, op == A.DELETE)
            for _i, rev, changes in m.writes for sub, (key, op) in enumerate(changes)}
    differ = sorted(r for r, v in dbr.records.items() if want.get(r) != v)
    assert differ
    assert not RW.written_by(m, dbr)
    assert RW.written_by(m, dbr, upto=differ[0][0] - 1)
    assert not RW.written_by(m, dbr, upto=differ[0][0])


# ---------------------------------------------------------------- the plan
def test_a_db_past_the_wal_keeps_its_records_and_takes_the_wal_end():
    res = W.read_wal(str(FIX / "wal-3.5"))
    path = str(FIX / "etcd-3.5.db")
    p, m, _st = RW.plan(res, path, 0)
    ci = RW.db_meta(path)[b"consistent_index"]
    assert ci > res.last_index
    last = [e for _r, e in W.iter_entries(res) if e["index"] == res.last_index][-1]
    assert p.db_kept_past_wal and p.anchor == "db" and p.db_consistent_index == ci
    assert (p.consistent_index, p.term) == (res.last_index, last["term"])
    assert p.revision == _expected("3.5")["revision"] and p.removed_records == 0
    assert p.changes_db and p.to_json()["consistent_index"] == res.last_index


def test_a_member_of_several_keeps_its_consistent_index_past_the_wal():
    """With the leader still holding what the WAL lost, the db is kept as it
    is: etcd skips the entries the leader sends again up to it."""
    res = W.read_wal(str(FIX / "wal-3.5"))
    path = str(FIX / "etcd-3.5.db")
    p, _m, _st = RW.plan(res, path, 0, multi_member=True)
    ci = RW.db_meta(path)[b"consistent_index"]
    assert ci > res.last_index
    assert p.db_kept_past_wal and (p.consistent_index, p.db_consistent_index) == (ci, ci)
    assert p.term == RW.db_meta(path).get(b"term")
    assert not p.changes_db and "leader sends" in " ".join(p.reasons)


def test_write_rewound_drops_the_revisions_above_the_plan(tmp_path):
    src = str(FIX / "etcd-3.5.db")
    full = RW.db_revisions(src)
    mains = sorted({main for main, _s in full.records})
    # a revision the db holds, with the next one held too: the cut is exact
    upto = next(r for r in reversed(mains[:-5]) if r + 1 in mains)
    compact = upto - 10
    p = RW.Plan(consistent_index=100, term=2, revision=upto, compact_rev=compact,
                raise_compact=True, db_consistent_index=full.meta[b"consistent_index"],
                anchor="db")
    out = tmp_path / "rewound.db"
    with open(out, "wb") as fh:
        RW.write_rewound(src, fh, p)
    got = RW.db_revisions(str(out))
    assert got.records == {r: v for r, v in full.records.items() if r[0] <= upto}
    assert got.max_rev == full.max_at_or_below(upto) < full.max_rev
    assert RW.db_meta(str(out)) == {b"consistent_index": 100, b"term": 2,
                                    b"finishedCompactRev": compact,
                                    b"scheduledCompactRev": compact}
    with DB(str(out)) as db:
        assert check(db).total == 0
    # every bucket but key and meta is copied as it stands
    a = {k: v[0] for k, v in tree_records(src).items() if k[0] not in ((b"key",), (b"meta",))}
    b = {k: v[0] for k, v in tree_records(out).items() if k[0] not in ((b"key",), (b"meta",))}
    assert a == b and a


def test_write_rewound_refuses_a_nested_bucket():
    p = RW.Plan(1, None, 1 << 62, 0, False, 1, "db")
    with pytest.raises(ValueError, match="nested bucket"):
        RW.write_rewound(str(REPO / "fixtures" / "bbolt" / "nested.db"), io.BytesIO(), p)


# ---------------------------------------------------------------- the data dir
def test_wal_cut_point_only_for_a_record_etcd_refuses(tmp_path):
    assert RW.wal_cut_point(W.read_wal(str(FIX / "wal-3.5"))) is None
    d = tmp_path / "wal"
    shutil.copytree(FIX / "wal-3.5", d)
    seg = next(d.iterdir())
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # a torn tail: etcd trims it itself
        f.truncate(size - 3)
    assert RW.wal_cut_point(W.read_wal(str(d))) is None
    data = bytearray((FIX / "wal-3.5" / seg.name).read_bytes())
    data[size // 2] ^= 0x01  # inside a record, mid-file: a CRC mismatch
    seg.write_bytes(bytes(data))
    res = W.read_wal(str(d))
    cut = RW.wal_cut_point(res)
    assert res.stop == "error" and cut == res.stop_at
    assert cut["segment"] == seg.name and 0 < cut["offset"] <= size // 2


def test_older_snapshots_offer_the_wal_start(tmp_path):
    d = _data_dir(tmp_path)
    res = W.read_wal(str(d / "member" / "wal"))
    s = next(s for s in res.snapshots if s["index"])
    (d / "member" / "snap" / f"{s['term']:016x}-{s['index']:016x}.snap").write_bytes(b"")
    # the WAL starts at index 1 with its (0, 0) record; the empty .snap is no start
    assert res.first_index == 1 and {"index": 0, "term": 0} in [
        {"index": x["index"], "term": x["term"]} for x in res.snapshots]
    assert RW.older_snapshots(D.predict_start(D.open_data_dir(str(d)))) == [0]


def test_repair_data_dir_writes_a_new_dir_etcd_starts_on(tmp_path):
    d = _data_dir(tmp_path)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    rep = RW.repair_data_dir(str(d), None, str(out))
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before  # read-only
    seg = "0000000000000000-0000000000000000.wal"
    assert rep.copied == [f"member/wal/{seg}"]
    assert (out / "member" / "wal" / seg).read_bytes() == (FIX / "wal-3.5" / seg).read_bytes()
    res = W.read_wal(str(FIX / "wal-3.5"))
    meta = RW.db_meta(str(out / "member" / "snap" / "db"))
    assert meta[b"consistent_index"] == rep.plan.consistent_index == res.last_index
    assert D.predict_start(D.open_data_dir(str(out))).outcome == "starts"
    assert rep.after["outcome"] == "starts" and not rep.lost_data
    with pytest.raises(RepairRefused, match="exists"):
        RW.repair_data_dir(str(d), None, str(out))
    with pytest.raises(RepairRefused, match="overlaps"):
        RW.repair_data_dir(str(d), None, str(d / "member" / "new"))
    assert os.path.isdir(out / "member" / "snap")


@pytest.mark.parametrize("damage", ["intact", "torn", "crc"])
def test_a_torn_or_cut_wal_says_the_revisions_above_what_etcd_reaches_are_lost(
        tmp_path, damage):
    # the fixture's db is past the WAL (kept as it is): etcd reaches the
    # revision the real etcd reported for it, and any revision a lost entry
    # wrote lies above it
    d = _data_dir(tmp_path)
    seg = next((d / "member" / "wal").iterdir())
    data = bytearray(seg.read_bytes())
    if damage == "torn":
        seg.write_bytes(bytes(data[:len(data) // 2]))  # a tail never written
    elif damage == "crc":
        data[len(data) // 2] ^= 0x01  # a CRC mismatch mid-file: the WAL is cut
        seg.write_bytes(bytes(data))
    rw = RW.repair_data_dir(str(d), None, str(tmp_path / "out")).to_json()["rewind"]
    lost = rw["lost_revision_ranges"]
    assert lost["ranges"] == []  # nothing lies below the raft snapshot
    if damage == "intact":
        assert lost["open_above"] is None
        return
    assert (rw["wal_torn"] if damage == "torn" else rw["wal_cut"])["last_index_kept"] < 123
    assert lost["open_above"] == _expected("3.5")["revision"]
    with DB(str(tmp_path / "out" / "member" / "snap" / "db")) as db:
        assert A.Store.from_db(db).rev == lost["open_above"]


def test_ranges_are_runs_of_consecutive_revisions():
    assert RW._ranges([7, 3, 4, 5, 9, 9]) == [[3, 5], [7, 7], [9, 9]]
    assert RW._ranges([]) == []
