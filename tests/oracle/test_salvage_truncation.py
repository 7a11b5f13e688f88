"""Truncation that takes the root (etcd#13406 once the cut reaches the root):
of the intact records that still lie on surviving pages, how many salvage
brings back.

Files: real etcd 3.4 and 3.5 dbs of 4,000 keys (fixtures/etcd/make_etcd_db.py,
compacted, with deletes before and after the compaction), the session's 3.6
and 3.7 dbs of 800 keys (the same script, support.etcddbs) and real bbolt
1.3.6 files (support/oracle.py: nested buckets, inline buckets, a deep tree,
16 KB pages, no freelist).  Each is cut at several points below the root of
its tree or of its biggest bucket, and repaired with ``--lost-found``.

Per case, of the newest tree's records whose page (with its overflow run)
lies wholly below the cut:
- *placed*: in the output, in the same bucket, with the same value;
- *recovered*: placed, or kept in lost+found (a ``records`` bucket under a
  bucket holding its ``provenance``).  A generic file whose root page is
  gone has no bucket names left (rule 4): its subtrees can only be
  evidence; so are etcd revisions at or below the compaction point without
  a proof (rule 3).

Asserted for every case: recovered >= 0.95, no output record outside the
intact file's two trees (bucket and value), the output and lost+found pass
the real bbolt check.  The placed figure is printed (docs/repair.md, "Never
guaranteed").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boltfix.reader import DB
from boltfix.repair import NothingRecoverable, repair
from boltfix.walk import Walker
from support import REPO, etcddbs, oracle

CUTS = (0.2, 0.4, 0.6, 0.8)  # of the highest of the tree's root and its biggest bucket's root
ETCD_KEYS = 4000
_MADE: dict = {}


def etcd_db(version: str, tmp_path_factory) -> Path:
    """3.4/3.5: a db of ETCD_KEYS keys made now; 3.6/3.7: the session's db
    of 800 keys (support.etcddbs, shared with other tests: CI's time)."""
    from support.etcdtools import require_etcd

    if version in etcddbs.GENERATED:
        return etcddbs.etcd_db(version)
    require_etcd(version)
    if version not in _MADE:
        out = tmp_path_factory.mktemp(f"etcd{version}") / "db"
        subprocess.run([sys.executable, str(REPO / "fixtures" / "etcd" / "make_etcd_db.py"),
                        "--version", version, "--keys", str(ETCD_KEYS), "--out", str(out), "-q"],
                       check=True, timeout=600, capture_output=True)
        _MADE[version] = out
    return _MADE[version]


def bbolt_db(shape: str, tmp_path_factory) -> Path:
    if shape not in _MADE:
        _MADE[shape] = oracle.make_shape(shape, tmp_path_factory.mktemp(shape) / "db")
    return _MADE[shape]


def tree_records(path, meta=None) -> dict:
    """(bucket path, key) -> (value, page) of one meta's tree, plain records."""
    with DB(path, meta=meta) as db:
        return {(b.path, r.key): (bytes(r.value), r.page)
                for b, r in Walker(db).walk() if not r.is_bucket}


def cut_points(path) -> list[int]:
    """Cuts below the newest meta's root or its biggest bucket's root page.
    When both lie in the first half of the file (etcd's allocation varies
    from run to run), the cuts are fractions of the file instead: they
    still take what etcd wrote last, the `key` bucket's upper branches."""
    with DB(path) as db:
        w = Walker(db)
        counts: dict = {}
        for b, r in w.walk():
            counts[b.root] = counts.get(b.root, 0) + 1
        biggest = max((root for root in counts if root), key=counts.get, default=0)
        # the pages bbolt allocated: etcd 3.6+ sizes its file 16 MB ahead,
        # and a cut past the high-water mark takes nothing
        end = min(db.pages_in_file, db.meta.pgid)
        top = max(db.meta.root, biggest)
        if top < end // 2:
            top = end
    return sorted({int(top * f) for f in CUTS if int(top * f) > 2})


def run_end(path) -> dict:
    """page -> the last page of its run (overflow included), intact file."""
    with DB(path) as db:
        return {pg: pg + db.page(pg).overflow for pg in range(2, db.pages_in_file)}


def lost_found_records(path) -> set:
    """(key, value) kept in lost+found under a bucket with its provenance."""
    entries = oracle.oracle_dump(path)
    tops = {e["key"] for e in entries if e["path"] == [] and e["type"] == "bucket"}
    proven = set()
    for e in entries:
        if len(e["path"]) == 1 and e["key"] == b"provenance":
            prov = json.loads(e["value"])
            assert {"page", "state", "key_range", "likely_bucket", "why"} <= set(prov), prov
            proven.add(e["path"][0])
    assert proven == tops, tops - proven  # every evidence bucket says where it came from
    return {(e["key"], e["value"]) for e in entries
            if e["type"] == "kv" and len(e["path"]) >= 2 and e["path"][1] == b"records"}


def measure_cut(original: Path, cut: int, work: Path) -> dict:
    work.mkdir()
    src = work / "damaged.db"
    shutil.copyfile(original, src)
    with DB(original) as db:
        ps = db.page_size
    with open(src, "r+b") as f:
        f.truncate(cut * ps)
    out, lf = work / "fixed.db", work / "lost+found.db"
    ends = run_end(original)
    ref = tree_records(original)
    must = {k: v for k, (v, pg) in ref.items() if ends.get(pg, cut) < cut}
    try:
        rep = repair(src, out, lost_found=lf)
    except NothingRecoverable:
        assert not must  # refused only when nothing at all survives
        return {"cut": cut, "must": 0}
    assert rep.lost_data
    allowed: dict = {}
    for m in (0, 1):
        for k, (v, _) in tree_records(original, m).items():
            allowed.setdefault(k, set()).add(v)
    got = tree_records(out)
    invented = [k for k, (v, _) in got.items() if v not in allowed.get(k, ())]
    assert oracle.oracle_check(out, timeout=60).ok
    assert oracle.oracle_check(lf, timeout=60).ok
    evidence = lost_found_records(lf)
    placed = [k for k, v in must.items() if k in got and got[k][0] == v]
    recovered = len(placed) + sum(1 for k, v in must.items()
                                  if not (k in got and got[k][0] == v) and (k[1], v) in evidence)
    n = len(must) or 1
    return {"cut": cut, "must": len(must), "placed": len(placed) / n,
            "recovered": recovered / n, "invented": invented,
            "compaction": (rep.salvage or {}).get("facts", {}).get("compact_revision_from"),
            "root_lost": bool(rep.meta.get("root_lost")),
            "fallback": bool(rep.meta.get("fallback"))}


def check_cases(name: str, original: Path, tmp_path) -> list[dict]:
    rows = []
    for cut in cut_points(original):
        row = measure_cut(original, cut, tmp_path / f"cut-{cut}")
        if not row["must"]:
            continue  # nothing of the intact tree lies below this cut
        rows.append(row)
        how = "root lost" if row["root_lost"] else "older meta" if row["fallback"] else "tree"
        print(f"{name:12s} cut {cut:4d} ({how}): {row['must']:5d} records on surviving pages, "
              f"placed {row['placed']:.3f}, recovered {row['recovered']:.3f}"
              + (f" (compaction point: {row['compaction']})" if row["compaction"] else ""))
    assert len(rows) >= 3
    for row in rows:
        assert not row["invented"], (name, row["cut"], row["invented"][:3])
        assert row["recovered"] >= 0.95, (name, row)
    return rows


@pytest.mark.parametrize("version", etcddbs.VERSIONS)
def test_etcd_truncation_past_the_root(version, tmp_path, tmp_path_factory):
    rows = check_cases(f"etcd {version}", etcd_db(version, tmp_path_factory), tmp_path)
    # a cut that takes every root leaves only revisions: rule 3 or evidence
    assert all(r["compaction"] for r in rows if r["root_lost"])


@pytest.mark.parametrize("shape", ["nested", "deep", "page16k", "nofreelist"])
def test_bbolt_truncation_past_the_root(shape, tmp_path, tmp_path_factory):
    rows = check_cases(f"bbolt {shape}", bbolt_db(shape, tmp_path_factory), tmp_path)
    # a cut below every root leaves no bucket name: nothing can be placed (rule 4)
    assert all(r["placed"] == 0 for r in rows if r["root_lost"])
