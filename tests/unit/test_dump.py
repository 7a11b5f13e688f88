"""boltfix.dump: `dump` / `buckets` / `keys` / `get` on the fixtures bbolt
wrote (support/oracle.py gives what bbolt itself reads), on damaged copies,
on free and orphan pages, on a closed pipe.  (Byte-exact against bbolt's own
dump: tests/oracle/test_bbolt_dump.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from boltfix import structs as S
from boltfix.reader import DB
from boltfix.walk import Walker
from support import damage, oracle
from support.cli import hexdump_records, jsonl, live, run_ok

# ---------------------------------------------------------------- live = bbolt


def test_auto_encoding_marks_hex_fields():
    r = run_ok("dump", oracle.fixture("nested"), "--bucket", "0xfffe0062696e2d6275636b6574")
    lines = jsonl(r)
    assert lines and all(d["path_encoding"] == ["hex"] * len(d["path"]) for d in lines)
    assert lines[0]["path"] == ["fffe0062696e2d6275636b6574"]
    r = run_ok("dump", oracle.fixture("nested"), "--bucket", "binary")
    lines = jsonl(r)
    assert any(d.get("key_encoding") == "hex" for d in lines)
    assert any("key_encoding" not in d for d in lines)
    assert all("path_encoding" not in d for d in lines)


def test_text_format_one_line_per_record(oracle_dumps):
    r = run_ok("dump", oracle.fixture("nested"), "--format", "text")
    lines = r.stdout.splitlines()
    assert len(lines) == len(oracle_dumps["nested"])
    assert "nested/level2  level3/  [bucket seq" in r.stdout


# ---------------------------------------------------------------- filters
def test_bucket_path_dumps_that_bucket_and_below(oracle_dumps):
    want = [e for e in oracle_dumps["nested"] if e["path"][:2] == [b"nested", b"level2"]]
    recs, _ = hexdump_records(oracle.fixture("nested"), "--bucket", "nested",
                              "--bucket", "level2")
    assert live(recs) == want and want
    want = [e for e in oracle_dumps["nested"]
            if e["path"][:1] == [b"\xff\xfe\x00bin-bucket"]]
    recs, _ = hexdump_records(oracle.fixture("nested"), "--bucket",
                              "0x" + b"\xff\xfe\x00bin-bucket".hex())
    assert live(recs) == want and want


def test_missing_bucket_exits_1():
    r = run_ok("dump", oracle.fixture("nested"), "--bucket", "nope", ok=(1,))
    assert "not found" in r.stderr and r.stdout == ""


def test_prefix(oracle_dumps):
    want = [e for e in oracle_dumps["deep"]
            if e["path"] == [b"deep"] and e["key"].startswith(b"deep-key-00000000000012")]
    recs, _ = hexdump_records(oracle.fixture("deep"), "--bucket", "deep", "--prefix",
                              "deep-key-00000000000012")
    assert live(recs) == want and len(want) == 10
    recs, _ = hexdump_records(oracle.fixture("deep"), "--bucket", "deep", "--prefix-hex",
                              b"deep-key-00000000000012".hex())
    assert live(recs) == want
    # without --bucket: the prefix selects top-level buckets, whole
    want = [e for e in oracle_dumps["nested"]
            if (e["path"] or [e["key"]])[0].startswith(b"ne")]
    recs, _ = hexdump_records(oracle.fixture("nested"), "--prefix", "ne")
    assert live(recs) == want and want


def test_limit(oracle_dumps):
    recs, _ = hexdump_records(oracle.fixture("deep"), "--limit", "7")
    assert live(recs) == oracle_dumps["deep"][:7]
    recs, _ = hexdump_records(oracle.fixture("freed"), "--include", "free", "--limit", "3")
    assert len(recs) == 3 and all(d["state"] == "free" for _, d in recs)


# ---------------------------------------------------------------- buckets / keys / get


def test_get_text_and_raw():
    r = run_ok("get", oracle.fixture("deep"), "deep", "deep-key-000000000000042")
    want = [e for e in oracle.oracle_dump(oracle.fixture("deep"))
            if e["key"] == b"deep-key-000000000000042"][0]["value"]
    assert r.stdout_bytes == (want if want.isascii() else want.hex().encode()) + b"\n"
    r = run_ok("get", oracle.fixture("deep"), "deep", "deep-key-000000000000042", "--encoding", "raw")
    assert r.stdout_bytes == want
    run_ok("get", oracle.fixture("deep"), "nope", "x", ok=(1,))
    r = run_ok("get", oracle.fixture("nested"), "nested", "level2", ok=(1,))
    assert "bucket" in r.stderr


# ---------------------------------------------------------------- free / orphan
def _copy(shape, tmp_path, name=None):
    return damage.copy_fixture(shape, tmp_path, name)


@pytest.mark.parametrize("shape", ["freed", "nofreelist"])
def test_free_pages_hold_deleted_values(shape, tmp_path):
    path = _copy(shape, tmp_path)
    before = oracle.oracle_dump(path)
    victims = [e for e in before if e["path"] == [b"live"] and e["type"] == "kv"][-30:-10]
    assert victims
    oracle.delete_keys(path, [b"live"], [e["key"] for e in victims])
    after = oracle.oracle_dump(path)
    recs, _ = hexdump_records(path, "--include", "live,free")
    states = [d["state"] for _, d in recs]
    nlive = states.count("live")
    assert live(recs)[:nlive] == after  # live first, exactly bbolt's view
    assert set(states[nlive:]) == {"free"}
    free = {(e["key"], e["value"]): d["page"] for e, d in recs[nlive:]}
    ps = DB(path).page_size
    data = path.read_bytes()
    for e in victims:
        page = free[(e["key"], e["value"])]
        assert data[page * ps: page * ps + 8] == page.to_bytes(8, "little")
        assert e["value"] in data[page * ps: (page + 1) * ps]
    for e, d in recs[nlive:]:
        assert d["path"] is None
    # --include free alone: only free records
    recs2, _ = hexdump_records(path, "--include", "free")
    assert [d for _, d in recs2] == [d for _, d in recs[nlive:]]


def test_free_page_inline_buckets_are_expanded(tmp_path):
    """A leaf freed by a real bbolt write still holds inline bucket values:
    their records come back after their entry, named by bucket_guess."""
    path = _copy("nested", tmp_path)
    inline = {e["key"]: e["value"] for e in oracle.oracle_dump(path)
              if e["path"] == [b"nested", b"inline-2"] and e["type"] == "kv"}
    assert inline
    oracle.put(path, [b"nested"], b"inline-2a", b"rewrites the leaf holding inline-2")
    recs, _ = hexdump_records(path, "--include", "free")
    names = [(d.get("bucket_guess"), e["key"], e["value"]) for e, d in recs]
    entry = names.index((None, b"inline-2", None))
    inside = [(k, v) for g, k, v in names[entry + 1: entry + 1 + len(inline)]]
    assert inside == sorted(inline.items())
    assert all(g == [b"inline-2".hex()] for g, _, _ in names[entry + 1: entry + 1 + len(inline)])
    assert all(d["state"] == "free" and d["path"] is None for _, d in recs)


def test_freed_fixture_deleted_values_are_found():
    recs, r = hexdump_records(oracle.fixture("freed"), "--include", "free")
    values = {e["value"] for e, _ in recs if e["value"]}
    found = {v.split(b"-")[2] for v in values if v.startswith(b"deleted-value-")}
    assert len(found) > 100
    assert "free record(s)" in r.stderr


def test_orphan_pages_past_hwm_and_unlisted(tmp_path):
    path = _copy("deep", tmp_path)
    with DB(path) as db:
        ps, n = db.page_size, db.pages_in_file
        leaf = next(r.page for b, r in Walker(db).walk() if b.path == (b"deep",))
        raw = bytes(db.buf[leaf * ps: (leaf + 1) * ps])
        want = [(bytes(r.key), bytes(r.value)) for b, r in Walker(db).walk() if r.page == leaf]
    with open(path, "ab") as f:
        f.write(n.to_bytes(8, "little") + raw[8:])
    assert len(live(hexdump_records(path)[0])) == len(oracle.oracle_dump(oracle.fixture("deep")))
    recs, _ = hexdump_records(path, "--include", "orphan", "--decode", "none")
    got = [(e["key"], e["value"]) for e, d in recs if d["page"] == n]
    assert got == want
    assert all(d["state"] == "orphan" and d["path"] is None for _, d in recs)


def test_orphan_unreachable_unfreed_with_synced_freelist(tmp_path):
    path = _copy("freed", tmp_path)
    d = damage.KINDS["freelist-leak"].apply(path)  # drops ids from the freelist
    leaked = {page for code, page in d.expect if code == "unreachable-unfreed"}
    recs, _ = hexdump_records(path, "--include", "orphan", ok=(0, 1))
    assert recs and {x["state"] for _, x in recs} == {"orphan"}
    assert leaked and {x["page"] for _, x in recs} <= leaked


def test_free_scan_skips_overflow_continuations(tmp_path):
    path = _copy("overflow", tmp_path)
    blobs = [e for e in oracle.oracle_dump(path) if e["path"] == [b"blobs"]
             and e["type"] == "kv" and len(e["value"]) >= 100_000]
    oracle.delete_keys(path, [b"blobs"], [e["key"] for e in blobs])
    recs, _ = hexdump_records(path, "--include", "free,orphan")
    free_values = {e["value"] for e, d in recs if d["state"] != "live"}
    for e in blobs:  # whole multi-page values come back from the free run
        assert e["value"] in free_values
    pages = [d["page"] for _, d in recs if d["state"] != "live"]
    with DB(path) as db:
        for p in set(pages):
            assert db.page(p).self_id == p and db.page(p).flags == S.LEAF_PAGE_FLAG


# ---------------------------------------------------------------- damage
def test_zeroed_leaf_dumps_the_rest_and_exits_1(tmp_path, oracle_dumps):
    path = _copy("nested", tmp_path)
    dmg = damage.KINDS["zeroed-page"].apply(path)
    recs, r = hexdump_records(path, ok=(1,))
    got = live(recs)
    full = oracle_dumps["nested"]
    assert 0 < len(got) < len(full)
    assert all(e in full for e in got)
    assert "damaged" in r.stderr and str(dmg.pages[0]) in r.stderr


def test_truncated_file_dumps_the_rest_and_exits_1(tmp_path, oracle_dumps):
    path = _copy("nofreelist", tmp_path)
    damage.KINDS["file-truncated"].apply(path)
    recs, r = hexdump_records(path, "--include", "live,free,orphan", ok=(1,))
    got = [e for e, d in recs if d["state"] == "live"]
    full = oracle_dumps["nofreelist"]
    assert 0 < len(got) < len(full) and all(e in full for e in got)
    assert "page-past-eof" in r.stderr


def test_cannot_open_exits_2(tmp_path):
    r = run_ok("dump", tmp_path / "missing.db", ok=(2,))
    assert "cannot open" in r.stderr
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    run_ok("dump", empty, ok=(2,))
    path = _copy("nested", tmp_path)
    damage.KINDS["both-metas-invalid"].apply(path)
    run_ok("dump", path, ok=(2,))
    r = run_ok("dump", path, "--include", "orphan", ok=(1,))  # forensics still work
    assert jsonl(r)


@pytest.mark.parametrize("kind", sorted(damage.KINDS))
def test_every_damage_kind_dumps_without_crashing(kind, tmp_path):
    k = damage.KINDS[kind]
    path = _copy(k.shape, tmp_path)
    k.apply(path)
    for fmt in ("jsonl", "text"):
        r = run_ok("dump", path, "--include", "live,free,orphan", "--format", fmt, ok=(0, 1, 2))
        if fmt == "jsonl":
            jsonl(r)  # every line is JSON
    run_ok("buckets", path, ok=(0, 1, 2))


# ---------------------------------------------------------------- pipes
@pytest.mark.parametrize("args", [["dump", "--encoding", "hex"], ["dump", "--format", "text"],
                                  ["keys", "deep"], ["buckets"]])
def test_closed_pipe_ends_cleanly(args):
    proc = subprocess.Popen([sys.executable, "-m", "boltfix", args[0],
                             str(oracle.fixture("deep")), *args[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=60)
    assert first
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert rc in (0, -signal.SIGPIPE), (rc, err)


def test_head_in_a_shell_pipeline():
    proc = subprocess.run(f"{sys.executable} -m boltfix dump {oracle.fixture('deep')} "
                          f"--include live,free,orphan | head -1", shell=True,
                          capture_output=True, timeout=60)
    assert proc.stdout.count(b"\n") == 1
    assert b"Traceback" not in proc.stderr and b"Exception ignored" not in proc.stderr


# ---------------------------------------------------------------- etcd-shaped files
def _rev(main_, sub=0, tomb=False):
    return main_.to_bytes(8, "big") + b"_" + sub.to_bytes(8, "big") + (b"t" if tomb else b"")


def _kv(key, value, rev):
    def ld(f, b):
        return bytes([f << 3 | 2, len(b)]) + b

    def vi(f, n):
        return bytes([f << 3, n])
    return ld(1, key) + vi(2, rev) + vi(3, rev) + vi(4, 1) + ld(5, value)


def test_malformed_protobuf_does_not_stop_the_dump(tmp_path):
    writer = pytest.importorskip("boltfix.writer")
    path = tmp_path / "etcdish.db"
    with open(path, "wb") as f:
        w = writer.BoltWriter(f)
        w.begin_bucket(b"key")
        w.put(_rev(1), _kv(b"/a", b"one", 1))
        w.put(_rev(2), b"\xff\xff\xff garbage")
        w.put(_rev(3), _kv(b"/c", b"three", 3))
        w.end_bucket()
        w.begin_bucket(b"meta")
        w.put(b"consistent_index", (7).to_bytes(8, "big"))
        w.end_bucket()
        w.close()
    r = run_ok("dump", path)
    lines = [d for d in jsonl(r) if d["path"] == ["key"]]
    assert len(lines) == 3
    assert lines[0]["etcd"]["key"] == "/a" and lines[2]["etcd"]["value"] == "three"
    assert "error" in lines[1]["etcd"] and lines[1]["etcd"]["revision"]["main"] == 2
    r = run_ok("dump", path, "--decode", "none")
    assert all("etcd" not in d for d in jsonl(r))
    r = run_ok("dump", path, "--format", "text")
    assert len(r.stdout.splitlines()) == 6
