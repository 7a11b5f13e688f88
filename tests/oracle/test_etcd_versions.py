"""boltfix on the db of every etcd version the project runs: 3.4.23 (Debian),
3.5.1 (PyPI), 3.5.21, 3.6.16 and 3.7.3 (built from etcd's Go modules by
``scripts/build_etcd.sh``).

For each version the real etcd writes a fresh data dir: a few hundred keys
(a two-level ``key`` bucket), several revisions, deletes, a compaction, a
lease, a Secret, a user and a role, auth on.  Then, on its own
``member/snap/db``:

* ``inspect`` names the version from what the file holds (3.6+: the
  storage version etcd wrote into ``meta/storageVersion``);
* ``check`` exits 0 with no finding;
* ``dump`` decodes every record (no decode error), serves the same newest
  values etcd serves, and masks the Secret and the password hashes;
* ``repair`` of a damaged copy keeps ``meta`` (``storageVersion`` included)
  and its output starts that etcd, put back into its data dir and through
  ``snapshot restore`` (``etcdutl``; ``etcdctl`` on 3.4), serving exactly
  the newest surviving revision of every key it holds;
* a data dir whose ``<index>.snap.db`` is behind its raft snapshot is
  predicted to fail (``boltfix inspect --data-dir``), and the real etcd
  refuses it.

etcd runs on 127.0.0.1 only.  Skipped locally without a version's binaries,
failed with CI=true.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from boltfix import datadir
from boltfix import findings as F
from boltfix.repair import repair
from support import damage, oracle
from support.cli import jsonl, run_ok
from support.etcdtools import (
    VERSIONS,
    EtcdServer,
    EtcdStartError,
    Gateway,
    put_db_into_datadir,
    require_etcd,
    restore_snapshot,
    storage_version,
)

ROOT = "root:versions-root"
ALICE = "alice:versions-alice"
SECRET = "/registry/secrets/default/db-password"
SECRET_VALUE = "s3cret-versions-value-0123456789"
NKEYS = 240
KEY = (b"key",)


def value_for(key: str, gen: int) -> str:
    """A deterministic value of ~300 bytes (a multi-page ``key`` bucket)."""
    return (f"{key}#{gen}#" * 40)[:300]


@dataclass
class Written:
    """A data dir the real etcd wrote, and what it serves."""
    version: str
    datadir: Path
    db: Path  # a copy of its member/snap/db after a clean stop
    served: dict  # key -> value, as etcd served them before the stop
    work: Path
    peer_port: int


def _write(srv: EtcdServer) -> dict:
    """Keys, revisions, deletes, a compaction, a lease, auth; what is served."""
    gw = Gateway(srv.endpoint)
    try:
        for i in range(NKEYS):
            gw.put(f"/registry/pods/ns-{i % 3}/pod-{i:04d}", value_for(str(i), 1))
        for i in range(0, 30):
            gw.put(f"/registry/pods/ns-{i % 3}/pod-{i:04d}", value_for(str(i), 2))
        gw.put(SECRET, SECRET_VALUE)
        for i in range(10):
            gw.put(f"/registry/events/e-{i}", value_for(f"e{i}", 1))
        for i in range(10):
            gw.delete(f"/registry/events/e-{i}")
    finally:
        gw.conn.close()
    srv.ctl("compact", str(srv.revision()))
    out = srv.ctl("lease", "grant", "3600").stdout
    lease = re.search(r"lease ([0-9a-f]+) granted", out).group(1)
    srv.ctl("put", "/registry/leases/kube-node-lease/node-0", "held", f"--lease={lease}")
    srv.ctl("put", "/registry/pods/ns-0/pod-0000", "after-compaction")
    for cmd in (("user", "add", ROOT), ("role", "add", "root"),
                ("user", "grant-role", "root", "root"), ("user", "add", ALICE),
                ("role", "add", "pod-reader"),
                ("role", "grant-permission", "pod-reader", "read", "/registry/pods/",
                 "--prefix"),
                ("user", "grant-role", "alice", "pod-reader"), ("auth", "enable")):
        srv.ctl(*cmd)
    return {kv["key"]: kv["value"] for kv in srv.get_kvs("", "--from-key", user=ROOT)}


@pytest.fixture(scope="module", params=VERSIONS)
def written(request, tmp_path_factory):
    """The version's own data dir and db (module scope: written once)."""
    version = request.param
    require_etcd(version)
    work = tmp_path_factory.mktemp(f"versions-{version}")
    dd = work / "datadir"
    with EtcdServer(dd, version) as srv:
        served = _write(srv)
        peer_port = srv.peer_port
    db = work / "own.db"
    shutil.copyfile(dd / "member" / "snap" / "db", db)
    try:
        yield Written(version, dd, db, served, work, peer_port)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_inspect_names_the_version(written):
    got = run_ok("inspect", written.db, "--json")
    version = json.loads(got.stdout)["etcd"]["version"]
    sv = storage_version(written.version)
    if sv is None:
        assert version == ("3.4 or older" if written.version == "3.4" else "3.5")
    else:
        major_minor = sv.rsplit(".", 1)[0]
        assert version == f"{major_minor} (storage version {sv})"
    text = run_ok("inspect", written.db).stdout
    assert version in text


def test_check_finds_nothing(written):
    r = run_ok("check", written.db, "--json")
    res = json.loads(r.stdout)
    assert r.exit_code == 0
    assert res["clean"] and res["total"] == 0 and res["findings"] == [], res["findings"][:5]
    assert oracle.oracle_check(written.db).ok


def test_dump_decodes_every_record_and_masks_secrets(written):
    r = run_ok("dump", written.db)
    lines = jsonl(r)
    assert lines
    newest = {}
    for d in lines:
        if not d["path"]:
            continue
        assert "etcd" in d and "error" not in d["etcd"], d
        if d["path"] == ["key"]:
            e = d["etcd"]
            if e["revision"]["tombstone"]:
                newest.pop(e["key"], None)
            else:
                newest[e["key"]] = e["value"]
    want = {k: ("*" * len(v) if k.startswith("/registry/secrets/") else v)
            for k, v in written.served.items()}
    assert newest == want
    users = {d["etcd"]["name"]: d["etcd"] for d in lines if d["path"] == ["authUsers"]}
    assert set(users) == {"root", "alice"}
    assert all(u["password"] == "<redacted>" for u in users.values())
    raw = r.stdout_bytes
    assert SECRET_VALUE.encode() not in raw and b"$2a$" not in raw
    assert SECRET_VALUE.encode().hex().encode() not in raw
    meta = {d["key"]: d["etcd"]["value"] for d in lines if d["path"] == ["meta"]}
    sv = storage_version(written.version)
    assert meta.get("storageVersion") == sv
    assert ("term" in meta) == (written.version != "3.4")


def _damaged_and_repaired(written: Written, work: Path) -> Path:
    """A copy of the db with one ``key`` leaf zeroed, repaired."""
    src = work / "damaged.db"
    shutil.copyfile(written.db, src)
    damage.zeroed_page(src, KEY)
    fixed = work / "fixed.db"
    rep = repair(src, fixed)
    assert rep.verified and rep.lost_data
    assert oracle.oracle_check(fixed).ok
    return fixed


def _served(srv: EtcdServer) -> dict:
    return {kv["key"]: (kv["value"], kv["mod_revision"])
            for kv in srv.get_kvs("", "--from-key", user=ROOT)}


def _want(fixed: Path) -> dict:
    return {k: (kv["value"].decode(), kv["mod_revision"])
            for k, kv in oracle.etcd_served_by(fixed).items()}


def test_repair_keeps_meta_and_starts_etcd_in_place_and_restored(written, tmp_path):
    fixed = _damaged_and_repaired(written, tmp_path)
    # meta (storageVersion, consistent_index, term, confState) is kept whole
    meta_of = {p: {e["key"]: e["value"] for e in oracle.oracle_dump(p) if e["path"] == [b"meta"]}
               for p in (written.db, fixed)}
    assert meta_of[fixed] == meta_of[written.db]
    sv = storage_version(written.version)
    assert meta_of[fixed].get(b"storageVersion") == (sv.encode() if sv else None)
    want = _want(fixed)
    assert 0 < len(want) < len(written.served)
    for k, (v, _) in want.items():
        assert v == written.served[k] or k.startswith("/registry/pods/"), k
    try:
        # in place: into a copy of the data dir it came from
        dd = tmp_path / "inplace"
        shutil.copytree(written.datadir, dd)
        put_db_into_datadir(fixed, dd)
        with EtcdServer(dd, written.version, peer_port=written.peer_port,
                        health_user=ROOT) as srv:
            assert _served(srv) == want
            srv.ctl("put", "/boltfix/after-repair", "ok", user=ROOT)
            assert srv.get("/boltfix/after-repair", user=ROOT) == "ok"
        shutil.rmtree(dd)
        # through snapshot restore (etcdutl; etcdctl on 3.4)
        dd = tmp_path / "restored"
        port = restore_snapshot(fixed, dd, written.version)
        with EtcdServer(dd, written.version, peer_port=port, health_user=ROOT) as srv:
            assert _served(srv) == want
    finally:
        shutil.rmtree(tmp_path / "inplace", ignore_errors=True)
        shutil.rmtree(tmp_path / "restored", ignore_errors=True)


def test_snapshot_db_behind_its_snapshot_is_predicted_and_refused(written, tmp_path):
    """etcd's start path (3.6+ ``bootstrap.go``, 3.4/3.5 ``NewServer``): a
    backend recovered from ``<index>.snap.db`` whose consistent_index is below
    the raft snapshot's (and not 0) stops etcd.  ``predict_start`` says
    ``fails`` with ``datadir-snapshot-db-behind``, and the real etcd refuses."""
    dd = tmp_path / "snapdir"
    with EtcdServer(dd, written.version, extra_args=["--snapshot-count", "20"]) as srv:
        gw = Gateway(srv.endpoint)
        try:
            for i in range(45):
                gw.put(f"/snap/{i}", "v" * 40)
        finally:
            gw.conn.close()
        port = srv.peer_port
    snap_dir = dd / "member" / "snap"
    index = max(int(p.name.split("-")[1].split(".")[0], 16) for p in snap_dir.glob("*.snap"))
    db = snap_dir / "db"
    oracle.put(db, [b"meta"], b"consistent_index", (index - 5).to_bytes(8, "big"))
    shutil.copyfile(db, snap_dir / f"{index:016x}.snap.db")
    p = datadir.predict_start(datadir.open_data_dir(str(dd)))
    assert p.outcome == "fails"
    assert [f.code for f in p.findings] == [F.DATADIR_SNAPSHOT_DB_BEHIND]
    with pytest.raises(EtcdStartError) as e:
        with EtcdServer(dd, written.version, peer_port=port, start_timeout=20):
            pass
    assert re.search(r"does not match with snapshot|tx closed", str(e.value)), str(e.value)[-800:]
    shutil.rmtree(dd)
