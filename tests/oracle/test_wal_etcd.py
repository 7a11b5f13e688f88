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
from support.etcdtools import START_TIMEOUT, EtcdServer, EtcdStartError, require_etcd

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
def _start(version: str, data_dir: Path) -> tuple:
    """(started, log) of the real etcd on data_dir (a copy: etcd writes)."""
    try:
        with EtcdServer(data_dir, version, start_timeout=START_TIMEOUT) as s:
            s.ctl("get", "k10")
            return True, s.log_text()
    except EtcdStartError as exc:
        return False, str(exc)


def _records(seg: Path) -> list:
    """(offset, type, framed data length) of each record of a segment."""
    res = W.WalReader([W.Segment(seg.name, str(seg), 0, 0)])
    raw = seg.read_bytes()
    return [(r.offset, r.type, W.frame_size(int.from_bytes(raw[r.offset:r.offset + 8],
                                                           "little"))[0])
            for r in res.records()]


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


def test_torn_tail_is_repaired_and_etcd_starts(cases, tmp_path):
    """A torn last record: predicted "repairs the WAL and starts", and the
    real etcd does.  3.4 and 3.5 only: on 3.6 one CI run's etcd repaired
    its WAL but never became healthy ("failed to publish local member to
    cluster through raft: request timed out") where the prediction said it
    starts; not yet understood, so not claimed."""
    version, base = cases
    if version not in ("3.4", "3.5"):
        pytest.xfail("torn tail on etcd 3.6+: start not yet proven (see the docstring)")
    d = _copy(base / "cap2", tmp_path / "d")
    seg = sorted((d / "member/wal").glob("*.wal"))[-1]
    recs = _records(seg)
    # the sectors from the last 512-byte boundary inside a record's data on
    # never reached the disk (zeros): the crash tore that record
    for off, _t, n in reversed(recs):
        boundary = (off + 8 + n) // 512 * 512
        if off + 8 < boundary < off + 8 + n:
            break
    end = recs[-1][0] + 8 + recs[-1][2] + 8
    with open(seg, "r+b") as fh:
        fh.seek(boundary)
        fh.write(bytes(end - boundary))
    p = D.predict_start(D.open_data_dir(str(d)))
    assert p.outcome == "repairs_wal_and_starts", p.to_json()["findings"]
    assert [f.code for f in p.findings if f.code.startswith("wal-")] == ["wal-torn-tail"]
    started, log = _start(version, d)
    assert started, log[-2000:]


def test_crc_mismatch_mid_segment_refuses(cases, tmp_path):
    version, base = cases
    d = _copy(base / "cap2", tmp_path / "d")
    seg = sorted((d / "member/wal").glob("*.wal"))[-1]
    recs = [r for r in _records(seg) if r[1] == R.ENTRY and r[2] > 20]
    off, _t, n = recs[len(recs) // 2]
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
