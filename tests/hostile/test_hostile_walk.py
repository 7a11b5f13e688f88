"""Hostile input at the walker level (issue 14): files whose shape, valid or
crafted, once cost a RecursionError, gigabytes or minutes.

Each file is made in the test: by the real bbolt (``support/oracle.py``) where
bbolt writes the shape, else built by boltfix's writer and damaged from the
construct declarations.  Every command runs in its own process, so a signal
death or a MemoryError is a failure of that run and not of the test run; its
peak RSS is read with ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from boltfix import structs as S
from boltfix.writer import BoltWriter
from support import damage, oracle
from support.files import many_sub_buckets, write_overlapping_keys
from support.measure import assert_sane, run_child


def _loads_deep(text: bytes):
    """json.loads of a deeply nested document (the decoder recurses too)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return json.loads(text)
    finally:
        sys.setrecursionlimit(limit)


# ---------------------------------------------------------------- 1. deep buckets
@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """1,000 nested buckets written by bbolt (a page per level); bbolt says OK."""
    path = tmp_path_factory.mktemp("chain") / "chain.db"
    oracle.make_shape("chain", path, "--keys", "1000")
    assert oracle.oracle_check(path).status == "ok"
    return path


def _depth(nodes) -> int:
    depth = 0
    while nodes:
        depth += 1
        assert len(nodes) == 1
        nodes = nodes[0]["buckets"]
    return depth


def test_deep_buckets_inspect(chain):
    code, out, err, rss, _ = run_child("inspect", chain)
    assert_sane(code, err, rss, ok=(0,))
    # the rich tree shows the first levels and sums up the rest
    assert b"level-000010" in out and b"level-000500" not in out
    assert b"988 more level(s) with 988 bucket(s) not shown" in b" ".join(out.split())


def test_deep_buckets_json(chain):
    code, out, err, rss, _ = run_child("inspect", "--json", chain)
    assert_sane(code, err, rss, ok=(0,))
    info = _loads_deep(out)
    assert _depth(info["buckets"]) == 1000
    assert "buckets_not_shown" not in info
    code, out, err, rss, _ = run_child("buckets", "--json", chain)
    assert_sane(code, err, rss, ok=(0,))
    tree = _loads_deep(out)
    assert _depth(tree) == 1000
    node = tree[0]
    for _ in range(999):
        assert node["keys"] == 1
        node = node["buckets"][0]
    assert node["name"] == "level-000999" and node["inline"] is True


def test_deep_buckets_other_commands(chain, tmp_path):
    code, out, err, rss, _ = run_child("buckets", chain)
    assert_sane(code, err, rss, ok=(0,))
    assert out.count(b"\n") == 1000
    code, out, err, rss, _ = run_child("check", chain)
    assert_sane(code, err, rss, ok=(0,))
    assert b"no problems (2,000 records" in out
    fixed = tmp_path / "fixed.db"
    code, out, err, rss, _ = run_child("repair", chain, "--out", fixed)
    assert_sane(code, err, rss, ok=(0,))
    assert oracle.oracle_dump(fixed) == oracle.oracle_dump(chain)


# ---------------------------------------------------------------- 2. nested inline buckets
def nested_inline_value(levels: int) -> bytes:
    """A bucket value holding ``levels`` inline buckets, each inside the one
    before (the innermost holds one key): about 50 bytes per level.  bbolt
    never writes an inline bucket that holds a sub-bucket, but reads one."""
    inner = (S.BUCKET_HEADER.pack(0, 0) + S.PAGE_HEADER.pack(0, S.LEAF_PAGE_FLAG, 1, 0)
             + S.LEAF_ELEMENT.pack(0, S.LEAF_ELEMENT_SIZE, 1, 1) + b"kv")
    for _ in range(levels - 1):
        inner = (S.BUCKET_HEADER.pack(0, 0) + S.PAGE_HEADER.pack(0, S.LEAF_PAGE_FLAG, 1, 0)
                 + S.LEAF_ELEMENT.pack(S.BUCKET_LEAF_FLAG, S.LEAF_ELEMENT_SIZE, 1, len(inner))
                 + b"b" + inner)
    return inner


def write_nested_inline(path, levels: int) -> None:
    """Bucket ``nest`` whose entry ``n`` is ``levels`` nested inline buckets:
    written as a plain value, then its element's flags made a bucket's."""
    with open(path, "wb") as f:
        w = BoltWriter(f, 4096)
        w.begin_bucket(b"nest")
        w.put(b"n", nested_inline_value(levels))
        w.end_bucket()
        w.close()
    node, idx = damage.leaf_holding(path, [b"nest"], b"n")
    damage.write_leaf_element(path, node.pgid, idx, flags=S.BUCKET_LEAF_FLAG)


@pytest.mark.parametrize("levels", [20_000, 40_000])
def test_nested_inline_buckets(tmp_path, levels):
    """20,000 levels in a 1 MB file took check 1.6 GB and 30 s, buckets 4.3 GB,
    dump 1.9 GB and 91 s; 40,000 levels a MemoryError.  The walk opens
    MAX_BUCKET_DEPTH levels and reports the entry below (bucket-too-deep)."""
    from boltfix.walk import MAX_BUCKET_DEPTH

    path = tmp_path / "nested.db"
    write_nested_inline(path, levels)
    assert path.stat().st_size < 50 * levels + 100_000
    for args in (["check", "--json"], ["buckets"], ["dump", "--format", "text"],
                 ["inspect", "--json"], ["repair", "--out", tmp_path / "fixed.db", "--force"]):
        code, out, err, rss, took = run_child(*args, path)
        assert_sane(code, err, rss)
        assert took < 60, (args, took)
        if args[0] == "check":
            assert code == 1
            result = json.loads(out)
            assert result["counts"]["bucket-too-deep"] == 1
            assert result["counts"]["inline-bucket-nested"] == MAX_BUCKET_DEPTH - 1
        elif args[0] in ("buckets", "dump"):
            assert code == 1 and b"bucket-too-deep" in err
        if args[0] == "buckets":
            # the bucket entry not opened is listed too (nothing known of it)
            assert out.count(b"\n") == MAX_BUCKET_DEPTH + 1
    # what repair kept is what it walked: the chain down to the limit
    code, out, err, rss, _ = run_child("buckets", tmp_path / "fixed.db")
    assert_sane(code, err, rss, ok=(0,))
    assert out.count(b"\n") == MAX_BUCKET_DEPTH


# ---------------------------------------------------------------- 7. 300k sub-buckets
def test_inspect_caps_the_bucket_tree(tmp_path):
    """300,000 sub-buckets: inspect took 38 s and 475 MB (--json 8.8 s and
    663 MB) building and drawing every one.  It describes BUCKETS_SHOWN and
    counts the rest; ``buckets`` still lists them all."""

    from boltfix.describe import BUCKETS_SHOWN

    n = 300_000
    path = tmp_path / "many.db"
    many_sub_buckets(path, n)
    code, out, err, rss, took = run_child("inspect", "--json", path)
    assert_sane(code, err, rss, ok=(0,))
    info = json.loads(out)
    parent = info["buckets"][0]
    assert len(parent["buckets"]) == BUCKETS_SHOWN - 1
    assert parent["more_buckets"] == n - (BUCKETS_SHOWN - 1)
    assert info["buckets_not_shown"] == n - (BUCKETS_SHOWN - 1)
    assert info["top_level_buckets_not_shown"] == 0
    assert parent["buckets"][-1]["keys"] == 1
    code, out, err, rss, took = run_child("inspect", path)
    assert_sane(code, err, rss, ok=(0,))
    assert f"{n - BUCKETS_SHOWN + 1:,} more bucket(s) not shown".encode() in b" ".join(
        out.split())
    assert b"sub-00000000" in out and b"sub-00200000" not in out


# ---------------------------------------------------------------- 3. overlapping keys


@pytest.mark.parametrize("n, ksize", [(8192, 32 * 1024), (512, 1 << 20)])
def test_overlapping_keys_stream(tmp_path, n, ksize):
    """8,192 keys of 32 KB took keys 1.1 GB and dump 470 MB; 512 keys of 1 MB
    dump 1 GB and repair 540 MB.  A page whose keys add up to more than
    KEY_BYTES_PER_PAGE is read a record at a time, and keys/dump flush by
    bytes, so what is held stays bounded whatever the output's size."""
    path = tmp_path / "overlap.db"
    write_overlapping_keys(path, n, ksize)
    code, out, err, rss, _ = run_child("keys", path, "o", lines_only=True)
    assert_sane(code, err, rss, ok=(0,))
    assert out == (n, n * (2 * ksize + 1))  # hex keys
    code, out, err, rss, _ = run_child("dump", "--format", "text", path, lines_only=True)
    assert_sane(code, err, rss, ok=(0,))
    assert out[0] == n + 1
    # repair drops keys bbolt cannot hold (1 MB); the 32 KB keys it writes,
    # one 9-page leaf each and two to a 17-page branch: an 872 MB file,
    # whose self-check once kept all of it mapped (860 MB of RSS)
    fixed = tmp_path / "fixed.db"
    code, out, err, rss, _ = run_child("repair", path, "--out", fixed)
    assert_sane(code, err, rss, ok=(1,) if ksize > S.MAX_KEY_SIZE else (0,))
    if ksize <= S.MAX_KEY_SIZE:
        assert fixed.stat().st_size > 800 << 20


# ---------------------------------------------------------------- 6. slow hostile cases
def write_duplicate_freelist(path, n: int, dup: int = 5) -> None:
    """A small bbolt file whose synced freelist (escape count) lists page
    ``dup`` ``n`` times, its run appended at the end of the file."""
    ps = 4096
    with open(path, "wb") as f:
        w = BoltWriter(f, ps)
        w.begin_bucket(b"b")
        for i in range(10):
            w.put(b"k%d" % i, b"v")
        w.end_bucket()
        w.close()
    fl = path.stat().st_size // ps
    body = S.freelist_escape.build({"count": n}) + S.U64.pack(dup) * n
    overflow = (S.PAGE_HEADER_SIZE + len(body) - 1) // ps
    with open(path, "r+b") as f:
        f.seek(fl * ps)
        f.write(S.PAGE_HEADER.pack(fl, S.FREELIST_PAGE_FLAG, S.FREELIST_COUNT_ESCAPE, overflow)
                + body)
        f.truncate((fl + overflow + 1) * ps)
    for i in (0, 1):
        damage.write_meta(path, i, freelist=fl, pgid=fl + overflow + 1)


def test_freelist_of_duplicates_is_quick(tmp_path):
    """6 million duplicate ids took check 15-25 s (a Finding per id, and a
    table row for each of the first 10,000).  The first FREELIST_FINDINGS
    are reported one by one, the rest counted in one finding."""
    from boltfix.pagemap import FREELIST_FINDINGS

    n = 6_000_000
    path = tmp_path / "dups.db"
    write_duplicate_freelist(path, n)
    code, out, err, rss, took = run_child("check", "--json", "--max-findings", 20000, path)
    assert_sane(code, err, rss, ok=(1,))
    result = json.loads(out)
    assert result["counts"]["already-freed"] == FREELIST_FINDINGS + 1
    summary = [f for f in result["findings"] if f["code"] == "already-freed"][-1]
    assert summary["detail"]["more"] == n - 1 - FREELIST_FINDINGS
    assert took < 8, took
    code, out, err, rss, took = run_child("check", path)
    assert_sane(code, err, rss, ok=(1,))
    # the duplicates are one kind (code, parent, bucket): one merged row
    # (boltfix.verdict.merge_rows), its pages as ranges
    assert out.count(b"already-freed") <= 5, out[:2000]  # verdict, one row, counts
    assert b"\xc3\x97 already-freed" in out  # "N × already-freed"
    assert took < 8, took
    for args in (["inspect"], ["pages", "--json"]):
        code, out, err, rss, took = run_child(*args, path)
        assert_sane(code, err, rss, ok=(0, 1))
        assert took < 8, (args, took)


def write_branch_to_one_child(path, n: int = 65535, ksize: int = 4) -> None:
    """Bucket ``b``'s root replaced by a branch page of ``n`` elements (keys
    ascending) that all point at the bucket's old root leaf.  Keys of
    ``ksize`` > 4 bytes overlap, as in write_overlapping_keys."""
    ps = 4096
    with open(path, "wb") as f:
        w = BoltWriter(f, ps)
        w.begin_bucket(b"b")
        for i in range(100):
            w.put(b"k%03d" % i + b"." * 60, b"v" * 60)
        w.end_bucket()
        w.close()
    from boltfix.reader import DB

    with DB(path) as db:
        pg, idx = damage.bucket_entry(db, [b"b"])
    el = damage.read_leaf_element(path, pg, idx, ps)
    voff = damage._element_offset(pg, idx, ps) + el.pos + el.ksize
    hdr = S.bucket.parse(damage._read(path, voff, S.BUCKET_HEADER_SIZE))
    branch = path.stat().st_size // ps
    data = S.PAGE_HEADER_SIZE + n * S.BRANCH_ELEMENT_SIZE
    step = 4 if ksize == 4 else 1
    els = b"".join(S.BRANCH_ELEMENT.pack(data + step * i - (S.PAGE_HEADER_SIZE + 16 * i), ksize,
                                         hdr.root) for i in range(n))
    if ksize == 4:
        keys = b"".join(i.to_bytes(4, "big") for i in range(n))
    else:
        keys = bytes(1 + j * 254 // (n + ksize) for j in range(n + ksize))
    overflow = (data + len(keys) - 1) // ps
    with open(path, "r+b") as f:
        f.seek(branch * ps)
        f.write(S.PAGE_HEADER.pack(branch, S.BRANCH_PAGE_FLAG, n, overflow) + els + keys)
        f.truncate((branch + overflow + 1) * ps)
    hdr.root = branch
    damage._write(path, voff, S.bucket.build(hdr))
    for i in (0, 1):
        damage.write_meta(path, i, pgid=branch + overflow + 1)


def test_branch_to_one_child_is_quick(tmp_path):
    """65,535 branch elements all pointing at one leaf took 4-9 s (drawing a
    table row per multiple-references finding)."""
    path = tmp_path / "branch.db"
    write_branch_to_one_child(path)
    code, out, err, rss, took = run_child("check", "--json", path)
    assert_sane(code, err, rss, ok=(1,))
    assert json.loads(out)["counts"]["multiple-references"] == 65534
    for args in (["check"], ["dump"], ["inspect"],
                 ["repair", "--out", tmp_path / "fixed.db"]):
        code, out, err, rss, took = run_child(*args, path)
        assert_sane(code, err, rss, ok=(0, 1))
        assert took < 5, (args, took)


# ---------------------------------------------------------------- 5. sparse files
def test_sparse_file_past_the_high_water_mark(tmp_path):
    """A 300 GB sparse file with a valid head (nested.db, 64 pages): inspect
    took 90 s and 14 GB counting page types over every page of the file,
    dump --include free 3.9 GB.  Nothing past the high-water mark is read;
    what remains is the page maps (a byte or so per page of the file)."""
    path = tmp_path / "sparse.db"
    path.write_bytes(oracle.fixture("nested").read_bytes())
    try:
        os.truncate(path, 300 << 30)
    except OSError as e:  # a filesystem without sparse files this big
        why = f"cannot make a 300 GB sparse file here: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    for args in (["inspect"], ["inspect", "--json"], ["check"], ["dump", "--include", "free"]):
        code, out, err, rss, took = run_child(*args, path)
        assert_sane(code, err, rss, ok=(0,))
        assert took < 20, (args, took)
    info = json.loads(run_child("inspect", "--json", path)[1])
    assert info["file"]["pages_in_file"] == (300 << 30) // 4096
    assert info["page_types"]["meta"] == 2 and sum(info["page_types"].values()) < 100


# ---------------------------------------------------------------- 4. a 200 MB value
def test_repair_writes_a_big_value_through(tmp_path):
    """A 200 MB value cost repair 629-827 MB: a private copy in put() and
    put_many() and a page-sized buffer in _write_leaf, then the input's map
    and the output's, resident as file-backed pages.  The writer keeps a
    read-only view of the input's map and writes it in pieces, dropping the
    map after each (boltfix.resident)."""
    size = 200 << 20
    path = tmp_path / "big.db"
    with open(path, "wb") as f:
        w = BoltWriter(f, 4096)
        w.begin_bucket(b"b")
        w.put(b"k", b"x" * size)
        w.end_bucket()
        w.close()
    fixed = tmp_path / "fixed.db"
    code, out, err, rss, _ = run_child("repair", path, "--out", fixed)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 100, f"peak RSS {rss:.0f} MB"
    assert fixed.read_bytes() == path.read_bytes() or oracle.oracle_dump(fixed) == \
        oracle.oracle_dump(path)


def test_branch_keys_that_overlap(tmp_path):
    """65,535 branch keys of 32 KB sharing their bytes: the walk kept every
    key in its frames (check: 2 GB).  Past KEY_BYTES_PER_PAGE a branch key
    is not kept and narrows no range; every child is still followed."""
    path = tmp_path / "branch.db"
    write_branch_to_one_child(path, ksize=32 * 1024)
    code, out, err, rss, took = run_child("check", "--json", path)
    assert_sane(code, err, rss, ok=(1,))
    assert json.loads(out)["counts"]["multiple-references"] == 65534
    for args in (["dump"], ["repair", "--out", tmp_path / "fixed.db"]):
        code, out, err, rss, took = run_child(*args, path)
        assert_sane(code, err, rss)
