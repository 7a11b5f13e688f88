"""Rule 5 in check and dump, as repair applies it: a page whose header id is
not its position (a misdirected write, a copied page) holds records that are
not the tree's.  ``check`` reports it (``page-id-mismatch``, exit 1); ``dump``
writes its records -- and those below a bucket entry on it -- with
``"state": "bad-self-id"``, never as ``live``; what dump still calls live is
exactly what ``repair --no-salvage`` writes.  Files written by the real bbolt
1.3.6 and the real etcd 3.5, damaged with the construct declarations.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from boltfix.check import check
from boltfix.reader import DB
from boltfix.repair import repair
from support import damage
from support.cli import invoke
from support.salvage import ETCD, tree_records


def dump_lines(path, *args) -> list[dict]:
    res = invoke("dump", str(path), "--encoding", "hex", *args)
    assert res.exit_code in (0, 1), res.output
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def key_of(line) -> tuple:
    return (tuple(bytes.fromhex(p) for p in line["path"]), bytes.fromhex(line["key"]))


def copied_leaf(src) -> int:
    """A leaf of nested/paged copied over the root leaf of another bucket
    (its header keeps the id of the page it came from)."""
    ps = damage.page_size_of(src)
    a = damage.leaves(src, (b"nested", b"paged"))[1]
    with DB(src) as db:
        b = damage.find_bucket(db, (b"\xff\xfe\x00bin-bucket",)).root
    data = Path(src).read_bytes()[a.pgid * ps:(a.pgid + 1) * ps]
    with open(src, "r+b") as f:
        f.seek(b * ps)
        f.write(data)
    return b


def entries_page(src) -> int:
    """The root leaf of bucket `nested`, holding its sub-bucket entries, gets
    header id 0."""
    with DB(src) as db:
        pg = damage.find_bucket(db, (b"nested",)).root
    damage.write_header(src, pg, id=0)
    return pg


def leaf_id_zero(src) -> int:
    return damage.page_self_id_mismatch(src).pages[0]


def etcd_key_leaf(src) -> int:
    return damage.page_self_id_mismatch(src, (b"key",)).pages[0]


CASES = {"copied-leaf": ("nested", copied_leaf), "leaf-id-zero": ("nested", leaf_id_zero),
         "bucket-entries-page": ("nested", entries_page),
         "etcd-3.5-key-leaf": ("etcd-3.5", etcd_key_leaf)}


@pytest.mark.parametrize("case", list(CASES))
def test_check_and_dump_keep_a_bad_self_id_page_apart(case, tmp_path):
    shape, fn = CASES[case]
    if shape.startswith("etcd"):
        src = tmp_path / "damaged.db"
        shutil.copyfile(ETCD / f"{shape}.db", src)
    else:
        src = damage.copy_fixture(shape, tmp_path, "damaged.db")
    page = fn(src)
    with DB(src) as db:
        report = check(db)
    assert any(f.code == "page-id-mismatch" and f.page == page for f in report.findings)
    assert report.failed()
    res = invoke("check", str(src))
    assert res.exit_code == 1
    lines = dump_lines(src)
    bad = [x for x in lines if x["state"] == "bad-self-id"]
    live = {key_of(x) for x in lines if x["state"] == "live"}
    assert bad and any(x["page"] == page for x in bad)
    assert not any(x["page"] == page for x in lines if x["state"] == "live")
    # live is what repair keeps from the tree (rule 5 there too)
    out = tmp_path / "fixed.db"
    with DB(src) as db:  # the tree dump reads (left alone, repair may roll back)
        newest = db.meta.index
    repair(src, out, beyond_tree=False, meta=newest)
    written = set(tree_records(out))
    assert {k for k in live if k in written} == written
    plain_live = {key_of(x) for x in lines if x["state"] == "live" and x["type"] == "kv"}
    assert plain_live == written
    assert not {key_of(x) for x in bad if x["type"] == "kv"} & written
    # the text format tags them as well
    res = invoke("dump", str(src), "--format", "text")
    assert f"[bad-self-id p{page}]" in res.stdout


def test_intact_dump_has_no_bad_self_id(tmp_path):
    lines = dump_lines(damage.FIXTURES / "nested.db")
    assert lines and all(x["state"] == "live" for x in lines)


def test_dump_prefix_selects_bad_self_id_records_too(tmp_path):
    """etcdctl's --prefix on an etcd db: the records of a bad-self-id page
    are selected by their etcd key like live ones."""
    src = tmp_path / "damaged.db"
    shutil.copyfile(ETCD / "etcd-3.5.db", src)
    etcd_key_leaf(src)
    every = [x for x in dump_lines(src) if x["state"] == "bad-self-id"]
    users = sorted({x["etcd"]["key"] for x in every if isinstance(x["etcd"].get("key"), str)})
    assert users
    prefix = users[0].rsplit("/", 1)[0] + "/"
    bad = [x for x in dump_lines(src, "--prefix", prefix) if x["state"] == "bad-self-id"]
    assert bad and all(x["etcd"]["key"].startswith(prefix) for x in bad)
    assert len(bad) == sum(1 for x in every if isinstance(x["etcd"].get("key"), str)
                           and x["etcd"]["key"].startswith(prefix))
