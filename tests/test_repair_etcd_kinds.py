"""etcd starts from a repaired db for every kind of damage the checker covers.

Each kind from tests/damage.py is applied to a copy of a real etcd data dir's
own ``member/snap/db`` (etcd 3.4 and 3.5, auth enabled), the copy is
repaired, put back into a copy of that data dir, and the real etcd must start
on 127.0.0.1, serve exactly the newest surviving revision of every key it
still holds, and take a write.

Not applicable to etcd files, so not run here: the freelist kinds (etcd
never writes a synced freelist, so there is no freelist page to damage or
point at; tests/test_repair.py covers them on bbolt files) and branch-to-ancestor (etcd's `key` bucket of this size has a single
branch level; the cycle is covered by branch-to-self here and on bbolt files).
"""

from __future__ import annotations

import shutil

import pytest

import damage
import oracle
from boltfix.repair import repair
from test_repair_etcd import assert_serves, pristine, serve_from_datadir, served_by  # noqa: F401

KEY = (b"key",)

# kind -> how to apply it to an etcd db (the bucket it hits)
ETCD_KINDS = {
    "meta-bad-magic": lambda p: damage.meta_bad_magic(p),
    "meta-bad-version": lambda p: damage.meta_bad_version(p),
    "meta-bad-checksum": lambda p: damage.meta_bad_checksum(p),
    "meta-bad-page-size": lambda p: damage.meta_bad_page_size(p),
    "meta-0-bad-page-size": lambda p: damage.meta0_bad_page_size(p),
    "meta-root-out-of-range": lambda p: damage.meta_root_out_of_range(p),
    "meta-freelist-out-of-range": lambda p: damage.meta_freelist_out_of_range(p),
    "both-metas-invalid": lambda p: damage.both_metas_invalid(p),
    "newest-meta-torn": lambda p: damage.newest_meta_torn(p),
    "file-truncated": lambda p: damage.file_truncated(p, KEY),
    "page-self-id-mismatch": lambda p: damage.page_self_id_mismatch(p, KEY),
    "zeroed-page": lambda p: damage.zeroed_page(p, KEY),
    "branch-to-meta-0": lambda p: damage.branch_to_meta(p, KEY),
    "branch-to-meta-1": lambda p: damage.branch_to_page1(p, KEY),
    "branch-to-self": lambda p: damage.branch_to_self(p, KEY),
    "branch-past-pgid": lambda p: damage.branch_past_pgid(p, KEY),
    "branch-past-eof": lambda p: damage.branch_past_eof(p, KEY),
    "branch-duplicate-child": lambda p: damage.branch_duplicate_child(p, KEY),
    "branch-count-too-large": lambda p: damage.branch_count_too_large(p, KEY),
    "branch-empty": lambda p: damage.branch_empty(p, KEY),
    "branch-empty-unrecoverable": lambda p: damage.branch_empty_unrecoverable(p, KEY),
    "leaf-count-zero": lambda p: damage.leaf_count_zero(p, KEY),
    "leaf-count-too-large": lambda p: damage.leaf_count_too_large(p, KEY),
    "leaf-count-and-pos-damaged": lambda p: damage.leaf_count_and_pos_damaged(p, KEY),
    "leaf-pos-out-of-page": lambda p: damage.leaf_pos_out_of_page(p, KEY),
    "leaf-ksize-out-of-page": lambda p: damage.leaf_ksize_out_of_page(p, KEY),
    "leaf-vsize-out-of-page": lambda p: damage.leaf_vsize_out_of_page(p, KEY),
    "zero-length-key": lambda p: damage.zero_length_key(p, KEY),
    "keys-swapped": lambda p: damage.keys_swapped(p, KEY),
    "key-outside-ancestor-range": lambda p: damage.key_outside_ancestor_range(p, KEY),
    "bucket-value-short": lambda p: damage.bucket_value_short(p, (b"alarm",)),
    "inline-bad-flags": lambda p: damage.inline_bad_flags(p, (b"cluster",)),
    "inline-count-too-large": lambda p: damage.inline_count_too_large(p, (b"cluster",)),
    "bucket-root-out-of-range": lambda p: damage.bucket_root_out_of_range(p, KEY),
    "root-entry-not-bucket": lambda p: damage.root_entry_not_bucket(p, b"key"),
    "leaf-overflow-too-large": lambda p: damage.leaf_overflow_too_large(p, KEY),
}
NOT_FOR_ETCD = ({k for k in damage.KINDS if k.startswith("freelist-")}
                | {"branch-to-ancestor", "branch-to-freelist"})


def test_every_kind_is_run_or_excluded_with_a_reason():
    assert set(ETCD_KINDS) | NOT_FOR_ETCD == set(damage.KINDS)


@pytest.mark.parametrize("kind", list(ETCD_KINDS))
def test_etcd_starts_from_repaired_db(pristine, kind):  # noqa: F811
    work = pristine.work / f"kind-{kind}"
    work.mkdir()
    try:
        src = work / "damaged.db"
        shutil.copyfile(pristine.db, src)
        ETCD_KINDS[kind](src)
        fixed = work / "fixed.db"
        rep = repair(src, fixed)
        assert rep.verified
        res = oracle.oracle_check(fixed)
        assert res.ok, (res.status, res.messages[:5])
        want = served_by(fixed)

        got = serve_from_datadir(pristine, work, fixed, kind)
        assert_serves(got, want, pristine.expected)
        if not rep.lost_data:
            assert len(got) == len(pristine.expected["keys"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
