"""``repair`` of a damaged HashiCorp raft-boltdb store, judged by raft-boltdb
itself (issue 23): the repaired file opens in the real raft-boltdb v2.3.1
(support/raftgen.py ``read``: ``raftboltdb.New`` on a copy), FirstIndex,
LastIndex and GetLog work, every log GetLog returns is the one raftgen
wrote at that index (nothing placed without proof), and the indexes GetLog
does not find are exactly the ones ``check`` on the output reports as
``raft-log-gap`` and ``repair``'s ``raft`` report names as lost.

The damage: kinds of support/damage.py that apply to any bbolt file, aimed
at the ``logs`` bucket of a 300-log store (13 leaf pages under one branch
page), the first and the last leaf zeroed (a loss at either end of the
log), and real crashes: the bytes of a store holding logs 1..120 and the
``conf`` keys, before and after a second run's StoreLogs of 121..160 (one
commit), mixed as a lost write (the second run's meta page
over the first run's pages), half the written pages lost, or the written
pages zeroed.
"""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from boltfix.repair import repair
from support import damage, raftgen
from support.cli import invoke

LOGS = (b"logs",)
N = 300

#: damage.KINDS that apply to a paged bucket of any bbolt file, aimed at `logs`
KINDS = ("zeroed-page", "page-self-id-mismatch", "branch-to-self", "branch-past-pgid",
         "branch-past-eof", "branch-duplicate-child", "branch-count-too-large",
         "leaf-count-zero", "leaf-count-too-large", "leaf-count-and-pos-damaged",
         "leaf-pos-out-of-page", "leaf-ksize-out-of-page", "leaf-vsize-out-of-page",
         "zero-length-key", "keys-swapped", "key-outside-ancestor-range",
         "leaf-overflow-too-large")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """300 logs of 64 bytes of Data (several leaf pages): (path, logs by index, conf)."""
    path = tmp_path_factory.mktemp("raft") / "raft.db"
    wrote = raftgen.make(path, N, "--data-size", "64")
    return path, {log["index"]: log for log in wrote["logs"]}, wrote["conf"]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same(got: dict, want: dict) -> bool:
    return all(got[k] == want[k] for k in ("index", "term", "type", "data_hex"))


def _gap_indexes(ranges) -> set:
    return {i for lo, hi in ranges for i in range(lo, hi + 1)}


def repaired_as_raft_reads_it(src, out, wrote: dict, conf: dict, deleted=()) -> dict:
    """Repair ``src`` into ``out`` and hold the output to raft-boltdb's own
    reads (``deleted``: indexes the input never held, DeleteRange's); returns
    {"report", "kept": the indexes kept, "read": raftgen read's}."""
    before = _sha(src)
    rep = repair(src, out).to_json()
    assert _sha(src) == before, "repair modified its input"

    seen = raftgen.read(out)
    written = _sha(out)
    assert "open_error" not in seen, seen
    assert "first_index_error" not in seen and "last_index_error" not in seen, seen
    logs = seen["logs"]
    missing = {log["index"] for log in logs if "error" in log}
    kept = {log["index"] for log in logs if "error" not in log}
    # GetLog's errors are raft's "log not found", never a decoding error
    assert all(log["error"] == "log not found" for log in logs if "error" in log), logs
    # nothing placed without proof: each log is the one written at its index
    for log in logs:
        if "error" not in log:
            assert log["index"] in wrote and _same(log, wrote[log["index"]]), log
    assert seen["conf"] == conf
    assert _sha(out) == written  # raft-boltdb opened a copy

    # repair's raft report: what raft-boltdb reads
    raft = rep["raft"]
    assert raft["application"] == "raft-boltdb"
    assert raft["logs"]["first_index"] == seen["first_index"]
    assert raft["logs"]["last_index"] == seen["last_index"]
    assert raft["logs"]["count"] == len(kept)
    lost = raft["lost"]
    assert lost["ranges_total"] == len(lost["ranges"])  # few enough to be all listed
    assert _gap_indexes(lost["ranges"]) == missing
    assert lost["missing_indexes"] == len(missing)

    # check on the output names the same holes, and nothing structural
    res = json.loads(invoke("check", out, "--json", code=(0, 1)).stdout)
    assert set(res["counts"]) <= {"raft-log-gap"}, res["counts"]
    gaps = [(f["detail"]["first_missing"], f["detail"]["last_missing"])
            for f in res["findings"]]
    assert _gap_indexes(gaps) == missing

    # every index written and not read back is reported: a hole, or an end
    # the report says may be lost
    gone = set(wrote) - kept
    inside = {i for i in gone if seen["first_index"] <= i <= seen["last_index"]}
    assert inside | {i for i in deleted if seen["first_index"] <= i <= seen["last_index"]} \
        == missing
    if gone - inside:
        assert lost["ends_may_be_lost"], (sorted(gone - inside)[:5], lost)
    if gone:
        assert rep["lost_data"]
    return {"report": rep, "kept": kept, "read": seen}


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_logs_repair_into_what_raft_boltdb_reads(kind, store, tmp_path):
    path, wrote, conf = store
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    damage.KINDS[kind].fn(src, LOGS)
    repaired_as_raft_reads_it(src, tmp_path / "fixed.db", wrote, conf)


@pytest.mark.parametrize("which", [0, -1])
def test_a_zeroed_end_of_the_log(which, store, tmp_path):
    """The first or the last leaf of `logs` zeroed: the log starts later or
    ends earlier, and the report says the ends may be lost."""
    path, wrote, conf = store
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    leaf = damage.leaves(src, LOGS)[which]
    ps = damage.page_size_of(src)
    with open(src, "r+b") as f:
        f.seek(leaf.pgid * ps)
        f.write(bytes(ps))
    got = repaired_as_raft_reads_it(src, tmp_path / "fixed.db", wrote, conf)
    held = {int.from_bytes(k, "big") for k in leaf.keys}
    assert got["kept"] == set(wrote) - held
    raft = got["report"]["raft"]
    assert raft["lost"]["ends_may_be_lost"] and raft["lost"]["ranges"] == []
    assert raft["lost"]["dropped_in_logs"] == 1


def test_a_gap_the_input_had_and_a_lost_page(tmp_path):
    """A store DeleteRange left a hole in (100..140), a leaf below it
    zeroed: both holes are reported, GetLog finds neither."""
    path = tmp_path / "raft.db"
    wrote = raftgen.make(path, N, "--gap", "100:140", "--data-size", "64")
    logs = {log["index"]: log for log in wrote["logs"]}
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    leaf = damage.leaves(src, LOGS)[2]
    damage.zeroed_page(src, LOGS)
    deleted = set(range(100, 141))
    got = repaired_as_raft_reads_it(src, tmp_path / "fixed.db", logs, wrote["conf"], deleted)
    held = {int.from_bytes(k, "big") for k in leaf.keys}
    assert got["kept"] == set(logs) - held
    ranges = got["report"]["raft"]["lost"]["ranges"]
    assert [100, 140] in ranges and len(ranges) == 2


def test_the_report_in_raft_terms(store, tmp_path):
    """A leaf in the middle zeroed: the table names the raft log kept and the
    indexes GetLog will not find; --json's `raft` member says the same."""
    path, wrote, conf = store
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    damage.zeroed_page(src, LOGS)
    r = invoke("repair", src, "--out", tmp_path / "fixed.db", code=(1,))
    text = " ".join(r.stdout.split())
    rep = json.loads(invoke("repair", src, "--out", tmp_path / "fixed2.db", "--json",
                            code=(1,)).stdout)
    raft = rep["raft"]
    (lo, hi), = raft["lost"]["ranges"]
    assert f"raft log 1..{N} kept ({N - (hi - lo + 1)} logs)" in text
    assert f"{hi - lo + 1} indexes missing ({lo}..{hi}): GetLog answers 'log not found'" in text
    assert raft["current_term"] == conf["CurrentTerm"]


def test_a_healthy_store_reports_its_whole_log(store, tmp_path):
    path, wrote, conf = store
    got = repaired_as_raft_reads_it(path, tmp_path / "fixed.db", wrote, conf)
    assert got["kept"] == set(wrote)
    lost = got["report"]["raft"]["lost"]
    assert lost == {"ranges": [], "ranges_total": 0, "missing_indexes": 0,
                    "dropped_in_logs": 0, "ends_may_be_lost": False}
    assert not got["report"]["lost_data"]


def test_a_file_that_is_not_raft_boltdb_gets_no_raft_report(tmp_path):
    src = damage.copy_fixture("nested", tmp_path)
    assert "raft" not in repair(src, tmp_path / "fixed.db").to_json()


# ---------------------------------------------------------------- real crashes
FIRST, MORE = 120, 40


@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    """The file after raftgen wrote logs 1..120 (and conf), and after a
    second run appended 121..160 in one commit (the capture before it taken
    by raftgen, after raftboltdb.New's own commit): (before, after, logs by
    index, conf)."""
    d = tmp_path_factory.mktemp("raft-crash")
    path = d / "raft.db"
    wrote = raftgen.make(path, FIRST, "--data-size", "64")
    # raftboltdb.New commits once (initialize): the capture is taken after it
    more = raftgen.append(path, FIRST + 1, MORE, "--data-size", "64",
                          "--before", d / "before.db")
    before, after = (d / "before.db").read_bytes(), path.read_bytes()
    logs = {log["index"]: log for log in wrote["logs"] + more["logs"]}
    return before, after, logs, wrote["conf"]


META = struct.Struct("<IIIIQQQQQQ")  # magic, version, page_size, flags, root, ...


def _mix(prev: bytes, cur: bytes, kind: str) -> bytes:
    """A crash of the second run's commit, mixed from the two captures."""
    ps = META.unpack_from(cur, 16)[2]
    txids = [META.unpack_from(cur, i * ps + 16)[8] for i in (0, 1)]
    m = 0 if txids[0] >= txids[1] else 1
    old = prev.ljust(len(cur), b"\0")
    pages = [p for p in range(2, len(cur) // ps)
             if old[p * ps:(p + 1) * ps] != cur[p * ps:(p + 1) * ps]]
    out = bytearray(cur)
    if kind == "lost":  # a write cache that lied: only the meta page landed
        out = bytearray(old)
        out[m * ps:(m + 1) * ps] = cur[m * ps:(m + 1) * ps]
    elif kind in ("partial-even", "partial-odd"):
        for j, p in enumerate(pages):
            if j % 2 == (kind == "partial-odd"):
                out[p * ps:(p + 1) * ps] = old[p * ps:(p + 1) * ps]
    elif kind == "zeroed":
        for p in pages:
            out[p * ps:(p + 1) * ps] = bytes(ps)
    else:
        raise AssertionError(kind)
    return bytes(out)


@pytest.mark.parametrize("kind", ["lost", "partial-even", "partial-odd", "zeroed"])
def test_a_crash_keeps_a_whole_raft_log(kind, crashes, tmp_path):
    """A crash of the appending commit: raft-boltdb reads logs 1..120
    exactly (rolled back) or 1..160 exactly, never a log of neither."""
    before, after, logs, conf = crashes
    src = tmp_path / "crashed.db"
    src.write_bytes(_mix(before, after, kind))
    got = repaired_as_raft_reads_it(src, tmp_path / "fixed.db", logs, conf)
    first_run = set(range(1, FIRST + 1))
    assert got["kept"] in (first_run, set(logs)), sorted(set(logs) - got["kept"])[:10]
    if kind in ("lost", "zeroed"):
        rep = got["report"]
        assert rep["commits"]["rule"] == "rolled-back"
        assert got["kept"] == first_run
        assert got["read"]["last_index"] == FIRST
        assert rep["raft"]["lost"]["ends_may_be_lost"]
        newer = rep["commits"]["newer_commit"]  # what was passed over, or where it is unread
        assert newer["added"] + newer["changed"] + newer["deleted"] or newer["unread"], newer


def test_the_input_fixture_is_what_raftgen_wrote(store):
    """raftgen read of the undamaged store gives back every log written."""
    path, wrote, conf = store
    before = _sha(path)
    seen = raftgen.read(path)
    assert _sha(path) == before
    assert (seen["first_index"], seen["last_index"]) == (1, N)
    assert [log["index"] for log in seen["logs"]] == list(range(1, N + 1))
    assert all(_same(log, wrote[log["index"]]) for log in seen["logs"])
    assert seen["conf"] == conf



# ---------------------------------------------------------------- a log in the wrong place
def test_a_log_whose_index_is_not_its_key_is_dropped(store, tmp_path):
    """raft-boltdb's StoreLogs puts each log under uint64ToBytes(log.Index)
    (v2/bolt_store.go, v2/util.go): a `logs` record whose value's Index says
    another index (here the msgpack uint of log 100's Index rewritten in
    place, to 101: same length, the file otherwise intact) is in the wrong
    place.  check reports raft-log-index-mismatch; repair drops exactly that
    record (never placed without proof), GetLog(100) finds nothing, every
    other log is what raftgen wrote, and the raft report names 100 as lost."""
    path, wrote, conf = store
    src = damage.copy_fixture(str(path), tmp_path, "misplaced.db")
    data = bytearray(src.read_bytes())
    entry = b"\xa5Index" + bytes([100])  # the map entry: "Index", positive fixint 100
    assert data.count(entry) == 1
    at = data.index(entry) + len(entry) - 1
    leaf = next(lf for lf in damage.leaves(src, LOGS) if (100).to_bytes(8, "big") in lf.keys)
    ps = damage.page_size_of(src)
    assert leaf.pgid * ps <= at < (leaf.pgid + 1) * ps  # in log 100's own leaf page
    data[at] = 101
    with open(src, "r+b") as f:
        f.write(data)

    res = json.loads(invoke("check", src, "--json", code=(0, 1)).stdout)
    found = [f for f in res["findings"] if f["code"] == "raft-log-index-mismatch"]
    assert res["counts"].get("raft-log-index-mismatch") == 1, res["counts"]
    assert found[0]["detail"]["index"] == 100

    got = repaired_as_raft_reads_it(src, tmp_path / "fixed.db", wrote, conf)
    assert got["kept"] == set(wrote) - {100}
    log100, = [log for log in got["read"]["logs"] if log["index"] == 100]
    assert log100["error"] == "log not found"
    rep = got["report"]
    assert rep["dropped_counts"] == {"raft-log-index-mismatch": 1}
    assert [d["detail"]["key"] for d in rep["dropped"]] == [(100).to_bytes(8, "big").hex()]
    assert rep["raft"]["lost"]["ranges"] == [[100, 100]]
    assert rep["raft"]["lost"]["dropped_in_logs"] == 1


def test_a_logs_key_that_is_no_index_is_dropped(store, tmp_path):
    """A `logs` key of 3 bytes (put by bbolt itself, with a real log's value)
    is no uint64ToBytes(Index): check reports raft-log-index-mismatch, repair
    drops it, and the output is the store raftgen wrote (LastIndex reads the
    last key as 8 bytes: the short key, kept, would be the last)."""
    from support import oracle

    path, wrote, conf = store
    src = damage.copy_fixture(str(path), tmp_path, "shortkey.db")
    with open(src, "rb") as f:
        data = f.read()
    some_log = next(lf for lf in damage.leaves(src, LOGS))
    value = _value_of(data, some_log, damage.page_size_of(src))
    oracle.put(src, [b"logs"], b"\xff\xff\xff", value)
    res = json.loads(invoke("check", src, "--json", code=(1,)).stdout)
    assert res["counts"].get("raft-log-index-mismatch") == 1, res["counts"]
    got = repaired_as_raft_reads_it(src, tmp_path / "fixed.db", wrote, conf)
    assert got["kept"] == set(wrote)
    assert got["report"]["dropped_counts"] == {"raft-log-index-mismatch": 1}
    assert got["report"]["dropped"][0]["detail"]["key"] == "ffffff"


def _value_of(data: bytes, leaf, ps: int) -> bytes:
    """The first value of a leaf page (bbolt's leaf element: flags, pos,
    ksize, vsize; pos from the element)."""
    off = leaf.pgid * ps + 16
    _flags, pos, ksize, vsize = struct.unpack_from("<IIII", data, off)
    start = off + pos + ksize
    return data[start:start + vsize]
