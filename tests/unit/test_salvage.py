"""boltfix.salvage (rules 1-4, the planner, repair with salvage) on files
written by the real bbolt 1.3.6 and the real etcd 3.4 / 3.5, damaged with
support/damage.py.

Every case asserts the three things salvage promises:
1. the output passes the real bbolt ``tx.Check()`` (support/oracle.py);
2. every output record existed in the intact file, in the same bucket, with
   the same value (in the tree of either meta: a fallback may take the older);
3. of the records that still lie on undamaged pages, the share recovered."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from boltfix.leaves import sure_increasing
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.walk import Walker
from support import REPO, damage, etcddbs, oracle
from support.salvage import (
    ETCD,
    intact_records,
    tree_records,
    truncate_past_root,
    unprovable_low,
    zero_key_branch,
    zero_page,
    zero_roots,
    zero_roots_and_key_roots,
)

# ---------------------------------------------------------------- helpers


def unchanged_pages(original, damaged_path, ps) -> set:
    a, b = Path(original).read_bytes(), Path(damaged_path).read_bytes()
    n = len(a) // ps
    return {i for i in range(n) if a[i * ps:(i + 1) * ps] == b[i * ps:(i + 1) * ps]}


def rolled_back_further(rep, original, m) -> bool:
    """Whether repair kept an older commit's whole etcd tree, found from a
    stale copy of the root (commits rule 4); then the records ``measure``
    calls invented may only be that commit's values outside ``key`` (its
    ``meta``, ``auth/authRevision``, a lease since revoked: etcd writes a
    revision record once, so an older tree's ``key`` records are the
    file's own), its index never above the file's own (etcd replays its
    WAL above it)."""
    if (rep.commits or {}).get("rule") != "rolled-back-further":
        return False
    assert all(k[0] != (b"key",) for k in m["invented"]), m["invented"][:3]
    kept = rep.commits["kept"]["etcd"]["consistent_index"]
    own = tree_records(original)[((b"meta",), b"consistent_index")][0]
    assert kept <= int.from_bytes(own, "big")
    return True


def measure(original, damaged_path, out, bucket=None) -> dict:
    """Check the output against the intact file; recall of records on pages
    the damage left alone (in the newest meta's tree of the intact file)."""
    res = oracle.oracle_check(out, timeout=30)
    assert res.ok, (res.status, res.messages[:5])
    allowed = intact_records(original)
    got = tree_records(out)
    invented = [k for k, (v, _) in got.items() if v not in allowed.get(k, ())]
    ps = damage.page_size_of(original)
    same = unchanged_pages(original, damaged_path, ps)
    ref = tree_records(original)
    must = [k for k, (v, pg) in ref.items() if pg in same and (bucket is None or k[0] == bucket)]
    missing = [k for k in must if not (k in got and got[k][0] == ref[k][0])]
    found = len(must) - len(missing)
    return {"invented": invented, "must": len(must), "found": found, "missing": missing,
            "recall": found / len(must) if must else 1.0, "out": len(got)}


# ---------------------------------------------------------------- etcd damage that takes the root


#: 3.6 and 3.7: dbs their real etcd writes in this run (support.etcddbs).
#: The truncation only where a root lies high (3.4's db): in 3.5-3.7's one
#: meta's root is a low page, and a cut below it leaves only the metas.
ETCD_ROOT_CASES = {
    "3.4-truncated-past-root": ("3.4", truncate_past_root),
    **{f"{v}-zeroed-root-leaf": (v, zero_roots) for v in etcddbs.VERSIONS},
    **{f"{v}-zeroed-key-branch": (v, zero_key_branch) for v in etcddbs.VERSIONS},
    # nothing left to prove a revision at or below the compaction point kept
    **{f"{v}-zeroed-root-and-key-roots": (v, zero_roots_and_key_roots)
       for v in etcddbs.GENERATED},
}


@pytest.mark.parametrize("case", list(ETCD_ROOT_CASES))
def test_etcd_root_or_key_branch_lost_is_salvaged(case, tmp_path):
    """Every `key` revision on a page the damage left alone comes back, or
    (when no tree written after the compaction survives to prove it was
    kept) is in lost+found; of the provable ones, at least 95% come back.
    3.6/3.7: a fresh db per run, its free pages chosen by bbolt's map
    freelist (Go map order), so which old trees survive varies."""
    version, fn = ETCD_ROOT_CASES[case]
    original = etcddbs.etcd_db(version)
    src = tmp_path / "damaged.db"
    shutil.copyfile(original, src)
    fn(src)
    out, lf = tmp_path / "fixed.db", tmp_path / "lost+found.db"
    rep = repair(src, out, lost_found=lf)
    assert rep.lost_data
    m = measure(original, src, out, bucket=(b"key",))
    further = rolled_back_further(rep, original, m)
    assert not m["invented"] or further, m["invented"][:3]
    point = etcddbs.expected(version)["compact_revision"]
    unproven = unprovable_low(rep, m["missing"], src, point, lf)
    # at least 95% of the provable key revisions on surviving pages come back
    if fn is zero_roots_and_key_roots:
        assert further or unproven  # each of them in lost+found (unprovable_low)
    provable = m["must"] - len(unproven)
    recall = m["found"] / provable if provable else 1.0
    assert recall >= 0.95, (recall, {k: v for k, v in m.items() if k != "missing"})
    sv = rep.salvage
    assert further or (sv["etcd"] and sv["salvaged"]["key"])
    # compacted revisions never come back: deleted-and-compacted keys stay gone
    expected = etcddbs.expected(version)
    from boltfix.etcd import decode_key_value

    # (a put's user key; a tombstone serves nothing: 3.5.15+, 3.6 and 3.7
    # keep the one exactly at the compaction point, key_index.go doCompact)
    served = {decode_key_value(v).get("key") for (b, k), (v, _) in tree_records(out).items()
              if b == (b"key",) and len(k) == 17}
    compacted = {k.encode() for k, d in expected["deleted"].items() if d["compacted"]}
    # (an older commit's whole tree kept, rolled back further, may predate
    # the compaction's deletes: etcd resumes the compaction it finds
    # scheduled and not finished; salvage never does)
    assert further or not served & compacted
    # lost+found is a valid bbolt file apart from the output
    assert oracle.oracle_check(lf).ok
    print(f"{case}: {m['found']}/{m['must']} key revisions on surviving pages recovered "
          f"(recall {recall:.3f}; {len(unproven)} not provable, in lost+found); "
          f"salvage {sv['salvaged']}")


def test_root_lost_etcd_rebuilds_only_the_key_bucket(tmp_path):
    original = ETCD / "etcd-3.4.db"
    src = tmp_path / "damaged.db"
    shutil.copyfile(original, src)
    truncate_past_root(src)
    out = tmp_path / "fixed.db"
    rep = repair(src, out)
    assert rep.meta.get("root_lost") and rep.salvage["root_lost"]
    got = tree_records(out)
    # the other buckets' current version cannot be proven (old copies of the
    # root leaf hold stale meta/consistent_index): none is placed
    assert {b for b, _ in got} == {(b"key",)}
    assert rep.salvage["facts"]["compact_revision_from"].startswith("surviving copies")


# ---------------------------------------------------------------- generic bbolt


def test_rule_5_copied_page_is_never_placed(tmp_path):
    """A leaf of one bucket copied over the root leaf of another (no branch
    key bounds it): a walk that trusted it would read its records into the
    wrong bucket."""
    src = damage.copy_fixture("nested", tmp_path, "damaged.db")
    ps = damage.page_size_of(src)
    a = damage.leaves(src, (b"nested", b"paged"))[1]
    with DB(src) as db:
        b = damage.Node(damage.find_bucket(db, (b"\xff\xfe\x00bin-bucket",)).root, 0, 0,
                        None, None)
    data = Path(src).read_bytes()[a.pgid * ps:(a.pgid + 1) * ps]
    with open(src, "r+b") as f:
        f.seek(b.pgid * ps)
        f.write(data)
    out, lf = tmp_path / "fixed.db", tmp_path / "lf.db"
    # the newest meta's tree, as bbolt reads it: left alone, repair rolls back
    # to the previous commit, whose tree the copy did not touch
    # (tests/unit/test_commits.py)
    rep = repair(src, out, lost_found=lf, meta=newest_meta(src))
    assert "page-records-not-placed" in rep.dropped_counts
    m = measure(damage.FIXTURES / "nested.db", src, out)
    assert not m["invented"], m["invented"][:3]
    assert m["recall"] == 1.0, m
    got = tree_records(out)
    assert not any(bp == (b"\xff\xfe\x00bin-bucket",) and k in a.keys for bp, k in got)


def newest_meta(path) -> int:
    """The index of the meta bbolt uses."""
    with DB(path) as db:
        return db.meta.index


def test_rule_6_keeps_only_keys_on_every_longest_increasing_run():
    assert sure_increasing([b"a", b"c", b"b", b"d"]) == {0, 3}  # a swapped pair: both out
    assert sure_increasing([b"a", b"b", b"c"]) == {0, 1, 2}
    assert sure_increasing([b"z", b"b", b"c", b"d", b"a"]) == {1, 2, 3}
    assert sure_increasing([]) == set()


# ---------------------------------------------------------------- recall over damage kinds
ETCD_KINDS = {
    "zeroed-key-leaf": lambda p: damage.zeroed_page(p, (b"key",)),
    "branch-to-meta-0": lambda p: damage.branch_to_meta(p, (b"key",)),
    "branch-to-self": lambda p: damage.branch_to_self(p, (b"key",)),
    "branch-past-pgid": lambda p: damage.branch_past_pgid(p, (b"key",)),
    "branch-past-eof": lambda p: damage.branch_past_eof(p, (b"key",)),
    "branch-duplicate-child": lambda p: damage.branch_duplicate_child(p, (b"key",)),
    "branch-empty-unrecoverable": lambda p: damage.branch_empty_unrecoverable(p, (b"key",)),
    "bucket-root-out-of-range": lambda p: damage.bucket_root_out_of_range(p, (b"key",)),
    "page-self-id-mismatch": lambda p: damage.page_self_id_mismatch(p, (b"key",)),
    "keys-swapped": lambda p: damage.keys_swapped(p, (b"key",)),
    "zeroed-key-branch": zero_key_branch,
    "zeroed-root-leaf": zero_roots,
}
GENERIC_KINDS = ["zeroed-page", "branch-to-meta-0", "branch-to-meta-1", "branch-to-freelist",
                 "branch-to-self", "branch-to-ancestor", "branch-past-pgid", "branch-past-eof",
                 "branch-duplicate-child", "branch-empty-unrecoverable",
                 "bucket-root-out-of-range", "file-truncated", "keys-swapped",
                 "page-self-id-mismatch", "leaf-count-and-pos-damaged"]


def test_mean_recall_over_damage_kinds(tmp_path):
    """The done-when figure: mean recall, over damage kinds, of the records
    still on undamaged pages (real bbolt and real etcd files), nothing
    invented; reported, and held, per etcd version.  3.6/3.7: the dbs their
    real etcd writes in this run (support.etcddbs), whose old trees vary
    (bbolt's map freelist): a `key` revision no tree proves kept is out of
    the figure and in lost+found (:func:`etcd_recall`)."""
    rows = []
    for kind in GENERIC_KINDS:
        k = damage.KINDS[kind]
        d = tmp_path / f"g-{kind}"
        d.mkdir()
        src = damage.copy_fixture(k.shape, d, "damaged.db")
        k.apply(src)
        repair(src, d / "fixed.db")
        m = measure(damage.FIXTURES / f"{k.shape}.db", src, d / "fixed.db")
        rows.append(("bbolt", kind, m))
    for version in etcddbs.VERSIONS:
        rows += [("etcd " + version, kind, etcd_recall(version, kind, fn, tmp_path))
                 for kind, fn in ETCD_KINDS.items()]
    for group, name, m in rows:
        print(f"{group + ' ' + name:45s} recall {m['recall']:.3f} ({m['found']}/{m['must']}"
              f"{', %d not provable' % m['unproven'] if m.get('unproven') else ''})")
        assert not m["invented"], (group, name, m["invented"][:3])
    means = {g: [m["recall"] for gg, _, m in rows if gg == g] for g, _, _ in rows}
    means = {g: sum(v) / len(v) for g, v in means.items()}
    for group, mean in means.items():
        print(f"mean recall, {group}: {mean:.4f}")
    mean = sum(m["recall"] for _, _, m in rows) / len(rows)
    print(f"mean recall over {len(rows)} damage kinds: {mean:.4f}")
    assert mean >= 0.99
    assert min(means.values()) >= MEAN_RECALL_FLOOR, means


#: each group's (bbolt, each etcd version) mean recall over its damage
#: kinds holds at least this: measured 0.999-1.000, the lowest one 3.6 run
#: at 0.9976 (zeroed-root-leaf 0.972); two of 12 kinds at the 0.95 each case
#: above holds would still pass
MEAN_RECALL_FLOOR = 0.99


def etcd_recall(version: str, kind: str, fn, tmp_path) -> dict:
    """``measure`` of one damage kind on the version's etcd db, its recall
    over the provable `key` revisions: those at or below the compaction
    point that no tree written after it holds are left out of the
    denominator and must be in lost+found (support.salvage.unprovable_low)."""
    original = etcddbs.etcd_db(version)
    d = tmp_path / f"e{version}-{kind}"
    d.mkdir()
    src, lf = d / "damaged.db", d / "lost+found.db"
    shutil.copyfile(original, src)
    fn(src)
    rep = repair(src, d / "fixed.db", lost_found=lf)
    m = measure(original, src, d / "fixed.db", bucket=(b"key",))
    if rolled_back_further(rep, original, m):
        m["invented"] = []  # that commit's meta values: checked above
    point = etcddbs.expected(version)["compact_revision"]
    m["unproven"] = len(unprovable_low(rep, m["missing"], src, point, lf))
    provable = m["must"] - m["unproven"]
    m["recall"] = m["found"] / provable if provable else 1.0
    return m


# ---------------------------------------------------------------- real etcd starts from it


def test_intact_file_is_written_once(tmp_path, monkeypatch):
    """No salvage pass for a file the walk reads whole."""
    from boltfix import salvage

    calls = []
    monkeypatch.setattr(salvage, "plan_salvage",
                        lambda *a, **k: calls.append(1) or salvage.Plan())
    from boltfix import writer

    copied = []
    copy = writer.BoltWriter.copy_leaves
    monkeypatch.setattr(writer.BoltWriter, "copy_leaves",
                        lambda self, buf, leaves: copied.append(n := copy(self, buf, leaves))
                        or n)
    rep = repair(ETCD / "etcd-3.5.db", tmp_path / "out.db")
    assert not rep.lost_data and not calls
    assert rep.salvage == {"enabled": True}
    assert sum(copied) > 0.9 * len(key_leaves(ETCD / "etcd-3.5.db"))  # on the copy path


def key_leaves(path) -> list:
    """The leaf pages of etcd's ``key`` bucket, in key order."""
    with DB(path) as db:
        return sorted({r.page for b, r in Walker(db).walk() if b.path == (b"key",)})


def test_salvaged_records_between_copied_pages(tmp_path, monkeypatch):
    """A zeroed leaf of etcd's ``key`` bucket: older copies of its revisions
    come back by rule 3, merged in key order between the bucket's clean
    pages, which are still copied as they stand where no salvaged key falls
    inside them.  The file holds the same records, by the real bbolt, as
    the one built with no page copied, and passes tx.Check()."""
    from boltfix import salvage, writer

    # pages copied after the plan is made: in the pass that merges salvaged records
    copied, plan, copy = [], salvage.plan_salvage, writer.BoltWriter.copy_leaves
    monkeypatch.setattr(salvage, "plan_salvage",
                        lambda *a, **k: copied.clear() or plan(*a, **k))
    monkeypatch.setattr(writer.BoltWriter, "copy_leaves",
                        lambda self, buf, leaves: copied.append(n := copy(self, buf, leaves))
                        or n)
    original = ETCD / "etcd-3.4.db"
    salvaged = 0
    for i, leaf in enumerate(key_leaves(original)[1:4]):
        src = tmp_path / f"damaged-{i}.db"
        shutil.copyfile(original, src)
        zero_page(src, leaf)
        rep = repair(src, tmp_path / f"copied-{i}.db")
        salvaged += rep.salvage["salvaged_records"]
        if rep.salvage["salvaged_records"]:  # copied around the merged records
            assert sum(copied) > 0.8 * len(key_leaves(original)), copied
        with monkeypatch.context() as m:
            m.setattr(writer.BoltWriter, "copy_leaves", lambda self, buf, leaves: 0)
            rebuilt = repair(src, tmp_path / f"rebuilt-{i}.db")
        assert rebuilt.records == rep.records
        assert oracle.oracle_check(tmp_path / f"copied-{i}.db").ok
        assert oracle.oracle_dump(tmp_path / f"copied-{i}.db") == \
            oracle.oracle_dump(tmp_path / f"rebuilt-{i}.db")
        m = measure(original, src, tmp_path / f"copied-{i}.db", bucket=(b"key",))
        assert not m["invented"]
    assert salvaged > 0  # rule 3 brought some revisions back between the pages


def test_no_salvage_option_keeps_only_the_tree(tmp_path):
    src = damage.copy_fixture("nested", tmp_path, "damaged.db")
    damage.branch_past_pgid(src)
    with_salvage = repair(src, tmp_path / "a.db")
    without = repair(src, tmp_path / "b.db", beyond_tree=False)
    assert with_salvage.records == without.records + 43


def test_pure_python_and_c_core_salvage_the_same_file(tmp_path):
    import os
    import subprocess

    src = tmp_path / "damaged.db"
    shutil.copyfile(ETCD / "etcd-3.5.db", src)
    zero_key_branch(src)
    outs = []
    for pure in ("", "1"):
        out = tmp_path / f"out{pure}.db"
        env = dict(os.environ, BOLTFIX_PURE_PYTHON=pure)
        if not pure:
            env.pop("BOLTFIX_PURE_PYTHON")
        proc = subprocess.run([sys.executable, "-m", "boltfix", "repair", str(src), "--out",
                               str(out), "--json"], cwd=REPO, env=env, capture_output=True,
                              check=False)
        assert proc.returncode == 1, proc.stderr[-500:]
        outs.append((out.read_bytes(), json.loads(proc.stdout)["salvage"]))
    assert outs[0] == outs[1]


def test_json_report_says_what_salvage_did_and_kept_apart(tmp_path):
    src = tmp_path / "damaged.db"
    shutil.copyfile(ETCD / "etcd-3.5.db", src)
    truncate = 90  # takes meta 1's root: meta 0's tree, with salvage of what it lost
    with open(src, "r+b") as f:
        f.truncate(truncate * 4096)
    rep = repair(src, tmp_path / "out.db", lost_found=tmp_path / "lf.db").to_json()
    sv = rep["salvage"]
    assert rep["lost_data"] and sv["enabled"] and sv["etcd"]
    assert sv["facts"]["compact_revision_from"] == "committed tree"
    assert {"pages": [truncate, 109], "note": "past the end of the file"} in sv["gone"]
    states = {e["state"] for e in sv["lost_found"]}
    assert states  # older copies, kept apart
    assert rep["lost_found"]["path"].endswith("lf.db")
    lf = oracle.oracle_dump(tmp_path / "lf.db")
    names = {e["key"].decode() for e in lf if e["path"] == [] and e["type"] == "bucket"}
    assert {f"page-{e['page']:08d}-{e['state']}" for e in sv["lost_found"]} <= names
