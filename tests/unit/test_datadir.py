"""boltfix.datadir on data dirs built from the committed etcd fixtures (the
real etcd 3.4/3.5 WALs and dbs): finding the parts, judging a backend file,
reading the snapshot files, and the start prediction.  The prediction
checked against real etcd processes is tests/oracle/test_wal_etcd.py."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from boltfix import datadir as D
from boltfix import findings as F
from boltfix import rewind
from boltfix import wal as W
from boltfix.errors import CannotOpen
from boltfix.findings import WARNING
from support import REPO
from support.cli import invoke
from support.salvage import tree_records

FIX = REPO / "fixtures" / "etcd"


def _data_dir(tmp_path, version: str = "3.5", db: str | bytes | None = "same"):
    """A data dir: the fixture WAL, and as member/snap/db the fixture db of
    ``version`` ("same"), another file's copy (a path), ``bytes`` or none."""
    d = tmp_path / f"dd-{version}"
    (d / "member" / "snap").mkdir(parents=True)
    shutil.copytree(FIX / f"wal-{version}", d / "member" / "wal")
    dst = d / "member" / "snap" / "db"
    if db == "same":
        shutil.copy(FIX / f"etcd-{version}.db", dst)
    elif isinstance(db, bytes):
        dst.write_bytes(db)
    elif db is not None:
        shutil.copy(db, dst)
    return d


def _codes(pred) -> list:
    return [f.code for f in pred.findings]


# ---------------------------------------------------------------- the parts
def test_the_data_dir_its_member_dir_and_a_wal_dir_are_accepted(tmp_path):
    d = _data_dir(tmp_path)
    for arg in (d, d / "member"):
        dd = D.open_data_dir(str(arg))
        assert dd.member == str(d / "member") and dd.db_path == str(d / "member" / "snap" / "db")
        assert dd.wal_dir == str(d / "member" / "wal") and dd.snap_dir == str(d / "member/snap")
    alone = D.open_data_dir(str(d / "member" / "wal"))
    assert alone.member is None and alone.db_path is None
    assert alone.wal_dir == str(d / "member" / "wal")
    other = tmp_path / "elsewhere"
    shutil.copytree(FIX / "wal-3.4", other)
    assert D.open_data_dir(str(d), str(other)).wal_dir == str(other)


def test_what_is_not_a_data_dir_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(CannotOpen, match="not an etcd data dir"):
        D.open_data_dir(str(tmp_path / "empty"))
    with pytest.raises(CannotOpen, match="is not a directory"):
        D.open_data_dir(str(tmp_path / "file"))
    with pytest.raises(CannotOpen, match="cannot open"):
        D.open_data_dir(str(tmp_path / "missing"))
    with pytest.raises(CannotOpen, match="--wal-dir"):
        D.open_data_dir(str(_data_dir(tmp_path)), str(tmp_path / "file"))
    # and the CLI says so, exit 2 (moved here from test_wal.py)
    r = invoke("check", "--data-dir", str(tmp_path / "empty"))
    assert r.exit_code == 2 and "not an etcd data dir" in r.stderr


# ---------------------------------------------------------------- the backend
@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_judge_db_reads_meta_and_members(version):
    path = str(FIX / f"etcd-{version}.db")
    j = D.judge_db(path)
    meta = rewind.db_meta(path)  # meta read on its own
    assert j["opens"] and j["consistent_index"] == meta[b"consistent_index"] > 0
    assert j["term"] == meta.get(b"term")  # 3.4 writes no term
    assert (j["term"] is None) == (version == "3.4")
    expected = json.loads((FIX / f"etcd-{version}.expected.json").read_text())
    assert j["version"].startswith(expected["version"])
    members = [k.decode() for (b, k) in tree_records(path) if b == (b"members",)]
    assert sorted(j["members"]) == sorted(members) and len(members) == 1
    assert j["check"] == {"failing": 0, "total": 0, "counts": {}}


def test_judge_db_on_a_truncated_a_zeroed_and_a_missing_file(tmp_path):
    j = D.judge_db(str(FIX / "etcd-13406.db"))
    assert j["opens"] and j["check"]["failing"] > 0
    assert j["check"]["counts"][F.FILE_TRUNCATED] == 1
    assert "check" not in D.judge_db(str(FIX / "etcd-13406.db"), full_check=False)
    zeroed = tmp_path / "zeroed.db"
    zeroed.write_bytes(bytes((FIX / "etcd-3.5.db").stat().st_size))
    j = D.judge_db(str(zeroed))
    assert j["exists"] and j["opens"] is False and j["error"]
    assert D.judge_db(str(tmp_path / "none.db")) == {"path": str(tmp_path / "none.db"),
                                                     "exists": False}


# ---------------------------------------------------------------- snapshots
def test_snapshot_files_by_name(tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    res = W.read_wal(str(FIX / "wal-3.5"))
    records = [s for s in res.snapshots if s["index"]]
    assert records
    for s in records:  # empty .snap files named for the WAL's snapshot records
        (snap / f"{s['term']:016x}-{s['index']:016x}.snap").write_bytes(b"")
    (snap / "notes.txt").write_bytes(b"x")
    shutil.copy(FIX / "etcd-3.5.db", snap / f"{records[0]['index']:016x}.snap.db")
    got = D.read_snap_files(str(snap))
    assert [s["index"] for s in got] == sorted((s["index"] for s in records), reverse=True)
    assert all(not s["ok"] and "empty" in s["error"] for s in got)
    assert D.snap_db_files(str(snap)) == {
        records[0]["index"]: str(snap / f"{records[0]['index']:016x}.snap.db")}
    assert D.read_snap_files(None) == [] and D.snap_db_files(None) == {}


# ---------------------------------------------------------------- the prediction
@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_a_data_dir_from_the_fixtures_starts(tmp_path, version):
    """The fixture WAL and db come from two runs: the facts say so."""
    pred = D.predict_start(D.open_data_dir(str(_data_dir(tmp_path, version))))
    res = W.read_wal(str(FIX / f"wal-{version}"))
    db = D.judge_db(str(FIX / f"etcd-{version}.db"))
    assert pred.outcome == "starts"
    assert pred.facts["consistent_index"] == db["consistent_index"]
    assert pred.facts["backend"] == "db" and pred.facts["snapshot"] is None
    assert pred.facts["wal"]["hard_state"] == res.hard_state
    me = f"{res.metadata['node_id']:x}"
    assert (F.DATADIR_MEMBER_MISMATCH in _codes(pred)) == (me not in db["members"])
    assert (F.DATADIR_DB_AHEAD in _codes(pred)) == (db["consistent_index"] > res.last_index)
    assert all(f.severity == WARNING for f in pred.findings)
    commit = res.hard_state["commit"]
    assert pred.facts["apply"]["count"] == max(0, commit - db["consistent_index"])


@pytest.mark.parametrize("version,v3", [("3.4 or older", False), ("3.5", False),
                                        ("3.6 (storage version 3.6.0)", True), ("3.6+", True),
                                        ("3.7 (storage version 3.7.0)", True), (None, False)])
def test_which_versions_publish_through_v3(version, v3):
    assert D.publishes_through_v3(version) is v3


@pytest.mark.parametrize("version", ["3.5", "3.6 (storage version 3.6.0)"])
def test_a_db_past_the_wal_delays_only_3_6_and_later(tmp_path, version):
    """The fixture db's consistent_index is past its WAL's end: on one
    member, etcd 3.6+ serves clients only after consistent_index - last - 1
    publish attempts time out; 3.4/3.5 at once."""
    d = _data_dir(tmp_path, "3.5")
    res = W.read_wal(str(FIX / "wal-3.5"))
    ci = D.judge_db(str(FIX / "etcd-3.5.db"))["consistent_index"]
    assert ci - res.last_index - 1 > 0
    p = D.StartPrediction(D.open_data_dir(str(d)))
    D._ready_delay(p, res, ci, version, ["a"])
    late = version.startswith("3.6")
    want = ci - res.last_index - 1
    assert p.facts.get("ready_delay") == ({"failing_publish_attempts": want,
                                           "seconds": want * D.PUBLISH_TIMEOUT_S}
                                          if late else None)
    assert [f.code for f in p.findings] == ([F.DATADIR_READY_DELAYED] if late else [])
    p = D.StartPrediction(D.open_data_dir(str(d)))
    D._ready_delay(p, res, ci, version, ["a", "b"])  # a running leader's heartbeat decides
    (f,) = p.findings
    assert f.code == F.DATADIR_ACKED_ENTRIES_LOST and "ready_delay" not in p.facts
    assert (f.detail["consistent_index"], f.detail["last_index"]) == (ci, res.last_index)


def test_without_a_db_etcd_refuses_and_would_apply_every_entry(tmp_path):
    pred = D.predict_start(D.open_data_dir(str(_data_dir(tmp_path, db=None))))
    commit = W.read_wal(str(FIX / "wal-3.5")).hard_state["commit"]
    assert pred.outcome == "fails" and F.DATADIR_DB_MISSING in _codes(pred)
    assert pred.facts["apply"] == {"from": 1, "to": commit, "count": commit}


def test_an_unreadable_and_a_damaged_db_fail(tmp_path):
    size = (FIX / "etcd-3.5.db").stat().st_size
    pred = D.predict_start(D.open_data_dir(str(_data_dir(tmp_path, db=bytes(size)))))
    assert pred.outcome == "fails" and F.DATADIR_DB_UNREADABLE in _codes(pred)
    d = _data_dir(tmp_path, "3.4", db=str(FIX / "etcd-13406.db"))
    pred = D.predict_start(D.open_data_dir(str(d)))
    (f,) = [f for f in pred.findings if f.code == F.DATADIR_DB_DAMAGED]
    assert f.detail["failing"] == D.judge_db(str(FIX / "etcd-13406.db"))["check"]["failing"]
    assert pred.outcome == "fails"
    # without the full check the damage is not looked for
    assert F.DATADIR_DB_DAMAGED not in _codes(D.predict_start(D.open_data_dir(str(d)),
                                                              full_check=False))


def test_no_wal_segment_means_a_new_member(tmp_path):
    d = _data_dir(tmp_path)
    for seg in (d / "member" / "wal").iterdir():
        seg.unlink()
    pred = D.predict_start(D.open_data_dir(str(d)))
    assert F.DATADIR_NO_WAL in _codes(pred) and pred.outcome == "fails"


def test_a_torn_wal_tail_is_repaired_and_a_broken_snap_skipped(tmp_path):
    d = _data_dir(tmp_path)
    seg = next((d / "member" / "wal").iterdir())
    whole = W.read_wal(str(d / "member" / "wal"))
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)
    s = next(s for s in whole.snapshots if s["index"])
    (d / "member" / "snap" / f"{s['term']:016x}-{s['index']:016x}.snap").write_bytes(b"")
    pred = D.predict_start(D.open_data_dir(str(d)))
    assert pred.outcome == "repairs_wal_and_starts" and pred.wal.stop == "torn"
    assert pred.wal.records == whole.records - 1
    assert F.DATADIR_SNAP_BROKEN in _codes(pred) and pred.facts["snapshot"] is None


def test_in_place_predicts_with_the_candidate_db(tmp_path):
    d = _data_dir(tmp_path)
    db_path = str(d / "member" / "snap" / "db")
    pred = D.in_place(db_path, str(FIX / "etcd-3.4.db"))
    assert pred.data_dir.db_path == str(FIX / "etcd-3.4.db")
    assert pred.facts["consistent_index"] == rewind.db_meta(
        str(FIX / "etcd-3.4.db"))[b"consistent_index"]
    assert "check" not in pred.facts["db"]  # never a full check
    assert D.in_place(str(FIX / "etcd-3.5.db"), str(FIX / "etcd-3.4.db")) is None
    assert os.path.getsize(db_path) == (FIX / "etcd-3.5.db").stat().st_size


def test_restore_route_names_the_tool_of_the_version():
    assert D.restore_route("3.4.23").startswith("ETCDCTL_API=3 etcdctl snapshot restore")
    for v in ("3.5.1", None):
        assert D.restore_route(v).startswith("etcdutl snapshot restore")
