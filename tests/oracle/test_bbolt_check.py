"""``boltfix check`` against real bbolt 1.3.6: clean files stay clean, every
kind of damage from :mod:`support.damage` is found on the right page, and wherever
bbolt's own ``tx.Check`` reports errors, boltfix reports the same problem on
the same page.  Where bbolt crashes, hangs or says OK, boltfix still reports.
"""

from __future__ import annotations

import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from boltfix.check import check
from boltfix.reader import DB
from support import REPO, damage, oracle
from support.checks import explain, fmt, pairs, run_check

ETCD_FIXTURES = sorted((REPO / "fixtures" / "etcd").glob("etcd-3.*.db"))

#: seconds real bbolt gets before a run counts as a hang
ORACLE_TIMEOUT = 5

# What real bbolt 1.3.6 ``check`` does on each damage kind (recorded with
# fixtures/boltgen).  "dies" = crash or hang: which one depends on what
# happens to lie in memory past the file or on a runaway recursion's speed.
BBOLT_136 = {
    "meta-bad-magic": "ok",  # falls back to the older meta
    "meta-bad-version": "ok",
    "meta-bad-checksum": "ok",
    "meta-bad-page-size": "ok",  # 1.3.6 reads the page size from meta 0 only
    "meta-0-bad-page-size": "dies",
    "meta-root-out-of-range": "dies",
    "meta-freelist-out-of-range": "dies",
    "both-metas-invalid": "cannot-open",
    "newest-meta-torn": "ok",
    "file-truncated": "dies",  # etcd#13406: SIGBUS
    "page-self-id-mismatch": "errors",
    "zeroed-page": "dies",
    "branch-to-meta-0": "dies",
    "branch-to-meta-1": "dies",
    "branch-to-freelist": "dies",
    "branch-to-self": "dies",  # unbounded recursion
    "branch-to-ancestor": "dies",
    "branch-past-pgid": "dies",
    "branch-past-eof": "dies",
    "branch-duplicate-child": "errors",
    "branch-count-too-large": "dies",
    "leaf-count-too-large": "dies",
    "leaf-pos-out-of-page": "dies",
    "leaf-ksize-out-of-page": "ok",  # no element bounds checks
    "leaf-vsize-out-of-page": "ok",
    "zero-length-key": "ok",
    "keys-swapped": "ok",  # no key-order checks before 1.3.7
    "key-outside-ancestor-range": "ok",
    "bucket-value-short": "ok",
    "inline-bad-flags": "ok",  # inline buckets are not checked
    "inline-count-too-large": "ok",
    "bucket-root-out-of-range": "dies",
    "root-entry-not-bucket": "errors",
    "freelist-duplicate": "errors",
    "freelist-id-0": "errors",  # only the page the id replaced: unreachable
    "freelist-id-1": "errors",
    "freelist-past-pgid": "errors",
    "freelist-self": "errors",
    "freelist-count-past-page": "errors",
    "freelist-escape-count-past-page": "dies",
    "freelist-reachable": "errors",
    "freelist-leak": "errors",
    "freelist-wrong-type": "dies",
    "freelist-overflow-too-large": "ok",  # run past pgid: not looked at
    "freelist-overflow-over-tree": "errors",
    "leaf-overflow-too-large": "errors",
    "leaf-count-and-pos-damaged": "dies",
    "branch-empty": "dies",  # index out of range
    "branch-empty-unrecoverable": "dies",
    "leaf-count-zero": "ok",  # an empty leaf is silently fine to bbolt: 43 records gone
}


# ---------------------------------------------------------------- clean files
@pytest.mark.parametrize("shape", oracle.SHAPES)
def test_fixture_clean_in_boltfix_and_bbolt(shape):
    path = oracle.fixture(shape)
    result = run_check(path)
    assert result.clean, fmt(result)
    assert result.stats["records"] > 0
    assert oracle.oracle_check(path, ORACLE_TIMEOUT).status == "ok"


@pytest.mark.parametrize("shape", ["nested", "nofreelist", "page16k"])
def test_random_bytes_past_pgid_are_ignored(shape, tmp_path):
    """bbolt preallocates: whatever lies past pgid means nothing."""
    path = damage.copy_fixture(shape, tmp_path)
    with DB(path) as db:
        ps, hwm, size = db.page_size, db.meta.pgid, db.size
    rnd = random.Random(shape)
    end = max(size, (hwm + 5) * ps)
    with open(path, "r+b") as f:
        f.seek(hwm * ps)
        f.write(rnd.randbytes(end - hwm * ps))
    result = run_check(path)
    assert result.clean, fmt(result)
    assert oracle.oracle_check(path, ORACLE_TIMEOUT).status == "ok"


@pytest.mark.parametrize("shape", ["nested", "nofreelist", "page16k", "overflow"])
def test_compacted_file_clean(shape, tmp_path):
    """A file written by bbolt.Compact (a fresh tree, new page numbering)."""
    out = oracle.compact(oracle.fixture(shape), tmp_path / "compact.db")
    result = run_check(out)
    assert result.clean, fmt(result)
    assert oracle.oracle_check(out, ORACLE_TIMEOUT).status == "ok"
    with DB(oracle.fixture(shape)) as a, DB(out) as b:
        ra, rb = check(a), check(b)
    assert ra.stats["records"] == rb.stats["records"]
    assert ra.stats["buckets"] == rb.stats["buckets"]


def test_writeto_parity_is_clean(tmp_path):
    """Tx.WriteTo files hold meta 0 at txid T and meta 1 at T-1."""
    path = damage.copy_fixture("deep", tmp_path)
    with DB(path) as db:
        used = db.meta.index
    assert used == 1
    if used == 1:  # make meta 0 the newest, as WriteTo leaves it
        m1 = damage.read_meta(path, 1)
        m0 = damage.read_meta(path, 0)
        damage.write_meta(path, 0, **{k: m1[k] for k in ("pgid", "freelist", "txid")},
                          root=m1.root.root)
        damage.write_meta(path, 1, txid=m0.txid)
    assert run_check(path).clean
    assert oracle.oracle_check(path, ORACLE_TIMEOUT).status == "ok"


# ---------------------------------------------------------------- damage: boltfix


# ---------------------------------------------------------------- damage: bbolt
@pytest.fixture(scope="session")
def oracle_results(tmp_path_factory):
    """Every damage kind applied once, then real bbolt's check on all, in parallel."""
    oracle.boltgen_path()  # skip/fail early and build once
    made = damage.apply_every_kind(tmp_path_factory.mktemp("damage"))
    with ThreadPoolExecutor(max_workers=max(4, (os.cpu_count() or 2) * 2)) as ex:
        futures = {n: ex.submit(oracle.oracle_check, p, ORACLE_TIMEOUT)
                   for n, (p, _) in made.items()}
        return {n: (made[n][0], made[n][1], f.result()) for n, f in futures.items()}


@pytest.mark.parametrize("kind", list(damage.KINDS))
def test_bbolt_agrees(kind, oracle_results):
    path, d, o = oracle_results[kind]
    result = run_check(path)
    want = BBOLT_136[kind]
    if want == "dies":
        assert o.status in ("crash", "hang"), (o.status, o.stdout[-500:], o.stderr[:500])
    else:
        assert o.status == want, (o.status, o.messages, o.stderr[:500])
    # whatever bbolt did, boltfix reports and returns
    assert not result.clean
    if o.status == "errors" and d.same_meta:
        missing = [msg for msg in o.messages if not explain(msg, result, path)]
        assert not missing, f"bbolt found what boltfix did not: {missing}\n{fmt(result)}"


def test_comparison_table(oracle_results, capsys, request):
    """The bbolt-vs-boltfix table; printed with -v."""
    rows = []
    for kind, (path, d, o) in oracle_results.items():
        result = run_check(path)
        rows.append((kind, o.status, len(o.messages), ",".join(sorted(result.counts))))
    assert set(BBOLT_136) == set(damage.KINDS)
    if request.config.getoption("verbose") <= 0:
        assert all(r[3] for r in rows)
        return
    with capsys.disabled():
        print("\n{:34s} {:12s} {:>5s}  {}".format("damage", "bbolt 1.3.6", "msgs", "boltfix codes"))
        for r in rows:
            print("{:34s} {:12s} {:>5d}  {}".format(*r))
    assert all(r[3] for r in rows)


# ---------------------------------------------------------------- limits


# ---------------------------------------------------------------- etcd
def _etcd_key_leaf(path):
    """A leaf of the ``key`` bucket and an index whose neighbours have other main revisions."""
    for leaf in damage.leaves(path, (b"key",)):
        ks = leaf.keys
        for i in range(1, len(ks) - 1):
            if len(ks[i]) == 17 and ks[i - 1][:8] != ks[i][:8] != ks[i + 1][:8]:
                return leaf, i
    raise LookupError("no suitable key")


def etcd_bad_revision_key(path) -> damage.Damage:
    leaf, i = _etcd_key_leaf(path)
    off, _ = damage.key_offset(path, leaf.pgid, i)
    damage._write(path, off + 8, b"X")
    return damage.Damage("etcd-bad-revision-key", (leaf.pgid,),
                         (("etcd-bad-revision-key", leaf.pgid),))


def etcd_bad_key_value(path) -> damage.Damage:
    leaf, i = _etcd_key_leaf(path)
    off, ksize = damage.key_offset(path, leaf.pgid, i)
    damage._write(path, off + ksize, b"\xff")  # field 31, wire type 7: invalid
    return damage.Damage("etcd-bad-key-value", (leaf.pgid,), (("etcd-bad-key-value", leaf.pgid),))


def etcd_missing_consistent_index(path) -> damage.Damage:
    with DB(path) as db:
        page = next(rec.page for b, rec in damage.Walker(db).walk()
                    if b.path == (b"meta",) and rec.key == b"consistent_index")
        ps = db.page_size
        run = bytes(db.page(page).data())
    assert run.count(b"consistent_index") == 1
    off = page * ps + run.index(b"consistent_index") + len(b"consistent_inde")
    damage._write(path, off, b"y")  # consistent_indey: same order, not etcd's key
    return damage.Damage("etcd-missing-consistent-index", (page,),
                         (("etcd-missing-consistent-index", None),))


ETCD_DAMAGE = {
    "truncated": lambda p: damage.file_truncated(p, (b"key",)),
    "bad-revision-key": etcd_bad_revision_key,
    "bad-key-value": etcd_bad_key_value,
    "missing-consistent-index": etcd_missing_consistent_index,
}


@pytest.mark.parametrize("fixture", ETCD_FIXTURES, ids=lambda p: p.name)
def test_etcd_fixture_clean(fixture):
    result = run_check(fixture)
    assert result.clean, fmt(result)
    assert result.stats["etcd"] is True
    assert oracle.oracle_check(fixture, ORACLE_TIMEOUT).status == "ok"


@pytest.mark.parametrize("what", list(ETCD_DAMAGE))
@pytest.mark.parametrize("fixture", ETCD_FIXTURES, ids=lambda p: p.name)
def test_etcd_damage(fixture, what, tmp_path):
    path = tmp_path / "db"
    shutil.copyfile(fixture, path)
    d = ETCD_DAMAGE[what](path)
    result = run_check(path)
    got = pairs(result)
    for code, page in d.expect:
        assert any(c == code and (page is None or p == page) for c, p in got), \
            f"{what}: expected {code} on page {page}; got:\n{fmt(result)}"
    if what == "truncated":
        # etcd never syncs its freelist: bbolt walks the tree at open and dies
        o = oracle.oracle_check(path, ORACLE_TIMEOUT)
        assert o.status in ("crash", "hang"), o


def test_etcd_13406_fixture():
    """The committed etcd#13406 file: bbolt dies, boltfix names the missing pages."""
    path = REPO / "fixtures" / "etcd" / "etcd-13406.db"
    result = run_check(path)
    assert "file-truncated" in result.counts and "page-past-eof" in result.counts
    assert oracle.oracle_check(path, ORACLE_TIMEOUT).status in ("crash", "hang")
