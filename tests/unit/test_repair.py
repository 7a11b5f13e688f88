"""``boltfix repair``: a valid copy that real bbolt accepts, with nothing invented.

* Every committed fixture repairs to a file that real bbolt 1.3.6 checks OK
  and dumps identically (sequences included), with the page size, the
  freelist mode and the txid carried over; exit 0.
* Every kind of crafted damage in :mod:`support.damage` repairs to a file that real
  bbolt checks OK, whose records are all byte-identical to records of the
  input at the same bucket path (``output ⊆ input``), which keeps every
  record that was read through undamaged bytes (``must-keep ⊆ output``), and
  whose exit code is 1 exactly when the report says something was dropped.

"Read through undamaged bytes" is computed independently of boltfix's
walker: :func:`reference_records` walks the *undamaged* original with plain
``struct`` reads and records, for every record, the byte ranges it was reached
through (the meta, each page header on its path, the branch element that
points at each page and the key bounds next to it, the bucket entries above
it, its own element header, key and value).  A record none of whose ranges
differ between the original and the damaged copy must survive the repair.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix import ccore
from boltfix import structs as S
from boltfix import writer as W
from boltfix.findings import REPAIR_LOSS as LOSS_CODES
from boltfix.reader import DB
from boltfix.repair import NothingRecoverable, RepairRefused, repair
from support import REPO, damage, oracle
from support.cli import invoke

ETCD_DBS = sorted((REPO / "fixtures" / "etcd").glob("etcd-3.*.db"))
ALL_FIXTURES = [oracle.fixture(s) for s in oracle.SHAPES] + ETCD_DBS


# ---------------------------------------------------------------- reference walk
@dataclass(frozen=True)
class RefRecord:
    """A record of a healthy file and the byte ranges it was read through."""

    path: tuple
    key: bytes
    value: object  # bytes, or None for a bucket entry
    type: str  # "kv" | "bucket"
    sequence: object  # int for buckets, else None
    deps: tuple  # ((start, end), ...) absolute byte ranges

    @property
    def ident(self):
        return (self.path, self.key, self.value, self.type, self.sequence)


def reference_records(path, meta_index=None) -> list:
    """Every record of a *healthy* file, depth first, with its dependencies.

    Independent of :mod:`boltfix.walk` on purpose: plain struct reads, no
    checks (the file is an undamaged fixture), recursion.
    """
    with DB(path) as db:
        buf = bytes(db.buf)
        ps = db.page_size
        m = db.meta if meta_index is None else db.metas[meta_index]
    out = []

    def page(pgid, bpath, deps):
        off = pgid * ps
        _, flags, count, _ = S.PAGE_HEADER.unpack_from(buf, off)
        deps = deps + ((off, off + S.PAGE_HEADER_SIZE),)
        if flags == S.BRANCH_PAGE_FLAG:
            els = []
            for i in range(count):
                eo = off + S.PAGE_HEADER_SIZE + S.BRANCH_ELEMENT_SIZE * i
                pos, ksize, child = S.BRANCH_ELEMENT.unpack_from(buf, eo)
                # (element header, the key's pos/ksize only, the key bytes, child)
                els.append(((eo, eo + S.BRANCH_ELEMENT_SIZE), (eo, eo + 8),
                            (eo + pos, eo + pos + ksize), child))
            for i, (head, _, key, child) in enumerate(els):
                d = deps + (head, key)
                if i + 1 < len(els):  # the next key bounds this child from above
                    d += els[i + 1][1:3]
                page(child, bpath, d)
        else:
            assert flags == S.LEAF_PAGE_FLAG, (path, pgid, flags)
            leaf(off, count, bpath, deps)

    def leaf(off, count, bpath, deps):
        for i in range(count):
            eo = off + S.PAGE_HEADER_SIZE + S.LEAF_ELEMENT_SIZE * i
            flags, pos, ksize, vsize = S.LEAF_ELEMENT.unpack_from(buf, eo)
            k = eo + pos
            key, value = buf[k:k + ksize], buf[k + ksize:k + ksize + vsize]
            d = deps + ((eo, eo + S.LEAF_ELEMENT_SIZE), (k, k + ksize + vsize))
            if flags & S.BUCKET_LEAF_FLAG:
                root, seq = S.BUCKET_HEADER.unpack_from(value, 0)
                out.append(RefRecord(bpath, key, None, "bucket", seq, d))
                if root == 0:
                    inline = k + ksize + S.BUCKET_HEADER_SIZE
                    _, _, icount, _ = S.PAGE_HEADER.unpack_from(buf, inline)
                    leaf(inline, icount, bpath + (key,), d)
                else:
                    page(root, bpath + (key,), d)
            else:
                out.append(RefRecord(bpath, key, value, "kv", None, d))

    mo = m.index * ps + S.PAGE_HEADER_SIZE
    page(m.root, (), ((mo, mo + S.META_SIZE),))
    return out


@functools.lru_cache(maxsize=None)
def reference_of(path: str, meta_index=None) -> tuple:
    return tuple(reference_records(path, meta_index))


def changed_ranges(original, damaged) -> list:
    """Sorted (start, end) byte ranges that differ; a cut-off tail counts."""
    a, b = Path(original).read_bytes(), Path(damaged).read_bytes()
    n = min(len(a), len(b))
    out = []
    chunk = 4096
    for base in range(0, n, chunk):
        if a[base:base + chunk] == b[base:base + chunk]:
            continue
        for j in range(base, min(base + chunk, n)):
            if a[j] != b[j]:
                if out and out[-1][1] == j:
                    out[-1][1] = j + 1
                else:
                    out.append([j, j + 1])
    if len(a) != len(b):
        out.append([n, 1 << 62])
    return [tuple(r) for r in out]


def touches(deps, ranges) -> bool:
    starts = [r[0] for r in ranges]
    for s, e in deps:
        i = bisect.bisect_right(starts, s) - 1
        if i >= 0 and ranges[i][1] > s:
            return True
        if i + 1 < len(ranges) and ranges[i + 1][0] < e:
            return True
    return False


def idents(entries) -> list:
    """oracle_dump entries as comparable tuples (path, key, value, type, sequence)."""
    return [(tuple(e["path"]), e["key"], e["value"], e["type"], e.get("sequence"))
            for e in entries]


# ---------------------------------------------------------------- running repair
def run_cli(*args, env=None):
    """``boltfix ARGS`` in-process; (exit code, parsed JSON stdout or None, result)."""
    result = invoke(*args, env={"BOLTFIX_DEBUG": "1", **(env or {})})
    data = None
    if "--json" in args and result.exit_code in (0, 1):
        data = json.loads(result.stdout)
    return result.exit_code, data, result


def cli_repair(src, out, *extra):
    return run_cli("repair", src, "--out", out, "--json", *extra)


def metas_of(path):
    with DB(path) as db:
        return db.page_size, list(db.metas), db.meta


def stat_sig(path):
    st = os.stat(path)
    return Path(path).read_bytes(), st.st_mtime_ns, st.st_size


def dir_names(d):
    return sorted(p.name for p in Path(d).iterdir())


# ---------------------------------------------------------------- healthy fixtures
@pytest.mark.parametrize("src", ALL_FIXTURES, ids=lambda p: p.name)
def test_fixture_repairs_to_identical_content(src, tmp_path):
    before = stat_sig(src)
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(src, out)
    assert code == 0, rep
    assert rep["lost_data"] is False and rep["dropped_counts"] == {} and rep["verified"] is True
    assert stat_sig(src) == before, "the input changed"
    assert dir_names(tmp_path) == ["fixed.db"], "temp files left behind"

    res = oracle.oracle_check(out)
    assert res.ok, (res.status, res.messages[:5], res.stderr[-500:])
    want = oracle.oracle_dump(src)
    got = oracle.oracle_dump(out)
    assert got == want  # same entries, same order, same values and sequences
    assert rep["kept"]["records"] + rep["kept"]["buckets"] == len(got)

    ps_in, _, m_in = metas_of(src)
    ps_out, metas_out, m_out = metas_of(out)
    assert ps_out == ps_in
    assert all(m.valid for m in metas_out)
    assert m_out.index == 0 and m_out.txid == m_in.txid, "txid not carried"
    assert metas_out[1].txid == m_in.txid - 1
    assert m_out.sequence == m_in.sequence
    assert m_out.freelist_synced == m_in.freelist_synced
    if not m_in.freelist_synced:
        raw = Path(out).read_bytes()
        for i in (0, 1):  # bytes 48..56 of each meta page
            assert raw[i * ps_out + 48: i * ps_out + 56] == b"\xff" * 8
    assert os.path.getsize(out) == m_out.pgid * ps_out


def test_page16k_and_nofreelist_modes_are_what_they_claim():
    """Guards the test above: the fixtures really cover both modes and 16 KiB."""
    assert metas_of(oracle.fixture("page16k"))[0] == 16384
    assert not metas_of(oracle.fixture("nofreelist"))[2].freelist_synced
    assert metas_of(oracle.fixture("freed"))[2].freelist_synced


# ---------------------------------------------------------------- crafted damage
META_KINDS = {k for k in damage.KINDS if k.startswith("meta") or k in (
    "newest-meta-torn", "both-metas-invalid")}
FREELIST_KINDS = {k for k in damage.KINDS if k.startswith("freelist")}

# The exit code each kind must give: 0 = written, nothing dropped.
EXPECTED_EXIT = {k: 0 for k in META_KINDS | FREELIST_KINDS}
EXPECTED_EXIT.update({
    # no valid meta: the rediscovered root cannot be proven the last commit
    "both-metas-invalid": 1,
    # a count of 0xFFFF: element 0's pos still says where the data starts,
    # so the real count comes back and nothing is lost
    "branch-count-too-large": 0, "leaf-count-too-large": 0, "inline-count-too-large": 0,
    # count 0 on a branch or non-root leaf: element 0's pos gives the count back
    "branch-empty": 0, "leaf-count-zero": 0,
    # the overlong run is cut to what the leaf's elements need; the sibling
    # is still followed through its own pointer
    "leaf-overflow-too-large": 0,
})
for _k in ("file-truncated", "zeroed-page", "branch-to-meta-0", "branch-to-meta-1",
           "branch-to-freelist", "branch-to-self", "branch-to-ancestor", "branch-past-pgid",
           "branch-past-eof", "branch-duplicate-child", "leaf-count-and-pos-damaged",
           "leaf-pos-out-of-page", "leaf-ksize-out-of-page", "leaf-vsize-out-of-page",
           "zero-length-key", "keys-swapped", "key-outside-ancestor-range",
           "inline-bad-flags",
           "bucket-root-out-of-range", "root-entry-not-bucket", "branch-empty-unrecoverable",
           # rule 5: a page whose header id is not its position may be a copy
           # of another page; its records go to lost+found, not the output
           "page-self-id-mismatch"):
    EXPECTED_EXIT[_k] = 1

# The newest meta fails validation by one field only and its commit is
# proven finished (commits.py, rule 0, newest-meta-mended): its tree is kept.
MENDED_KINDS = {"meta-bad-checksum", "meta-freelist-out-of-range"}

# Records lost although every byte they were read through is intact.
KNOWN_OVER_DROP = {}

# How many records each kind must lose, by reasoning about the damage
# (nested: the damaged leaf of nested/paged holds 43 records; a bucket entry
# counts as a record, as it does in a dump).
EXPECTED_LOST = {
    "zeroed-page": 43,  # the child itself is destroyed
    # the pointer broke, the child is intact: salvage puts it back (rule 1:
    # its first key is the branch element's; rule 2 for branch-to-freelist,
    # where the freelist's own page takes the first key's place: in use, not free)
    "branch-to-meta-0": 0, "branch-to-meta-1": 0,
    "branch-to-freelist": 0, "branch-to-self": 0, "branch-past-pgid": 0,
    "branch-past-eof": 0, "branch-duplicate-child": 0, "leaf-count-and-pos-damaged": 43,
    "leaf-count-too-large": 0, "leaf-overflow-too-large": 0,
    "leaf-count-zero": 0, "branch-empty": 0,
    "branch-empty-unrecoverable": 250,  # nofreelist's live/ subtree under that branch
    "leaf-pos-out-of-page": 1, "leaf-ksize-out-of-page": 1, "leaf-vsize-out-of-page": 1,
    "zero-length-key": 1, "key-outside-ancestor-range": 1,
    # the entry's value size is cut to 8, but its 16 header bytes still lie
    # where bbolt laid them out (walk.laid_out_header): nothing lost
    "bucket-value-short": 0,
    # the bucket's real root is an in-use orphan (synced freelist): rule 2
    "bucket-root-out-of-range": 0,
    "inline-bad-flags": 3,  # nested/inline-2 with its 2 keys
    "inline-count-too-large": 0,  # the count comes back from element 0's pos
    "page-self-id-mismatch": 43, "branch-count-too-large": 0,
}


def _kind_params():
    out = []
    for name in damage.KINDS:
        marks = []
        if name in KNOWN_OVER_DROP:
            marks.append(pytest.mark.xfail(reason=KNOWN_OVER_DROP[name], strict=True))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def rolled_back_to(original: str, ranges, kind: str):
    """The older meta's index when repair must roll back to it: both metas
    valid, the damage loses records of the newest commit's tree (a kind
    that loses nothing, by the tables above, is read around) and touches
    nothing the older commit's tree is read through (its tree is whole).
    Else None (the newest meta's tree, as bbolt takes it)."""
    with DB(original) as db:
        if not all(m.valid for m in db.metas) or db.metas[0].txid == db.metas[1].txid:
            return None
        older = min(db.metas, key=lambda m: m.txid).index
    if EXPECTED_EXIT.get(kind) == 0 or EXPECTED_LOST.get(kind) == 0 or kind in FREELIST_KINDS:
        return None
    if not any(touches(r.deps, ranges) for r in reference_of(original)):
        return None
    if any(touches(r.deps, ranges) for r in reference_of(original, older)):
        return None
    return older


@pytest.mark.parametrize("kind", _kind_params())
def test_damage_kind(kind, tmp_path):
    k = damage.KINDS[kind]
    original = damage.FIXTURES / f"{k.shape}.db"
    src = damage.copy_fixture(k.shape, tmp_path, "damaged.db")
    d = k.apply(src)
    before = stat_sig(src)
    out = tmp_path / "fixed.db"

    code, rep, _ = cli_repair(src, out)
    assert code in (0, 1), rep
    assert stat_sig(src) == before, "the input changed"
    assert dir_names(tmp_path) == ["damaged.db", "fixed.db"], "temp files left behind"
    assert rep["verified"] is True

    # 1. real bbolt accepts the output
    res = oracle.oracle_check(out, timeout=20)
    assert res.ok, (res.status, res.messages[:5], res.stderr[-500:])
    kept = idents(oracle.oracle_dump(out))
    assert len(kept) == len(set(kept))
    assert rep["kept"]["records"] + rep["kept"]["buckets"] == len(kept)

    # 2. which tree must come out: the other meta's when a meta is damaged,
    # or when the damage lost records only on pages the newest commit wrote
    # (the previous commit's tree is whole: rolled back, boltfix.commits)
    tree_meta = None
    ranges = changed_ranges(original, src)
    if kind in META_KINDS and kind != "both-metas-invalid":
        (bad,) = d.pages
        tree_meta = bad if kind in MENDED_KINDS else 1 - bad
        assert rep["meta"]["index"] == tree_meta, rep["meta"]
    elif kind not in META_KINDS:
        tree_meta = rolled_back_to(str(original), ranges, kind)
        assert rep["meta"]["index"] == (tree_meta if tree_meta is not None
                                        else metas_of(original)[2].index), rep["meta"]
        assert (rep["commits"]["rule"] == "rolled-back") == (tree_meta is not None)
    ref = reference_of(str(original), tree_meta)
    full = [r.ident for r in ref]
    if kind in META_KINDS:
        must = full  # only meta pages were touched: the tree is intact
    else:
        must = [r.ident for r in ref if not touches(r.deps, ranges)]

    # 3. nothing invented: every output record is in the input as it is
    allowed = set(full)
    if kind == "keys-swapped":  # the swapped pair is in the damaged input as such
        allowed |= {r.ident for r in reference_records(src)}
    invented = [r for r in kept if r not in allowed]
    assert not invented, invented[:3]

    # 4. nothing readable dropped
    missing = set(must) - set(kept)
    assert not missing, f"{len(missing)} intact records dropped, e.g. {sorted(missing)[:2]}"

    # 5. exit code 1 exactly when something was dropped, and only then
    assert rep["lost_data"] == (code == 1)
    assert (code == 1) == bool(rep["dropped_counts"] or rep["root_rediscovered"]
                                 or rep["meta_fallback"])
    assert set(rep["dropped_counts"]) <= LOSS_CODES
    if set(kept) != set(full):
        assert code == 1, "records were dropped but the exit code says nothing was lost"
    if code == 0:
        assert kept == full
    if kind in EXPECTED_EXIT:
        assert code == EXPECTED_EXIT[kind], (rep["dropped_counts"], rep["other_problems"])
    if kind in EXPECTED_LOST and tree_meta is None:
        assert len(full) - len(set(kept) & set(full)) == EXPECTED_LOST[kind]
    elif tree_meta is not None and kind not in META_KINDS:  # rolled back: all of it
        assert set(kept) == set(full)
    if kind == "both-metas-invalid":
        assert rep["root_rediscovered"] is True
        assert kept == full, "the newest root was not the one rediscovered"

    # 6. the output keeps page size, freelist mode and the txid of the meta used
    ps_out, metas_out, m_out = metas_of(out)
    assert ps_out == metas_of(original)[0]
    assert all(m.valid for m in metas_out)
    assert m_out.txid == max(rep["meta"]["txid"], 1)
    with DB(original) as db:
        assert m_out.freelist_synced == db.meta.freelist_synced or kind == "both-metas-invalid"


def test_truncated_file_keeps_exactly_the_pages_before_the_cut(tmp_path):
    """The etcd#13406 shape on a bbolt fixture: every record whose pages all lie
    before the cut is kept, nothing after it."""
    src = damage.copy_fixture("nofreelist", tmp_path, "cut.db")
    d = damage.file_truncated(src)
    cut = d.extra["cut"]
    out = tmp_path / "fixed.db"
    rep = repair(src, out)
    assert rep.lost_data and "page-past-eof" in rep.dropped_counts
    ps = metas_of(src)[0]
    ref = reference_of(str(oracle.fixture("nofreelist")))
    before_cut = [r.ident for r in ref if all(e <= cut * ps for _, e in r.deps)]
    assert idents(oracle.oracle_dump(out)) == before_cut
    assert 0 < len(before_cut) < len(ref)
    assert oracle.oracle_check(out).ok


def test_forced_meta_repairs_the_older_tree(tmp_path):
    src = oracle.fixture("nested")
    _, metas, used = metas_of(src)
    other = 1 - used.index
    out = tmp_path / "old.db"
    code, rep, _ = cli_repair(src, out, "--meta", other)
    assert code == 0 and rep["meta"]["index"] == other
    assert idents(oracle.oracle_dump(out)) == [r.ident for r in reference_of(str(src), other)]
    assert metas_of(out)[2].txid == metas[other].txid
    assert oracle.oracle_check(out).ok


def test_forced_page_size_rescues_a_bad_meta0_page_size(tmp_path):
    src = damage.copy_fixture("page16k", tmp_path, "bad.db")
    damage.write_meta(src, 0, page_size=16384, pageSize=1000)
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(src, out, "--page-size", 16384)
    assert code == 0, rep
    assert rep["page_size"] == 16384 and metas_of(out)[0] == 16384
    assert oracle.oracle_check(out).ok


# ---------------------------------------------------------------- nothing written
def test_nothing_recoverable_writes_nothing(tmp_path):
    src = tmp_path / "zeros.db"
    src.write_bytes(bytes(8 * 4096))
    out = tmp_path / "fixed.db"
    with pytest.raises(NothingRecoverable):
        repair(src, out)
    code, _, result = cli_repair(src, out)
    assert code == 2 and "nothing" in result.stderr
    assert dir_names(tmp_path) == ["zeros.db"]


def test_empty_and_missing_inputs_exit_2(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for src in (empty, tmp_path / "missing.db"):
        code, _, _ = cli_repair(src, tmp_path / "fixed.db")
        assert code == 2
    assert dir_names(tmp_path) == ["empty.db"]


# ---------------------------------------------------------------- CLI contract
@pytest.fixture
def damaged(tmp_path):
    src = damage.copy_fixture("nested", tmp_path, "damaged.db")
    damage.zeroed_page(src)
    return src


def test_existing_out_is_refused_without_force(damaged, tmp_path):
    out = tmp_path / "exists.db"
    out.write_bytes(b"precious")
    sig = stat_sig(out)
    code, _, result = cli_repair(damaged, out)
    assert code == 2 and "--force" in result.stderr
    assert stat_sig(out) == sig
    with pytest.raises(RepairRefused):
        repair(damaged, out)
    assert stat_sig(out) == sig
    assert dir_names(tmp_path) == ["damaged.db", "exists.db"]

    code, rep, _ = cli_repair(damaged, out, "--force")
    assert code == 1 and rep["verified"]
    assert oracle.oracle_check(out).ok
    assert dir_names(tmp_path) == ["damaged.db", "exists.db"]


def test_out_equal_to_input_is_always_refused(damaged, tmp_path):
    sig = stat_sig(damaged)
    link = tmp_path / "hardlink.db"
    os.link(damaged, link)
    sym = tmp_path / "symlink.db"
    sym.symlink_to(damaged)
    rel = os.path.relpath(damaged)
    for out in (damaged, link, sym, rel):
        for extra in ((), ("--force",), ("--dry-run",), ("--force", "--dry-run")):
            code, _, result = cli_repair(damaged, out, *extra)
            assert code == 2, (out, extra, result.output)
            assert "input" in result.stderr
            assert stat_sig(damaged) == sig
    assert dir_names(tmp_path) == ["damaged.db", "hardlink.db", "symlink.db"]


def test_dry_run_writes_nothing(damaged, tmp_path):
    sig = stat_sig(damaged)
    out = tmp_path / "plan.db"
    code, rep, _ = cli_repair(damaged, out, "--dry-run")
    assert code == 1
    assert rep["dry_run"] is True and rep["output"] is None
    assert not out.exists() and dir_names(tmp_path) == ["damaged.db"]
    assert stat_sig(damaged) == sig
    # the same plan as the real run
    code2, real, _ = cli_repair(damaged, out)
    assert code2 == code
    for key in ("kept", "dropped_counts", "other_problems", "meta", "lost_data"):
        assert rep[key] == real[key], key
    # a dry run over an existing --out does not need --force and leaves it alone
    sig_out = stat_sig(out)
    code3, _, _ = cli_repair(damaged, out, "--dry-run")
    assert code3 == 1 and stat_sig(out) == sig_out


def test_json_report_structure(damaged, tmp_path):
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(damaged, out)
    assert code == 1
    for key, typ in (("input", str), ("output", str), ("dry_run", bool), ("meta", dict),
                     ("page_size", int), ("freelist", str), ("kept", dict),
                     ("lost_data", bool), ("root_rediscovered", bool),
                     ("dropped_counts", dict), ("dropped", list), ("other_problems", dict),
                     ("written", dict), ("verified", bool), ("verify_problems", list)):
        assert isinstance(rep[key], typ), key
    assert rep["input"].endswith("damaged.db") and rep["output"] == str(out)
    assert rep["freelist"] in ("synced", "none") and rep["page_size"] == 4096
    assert {"index", "txid", "root", "pgid", "reason"} <= set(rep["meta"])
    assert set(rep["kept"]) == {"buckets", "records", "per_bucket"}
    per = {"/".join(b["path"]): b["records"] for b in rep["kept"]["per_bucket"]}
    assert per["nested/paged"] == 500 - 43
    assert sum(per.values()) == rep["kept"]["records"]
    assert rep["dropped_counts"] == {"invalid-page-type": 1}
    (f,) = rep["dropped"]
    assert f["code"] == "invalid-page-type" and f["bucket"] == ["nested", "paged"]
    assert {"code", "severity", "page", "path", "bucket", "message"} <= set(f)
    assert f["detail"]["key_range"][0].startswith(b"paged-".hex())
    assert rep["written"]["pgid"] * 4096 == os.path.getsize(out)
    assert rep["verify_problems"] == []


def test_clean_report_says_nothing_lost(tmp_path):
    code, rep, _ = cli_repair(oracle.fixture("freed"), tmp_path / "f.db")
    assert code == 0
    assert rep["dropped"] == [] and rep["dropped_counts"] == {} and not rep["lost_data"]


def test_human_output_and_exit_codes_through_the_real_entry_point(damaged, tmp_path):
    """The installed console script (not click's runner): 1, 0, then 2."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "boltfix", "repair", *map(str, args)],
                              capture_output=True, text=True, timeout=60)

    p = run(damaged, "--out", tmp_path / "a.db")
    assert p.returncode == 1, p.stderr
    assert "could not be recovered" in p.stdout and "Traceback" not in p.stderr
    p = run(oracle.fixture("nested"), "--out", tmp_path / "b.db")
    assert p.returncode == 0, p.stderr
    p = run(oracle.fixture("nested"), "--out", tmp_path / "b.db")
    assert p.returncode == 2 and "--force" in p.stderr and "Traceback" not in p.stderr
    assert dir_names(tmp_path) == ["a.db", "b.db", "damaged.db"]


def test_key_longer_than_bbolt_allows_is_dropped_not_a_crash(tmp_path):
    """A ksize bumped past MaxKeySize (32768) still fits its overflow run, so
    the walk accepts the element; bbolt's Put would refuse the key, so repair
    drops it (found by the fuzz test: it used to die in the writer)."""
    src = damage.copy_fixture("nested", tmp_path, "long.db")
    with DB(src) as db:
        bucket = damage.find_bucket(db, (b"long-keys",))
        leaf = next(n for n in damage.tree(db, bucket.root)
                    if n.flags == S.LEAF_PAGE_FLAG and any(len(k) == S.MAX_KEY_SIZE
                                                           for k in n.keys))
    idx = next(i for i, k in enumerate(leaf.keys) if len(k) == S.MAX_KEY_SIZE)
    el = damage.read_leaf_element(src, leaf.pgid, idx)
    damage.write_leaf_element(src, leaf.pgid, idx, ksize=el.ksize + 1, vsize=el.vsize - 1)
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(src, out)
    # element 0 of its leaf is no longer its parent's branch key: the walk
    # drops it first (rule 6); any other element, repair (bbolt's Put limit)
    first = leaf.keys.index(leaf.keys[idx]) == 0 and leaf.depth > 0
    assert code == 1 and rep["dropped_counts"] == (
        {"key-out-of-range": 1} if first else {"key-too-long": 1})
    assert oracle.oracle_check(out).ok
    kept = idents(oracle.oracle_dump(out))
    full = [r.ident for r in reference_of(str(oracle.fixture("nested")))]
    assert set(kept) <= set(full) and len(full) - len(kept) == 1


def test_etcd_value_that_is_no_keyvalue_is_dropped_not_fatal(tmp_path):
    """etcd exits at start on a `key` record it cannot unmarshal, so repair
    drops exactly that record (reported, exit 1) and writes the rest; it
    must not refuse the whole file (the fuzz test once found it did)."""
    src = damage.copy_fixture(str(REPO / "fixtures" / "etcd" / "etcd-3.5.db"), tmp_path, "e.db")
    leaf = damage.leaves(src, (b"key",))[3]
    off, ksize = damage.key_offset(src, leaf.pgid, 5)
    damage._write(src, off + ksize, b"\x00")  # field number 0: no protobuf
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(src, out)
    assert code == 1 and rep["verified"] is True, rep
    assert rep["dropped_counts"] == {"etcd-unloadable-record": 1}
    assert rep["dropped"][0]["page"] == leaf.pgid
    assert oracle.oracle_check(out).ok
    before = oracle.oracle_dump(src)
    after = oracle.oracle_dump(out)
    gone = [r for r in before if r not in after]
    assert len(gone) == 1 and gone[0]["path"] == [b"key"]
    assert gone[0]["value"][:1] == b"\x00"
    assert all(r in before for r in after)


def test_newest_root_past_the_end_falls_back_to_the_other_meta(tmp_path):
    """A truncated file whose newest meta is valid but whose root page was cut
    off: repair uses the other meta's tree (its transaction is intact below
    the cut), says the newest transaction is lost, and exits 1."""
    src = damage.copy_fixture("nested", tmp_path)
    with DB(src) as db:
        newest, older = db.meta, db.metas[1 - db.meta.index]
        assert newest.root > older.pgid  # the shape this test needs
        cut = older.pgid
    with open(src, "r+b") as f:
        f.truncate(cut * 4096)
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(src, out)
    assert code == 1, rep
    assert rep["meta_fallback"] is True and rep["meta"]["index"] == older.index
    assert rep["dropped_counts"] == {} and rep["verified"] is True
    assert oracle.oracle_check(out).ok
    # exactly the older transaction's tree
    from boltfix.walk import Walker

    with DB(oracle.fixture("nested"), meta=older.index) as db:
        expected = [(b.path, r.key, None if r.is_bucket else bytes(r.value))
                    for b, r in Walker(db).walk()]
    got = [(tuple(r["path"]), r["key"], r["value"]) for r in oracle.oracle_dump(out)]
    assert got == expected


def test_zeroed_metas_on_etcd_rediscover_the_newest_tree(tmp_path):
    """With both metas wiped, older roots still sit in free pages (and hold
    more records: etcd's compaction shrank the newest tree).  The newest is
    the one with the highest meta/consistent_index."""
    original = REPO / "fixtures" / "etcd" / "etcd-3.5.db"
    with DB(original) as db:
        real_root = db.meta.root
    src = damage.copy_fixture(str(original), tmp_path, "e.db")
    with open(src, "r+b") as f:
        for index in (0, 1):
            f.seek(index * 4096 + 16)
            f.write(b"\0" * 64)
    out = tmp_path / "fixed.db"
    code, rep, _ = cli_repair(src, out)
    assert code == 1 and rep["root_rediscovered"] is True
    assert rep["meta"]["root"] == real_root
    assert oracle.oracle_dump(out) == oracle.oracle_dump(original)


# ---------------------------------------------------------------- whole leaves copied as they stand (was test_repair_copy)
FIXTURES = sorted((REPO / "fixtures" / "bbolt").glob("*.db")) + sorted(
    (REPO / "fixtures" / "etcd").glob("etcd-*.db"))


def _records(path):
    return [(r["path"], r["key"], r.get("value"), r.get("type"), r.get("sequence"))
            for r in oracle.oracle_dump(path)]


def _repair_both(src, tmp_path, monkeypatch):
    """(copied file, rebuilt file, copied report, rebuilt report)."""
    copied, rebuilt = tmp_path / "copied.db", tmp_path / "rebuilt.db"
    rep_c = _repair(src, copied)
    with monkeypatch.context() as m:
        m.setattr(W.BoltWriter, "copy_leaves", lambda self, buf, leaves: 0)
        rep_r = _repair(src, rebuilt)
    return copied, rebuilt, rep_c, rep_r


def _repair(src, out):
    try:
        return repair(src, out, force=True)
    except Exception as exc:  # NothingRecoverable and the like: both ways alike
        return type(exc).__name__ + str(exc)


def _same_records_and_valid(src, tmp_path, monkeypatch):
    copied, rebuilt, rep_c, rep_r = _repair_both(src, tmp_path, monkeypatch)
    if isinstance(rep_c, str):
        assert rep_c == rep_r
        return None
    assert not isinstance(rep_r, str), rep_r
    res = oracle.oracle_check(copied, timeout=30)
    assert res.ok, (res.status, res.messages[:5])
    assert _records(copied) == _records(rebuilt)
    assert rep_c.lost_data == rep_r.lost_data
    assert rep_c.records == rep_r.records
    assert rep_r.written["copied_leaves"] == 0
    return rep_c


@pytest.mark.parametrize("src", FIXTURES, ids=lambda p: p.name)
def test_fixture_copy_is_the_rebuild(src, tmp_path, monkeypatch):
    rep = _same_records_and_valid(src, tmp_path, monkeypatch)
    stats = rep.written
    # bbolt's files are laid out as node.write lays them out: nearly every
    # leaf is copied (the first of a bucket goes record by record, since
    # the bucket might still be inlined)
    assert stats["copied_leaves"] >= stats["leaf_pages"] // 5, stats
    assert stats["copied_leaves"] > 0


@pytest.mark.parametrize("kind", sorted(damage.KINDS))
def test_damage_copy_is_the_rebuild(kind, tmp_path, monkeypatch):
    k = damage.KINDS[kind]
    src = damage.copy_fixture(k.shape, tmp_path, "damaged.db")
    k.apply(src)
    _same_records_and_valid(src, tmp_path, monkeypatch)


def test_copied_page_is_what_pack_leaf_builds():
    ps = 4096
    keys = [b"k%04d" % i for i in range(40)]
    vals = [bytes([i]) * (i * 7 % 50) for i in range(40)]
    size = 16 + sum(16 + len(k) + len(v) for k, v in zip(keys, vals))
    src = bytearray(ps * 3)
    W._pack_leaf(src, ps, 1, 0, keys, vals, [0] * 40)
    src[ps + size:2 * ps] = b"\xaa" * (ps - size)  # stale bytes after the data
    blob, firsts, records, last = W._copy_leaves(memoryview(src), ps, [(1, 40, 2 * ps)], None)
    want = bytearray(ps)
    W._pack_leaf(want, 0, 0, 0, keys, vals, [0] * 40)
    assert bytes(blob) == bytes(want)
    assert firsts == [(keys[0], 1)] and records == 40 and last == keys[-1]


def _leaf(rng_keys, vals, flags, ps, shuffle_pos):
    n = len(rng_keys)
    size = 16 + sum(16 + len(k) + len(v) for k, v in zip(rng_keys, vals))
    npages = (size + ps - 1) // ps
    buf = bytearray((npages + 2) * ps)
    W._pack_leaf(buf, ps, 1, npages - 1, rng_keys, vals, flags)
    if shuffle_pos is not None and n:
        i, delta = shuffle_pos
        eoff = ps + 16 + 16 * (i % n)
        pos = struct.unpack_from("<I", buf, eoff + 4)[0]
        struct.pack_into("<I", buf, eoff + 4, max(0, pos + delta))
    return buf, (1, n, ps * (1 + npages))


#: deselected by the pure-Python pass (-m "not c_core"); under CI=true the
#: C core is built (test_ccore.test_c_core_is_built_under_ci), so never skipped
def needs_c(test):
    """Mark ``test`` as one of the C core's (skipped without it, locally only)."""
    return pytest.mark.c_core(pytest.mark.skipif(
        getattr(ccore.speedups, "leaf_copy", None) is None and os.environ.get("CI") != "true",
        reason="the C core is not built")(test))


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=300),
                          st.sampled_from([0, 0, 0, 1])), max_size=30),
       st.sampled_from([512, 1024, 4096]),
       st.one_of(st.none(), st.tuples(st.integers(0, 29), st.integers(-3, 3))),
       st.one_of(st.none(), st.binary(max_size=8)))
def test_c_leaf_copy_is_python(items, ps, shuffle_pos, last):
    items = sorted({k: (v, f) for k, v, f in items}.items())
    keys = [k for k, _ in items]
    vals = [v for _, (v, _) in items]
    flags = [f for _, (_, f) in items]
    buf, leaf = _leaf(keys, vals, flags, ps, shuffle_pos)
    leaves = [leaf, leaf]  # a second copy of the page: its first key is not after the last
    fast = ccore.speedups.leaf_copy(memoryview(buf), ps, leaves, last)
    slow = W._copy_leaves(memoryview(buf), ps, leaves, last)
    assert (bytes(fast[0]), fast[1], fast[2], fast[3]) == (bytes(slow[0]), slow[1], slow[2],
                                                           slow[3])


@needs_c
def test_c_leaf_copy_checks_its_arguments():
    f = ccore.speedups.leaf_copy
    buf = bytearray(4096 * 2)
    with pytest.raises(ValueError):
        f(buf, 100, [(1, 1, 8192)], None)
    with pytest.raises(TypeError):
        f(buf, 4096, [(1, 1, 8192)], "text")
    with pytest.raises(ValueError):  # a leaf past the buffer: the file changed
        f(buf, 4096, [(5, 1, 4096 * 6)], None)
    assert f(buf, 4096, [], None)[1] == []
    assert f(buf, 4096, [(1, 0, 8192)], None)[1] == []  # a count of 0 is never copied


def test_repair_json_reports_copied_leaves(tmp_path):
    src = REPO / "fixtures" / "bbolt" / "deep.db"
    res = invoke("repair", src, "--out", tmp_path / "o.db", "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)["written"]
    assert 0 < stats["copied_leaves"] <= stats["leaf_pages"]
    assert S.PAGE_HEADER_SIZE == 16
