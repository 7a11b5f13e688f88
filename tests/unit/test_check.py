"""boltfix.check: every kind of damage from support/damage.py found on the right
page, every finding counted past --max-findings, several damages at once,
and the codes no other test asserts.  (Agreement with the real bbolt's
tx.Check: tests/oracle/test_bbolt_check.py.)"""

from __future__ import annotations

import pytest

from boltfix import structs as S
from boltfix.check import check
from boltfix.reader import DB
from support import damage, oracle
from support.checks import fmt, pairs, run_check

# ---------------------------------------------------------------- clean files


def test_empty_buckets_and_16k_pages_counted():
    """Empty (inline) buckets and 16 KiB pages are normal, not damage."""
    result = run_check(oracle.fixture("page16k"))
    assert result.clean
    with DB(oracle.fixture("page16k")) as db:
        assert db.page_size == 16384
        empty = damage.find_bucket(db, (b"empty",))
        assert empty.is_inline


# ---------------------------------------------------------------- damage: boltfix
@pytest.mark.parametrize("kind", list(damage.KINDS))
def test_damage_reported(kind, tmp_path):
    k = damage.KINDS[kind]
    path = damage.copy_fixture(k.shape, tmp_path)
    d = k.apply(path)
    result = run_check(path)
    assert not result.clean
    got = pairs(result)
    for code, page in d.expect:
        assert any(c == code and (page is None or p == page) for c, p in got), \
            f"{kind}: expected {code} on page {page}; got:\n{fmt(result)}"
    # findings carry where they are: every page-bearing one names a real page id
    for f in result.findings:
        assert f.code and f.message


@pytest.mark.parametrize("kind", list(damage.KINDS))
def test_damage_does_not_touch_the_committed_fixture(kind):
    assert run_check(oracle.fixture(damage.KINDS[kind].shape)).clean


# ---------------------------------------------------------------- limits
def test_max_findings_keeps_counting(tmp_path):
    path = damage.copy_fixture("freed", tmp_path)
    damage.freelist_count_past_page(path)
    with DB(path) as db:
        full = check(db)
        capped = check(db, max_findings=3)
    assert full.total > 3
    assert len(capped.findings) == 3
    assert capped.total == full.total and capped.counts == full.counts


def test_several_damages_all_reported(tmp_path):
    """Damage in different places of one file is all found in one run."""
    path = damage.copy_fixture("nested", tmp_path)
    ds = [damage.keys_swapped(path), damage.inline_bad_flags(path),
          damage.branch_duplicate_child(path, (b"long-keys",))]
    got = pairs(run_check(path))
    for d in ds:
        for code, page in d.expect:
            assert (code, page) in got, (d.kind, code, page, got)


# ---------------------------------------------------------------- etcd


# ---------------------------------------------------------------- codes no other test asserts (was test_core_guards)


# ---------------------------------------------------------------- five finding codes
def _codes(path):
    with DB(path) as db:
        return {(f.code, f.severity, f.page) for f in check(db).findings}


def test_file_partial_page(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\0" * 100)
    codes = _codes(path)
    ps = damage.page_size_of(path)
    assert ("file-partial-page", "warning", size // ps) in codes


def test_meta_bad_header(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    damage.write_header(path, 1, flags=S.LEAF_PAGE_FLAG)  # the checksum covers the body only
    codes = _codes(path)
    with DB(path) as db:
        valid = db.metas[1].valid
    assert valid  # still a usable meta: a warning
    assert ("meta-bad-header", "warning", 1) in codes


def test_meta_truncated(tmp_path):
    src = damage.copy_fixture("nested", tmp_path)
    ps = damage.page_size_of(src)
    path = tmp_path / "short.db"
    path.write_bytes(src.read_bytes()[: ps + 40])  # meta 1 cut inside its body
    with DB(path, page_size=ps) as db:
        assert "meta-truncated" in db.metas[1].problems
    assert {c for c, _, p in _codes(path) if p == 1} >= {"meta-truncated"}


def test_leaf_empty(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    leaf = damage.leaves(path, (b"nested", b"paged"))[1]
    damage.write_header(path, leaf.pgid, count=0)
    damage.write_leaf_element(path, leaf.pgid, 0, pos=7)  # no count to recover from
    codes = _codes(path)
    assert ("leaf-empty", "warning", leaf.pgid) in codes
    assert not any(c == "element-count-corrupt" for c, _, _ in codes)


def test_inline_bucket_nested(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    with DB(path) as db:
        pgid, idx = damage.bucket_entry(db, (b"nested", b"inline-1"))
    key_off, ksize = damage.key_offset(path, pgid, idx)
    # the inline page starts after the 16-byte bucket header; its element 0's
    # flags are the element's first field
    elem0 = key_off + ksize + S.BUCKET_HEADER_SIZE + S.PAGE_HEADER_SIZE
    with open(path, "rb") as f:
        f.seek(elem0)
        el = S.leafPageElement.parse(f.read(S.LEAF_ELEMENT_SIZE))
    el.flags = S.BUCKET_LEAF_FLAG
    with open(path, "r+b") as f:
        f.seek(elem0)
        f.write(S.leafPageElement.build(el))
    codes = _codes(path)
    assert ("inline-bucket-nested", "warning", pgid) in codes
