"""boltfix.members on the committed etcd fixtures (real etcd 3.4/3.5 WALs
and dbs): client URLs from the WAL, the comparison, the refusal of two
clusters.  The real 3-member cluster is tests/oracle/test_etcd_members.py."""

from __future__ import annotations

import shutil

import pytest

from boltfix import members as M
from boltfix import wal as W
from boltfix.errors import CannotOpen
from support import REPO

FIX = REPO / "fixtures" / "etcd"


def _data_dir(tmp_path, name: str, version: str = "3.5", db: bytes = None):
    d = tmp_path / name
    (d / "member" / "snap").mkdir(parents=True)
    shutil.copytree(FIX / f"wal-{version}", d / "member" / "wal")
    if db is None:
        shutil.copy(FIX / f"etcd-{version}.db", d / "member" / "snap" / "db")
    else:
        (d / "member" / "snap" / "db").write_bytes(db)
    return str(d)


def test_client_urls_come_from_the_wal_attribute_entries():
    urls = M.client_urls(W.read_wal(str(FIX / "wal-3.5")))
    assert list(urls) == ["5461c4a2b3efd9ec"]
    assert urls["5461c4a2b3efd9ec"]["name"] == "boltfix"
    assert all(u.startswith("http://") for u in urls["5461c4a2b3efd9ec"]["client_urls"])


def test_a_member_with_a_zeroed_db_is_bad_and_the_other_best(tmp_path):
    good = _data_dir(tmp_path, "a")
    size = (FIX / "etcd-3.5.db").stat().st_size
    bad = _data_dir(tmp_path, "b", db=bytes(size))
    rep = M.compare([good, bad])
    by = {m["data_dir"]: m for m in rep["members"]}
    assert by[good]["status"] == "good" and by[good]["newest"]
    assert by[bad]["status"] == "bad" and by[bad]["why"]
    assert rep["best"] == good and rep["intact"] == 1
    # one good of two is no quorum: every member restored from the good one
    assert rep["route"] == "restore-all-from-best"
    cmds = [c for r in rep["recovery"] for c in r["commands"]]
    assert any(c.startswith(f"etcdutl snapshot restore {good}/member/snap/db") for c in cmds)


def test_two_clusters_and_too_few_dirs_are_refused(tmp_path):
    a = _data_dir(tmp_path, "a")
    b = _data_dir(tmp_path, "b", version="3.4")
    with pytest.raises(M.ClusterMismatch, match="not members of one cluster"):
        M.compare([a, b])
    with pytest.raises(CannotOpen):
        M.compare([a])
