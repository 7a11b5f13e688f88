"""``boltfix repair`` against the real etcd 3.4.23 and 3.5.1, and 3.6.16 and
3.7.3 (built by ``scripts/build_etcd.sh``) on a representative subset.

3.4/3.5 start from the committed fixtures; 3.6/3.7 from a db the real etcd
writes once per test session with ``fixtures/etcd/make_etcd_db.py`` (support.etcddbs)
(the same content; etcd 3.6+ keeps ``meta/storageVersion``).

(a) The repair workflow on a real data dir: restore the committed fixture
    into a fresh data dir, run etcd once, copy its own ``member/snap/db`` out,
    damage the copy (etcd#13406 shape, zeroed ``key`` leaf, branch element
    past the end, torn newest meta), repair it, put the result back into
    (a copy of) the same data dir, start etcd and read every key with auth.
    etcd must serve exactly the newest surviving revision of every key the
    repaired file holds, and those values are the fixture's expected ones.
(b) The bare-file path: a repaired etcd#13406-shaped db turned into a data
    dir with ``snapshot restore`` starts and serves its keys.
(c) The etcd#13406 regression file: repaired, real bbolt checks it OK, and
    every record the surviving pages hold is kept (counted two ways).

etcd runs on 127.0.0.1 only; data dirs (64 MB of WAL each) are deleted as
soon as a case is done.  Skipped locally without etcd, failed with CI=true.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from boltfix import datadir
from boltfix import structs as S
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.walk import Walker
from support import REPO, damage, etcddbs, oracle
from support.etcdtools import (
    EtcdServer,
    EtcdStartError,
    put_db_into_datadir,
    require_etcd,
    restore_snapshot,
)

ETCD_FIXTURES = REPO / "fixtures" / "etcd"
sys.path.insert(0, str(ETCD_FIXTURES))
import make_13406  # noqa: E402

ROOT = "root:boltfix-root"
VERSIONS = ["3.4", "3.5"]
#: versions without a committed fixture: the real etcd writes one per run
NEW_VERSIONS = ["3.6", "3.7"]
#: the damage kinds run on NEW_VERSIONS (one of each family: metas, the
#: file's end, pages, branch pointers, leaf elements, key order, buckets)
NEW_KINDS = ("meta-bad-checksum", "both-metas-invalid", "file-truncated", "zeroed-page",
             "branch-to-self", "branch-past-eof", "leaf-count-too-large", "keys-swapped",
             "bucket-value-short", "inline-bad-flags")


def expected_of(version: str, where: Path = ETCD_FIXTURES) -> dict:
    """The fixture's expectations (the committed ones, or those written in ``where``)."""
    return json.loads((where / f"etcd-{version}.expected.json").read_text())


def fixture_db(version: str, work: Path) -> Path:
    """The committed fixture db of 3.4/3.5; for a NEW_VERSIONS one, the db
    the real etcd of that version wrote for this session (support.etcddbs,
    with its expectations beside it; ``work`` is unused then)."""
    if version not in NEW_VERSIONS:
        return ETCD_FIXTURES / f"etcd-{version}.db"
    return etcddbs.etcd_db(version)


def dump_idents(path) -> list:
    return [(tuple(e["path"]), e["key"], e["value"], e["type"], e.get("sequence"))
            for e in oracle.oracle_dump(path)]


def served_by(db_path) -> dict:
    """What etcd must serve from this db: key -> newest non-tombstone KeyValue."""
    return oracle.etcd_served_by(db_path)


def read_all(srv: EtcdServer) -> dict:
    return {kv["key"]: kv for kv in srv.get_kvs("", "--from-key", user=ROOT)}


def assert_serves(got: dict, want: dict, expected: dict) -> int:
    """etcd serves exactly the repaired file's newest revisions, and each is
    the fixture's final value, or an earlier value of the same key when the
    newer revisions were on lost pages.  Returns how many are final."""
    assert set(got) == set(want)
    exact = 0
    for k, kv in got.items():
        assert kv["value"] == want[k]["value"].decode()
        assert kv["mod_revision"] == want[k]["mod_revision"]
        final = expected["key_meta"][k]["mod_revision"]
        if kv["value"] == expected["keys"].get(k):
            assert kv["mod_revision"] == final
            exact += 1
        else:  # a newer revision was lost: an older one of the same key shows
            assert kv["value"] in expected["history"].get(k, []), k
            assert kv["mod_revision"] < final
    return exact


# ---------------------------------------------------------------- (a) data dir workflow
@dataclass
class Pristine:
    version: str
    datadir: Path
    peer_port: int
    db: Path  # a copy of the data dir's own member/snap/db after one run
    expected: dict
    work: Path


def _make_pristine(version: str, work: Path) -> Pristine:
    """A data dir restored from the version's fixture db, run once, and a
    copy of its own db."""
    require_etcd(version)
    oracle.boltgen_path()  # skip / fail early without the oracle
    src = fixture_db(version, work)
    expected = expected_of(version, src.parent)
    dd = work / "datadir"
    port = restore_snapshot(src, dd, version)
    with EtcdServer(dd, version, peer_port=port, health_user=ROOT) as srv:
        assert len(read_all(srv)) == len(expected["keys"])
    own = work / "own.db"
    shutil.copyfile(dd / "member" / "snap" / "db", own)
    return Pristine(version, dd, port, own, expected, work)


@pytest.fixture(scope="module")
def pristines(tmp_path_factory):
    """Every version's :class:`Pristine`, made on first use, once per module
    (the tests ask for versions in any order)."""
    made: dict = {}

    def get(version: str) -> Pristine:
        if version not in made:
            made[version] = _make_pristine(version, tmp_path_factory.mktemp(f"etcd-{version}"))
        return made[version]

    try:
        yield get
    finally:
        for p in made.values():
            shutil.rmtree(p.work, ignore_errors=True)


@pytest.fixture
def pristine(request, pristines):
    """The :class:`Pristine` of the version the test is parametrized with."""
    return pristines(request.param)


def serve_from_datadir(pristine: "Pristine", work: Path, fixed: Path, marker: str) -> dict:
    """Put ``fixed`` into a copy of the pristine data dir, start the real etcd
    on it, and return every key it serves; the data dir must still take a
    write (raft entries get applied).

    When boltfix predicts that etcd will not start in place (the repair
    lost ``meta/consistent_index``: the root page was rebuilt, salvage rule
    4), the real etcd must refuse, and the bare-file route (``snapshot
    restore``, what the report then says to do) must serve instead."""
    dd = work / "datadir"
    shutil.copytree(pristine.datadir, dd)
    put_db_into_datadir(fixed, dd)
    port = pristine.peer_port
    if datadir.predict_start(datadir.open_data_dir(str(dd)), full_check=False).outcome == "fails":
        with pytest.raises(EtcdStartError):
            with EtcdServer(dd, pristine.version, peer_port=port, start_timeout=20):
                pass
        shutil.rmtree(dd)
        port = restore_snapshot(fixed, dd, pristine.version)
    with EtcdServer(dd, pristine.version, peer_port=port, health_user=ROOT) as srv:
        got = read_all(srv)
        srv.ctl("put", "/boltfix/after-repair", marker, user=ROOT)
        assert srv.get("/boltfix/after-repair", user=ROOT) == marker
    return got


def _branch_below_a_child(path: Path) -> None:
    """Make the ``key`` bucket's branch page lie below one of its children
    (the etcd#13406 shape needs a cut between them): when every child is
    below the branch (a layout etcd 3.6+ writes now and then), swap the
    branch with its lowest child and repoint the two references to them
    (the branch's element and the bucket's entry in the root leaf)."""
    with DB(path) as db:
        ps = db.page_size
        branch = damage.find_bucket(db, (b"key",)).root
        children = [el.child for el in db.page(branch).elements()]
        root_page = db.meta.root
    low = min(children)
    if max(children) > branch:
        return
    data = bytearray(path.read_bytes())
    make_13406._swap_pages(data, ps, branch, low)
    make_13406._repoint_branch(data, ps, low, low, branch)
    off = root_page * ps
    _, flags, count, _ = S.PAGE_HEADER.unpack_from(data, off)
    assert flags == S.LEAF_PAGE_FLAG, "the root bucket must be one leaf page"
    for i in range(count):
        eoff = off + 16 + 16 * i
        _, pos, ksize, _ = S.LEAF_ELEMENT.unpack_from(data, eoff)
        if bytes(data[eoff + pos:eoff + pos + ksize]) == b"key":
            voff = eoff + pos + ksize
            assert int.from_bytes(data[voff:voff + 8], "little") == branch
            data[voff:voff + 8] = low.to_bytes(8, "little")
    path.write_bytes(bytes(data))


def _cut_13406(p: Path, own: Path) -> dict:
    """``own`` cut to the etcd#13406 shape into ``p``: the file ends between
    the ``key`` bucket's branch page and some of its children."""
    src = p.with_suffix(".src")
    shutil.copyfile(own, src)
    _branch_below_a_child(src)
    with DB(src) as db:
        hwm = db.meta.pgid
        key_root = damage.find_bucket(db, (b"key",)).root
        children = sorted(el.child for el in db.page(key_root).elements())
    above = [c for c in children if c > key_root]
    keep = (key_root + hwm) // 2  # the committed fixtures' cut
    if keep > above[-1]:
        keep = max(key_root + 1, above[len(above) // 2])
    tmp = p.with_suffix(".tmp")
    info = make_13406.make(str(src), str(tmp), keep)
    tmp.replace(p)
    src.unlink()
    assert info["children_past_end"], info
    return info


CASES = {
    # name: (damage, exit code, the finding that must be reported)
    "13406-cut": (lambda p, own: _cut_13406(p, own), 1, "page-past-eof"),
    "zeroed-key-leaf": (lambda p, own: damage.zeroed_page(p, (b"key",)), 1,
                        "invalid-page-type"),
    "branch-past-end": (lambda p, own: damage.branch_past_eof(p, (b"key",)), 1,
                        "page-out-of-bounds"),
    "torn-newest-meta": (lambda p, own: damage.newest_meta_torn(p), 0, None),
}


@pytest.mark.parametrize("pristine", VERSIONS + NEW_VERSIONS, indirect=True)
@pytest.mark.parametrize("case", list(CASES))
def test_repaired_db_put_back_into_its_data_dir(pristine, case):
    fn, want_exit, code = CASES[case]
    work = pristine.work / case
    work.mkdir()
    try:
        src = work / "damaged.db"
        shutil.copyfile(pristine.db, src)
        fn(src, pristine.db)
        fixed = work / "fixed.db"
        rep = repair(src, fixed)
        assert int(rep.lost_data) == want_exit, rep.dropped_counts
        if code:
            assert code in rep.dropped_counts
        res = oracle.oracle_check(fixed)
        assert res.ok, (res.status, res.messages[:5])

        want = served_by(fixed)
        total = len(pristine.expected["keys"])
        if want_exit:
            # salvage beyond the tree may bring every key back (branch-past-end:
            # the child is intact, boltfix/salvage.py rule 1)
            assert 0 < len(want) <= total
        else:
            assert len(want) == total

        got = serve_from_datadir(pristine, work, fixed, "ok")
        exact = assert_serves(got, want, pristine.expected)
        older = len(want) - exact
        assert older <= len(pristine.expected["history"])
        print(f"etcd {pristine.version} {case}: serves {len(got)} of {total} keys "
              f"({exact} at their final value, {older} at an older one)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- (b) bare file
def _fixed_13406(version: str, work: Path) -> Path:
    """3.5: the committed etcd-13406.db; 3.4: the same shape cut from etcd-3.4.db."""
    if version == "3.5":
        src = ETCD_FIXTURES / "etcd-13406.db"
    else:
        own = ETCD_FIXTURES / "etcd-3.4.db"
        src = work / "etcd-3.4-13406.db"
        _cut_13406(src, own)
    fixed = work / "fixed.db"
    rep = repair(src, fixed)
    assert rep.lost_data and "page-past-eof" in rep.dropped_counts
    return fixed


@pytest.mark.parametrize("version", VERSIONS)
def test_repaired_bare_file_restores_and_serves(version, tmp_path):
    require_etcd(version)
    try:
        fixed = _fixed_13406(version, tmp_path)
        assert oracle.oracle_check(fixed).ok
        want = served_by(fixed)
        expected = expected_of(version)
        assert 0 < len(want) < len(expected["keys"])
        dd = tmp_path / "datadir"
        port = restore_snapshot(fixed, dd, version)
        with EtcdServer(dd, version, peer_port=port, health_user=ROOT) as srv:
            got = read_all(srv)
        exact = assert_serves(got, want, expected)
        assert len(want) - exact <= len(expected["history"])
        print(f"etcd {version} bare 13406 file: serves {len(got)} of "
              f"{len(expected['keys'])} keys ({exact} at their final value)")
    finally:
        shutil.rmtree(tmp_path / "datadir", ignore_errors=True)


@pytest.mark.parametrize("pristine", NEW_VERSIONS, indirect=True)
def test_repaired_13406_cut_restores_and_serves_new_versions(pristine):
    """3.6/3.7: the etcd#13406 shape cut from the version's own db, repaired,
    turned into a data dir by ``etcdutl snapshot restore``, serves its keys;
    the storage version survives the repair and the restore."""
    work = pristine.work / "bare-13406"
    work.mkdir()
    try:
        src = work / "cut.db"
        _cut_13406(src, pristine.db)
        fixed = work / "fixed.db"
        rep = repair(src, fixed)
        assert rep.lost_data and "page-past-eof" in rep.dropped_counts
        assert oracle.oracle_check(fixed).ok
        sv = {e["key"]: e["value"] for e in oracle.oracle_dump(fixed)
              if e["path"] == [b"meta"]}.get(b"storageVersion")
        assert sv == f"{pristine.version}.0".encode()
        want = served_by(fixed)
        assert 0 < len(want) < len(pristine.expected["keys"])
        dd = work / "datadir"
        port = restore_snapshot(fixed, dd, pristine.version)
        with EtcdServer(dd, pristine.version, peer_port=port, health_user=ROOT) as srv:
            got = read_all(srv)
        assert_serves(got, want, pristine.expected)
        restored = {e["key"]: e["value"] for e in oracle.oracle_dump(dd / "member/snap/db")
                    if e["path"] == [b"meta"]}
        assert restored.get(b"storageVersion") == sv
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- (c) etcd#13406
def test_13406_repair_keeps_every_record_the_surviving_pages_hold(tmp_path):
    src = ETCD_FIXTURES / "etcd-13406.db"
    before = src.read_bytes()
    fixed = tmp_path / "fixed.db"
    rep = repair(src, fixed)
    assert src.read_bytes() == before
    assert rep.lost_data and rep.dropped_counts == {"page-past-eof": rep.dropped_counts[
        "page-past-eof"]}

    res = oracle.oracle_check(fixed)
    assert res.ok, (res.status, res.messages[:5])
    kept = dump_idents(fixed)

    # 1. what boltfix's walker reaches in the damaged file, record for record
    reachable = []
    with DB(src) as db:
        walker = Walker(db)
        for bucket, rec in walker.walk():
            if rec.is_bucket:
                if rec.child is not None:
                    reachable.append((bucket.path, rec.key, None, "bucket", rec.child.sequence))
            else:
                reachable.append((bucket.path, rec.key, bytes(rec.value), "kv", None))
    # ... all kept, plus the revisions salvage found intact on free pages
    # (boltfix/salvage.py rule 3), each checked against the intact file below
    assert set(reachable) <= set(kept)
    salvaged = sum(n for rules in rep.salvage.get("salvaged", {}).values()
                   for n in rules.values())
    assert len(kept) == len(reachable) + salvaged
    assert rep.records + rep.buckets == len(kept)

    # 2. counted without the walker: the key bucket's branch page and the
    #    leaves it points to that lie inside the file
    with DB(src) as db:
        ps, n = db.page_size, db.pages_in_file
        key_root = next(r for b, r in Walker(db).walk() if r.key == b"key" and not b.path)
        root = S.BUCKET_HEADER.unpack_from(key_root.value, 0)[0]
        _, flags, count, _ = S.PAGE_HEADER.unpack_from(db.buf, root * ps)
        assert flags == S.BRANCH_PAGE_FLAG
        children = [S.BRANCH_ELEMENT.unpack_from(db.buf, root * ps + 16 + 16 * i)[2]
                    for i in range(count)]
        inside = [c for c in children if c < n]
        in_leaves = sum(S.PAGE_HEADER.unpack_from(db.buf, c * ps)[2] for c in inside)
    assert len(inside) < len(children)  # the shape: children past the end
    key_records = [r for r in kept if r[0] == (b"key",)]
    assert len(key_records) == in_leaves + salvaged
    assert rep.dropped_counts["page-past-eof"] == len(children) - len(inside)

    # 3. nothing invented: every kept record is in the undamaged etcd-3.5.db
    original = set(dump_idents(ETCD_FIXTURES / "etcd-3.5.db"))
    assert set(kept) <= original
    # every non-key bucket survived whole
    assert [r for r in kept if r[0] != (b"key",)] == \
        [r for r in dump_idents(ETCD_FIXTURES / "etcd-3.5.db") if r[0] != (b"key",)]
    print(f"etcd-13406: kept {len(kept)} of {len(original)} records "
          f"({len(key_records)} key revisions; {len(children) - len(inside)} leaves past the end)")


# ---------------------------------------------------------------- every damage kind
# (was tests/test_repair_etcd_kinds.py)
# etcd starts from a repaired db for every kind of damage the checker covers.
#
# Each kind from support/damage.py is applied to a copy of a real etcd data dir's
# own ``member/snap/db`` (etcd 3.4 and 3.5, auth enabled), the copy is
# repaired, put back into a copy of that data dir, and the real etcd must start
# on 127.0.0.1, serve exactly the newest surviving revision of every key it
# still holds, and take a write.
#
# Not applicable to etcd files, so not run here: the freelist kinds (etcd
# never writes a synced freelist, so there is no freelist page to damage or
# point at; tests/unit/test_repair.py covers them on bbolt files) and branch-to-ancestor (etcd's `key` bucket of this size has a single
# branch level; the cycle is covered by branch-to-self here and on bbolt files).
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
    assert set(NEW_KINDS) <= set(ETCD_KINDS)


@pytest.mark.parametrize(("pristine", "kind"),
                         [(v, k) for v in VERSIONS for k in ETCD_KINDS]
                         + [(v, k) for v in NEW_VERSIONS for k in NEW_KINDS],
                         indirect=["pristine"])
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
