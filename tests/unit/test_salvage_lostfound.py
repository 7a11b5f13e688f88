"""boltfix.salvage.lostfound: what salvage cannot prove goes to a separate,
valid lost+found file, never into --out; its path is refused like --out's."""

from __future__ import annotations

import json

import pytest

from boltfix.reader import DB
from boltfix.repair import repair
from support import damage, oracle
from support.cli import invoke
from support.salvage import (
    tree_records,
    zero_roots,
)


# ---------------------------------------------------------------- generic bbolt
def test_generic_zeroed_root_goes_to_lost_found_not_out(tmp_path):
    """rule 4 in a generic file: bucket names lived on the root page only, so
    every subtree is evidence; lost+found holds them with provenance."""
    original = damage.FIXTURES / "nested.db"
    src = damage.copy_fixture("nested", tmp_path, "damaged.db")
    zero_roots(src)
    out, lf = tmp_path / "fixed.db", tmp_path / "lf.db"
    rep = repair(src, out, lost_found=lf)
    assert rep.lost_data
    assert not tree_records(out)  # nothing can be proven to belong anywhere
    assert oracle.oracle_check(lf).ok
    entries = oracle.oracle_dump(lf)
    prov = [json.loads(e["value"]) for e in entries if e["key"] == b"provenance"]
    assert prov and all({"page", "state", "key_range", "likely_bucket"} <= set(p) for p in prov)
    evidence = {(e["key"], e["value"]) for e in entries
                if e["type"] == "kv" and e["path"][-1:] == [b"records"]}
    intact = {(k, v) for (b, k), (v, _) in tree_records(original).items()}
    # the evidence is the intact file's records (plus older copies)
    assert len(intact & evidence) >= 0.95 * len(intact)


def test_generic_unrecoverable_branch_goes_to_lost_found(tmp_path):
    src = damage.copy_fixture("nofreelist", tmp_path, "damaged.db")
    damage.branch_empty_unrecoverable(src)
    out, lf = tmp_path / "fixed.db", tmp_path / "lf.db"
    with DB(src) as db:  # the newest commit's tree, as bbolt reads it
        newest, older = db.meta.index, 1 - db.meta.index
    repair(src, out, lost_found=lf, meta=newest)
    lost = set(tree_records(damage.FIXTURES / "nofreelist.db")) - set(tree_records(out))
    assert len(lost) == 250  # no freelist, no key: nothing proves where they go
    entries = oracle.oracle_dump(lf)
    keys = {e["key"] for e in entries if e["path"][-1:] == [b"records"]}
    assert {k for _, k in lost} <= keys
    # left alone, repair rolls back: the branch was written by the newest
    # commit, the previous commit's tree is whole and holds every one of them
    rep = repair(src, out, force=True)
    assert rep.meta["index"] == older and rep.commits["rule"] == "rolled-back"
    assert set(tree_records(out)) == set(tree_records(damage.FIXTURES / "nofreelist.db",
                                                      meta=older))


# ---------------------------------------------------------------- real etcd starts from it


def test_lost_found_paths_are_refused_like_out(tmp_path):
    from boltfix.repair import RepairRefused

    src = damage.copy_fixture("nested", tmp_path, "damaged.db")
    damage.branch_past_pgid(src)
    with pytest.raises(RepairRefused):
        repair(src, tmp_path / "o.db", lost_found=tmp_path / "o.db")
    (tmp_path / "lf.db").write_bytes(b"x")
    with pytest.raises(RepairRefused):
        repair(src, tmp_path / "o.db", lost_found=tmp_path / "lf.db")
    assert (tmp_path / "lf.db").read_bytes() == b"x" and not (tmp_path / "o.db").exists()
    with pytest.raises(RepairRefused):
        repair(src, tmp_path / "o.db", lost_found=src)


def test_cli_lost_found_and_no_salvage(tmp_path):
    src = damage.copy_fixture("nofreelist", tmp_path, "damaged.db")
    damage.branch_empty_unrecoverable(src)
    lf = tmp_path / "lf.db"
    res = invoke("repair", src, "--out", tmp_path / "o.db", "--lost-found", lf, "--json")
    assert res.exit_code == 1, res.output
    rep = json.loads(res.stdout)
    assert rep["lost_found"]["records"] >= 250 and oracle.oracle_check(lf).ok
    res = invoke("repair", src, "--out", tmp_path / "p.db", "--no-salvage", "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["salvage"] == {"enabled": False}
