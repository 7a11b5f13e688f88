"""``boltfix repair --data-dir --out-data-dir`` against the real etcd.

A real etcd (3.5.1, 3.4.23, 3.6.16 and 3.7.3) writes batches of keys; after each batch
the served keyspace is read (``etcdctl get "" --from-key``) and etcd is
stopped and its data dir copied (``cap1``..``cap3``, ``--snapshot-count``
so that a raft snapshot falls between cap2 and cap3 and none before cap2).
Crashed data dirs are built from them: an older capture's db, or the
newest db with its newest revisions deleted by the real bbolt and compacted (what a
salvage that lost them leaves: a ``consistent_index`` newer than the
revisions), or a lost-write mix of two captures' db pages, each with the
newest capture's WAL and snapshots.  The real etcd is then started on the
repaired data dir and must serve exactly the newest capture's keyspace
(value, mod_revision, create_revision, version), or, where the raft
snapshot is above what can be rewound, start all the same with every key
it serves wrongly named in the report.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from boltfix import datadir as D
from boltfix import raftlog as R
from boltfix import rewind as RW
from boltfix import wal as W
from boltfix.cli import main
from boltfix.etcdkeys import decode_revision
from support import damage, oracle
from support.etcdtools import (
    START_TIMEOUT,
    EtcdServer,
    EtcdStartError,
    Gateway,
    _b64,
    require_etcd,
    restore_snapshot,
)

pytestmark = pytest.mark.slow

SNAPSHOT_COUNT = 60


def _served(s: EtcdServer) -> dict:
    """key -> (value, mod_revision, create_revision, version) etcd serves."""
    return {kv["key"]: (kv["value"], kv["mod_revision"], kv["create_revision"], kv["version"])
            for kv in s.get_kvs("", "--from-key")}


def _batch(g: Gateway, n: int) -> None:
    """Writes of every kind that takes revisions: puts, overwrites, a range
    delete, a txn, a delete of nothing."""
    for i in range(12):
        g.put(f"b{n}-{i:02d}", f"v{n}-{i}")
    g.put("shared", f"s{n}")
    if n > 1:
        g.put(f"b{n - 1}-00", f"over{n}")
        g.call("/v3/kv/deleterange", {"key": _b64(f"b{n - 1}-01".encode()),
                                       "range_end": _b64(f"b{n - 1}-03".encode())})
    g.call("/v3/kv/txn", {"compare": [{"key": _b64(b"shared"), "target": "VALUE",
                                       "result": "EQUAL", "value": _b64(f"s{n}".encode())}],
                          "success": [{"request_put": {"key": _b64(f"t{n}".encode()),
                                                       "value": _b64(b"yes")}}]})
    g.delete("absent")


@pytest.fixture(scope="module", params=["3.5", "3.4", "3.6", "3.7"])
def caps(request, tmp_path_factory):
    """(version, base, served keyspace per capture)."""
    version = request.param
    require_etcd(version)
    base = tmp_path_factory.mktemp(f"ddr{version}")
    live = base / "live"
    served = {}
    args = ["--snapshot-count", str(SNAPSHOT_COUNT)]
    k = 0
    for n, batches in ((1, 1), (2, 1), (3, 4)):
        with EtcdServer(live, version, extra_args=args) as s:
            g = Gateway(s.endpoint)
            for _ in range(batches):
                k += 1
                _batch(g, k)
            served[n] = _served(s)
        shutil.copytree(live, base / f"cap{n}")
    return version, base, served


def _snap_index(d: Path) -> int:
    p = D.predict_start(D.open_data_dir(str(d)), full_check=False)
    return (p.facts.get("snapshot") or {}).get("index", 0)


def _crashed(base: Path, tmp: Path, newest: str, db: Path) -> Path:
    d = tmp / "crashed"
    shutil.copytree(base / newest, d)
    shutil.copy(db, d / "member/snap/db")
    return d


def _run_repair(d: Path, out: Path, *extra) -> dict:
    r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out-data-dir", str(out),
                                  "--json", *extra])
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.stdout) | {"exit": r.exit_code}


def _start_and_read(version: str, d: Path):
    """What the real etcd serves from data dir ``d``, or None when it does not
    start (its log's tail is printed: the test's output says why)."""
    try:
        with EtcdServer(d, version, start_timeout=START_TIMEOUT) as s:
            return _served(s)
    except EtcdStartError as exc:
        text = str(exc)
        at = max(text.find("panic"), 0)
        print(f"etcd {version} did not start on {d}: {text[at:at + 1500]}")
        return None


def _wrong(got: dict, want: dict) -> set:
    return {k for k in set(got) | set(want) if got.get(k) != want.get(k)}


def test_caps_layout(caps):
    """The captures are what the cases need: no raft snapshot up to cap2,
    one between cap2 and cap3."""
    _v, base, _served = caps
    assert _snap_index(base / "cap2") == 0
    ci2 = D.judge_db(str(base / "cap2/member/snap/db"), False)["consistent_index"]
    assert _snap_index(base / "cap3") > ci2


def test_lost_revisions_are_reapplied_from_the_wal(caps, tmp_path):
    """cap2's db without its revisions above cap1's (deleted by the real
    bbolt), its consistent_index kept: etcd alone serves cap1's keys for
    good; repaired, it serves cap2's exactly."""
    version, base, served = caps
    db = tmp_path / "db"
    shutil.copy(base / "cap2/member/snap/db", db)
    rev1 = max(v[1] for v in served[1].values())
    keys = [e["key"] for e in oracle.oracle_dump(db)
            if e["path"] == [b"key"] and e["type"] == "kv"
            and decode_revision(e["key"])["main"] > rev1]
    assert keys
    oracle.delete_keys(db, [b"key"], keys)
    # bbolt's Compact: a fresh file, so that neither meta's tree nor a free
    # page holds them (else repair rolls back to the other meta or salvages)
    oracle.compact(db, tmp_path / "compacted.db")
    d = _crashed(base, tmp_path, "cap2", tmp_path / "compacted.db")
    before = _start_and_read(version, _copy(d, tmp_path / "before"))
    assert before is not None and _wrong(before, served[2])  # etcd alone: wrong
    out = tmp_path / "out"
    j = _run_repair(d, out)
    rw = j["rewind"]
    assert j["exit"] == 0 and rw["keys_at_risk_count"] == 0, rw
    assert rw["consistent_index"] < rw["db_consistent_index"]
    assert rw["lost_revisions_restored_by_wal"] == rw["lost_revisions"] > 0
    got = _start_and_read(version, out)
    assert got == served[2], sorted(_wrong(got or {}, served[2]))[:20]


def test_older_db_needs_no_rewind(caps, tmp_path):
    """cap1's whole db with cap2's WAL: its consistent_index is kept and
    etcd re-applies the rest."""
    version, base, served = caps
    d = _crashed(base, tmp_path, "cap2", base / "cap1/member/snap/db")
    out = tmp_path / "out"
    j = _run_repair(d, out)
    assert j["rewind"]["consistent_index"] == j["rewind"]["db_consistent_index"]
    assert j["rewind"]["revisions_wal_reapplies"] > 0
    assert _start_and_read(version, out) == served[2]


def test_lost_write_mix(caps, tmp_path):
    """cap2's db whose pages written since cap1 kept cap1's bytes, but for
    cap2's meta page (a write cache that lied): repaired and rewound, etcd
    serves cap2's keyspace."""
    version, base, served = caps
    old = (base / "cap1/member/snap/db").read_bytes()
    cur = (base / "cap2/member/snap/db").read_bytes()
    ps = damage.page_size_of(base / "cap2/member/snap/db")
    mix = bytearray(old.ljust(len(cur), b"\0")[:len(cur)])
    metas = [damage.read_meta(base / "cap2/member/snap/db", i) for i in (0, 1)]
    newest = 0 if metas[0].txid > metas[1].txid else 1
    mix[newest * ps:(newest + 1) * ps] = cur[newest * ps:(newest + 1) * ps]
    db = tmp_path / "db"
    db.write_bytes(bytes(mix))
    d = _crashed(base, tmp_path, "cap2", db)
    out = tmp_path / "out"
    j = _run_repair(d, out)
    got = _start_and_read(version, out)
    assert got is not None, j
    wrong = _wrong(got, served[2])
    named = set(j["rewind"]["keys_at_risk"])
    assert wrong <= named and len(named) <= 2 * len(wrong), (sorted(wrong), j["rewind"])
    assert not wrong, j["rewind"]


def test_snapshot_above_the_lost_revisions(caps, tmp_path):
    """cap1's db with cap3's WAL and raft snapshot (above cap1's
    consistent_index, no .snap.db): etcd panics on it; repaired, it starts,
    the report says the revisions up to the snapshot stay lost and names
    exactly the keys served wrongly; the input is never written."""
    version, base, served = caps
    d = _crashed(base, tmp_path, "cap3", base / "cap1/member/snap/db")
    snap = _snap_index(d)
    assert _start_and_read(version, _copy(d, tmp_path / "before")) is None
    listing = sorted((str(p), p.stat().st_mtime_ns) for p in d.rglob("*"))
    out = tmp_path / "out"
    j = _run_repair(d, out)
    assert sorted((str(p), p.stat().st_mtime_ns) for p in d.rglob("*")) == listing
    rw = j["rewind"]
    assert rw["limited_by_snapshot"] and rw["consistent_index"] == snap
    assert rw["unrestorable_revisions"] > 0 and j["exit"] == 1
    assert "datadir-rewind-limited" in {f["code"] for f in j["findings"]}
    got = _start_and_read(version, out)
    assert got is not None
    wrong = _wrong(got, served[3])
    assert wrong and set(rw["keys_at_risk"]) == wrong
    assert rw["keys_at_risk_count"] < len(served[3])
    # the keys written after the snapshot come back with their revisions
    assert any(v == served[3].get(k) and v[1] > max(x[1] for x in served[1].values())
               for k, v in got.items())
    r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out-data-dir", str(out)])
    assert r.exit_code == 2 and "exists" in r.output


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_damaged_db_outcome_is_fails(caps, tmp_path):
    """check --data-dir on a db with a damaged key bucket leaf: etcd panics
    on it, and the prediction says so (it said "starts")."""
    version, base, _served = caps
    d = _copy(base / "cap3", tmp_path / "d")
    damage.leaf_count_too_large(d / "member/snap/db", (b"key",))
    r = CliRunner().invoke(main, ["check", "--data-dir", str(d), "--json"])
    j = json.loads(r.stdout)
    assert r.exit_code == 1
    assert j["data_dir"]["outcome"] == "fails"
    assert "datadir-db-damaged" in {f["code"] for f in j["data_dir"]["findings"]}
    assert _start_and_read(version, _copy(d, tmp_path / "run")) is None


def test_member_of_several_is_refused_unless_insisted(caps, tmp_path):
    """A learner added (the WAL's membership: two members): refused with
    the remove-and-re-add advice, exit 2, nothing written; --multi-member
    writes it, with the advice as a warning, and etcd starts on it."""
    version, base, served = caps
    d = _copy(base / "cap2", tmp_path / "d")
    with EtcdServer(d, version) as s:
        s.ctl("member", "add", "other", "--peer-urls", "http://127.0.0.1:1", "--learner")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out-data-dir", str(out)])
    assert r.exit_code == 2 and "member remove" in r.output and not out.exists()
    j = _run_repair(d, out, "--multi-member")
    assert len(j["members"]) == 2
    assert "datadir-multi-member" in {f["code"] for f in j["findings"]}
    assert _start_and_read(version, out) == served[2]


def test_output_inside_the_input_is_refused(caps, tmp_path):
    _v, base, _served = caps
    d = _copy(base / "cap2", tmp_path / "d")
    for out in (d / "member" / "new", d, tmp_path):
        r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out-data-dir",
                                      str(out), "--force"])
        assert r.exit_code == 2 and "overlaps" in r.output, r.output
    r = CliRunner().invoke(main, ["repair", "--data-dir", str(d), "--out", "x.db"])
    assert r.exit_code == 2 and "--out-data-dir" in r.output


def test_older_snapshot_restores_what_the_snapshot_hid(caps, tmp_path):
    """The case above with --older-snapshot: cap3's .snap files set aside,
    etcd starts from the WAL's start and serves cap3's keyspace exactly."""
    version, base, served = caps
    d = _crashed(base, tmp_path, "cap3", base / "cap1/member/snap/db")
    out = tmp_path / "out"
    j = _run_repair(d, out, "--older-snapshot")
    rw = j["rewind"]
    if version == "3.7":
        # 3.7+ builds the snapshot from the WAL's newest snapshot record
        # (bootstrap.go recoverSnapshot), not from a .snap file: nothing to
        # set aside, and the report says so; etcd starts, every key it
        # serves wrongly named
        assert rw["snapshot_used"] is None and rw["limited_by_snapshot"], rw
        assert any("3.7+" in r for r in rw["why"]), rw["why"]
        got = _start_and_read(version, out)
        assert got is not None and set(rw["keys_at_risk"]) == _wrong(got, served[3])
        return
    assert j["exit"] == 0 and rw["snapshot_used"] == 0 and not rw["limited_by_snapshot"], rw
    assert rw["keys_at_risk_count"] == 0
    skipped = sorted(p.name for p in (out / "member/snap").glob("*.snap.skipped"))
    assert skipped and not list((out / "member/snap").glob("*.snap"))
    assert _start_and_read(version, out) == served[3]


def test_unrecoverable_db_is_refilled_from_the_whole_wal(caps, tmp_path):
    """A db of zeros (nothing recoverable: repair alone exits 2) with
    cap2's WAL, which starts at index 1 with no snapshot: an empty db is
    written and etcd re-applies the whole WAL into it."""
    version, base, served = caps
    db = tmp_path / "zeros.db"
    db.write_bytes(bytes((base / "cap2/member/snap/db").stat().st_size))
    r = CliRunner().invoke(main, ["repair", str(db), "--out", str(tmp_path / "x.db")])
    assert r.exit_code == 2
    d = _crashed(base, tmp_path, "cap2", db)
    out = tmp_path / "out"
    j = _run_repair(d, out)
    assert "datadir-db-rebuilt" in {f["code"] for f in j["findings"]}
    assert j["exit"] == 0 and j["rewind"]["consistent_index"] == 0
    assert _start_and_read(version, out) == served[2]


# ---------------------------------------------------------------- a damaged WAL
def _records(d: Path) -> list:
    """(segment path, offset, length with its frame, type) of every WAL
    record, in order."""
    segs = W.list_segments(str(d / "member/wal"), lambda f: None)
    out = []
    for r in W.WalReader(segs).records():
        n = (r.segment.path, r.offset)
        out.append(n + (r.type,))
    return out


def tear_wal(d: Path, frac: float = 0.8) -> int:
    """A crash's torn tail in ``d``'s last WAL segment: from a 512-byte
    sector boundary inside a record's data (the record crossing one
    nearest ``frac`` of the last segment's records) on, the file is zeros
    (the sectors the crash never wrote; the file keeps its preallocated
    size).  Returns where."""
    segs = W.list_segments(str(d / "member/wal"), lambda f: None)
    last = segs[-1].path
    recs = [off for path, off, _t in _records(d) if path == last]
    data = bytearray(Path(last).read_bytes())
    crossing = []
    for i, off in enumerate(recs):
        n, _pad = W.frame_size(int.from_bytes(data[off:off + 8], "little"))
        boundary = (off + 8) // W.SECTOR * W.SECTOR + W.SECTOR
        if boundary < off + 8 + n:
            crossing.append((abs(i - frac * len(recs)), boundary))
    assert crossing, "no record crosses a sector boundary"
    boundary = min(crossing)[1]
    data[boundary:] = bytes(len(data) - boundary)
    Path(last).write_bytes(bytes(data))
    return boundary


def flip_wal_record(d: Path, frac: float = 0.5) -> int:
    """A CRC-damaged record in the middle of the WAL: the last data byte of
    the entry record at ``frac`` of all records flipped (its frame and
    protobuf framing intact, no zero sector: not a torn write).  Returns
    the offset of the record."""
    recs = [(p, off) for p, off, t in _records(d) if t == R.ENTRY]
    path, off = recs[int(len(recs) * frac)]
    data = bytearray(Path(path).read_bytes())
    n, _pad = W.frame_size(int.from_bytes(data[off:off + 8], "little"))
    data[off + 8 + n - 1] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    return off


def _lost_revisions_db(base: Path, tmp: Path, served: dict, old: int, new: int,
                       upto: int = 0) -> Path:
    """cap``new``'s db without its revisions above cap``old``'s (up to
    cap``upto``'s when given), deleted by the real bbolt, then
    bbolt.Compact; its consistent_index kept."""
    db = tmp / "lr.db"
    shutil.copy(base / f"cap{new}/member/snap/db", db)
    lo = max(v[1] for v in served[old].values())
    hi = max(v[1] for v in served[upto].values()) if upto else 1 << 62
    keys = [e["key"] for e in oracle.oracle_dump(db)
            if e["path"] == [b"key"] and e["type"] == "kv"
            and lo < decode_revision(e["key"])["main"] <= hi]
    oracle.delete_keys(db, [b"key"], keys)
    oracle.compact(db, tmp / "lr.compacted.db")
    return tmp / "lr.compacted.db"


@pytest.mark.parametrize("wal_damage", ["torn", "crc"])
def test_damaged_wal_with_an_intact_db(caps, tmp_path, wal_damage):
    """cap2 whole, its WAL torn at the tail or CRC-damaged in the middle
    (etcd refuses the latter): repaired, etcd starts and serves cap2's
    keyspace exactly, nothing named; the db keeps every record and its
    consistent_index comes down to the WAL's last entry, so that a new
    write is applied and served."""
    version, base, served = caps
    d = _copy(base / "cap2", tmp_path / "d")
    (tear_wal if wal_damage == "torn" else flip_wal_record)(d)
    if wal_damage == "crc":
        # torn: etcd trims the tail; the db's consistent_index is then past
        # the WAL, and requests hang until raft's new entries pass it
        assert _start_and_read(version, _copy(d, tmp_path / "before")) is None
    out = tmp_path / "out"
    j = _run_repair(d, out)
    rw = j["rewind"]
    assert rw["keys_at_risk_count"] == 0 and j["exit"] == 0, rw
    assert rw["db_kept_past_wal"] and rw["records_removed"] == 0, rw
    assert rw["consistent_index"] < rw["db_consistent_index"]
    assert (rw["wal_cut"] is None) == (wal_damage == "torn")
    assert (rw["wal_torn"] is None) == (wal_damage == "crc")
    if wal_damage == "crc":
        # cut before the damaged record, the later segments left out
        assert "datadir-wal-cut" in {f["code"] for f in j["findings"]}
        assert j["start_after"]["outcome"] == "starts" and not j["start_after"]["wal"][
            "read_stops"]
    with EtcdServer(out, version, start_timeout=START_TIMEOUT) as s:
        assert _served(s) == served[2]
        Gateway(s.endpoint).put("after-repair", "x")
        assert s.get_kvs("after-repair")[0]["value"] == "x"


@pytest.mark.parametrize("wal_damage", ["torn", "crc"])
def test_damaged_wal_with_a_db_that_lost_revisions(caps, tmp_path, wal_damage):
    """cap3's db without its revisions between cap1's and cap2's, with
    cap3's WAL torn at the tail or CRC-damaged in the middle (after the
    lost revisions' entries; the db holds what follows): repaired, etcd
    starts, and every key it serves wrongly is named, at most 2 named per
    wrong key.  (What a torn tail drops and the db lost too, no one can
    name: the entries are zeros.)"""
    version, base, served = caps
    d = _copy(base / "cap3", tmp_path / "d")
    shutil.copy(_lost_revisions_db(base, tmp_path, served, 1, 3, upto=2),
                d / "member/snap/db")
    (tear_wal if wal_damage == "torn" else flip_wal_record)(d, 0.9)
    out = tmp_path / "out"
    j = _run_repair(d, out)
    got = _start_and_read(version, out)
    assert got is not None, j
    wrong = _wrong(got, served[3])
    named = set(j["rewind"]["keys_at_risk"])
    assert wrong <= named and len(named) <= 2 * len(wrong), (sorted(wrong), j["rewind"])


# ---------------------------------------------------------------- bounded memory
#: txns of 128 puts each (one revision, 128 records): a history of
#: HISTORY_TXNS * 128 records over 128 keys
HISTORY_TXNS = 300


def test_rewind_memory_is_bounded_by_keys_not_history(tmp_path):
    """A real etcd 3.5 db with a long history (38,400 records over 128
    keys, never compacted) restored into a data dir (``etcdutl snapshot
    restore``: a WAL from index 1 that did not write that history): the
    rewind's plan is anchored at the db, and its peak memory (tracemalloc)
    stays below half of what the old reader took to hold every record."""
    require_etcd("3.5")
    live = tmp_path / "live"
    with EtcdServer(live, "3.5") as s:
        g = Gateway(s.endpoint)
        for r in range(HISTORY_TXNS):
            g.call("/v3/kv/txn", {"success": [
                {"request_put": {"key": _b64(f"k{i:03d}".encode()),
                                 "value": _b64(f"v{r}".encode())}} for i in range(128)]})
    restored = tmp_path / "restored"
    restore_snapshot(live / "member/snap/db", restored, "3.5")
    db = restored / "member/snap/db"
    pred = D.predict_start(D.open_data_dir(str(restored)), full_check=False)
    tracemalloc.start()
    try:
        p, _m, _st = RW.plan(pred.wal, str(db), 0)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    records = HISTORY_TXNS * 128
    assert p.anchor == "db" and p.removed_records == 0
    # the old reader: ~245 bytes a record (9.4 MB); now ~2.2 MB, most of
    # it the WAL reader's 1 MB chunks, whatever the history's length
    assert peak < records * 120, peak
    # and the plan still sees the whole history's newest revision
    assert p.revision == RW.db_revisions(str(db)).max_rev
