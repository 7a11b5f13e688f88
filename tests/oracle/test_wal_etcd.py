"""The WAL reader, the revision mapping and the start prediction against the
real etcd (3.4.23, 3.5.1, 3.6.16 and 3.7.3, :mod:`walcases`), and ``boltfix wal`` against
etcd's own ``etcd-dump-logs`` (built from etcd's Go module by
``scripts/build_etcd_dump_logs.sh``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from boltfix import datadir as D
from boltfix import etcd as E
from boltfix import raftlog as R
from boltfix import wal as W
from boltfix import walapply as A
from boltfix.cli import main
from boltfix.navigate import open_path
from boltfix.reader import DB
from boltfix.walk import Walker
from support import walcases
from support.etcdtools import (
    START_TIMEOUT,
    EtcdServer,
    EtcdStartError,
    Gateway,
    free_ports,
    require_etcd,
)

REPO = Path(__file__).resolve().parents[2]
DUMP_LOGS_VERSION = "v3.5.21"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["3.4", "3.5", "3.6", "3.7"])
def cases(request, tmp_path_factory):
    require_etcd(request.param)
    base = tmp_path_factory.mktemp(f"wal{request.param}")
    walcases.build(base, request.param)
    return request.param, base


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tree_hash(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, h)
    return out


# ---------------------------------------------------------------- revisions
def _db_revisions(path: Path) -> dict:
    want = {}
    with DB(path) as db:
        w = Walker(db)
        b, _ = open_path(w, ["key"])
        for bb, batch in w.walk_batches(b):
            if bb is not b or batch.bucket_entry is not None:
                continue
            for k, v in zip(batch.keys, batch.values):
                rev = E.decode_revision(bytes(k))
                kv = E.decode_key_value(bytes(v))
                want[(rev["main"], rev["sub"])] = (kv["key"], rev["tombstone"])
    return want


def test_revisions_from_the_wal_match_the_db(cases):
    """Replay cap2's WAL above cap1's consistent_index on cap1's keyspace:
    every (main, sub, key, put/delete) equals cap2's key bucket, except
    what cap2's compaction removed (below it, the db holds a subset)."""
    _version, base = cases
    cap1, cap2 = base / "cap1", base / "cap2"
    ci = D.judge_db(str(cap1 / "member/snap/db"), False)["consistent_index"]
    with DB(cap1 / "member/snap/db") as db:
        st = A.Store.from_db(db)
    first_rev = st.rev
    res = W.read_wal(str(cap2 / "member/wal"))
    ents = ((e, R.decode_entry_payload(e, True)) for _r, e in W.iter_entries(res))
    summary = A.Replay()
    applied = list(A.replay(st, ents, ci, summary))
    got = {(a.revision, s): (k, op == A.DELETE) for a in applied for s, k, op in a.changes}
    want = {k: v for k, v in _db_revisions(cap2 / "member/snap/db").items() if k[0] > first_rev}
    compacted = st.compacted
    assert compacted == 25
    above = {k: v for k, v in got.items() if k[0] > compacted}
    assert above == {k: v for k, v in want.items() if k[0] > compacted}
    assert {k: v for k, v in want.items() if k[0] <= compacted}.items() <= got.items()
    # the kinds that take no revision took none, the others one each
    kinds = {}
    for a in applied:
        kinds.setdefault(a.kind, []).append(a.revision)
    assert all(r is None for r in kinds["auth_user_add"] + kinds["lease_grant"]
               + kinds["compaction"])
    assert all(r is not None for r in kinds["put"])
    assert None in kinds["delete_range"] and None in kinds["txn"]  # no-ops take none
    revs = [a.revision for a in applied if a.revision is not None]
    assert revs == list(range(first_rev + 1, first_rev + 1 + len(revs)))  # dense
    assert summary.exact
    # touched_keys: what the lead narrows at-risk keys with
    touched = A.touched_keys(applied)
    assert touched[0][0] == first_rev + 1 and all(ks for _r, ks in touched)


def test_wal_revisions_cli(cases):
    _version, base = cases
    d = _copy(base / "cap2", base.parent / f"{base.name}-revcli")
    shutil.copy(base / "cap1/member/snap/db", d / "member/snap/db")
    r = CliRunner().invoke(main, ["wal", str(d), "--format", "jsonl", "--revisions",
                                  "--type", "txn"])
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 0, r.output
    assert lines and all(x["kind"] == "txn" for x in lines)
    # (a read-only txn never reaches raft); the txn deleting nothing takes no
    # revision, the failing-compare one writes its failure branch
    assert [x["revision"] is None for x in lines].count(True) == 1
    assert any(c["key"] == "fail" for x in lines for c in x["changes"])
    assert any(c["op"] == "delete" for x in lines for c in x["changes"])


# ---------------------------------------------------------------- etcd-dump-logs
def _dump_logs_binary() -> Path:
    exe = REPO / "build" / f"etcd-dump-logs-{DUMP_LOGS_VERSION}" / "etcd-dump-logs"
    if not exe.exists() and shutil.which("go"):
        subprocess.run(["bash", str(REPO / "scripts/build_etcd_dump_logs.sh"),
                        DUMP_LOGS_VERSION], capture_output=True, timeout=1200)
    if not exe.exists():
        why = f"etcd-dump-logs {DUMP_LOGS_VERSION} not built (scripts/build_etcd_dump_logs.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return exe


_LINE = re.compile(r"^\s*(\d+)\t\s*(\d+)\t(norm|conf)\t(.*)$")


def _reference(exe: Path, data_dir: Path) -> list:
    out = subprocess.run([str(exe), "--start-index", "1", str(data_dir)], capture_output=True,
                         text=True, timeout=120).stdout
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        term, index, typ, data = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        if typ == "conf":
            kind = "conf_change"
        elif not data.strip():
            kind = "empty"
        elif data.startswith("method="):
            kind = "v2_request"
        else:
            km = re.match(r"^(?:header:<[^>]*> )?(?:ID:\d+ )?([a-z_0-9]+):", data)
            kind = km.group(1) if km else "?"
        idm = re.search(r"header:<ID:(\d+)", data)
        keym = re.search(r'(?:^| |<)key:"([^"]*)"', data)
        rows.append((term, index, typ, kind, int(idm.group(1)) if idm else None,
                     keym.group(1) if keym and kind in ("put", "delete_range") else None))
    return rows


def _ours(data_dir: Path) -> list:
    r = CliRunner().invoke(main, ["wal", str(data_dir), "--format", "jsonl", "--start-index",
                                  "2", "--show-secrets"])
    assert r.exit_code == 0, r.output
    rows = []
    for line in r.stdout.splitlines():
        x = json.loads(line)
        req = x["request"]
        key = None
        if x["kind"] in ("put", "delete_range"):
            key = req[x["kind"]].get("key", "")
        rows.append((x["term"], x["index"], "conf" if x["type"] != "normal" else "norm",
                     x["kind"], (req.get("header") or {}).get("ID"), key))
    return rows


def test_boltfix_wal_matches_etcd_dump_logs(cases):
    exe = _dump_logs_binary()
    _version, base = cases
    ref, ours = _reference(exe, base / "cap2"), _ours(base / "cap2")
    assert len(ref) > 100
    assert ours == ref


# ---------------------------------------------------------------- secrets
def test_wal_never_shows_secrets_unless_asked(cases):
    _version, base = cases
    runner = CliRunner()
    # a Secret's value is a protobuf: shown as hex (text only in JSON values)
    secrets = [walcases.PASSWORD, walcases.NEW_PASSWORD, walcases.SECRET_VALUE.decode(),
               walcases.SECRET_VALUE.hex()]
    for fmt in ("text", "jsonl"):
        r = runner.invoke(main, ["wal", str(base / "cap2"), "--format", fmt])
        assert r.exit_code == 0, r.output
        assert "auth_user_add" in r.stdout and "/registry/secrets/default/token" in r.stdout
        for s in secrets:
            assert s not in r.stdout
        assert "<redacted>" in r.stdout
        shown = runner.invoke(main, ["wal", str(base / "cap2"), "--format", fmt,
                                     "--show-secrets"])
        assert walcases.SECRET_VALUE.hex() in shown.stdout  # the test can fail
    # 3.4 sends the password itself, 3.5 a bcrypt hash of it (hashedPassword)
    r = runner.invoke(main, ["wal", str(base / "cap2"), "--format", "jsonl", "--type",
                             "auth_user_add,auth_user_change_password", "--show-secrets"])
    reqs = [json.loads(x)["request"] for x in r.stdout.splitlines()]
    assert len(reqs) == 2 and all(("password" in next(iter(v.values())) or "hashedPassword"
                                   in next(iter(v.values()))) for v in
                                  [{k: x[k] for k in x if k.startswith("auth")} for x in reqs])


def test_the_input_is_never_written(cases):
    _version, base = cases
    before = _tree_hash(base / "cap2")
    runner = CliRunner()
    runner.invoke(main, ["wal", str(base / "cap2"), "--revisions", "--format", "jsonl"])
    runner.invoke(main, ["inspect", "--data-dir", str(base / "cap2")])
    runner.invoke(main, ["check", "--data-dir", str(base / "cap2"), "--json"])
    assert _tree_hash(base / "cap2") == before


# ---------------------------------------------------------------- start prediction
def _start(version: str, data_dir: Path, timeout: float = START_TIMEOUT) -> tuple:
    """(started, log) of the real etcd on data_dir (a copy: etcd writes)."""
    try:
        with EtcdServer(data_dir, version, start_timeout=timeout) as s:
            s.ctl("get", "k10")
            return True, s.log_text()
    except EtcdStartError as exc:
        return False, str(exc)


def _records(seg: Path) -> list:
    """(offset, type, framed data length, entry index or None) of each record
    of a segment."""
    res = W.WalReader([W.Segment(seg.name, str(seg), 0, 0)])
    raw = seg.read_bytes()
    return [(r.offset, r.type, W.frame_size(int.from_bytes(raw[r.offset:r.offset + 8],
                                                           "little"))[0],
             R.decode_entry(r.data)["index"] if r.type == R.ENTRY else None)
            for r in res.records()]


def _big_tail(version: str, base: Path) -> tuple:
    """``cap2`` run once more, with three puts of 700-byte values: every
    entry record of the WAL's tail then holds a 512-byte boundary, so a tear
    can take exactly the entries a test wants.  (data dir, the keyspace the
    real etcd served before it stopped), made once per version."""
    d, cache = base / "cap2big", base / "cap2big.json"
    if not cache.exists():
        shutil.rmtree(d, ignore_errors=True)
        _copy(base / "cap2", d)
        with EtcdServer(d, version) as s:
            g = Gateway(s.endpoint)
            for i in range(3):
                g.put(f"big{i}", "v" * 700)
            cache.write_text(json.dumps(s.get_kvs("", "--prefix")))
    return d, json.loads(cache.read_text())


def test_intact_data_dir_starts(cases, tmp_path):
    version, base = cases
    d = _copy(base / "cap2", tmp_path / "d")
    p = D.predict_start(D.open_data_dir(str(d)))
    assert p.outcome == "starts", p.to_json()["findings"]
    assert p.facts["snapshot"] is not None and p.facts["backend"] == "db"
    assert _start(version, d)[0]


def test_snapshot_above_the_db_without_snap_db_panics(cases, tmp_path):
    """An older db (consistent_index below the raft snapshot) and no .snap.db."""
    version, base = cases
    d = _copy(base / "cap2", tmp_path / "d")
    shutil.copy(base / "cap1/member/snap/db", d / "member/snap/db")
    p = D.predict_start(D.open_data_dir(str(d)))
    assert p.outcome == "fails"
    assert "datadir-snapshot-db-missing" in {f.code for f in p.findings}
    started, log = _start(version, d)
    assert not started
    assert ("failed to recover v3 backend from snapshot" in log
            or "recovering backend from snapshot error" in log), log[-2000:]
    r = CliRunner().invoke(main, ["check", "--data-dir", str(base / "cap2"), "--json"])
    assert r.exit_code == 0, r.output


def _torn_copy(src: Path, dst: Path) -> tuple:
    """A copy of the data dir ``src`` whose last segment is torn: the sectors from a
    512-byte boundary at or inside a record's data on never reached the disk
    (zeros; etcd's ``isTornEntry`` finds the zero sector).  Of those
    boundaries, the one nearest the end that still tears an entry the db
    had applied, and one more (the last entry kept is at most
    consistent_index - 2): the case etcd 3.6+ is slow on, at its cheapest
    (on :func:`_big_tail`'s data dir: exactly consistent_index - 2).
    (data dir, consistent_index, last entry kept)."""
    d = _copy(src, dst)
    ci = D.judge_db(str(d / "member/snap/db"), False)["consistent_index"]
    seg = sorted((d / "member/wal").glob("*.wal"))[-1]
    recs = _records(seg)
    for k in range(len(recs) - 1, 0, -1):
        off, _t, n, _i = recs[k]
        boundary = (off + 8 + n) // 512 * 512
        kept = max(i for *_x, i in recs[:k] if i is not None)
        if off + 8 <= boundary < off + 8 + n and kept <= ci - 2:
            break
    else:
        raise AssertionError("no 512-byte boundary tears an entry below the consistent_index")
    end = recs[-1][0] + 8 + recs[-1][2] + 8
    with open(seg, "r+b") as fh:
        fh.seek(boundary)
        fh.write(bytes(end - boundary))
    return d, ci, kept


def test_torn_tail_is_repaired_and_etcd_starts(cases, tmp_path):
    """A torn tail that took entries the db had already applied: predicted
    "repairs the WAL and starts", and the real etcd does.  3.6+ becomes ready
    only after consistent_index - last - 1 member publish attempts time out
    (7 s each: publishV3, and applyEntryNormal never answers an entry at or
    below the consistent_index); 3.4/3.5 publish through the v2 store, which
    always answers: at once.  The log's count of failed attempts is the
    prediction's."""
    version, base = cases
    d, ci, last = _torn_copy(_big_tail(version, base)[0], tmp_path / "d")
    assert ci - last == 2  # the cheapest delay: one failed attempt on 3.6+
    p = D.predict_start(D.open_data_dir(str(d)))
    assert p.outcome == "repairs_wal_and_starts", p.to_json()["findings"]
    assert [f.code for f in p.findings if f.code.startswith("wal-")] == ["wal-torn-tail"]
    assert p.facts["wal"]["last_index"] == last and p.facts["consistent_index"] == ci
    late = version not in ("3.4", "3.5")
    want = ci - last - 1 if late else 0
    assert want >= 1 or not late
    assert (p.facts.get("ready_delay") or {}).get("failing_publish_attempts", 0) == want
    assert ("datadir-ready-delayed" in {f.code for f in p.findings}) == late
    started, log = _start(version, d, START_TIMEOUT + want * D.PUBLISH_TIMEOUT_S)
    assert started, log[-2000:]
    assert "repairing" in log  # wal.Repair ran
    assert log.count("failed to publish local member to cluster through raft") == want, \
        log[-3000:]


def test_repair_of_a_torn_tail_starts_at_once_and_serves_every_key(cases, tmp_path):
    """``repair --data-dir`` on that torn data dir: the consistent_index set
    back to the WAL's last entry (every record kept), so the real etcd
    publishes at once (no failed attempt), serves exactly the keyspace the
    intact data dir served, and applies a new write."""
    version, base = cases
    src, want = _big_tail(version, base)
    d, ci, last = _torn_copy(src, tmp_path / "d")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out-data-dir", str(out),
                                  "--json"])
    assert r.exit_code == 0, r.output
    rw = json.loads(r.stdout)["rewind"]
    assert (rw["consistent_index"], rw["db_consistent_index"]) == (last, ci)
    assert rw["db_kept_past_wal"] and rw["keys_at_risk_count"] == 0
    p = D.predict_start(D.open_data_dir(str(out)))
    codes = {f.code for f in p.findings}
    assert p.outcome == "repairs_wal_and_starts" and p.facts["consistent_index"] == last
    assert not codes & {"datadir-db-ahead", "datadir-ready-delayed"}, codes
    with EtcdServer(out, version) as s:
        assert s.get_kvs("", "--prefix") == want
        s.ctl("put", "after-repair", "1")
        assert s.get("after-repair") == "1"
        log = s.log_text()
    assert "failed to publish local member" not in log, log[-3000:]


def test_repair_keeps_a_member_of_several_at_its_consistent_index(tmp_path):
    """Three etcd 3.6 members; one stopped, its WAL torn below its db's
    consistent_index.  ``repair --multi-member`` keeps that consistent_index:
    the leader sends the torn entries again and etcd skips them as applied
    (``server.go`` apply: ``e.Index > consistIndex``).  The cluster restarted
    on the output: every member at the same revision and hashkv (setting it
    back to the WAL's end, as for one member, applied them twice).  (That
    member restarted alone, a running leader's heartbeat with its remembered
    match index makes raft panic "tocommit(N) is out of range", as
    predicted: the remove-and-re-add advice stands.)"""
    version = "3.6"
    require_etcd(version)
    ports = free_ports(6)
    names = ["m1", "m2", "m3"]
    ic = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))

    def member(i: int) -> EtcdServer:
        return EtcdServer(tmp_path / names[i], version, name=names[i], client_port=ports[2 * i],
                          peer_port=ports[2 * i + 1], initial_cluster=ic,
                          extra_args=["--initial-cluster-token", "boltfix-torn"])

    def run_all(body) -> list:
        servers = [member(i) for i in range(3)]
        try:
            for s in servers:
                s.launch()
            for s in servers:
                s.wait_healthy()
            return body(servers)
        finally:
            for s in servers:
                s.stop()
                s.cleanup_log()

    def status(servers) -> list:
        servers[0].ctl("put", "after", "x")
        out = []
        for s in servers:
            s.ctl("get", "after", "--consistency=l")  # caught up
            st = json.loads(s.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
            hk = json.loads(s.ctl("endpoint", "hashkv", "-w", "json").stdout)[0]["HashKV"]
            out.append((st["header"]["revision"], hk["hash"]))
        return out

    def torn_member_alone(servers) -> tuple:
        for i in range(30):
            Gateway(servers[0].endpoint).put(f"k{i:02d}", f"v{i}")
        servers[2].stop()
        d, ci, last = _torn_copy(tmp_path / "m3", tmp_path / "m3-torn")
        p = D.predict_start(D.open_data_dir(str(d)))
        assert "datadir-acked-entries-lost" in {f.code for f in p.findings}
        assert "datadir-ready-delayed" not in {f.code for f in p.findings}
        shutil.rmtree(tmp_path / "m3")
        shutil.copytree(d, tmp_path / "m3")
        with pytest.raises(EtcdStartError, match=r"tocommit\(\d+\) is out of range "
                           rf"\[lastIndex\({last}\)\]"):
            member(2).start()
        return d, ci, last

    d, ci, last = run_all(torn_member_alone)
    out = tmp_path / "m3-out"
    r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out-data-dir", str(out),
                                  "--multi-member", "--json"])
    assert r.exit_code == 0, r.output
    rw = json.loads(r.stdout)["rewind"]
    assert (rw["consistent_index"], rw["db_consistent_index"]) == (ci, ci) and ci > last + 1
    shutil.rmtree(tmp_path / "m3")
    shutil.copytree(out, tmp_path / "m3")
    got = run_all(status)
    assert got[0][0] == 32 and len(set(got)) == 1, got  # 30 puts + "after", from 1


def test_crc_mismatch_mid_segment_refuses(cases, tmp_path):
    version, base = cases
    d = _copy(base / "cap2", tmp_path / "d")
    seg = sorted((d / "member/wal").glob("*.wal"))[-1]
    recs = [r for r in _records(seg) if r[1] == R.ENTRY and r[2] > 20]
    off, _t, n, _i = recs[len(recs) // 2]
    with open(seg, "r+b") as fh:
        fh.seek(off + 8 + n - 3)
        b = fh.read(1)
        fh.seek(off + 8 + n - 3)
        fh.write(bytes([b[0] ^ 0x55]))
    p = D.predict_start(D.open_data_dir(str(d)))
    assert p.outcome == "fails"
    codes = {f.code for f in p.findings}
    assert codes & {"wal-crc-mismatch", "wal-bad-record"}, codes
    assert "wal-torn-tail" not in codes
    started, log = _start(version, d)
    assert not started
    assert "crc mismatch" in log or "failed to read WAL" in log, log[-2000:]
    r = CliRunner().invoke(main, ["wal", str(d)])
    assert r.exit_code == 1 and "wal-crc-mismatch" in r.stderr


def test_two_clusters(cases, tmp_path):
    """A db from one cluster with the data dir of another: a clear warning;
    a WAL segment of another cluster: the chain breaks, exit 1."""
    version, base = cases
    other = tmp_path / "other"
    with EtcdServer(other, version) as s:
        s.ctl("put", "x", "1")
    d = _copy(base / "cap2", tmp_path / "d")
    shutil.copy(other / "member/snap/db", d / "member/snap/db")
    p = D.predict_start(D.open_data_dir(str(d)))
    assert "datadir-member-mismatch" in {f.code for f in p.findings}
    d2 = _copy(base / "cap2", tmp_path / "d2")
    seg = sorted((other / "member/wal").glob("*.wal"))[0]
    shutil.copy(seg, d2 / "member/wal" / W.wal_name(1, 10 ** 6))
    r = CliRunner().invoke(main, ["wal", str(d2)])
    assert r.exit_code == 1
    assert "wal-crc-chain" in r.stderr or "wal-metadata-conflict" in r.stderr
