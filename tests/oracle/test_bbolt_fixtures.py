"""The committed bbolt fixtures, checked against the real bbolt oracle.

Every fixture in fixtures/bbolt/ must pass bbolt's own tx.Check(), have the
shape fixtures/README.md promises, and be reproducible with
``boltgen make SHAPE`` (same logical content as the committed file).
"""

from __future__ import annotations

import functools
import shutil
import struct

import pytest

from support import oracle
from support.oracle import SHAPES, fixture

NO_FREELIST = 0xFFFFFFFFFFFFFFFF


@functools.lru_cache(maxsize=None)
def committed_dump(shape: str) -> tuple:
    return tuple(_freeze(e) for e in oracle.oracle_dump(fixture(shape)))


def _freeze(entry: dict) -> tuple:
    return (tuple(entry["path"]), entry["key"], entry["value"], entry["type"], entry.get("sequence"))


def entries(shape: str) -> list[dict]:
    return [
        {"path": list(p), "key": k, "value": v, "type": t, **({"sequence": s} if t == "bucket" else {})}
        for p, k, v, t, s in committed_dump(shape)
    ]


def read_metas(path) -> list[dict]:
    """Both meta pages, decoded straight from the file bytes."""
    data = path.read_bytes()
    page_size = struct.unpack_from("<I", data, 24)[0]
    metas = []
    for i in (0, 1):
        off = i * page_size
        magic, version, psize, flags, root, seq, freelist, pgid, txid = struct.unpack_from(
            "<IIIIQQQQQ", data, off + 16
        )
        metas.append(
            dict(magic=magic, version=version, page_size=psize, root=root,
                 freelist=freelist, pgid=pgid, txid=txid)
        )
    return metas


def freelist_ids(path) -> list[int]:
    """Page ids in the freelist page of the active (higher txid) meta."""
    data = path.read_bytes()
    metas = read_metas(path)
    meta = max(metas, key=lambda m: m["txid"])
    ps = meta["page_size"]
    off = meta["freelist"] * ps
    _id, flags, count, _overflow = struct.unpack_from("<QHHI", data, off)
    assert flags == 0x10, f"page {meta['freelist']} is not a freelist page (flags {flags:#x})"
    start = off + 16
    if count == 0xFFFF:
        count = struct.unpack_from("<Q", data, start)[0]
        start += 8
    return list(struct.unpack_from(f"<{count}Q", data, start))


# ---------------------------------------------------------------------------
# Every fixture passes real bbolt's check and is reproducible
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_fixture_checks_ok_with_real_bbolt(shape):
    path = fixture(shape)
    assert path.is_file(), f"{path} missing: run fixtures/make_bbolt_fixtures.sh"
    result = oracle.oracle_check(path)
    assert result.status == "ok", (result.status, result.messages, result.stderr)
    assert result.messages == []


@pytest.mark.parametrize("shape", SHAPES)
def test_regenerated_shape_dumps_identically(shape, tmp_path):
    out = oracle.make_shape(shape, tmp_path / f"{shape}.db")
    assert oracle.oracle_check(out).status == "ok"
    regenerated = tuple(_freeze(e) for e in oracle.oracle_dump(out))
    assert regenerated == committed_dump(shape)
    # Same page size and same final txid too.
    assert oracle.info(out)["page_size"] == oracle.info(fixture(shape))["page_size"]
    assert oracle.info(out)["txid"] == oracle.info(fixture(shape))["txid"]


@pytest.mark.parametrize("shape", SHAPES)
def test_dump_is_in_tree_order(shape):
    """Keys strictly increase within each bucket; a bucket precedes its contents."""
    last: dict = {}
    seen_buckets = {()}
    for e in entries(shape):
        parent = tuple(e["path"])
        assert parent in seen_buckets, f"entry under unseen bucket {parent}"
        if parent in last:
            assert last[parent] < e["key"]
        last[parent] = e["key"]
        if e["type"] == "bucket":
            assert e["value"] is None
            seen_buckets.add(parent + (e["key"],))
        else:
            assert e["value"] is not None
    # The root holds only buckets.
    assert all(e["type"] == "bucket" for e in entries(shape) if e["path"] == [])


# ---------------------------------------------------------------------------
# Shape properties
# ---------------------------------------------------------------------------


def test_nested_shape():
    es = entries("nested")
    buckets = [e for e in es if e["type"] == "bucket"]
    kvs = [e for e in es if e["type"] == "kv"]

    # Buckets nested at least 4 levels deep (level5-inline has 4 ancestors).
    assert max(len(e["path"]) for e in buckets) >= 4
    # An empty bucket: nothing has it as its path.
    paths = {tuple(e["path"]) for e in es}
    empty = [e for e in buckets if tuple(e["path"]) + (e["key"],) not in paths]
    assert any(e["key"] == b"empty" and e["path"] == [] for e in empty)
    # Non-zero, distinct sequences on several buckets.
    seqs = [e["sequence"] for e in buckets if e["sequence"]]
    assert len(seqs) >= 5 and len(set(seqs)) == len(seqs)
    # Long keys, including one at bbolt's maximum key size.
    lengths = sorted(len(e["key"]) for e in kvs)
    assert lengths[-1] >= 32000
    assert sum(1 for n in lengths if n >= 1000) >= 4
    # Binary (non-UTF-8) keys and values, and empty values.
    def is_utf8(b):
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False
    assert any(not is_utf8(e["key"]) for e in kvs)
    assert any(not is_utf8(e["value"]) for e in kvs)
    assert any(not is_utf8(e["key"]) for e in buckets)
    assert any(e["value"] == b"" for e in kvs)

    # Inline sub-buckets and sub-buckets with their own (multi-leaf) pages.
    stats = oracle.info(fixture("nested"))["buckets"][b"nested"]["stats"]
    assert stats["InlineBucketN"] >= 3
    assert stats["BucketN"] > stats["InlineBucketN"] + 1
    assert stats["BranchPageN"] >= 1 and stats["LeafPageN"] >= 2


def test_overflow_shape():
    kvs = [e for e in entries("overflow") if e["type"] == "kv"]
    sizes = [len(e["value"]) for e in kvs]
    assert max(sizes) >= 1024 * 1024
    assert any(10 * 1024 <= s < 1024 * 1024 for s in sizes)
    assert any(s < 100 for s in sizes)
    stats = oracle.info(fixture("overflow"))["buckets"][b"blobs"]["stats"]
    assert stats["LeafOverflowN"] >= 256


def test_deep_shape():
    inf = oracle.info(fixture("deep"))
    assert inf["page_size"] == 4096
    deep = inf["buckets"][b"deep"]["stats"]
    assert deep["Depth"] >= 3
    assert deep["BranchPageN"] >= 2
    assert deep["KeyN"] >= 5000
    long_deep = inf["buckets"][b"long-deep"]["stats"]
    assert long_deep["Depth"] >= 4
    assert b"second" in inf["buckets"]


def test_freed_shape():
    path = fixture("freed")
    free = freelist_ids(path)
    assert len(free) >= 10
    data = path.read_bytes()
    ps = read_metas(path)[0]["page_size"]
    # Deleted values survive in free pages, and the live tree no longer has them.
    assert any(b"deleted-value-" in data[i * ps:(i + 1) * ps] for i in free)
    live_values = [e["value"] for e in entries("freed") if e["type"] == "kv"]
    deleted = {f"deleted-value-{n}-".encode() for n in range(300)}
    assert not any(v.startswith(d) for v in live_values for d in deleted)
    # Keys 300..399 of "doomed" are still live; the doomed bucket is gone.
    assert any(v.startswith(b"deleted-value-300-") for v in live_values)
    assert not any(e["key"] == b"doomed-bucket" for e in entries("freed"))


def test_nofreelist_shape():
    path = fixture("nofreelist")
    raw = path.read_bytes()
    # The meta freelist field, read straight from the bytes of meta page 0.
    assert raw[48:56] == b"\xff" * 8
    metas = read_metas(path)
    assert all(m["freelist"] == NO_FREELIST for m in metas)
    es = entries("nofreelist")
    assert max(len(e["path"]) for e in es) >= 4
    assert any(e["key"] == b"live" for e in es)
    assert not any(e["key"] == b"doomed-bucket" for e in es)


def test_page16k_shape():
    path = fixture("page16k")
    inf = oracle.info(path)
    assert inf["page_size"] == 16384
    assert struct.unpack_from("<I", path.read_bytes(), 24)[0] == 16384
    assert inf["buckets"][b"many"]["stats"]["BranchPageN"] >= 1
    assert max(len(e["path"]) for e in entries("page16k")) >= 4


# ---------------------------------------------------------------------------
# The oracle helpers themselves
# ---------------------------------------------------------------------------


def test_check_cannot_open(tmp_path):
    assert oracle.oracle_check(tmp_path / "missing.db").status == "cannot-open"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x01" * 8192)
    assert oracle.oracle_check(junk).status == "cannot-open"


def test_check_reports_errors(tmp_path):
    """A duplicated freelist id is reported by tx.Check() (status "errors")."""
    path = tmp_path / "dup.db"
    shutil.copy(fixture("freed"), path)
    meta = max(read_metas(path), key=lambda m: m["txid"])
    data = bytearray(path.read_bytes())
    off = meta["freelist"] * meta["page_size"] + 16
    first = struct.unpack_from("<Q", data, off)[0]
    struct.pack_into("<Q", data, off + 8, first)  # ids[1] = ids[0]
    path.write_bytes(bytes(data))
    result = oracle.oracle_check(path)
    assert result.status == "errors", result
    assert f"page {first}: already freed" in result.messages


def test_check_reports_crash_on_truncated_file(tmp_path):
    """Pages past the end of a truncated file: SIGBUS or panic -> "crash"."""
    path = tmp_path / "short.db"
    data = fixture("deep").read_bytes()
    path.write_bytes(data[: 4 * 4096])
    result = oracle.oracle_check(path)
    assert result.status in ("crash", "errors"), result
    assert result.status == "crash", result


def test_delete_and_put(tmp_path):
    path = tmp_path / "edit.db"
    shutil.copy(fixture("freed"), path)
    oracle.delete_keys(path, [b"live"], [b"live-000060", b"live-000061"])
    oracle.put(path, [b"live", b"new-sub"], b"k", b"\x00\xff")
    keys = {(tuple(e["path"]), e["key"]): e for e in oracle.oracle_dump(path)}
    assert ((b"live",), b"live-000060") not in keys
    assert ((b"live",), b"live-000062") in keys
    assert keys[((b"live", b"new-sub"), b"k")]["value"] == b"\x00\xff"
    assert oracle.oracle_check(path).status == "ok"
    with pytest.raises(RuntimeError, match="not found"):
        oracle.delete_keys(path, [b"live"], [b"live-000060"])


def test_delete_keeps_nofreelist_mode(tmp_path):
    path = tmp_path / "nf.db"
    shutil.copy(fixture("nofreelist"), path)
    oracle.delete_keys(path, [b"live"], [b"live-000070"])
    assert all(m["freelist"] == NO_FREELIST for m in read_metas(path))
    assert oracle.oracle_check(path).status == "ok"


def test_compact_preserves_content(tmp_path):
    dst = oracle.compact(fixture("nested"), tmp_path / "compact.db")
    assert oracle.oracle_check(dst).status == "ok"
    assert tuple(_freeze(e) for e in oracle.oracle_dump(dst)) == committed_dump("nested")


def test_make_big_small(tmp_path):
    out = oracle.make_shape("big", tmp_path / "big.db", "--keys", "3000", "--value-size", "100", "--nofreelist")
    inf = oracle.info(out)
    assert inf["buckets"][b"bench"]["stats"]["KeyN"] == 3000
    assert read_metas(out)[0]["freelist"] == NO_FREELIST
    es = oracle.oracle_dump(out)
    assert es[1]["key"] == (0).to_bytes(8, "big") and len(es[1]["value"]) == 100
    assert es[-1]["key"] == (2999).to_bytes(8, "big")
