"""Rule 6 (keys out of order in one leaf) cross-checked with the parent's
branch key, on files written by the real bbolt 1.3.6 and the real etcd,
damaged with the construct declarations (support/damage.py).

bbolt sets a branch element's key to its child's first key (node.go
``spill``: ``parent.put(key, node.inodes[0].key, ...)``), so a leaf below a
trusted element holds that key at element 0 and nothing outside
[element key, next element key).  What the walk keeps of a leaf whose keys
are out of order must fit that range, and a key moved away from its value
(two keys swapped) must never come back paired with the other's value.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from boltfix.reader import DB
from boltfix.repair import repair
from support import damage, etcddbs, oracle
from support.salvage import ETCD, intact_records, tree_records, unprovable_low, zero_key_branch

BUCKETS = {"nested": (b"nested", b"paged"), "deep": (b"deep",), "etcd-3.4": (b"key",),
           "etcd-3.5": (b"key",)}


def source(name: str, tmp_path) -> tuple[Path, Path]:
    """(intact original, a copy to damage)."""
    if name.startswith("etcd-"):
        original = ETCD / f"{name}.db"
        src = tmp_path / "damaged.db"
        shutil.copyfile(original, src)
        return original, src
    return damage.FIXTURES / f"{name}.db", damage.copy_fixture(name, tmp_path, "damaged.db")


def swap_keys(path, leaf: damage.Node, i: int, j: int) -> None:
    """Elements i and j of a leaf exchange their keys (equal lengths), each
    keeping its own value: a record that never existed on either side."""
    ps = damage.page_size_of(path)
    (oi, ni), (oj, nj) = damage.key_offset(path, leaf.pgid, i, ps), \
        damage.key_offset(path, leaf.pgid, j, ps)
    assert ni == nj
    with open(path, "r+b") as f:
        f.seek(oi)
        f.write(leaf.keys[j])
        f.seek(oj)
        f.write(leaf.keys[i])


def set_key(path, leaf: damage.Node, i: int, key: bytes) -> None:
    off, n = damage.key_offset(path, leaf.pgid, i, damage.page_size_of(path))
    assert len(key) == n
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(key)


def check_output(original, out) -> dict:
    """Output passes real bbolt, holds no record outside the intact trees
    (same bucket, same value), and every untouched key of the leaf."""
    assert oracle.oracle_check(out, timeout=60).ok
    allowed = intact_records(original)
    got = tree_records(out)
    invented = {k for k, (v, _) in got.items() if v not in allowed.get(k, ())}
    assert not invented, sorted(invented)[:3]
    return got


def middle_leaf(path, bucket) -> damage.Node:
    """A leaf below a trusted branch element that is not the first: its
    range is [its own element key, the next element's key)."""
    leaves = damage.leaves(path, bucket)
    assert len(leaves) >= 3
    return leaves[len(leaves) // 2]


@pytest.mark.parametrize("name", list(BUCKETS))
@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_first_and_last_key_swapped_never_pair_a_key_with_another_value(name, which,
                                                                         tmp_path):
    bucket = BUCKETS[name]
    original, src = source(name, tmp_path)
    leaves = damage.leaves(src, bucket)
    leaf = {"first": leaves[0], "middle": middle_leaf(src, bucket), "last": leaves[-1]}[which]
    n = len(leaf.keys)
    assert len(leaf.keys[0]) == len(leaf.keys[-1])
    swap_keys(src, leaf, 0, n - 1)
    out = tmp_path / "fixed.db"
    rep = repair(src, out)
    assert rep.lost_data and "key-order" in rep.dropped_counts
    got = check_output(original, out)
    ref = tree_records(original)
    # the keys in between are all kept, with their own values
    for k in leaf.keys[1:-1]:
        assert got[(bucket, k)][0] == ref[(bucket, k)][0]
    # the two swapped keys: absent, or (salvaged from an older copy) with their own value
    for k in (leaf.keys[0], leaf.keys[-1]):
        assert (bucket, k) not in got or got[(bucket, k)][0] == ref[(bucket, k)][0]


@pytest.mark.parametrize("name", list(BUCKETS))
def test_kept_run_fits_the_parent_branch_range(name, tmp_path):
    """Keys out of order, and the last key raised past the next element's
    key: the longest increasing run would keep it, the parent's range drops
    it (it would belong to the next leaf's range)."""
    bucket = BUCKETS[name]
    original, src = source(name, tmp_path)
    leaves = damage.leaves(src, bucket)
    leaf = middle_leaf(src, bucket)
    nxt = leaves[leaves.index(leaf) + 1]
    n = len(leaf.keys)
    swap_keys(src, leaf, 1, 2)
    # a key inside the next leaf's range: in order on its own page
    high = nxt.keys[0][:-1] + bytes([min(nxt.keys[0][-1] + 1, 255)])
    assert leaf.keys[-1] < high and len(high) == len(leaf.keys[-1])
    set_key(src, leaf, n - 1, high)
    out = tmp_path / "fixed.db"
    rep = repair(src, out)
    assert "key-out-of-range" in rep.dropped_counts
    got = check_output(original, out)
    assert (bucket, high) not in got or got[(bucket, high)][0] == \
        tree_records(original)[(bucket, high)][0]


def successor(key: bytes) -> bytes:
    """The next key of the same length (as a big-endian number)."""
    return (int.from_bytes(key, "big") + 1).to_bytes(len(key), "big")


@pytest.mark.parametrize("name", ["nested", "etcd-3.4", "etcd-3.5"])  # deep: no key fits between
def test_element_0_is_the_parent_branch_key(name, tmp_path):
    """Element 0's key changed to another key still in order (and two keys
    swapped further on, so the page is read key by key): bbolt's branch key
    is its child's first key, so a leaf whose element 0 is not its trusted
    branch key has a damaged element 0, and it is not kept under a key that
    never existed."""
    bucket = BUCKETS[name]
    original, src = source(name, tmp_path)
    leaf = next(n for n in damage.leaves(src, bucket)[1:-1]
                if len(n.keys) > 5 and successor(n.keys[0]) < n.keys[1])
    fake = successor(leaf.keys[0])
    set_key(src, leaf, 0, fake)
    swap_keys(src, leaf, 2, 3)
    out = tmp_path / "fixed.db"
    repair(src, out)
    got = check_output(original, out)
    assert (bucket, fake) not in got
    for k in leaf.keys[4:]:
        assert (bucket, k) in got


@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_swapped_keys_on_an_orphan_leaf_are_not_salvaged(version, tmp_path):
    """The `key` bucket's root branch zeroed (every leaf an orphan, rule 3)
    and one leaf's first and last revision keys swapped: neither is placed
    beside the other's value, and the leaf's other keys come back (or, when
    nothing in the file proves compaction kept them, are in lost+found:
    3.6/3.7's db is written in the run, its free pages vary)."""
    original = etcddbs.etcd_db(version)
    src = tmp_path / "damaged.db"
    shutil.copyfile(original, src)
    leaf = middle_leaf(src, (b"key",))
    zero_key_branch(src)
    swap_keys(src, leaf, 0, len(leaf.keys) - 1)
    out, lf = tmp_path / "fixed.db", tmp_path / "lf.db"
    rep = repair(src, out, lost_found=lf)
    assert rep.salvage["salvaged_records"] > 0
    got = check_output(original, out)
    ref = tree_records(original)
    for k in (leaf.keys[0], leaf.keys[-1]):
        assert ((b"key",), k) not in got or got[((b"key",), k)][0] == ref[((b"key",), k)][0]
    middle = [((b"key",), k) for k in leaf.keys[1:-1]]
    point = etcddbs.expected(version)["compact_revision"]
    unproven = unprovable_low(rep, [k for k in middle if k not in got], src, point, lf)
    assert sum(k in got for k in middle) >= len(middle) - len(unproven)


@pytest.mark.parametrize("flags", [0x00, 0x01, 0x03, 0x20])  # 0x01: says branch
@pytest.mark.parametrize("name", ["nested", "etcd-3.5"])
def test_a_leaf_whose_type_alone_is_wrong_is_read_as_the_child(name, flags, tmp_path):
    """Issue 20, item 6: a leaf below a branch whose type byte alone is
    damaged (a type no page has, or branch) -- its parent points at it, its id is its position, and it reads
    as a leaf whose first key is the parent's branch key -- keeps its records
    (page-type-recovered, nothing lost).  The same page with its first key
    changed too is not the child: invalid-page-type, its records pruned."""
    bucket = BUCKETS[name]
    original, src = source(name, tmp_path)
    leaf = damage.leaves(src, bucket)[2]
    damage.write_header(src, leaf.pgid, flags=flags)
    out = tmp_path / "fixed.db"
    rep = repair(src, out)
    assert rep.other_counts.get("page-type-recovered") == 1, rep.other_counts
    assert not rep.dropped_counts
    values = {k: v for k, (v, _) in check_output(original, out).items()}
    assert values == {k: v for k, (v, _) in tree_records(original).items()}
    assert oracle.oracle_check(out).ok
    # element 0 no longer the branch key: not proven the child
    (tmp_path / "b").mkdir()
    other, src2 = source(name, tmp_path / "b")
    leaf = damage.leaves(src2, bucket)[2]
    set_key(src2, leaf, 0, successor(leaf.keys[0]))  # (found by the leaf's own layout)
    damage.write_header(src2, leaf.pgid, flags=flags)
    rep = repair(src2, tmp_path / "fixed2.db", meta=newest(src2))
    assert "page-type-recovered" not in rep.other_counts
    if flags == 0x01:  # read as the branch it says it is: its elements are out of bounds
        assert rep.dropped_counts and "invalid-page-type" not in rep.dropped_counts
    else:
        assert rep.dropped_counts.get("invalid-page-type") == 1


def newest(path) -> int:
    """The meta bbolt uses (a forced meta keeps repair on that tree)."""
    with DB(path) as db:
        return db.meta.index


@pytest.mark.parametrize("bucket,idx_is_last", [((b"nested", b"level2"), False),
                                                 ((b"nested", b"paged"), True)])
def test_a_short_bucket_value_is_read_where_bbolt_laid_it_out(bucket, idx_is_last, tmp_path):
    """A bucket entry's value size cut to 8: its 16 header bytes still end
    where the next element's key starts, or (the page's last element) where
    the page's zeros start: read as one (bucket-value-size-recovered),
    nothing lost.  A byte after the last element's header breaks the proof:
    bucket-value-short, the bucket dropped."""
    original = oracle.fixture("nested")
    src = damage.copy_fixture("nested", tmp_path, "d.db")
    with DB(src) as db:
        pg, idx = damage.bucket_entry(db, bucket)
        assert (idx == db.page(pg).count - 1) == idx_is_last
    damage.write_leaf_element(src, pg, idx, vsize=8)
    rep = repair(src, tmp_path / "fixed.db")
    assert rep.other_counts.get("bucket-value-size-recovered") == 1, rep.other_counts
    assert not rep.dropped_counts
    assert oracle.oracle_dump(tmp_path / "fixed.db") == oracle.oracle_dump(original)
    if idx_is_last:
        with DB(src) as db:
            el = damage.read_leaf_element(src, pg, idx, db.page_size)
        end = damage._element_offset(pg, idx, db.page_size) + el.pos + el.ksize + 16
        with open(src, "r+b") as f:
            f.seek(end)
            f.write(b"\x01")
        rep = repair(src, tmp_path / "fixed2.db")
        assert "bucket-value-size-recovered" not in rep.other_counts
        assert rep.dropped_counts.get("bucket-value-short") == 1, rep.dropped_counts
