"""repair copies clean leaf pages as they stand: same records, a file bbolt accepts.

:meth:`BoltWriter.copy_leaves` writes a source leaf page with only its
header rewritten when :func:`writer.copyable_leaf` says it is laid out as
``node.write`` lays out its records.  These tests hold it to that:

* on every fixture and every crafted damage kind, the repaired file passes
  the real bbolt's ``tx.Check()`` and holds exactly the records (bucket
  sequences included, by the real bbolt's dump) of the file the writer
  builds when it rebuilds every page -- and most leaves were copied;
* a copied page is byte for byte the page :func:`writer._pack_leaf` builds
  from its records;
* the C core's ``leaf_copy`` takes the same pages and writes the same bytes
  as the pure-Python ``_copy_leaves``, on random and damaged pages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import damage
import oracle
from boltfix import structs as S
from boltfix import walk
from boltfix import writer as W
from boltfix.repair import repair

REPO = Path(__file__).resolve().parent.parent
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


needs_c = pytest.mark.skipif(getattr(walk._speedups, "leaf_copy", None) is None,
                             reason="the C core is not built")


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
    fast = walk._speedups.leaf_copy(memoryview(buf), ps, leaves, last)
    slow = W._copy_leaves(memoryview(buf), ps, leaves, last)
    assert (bytes(fast[0]), fast[1], fast[2], fast[3]) == (bytes(slow[0]), slow[1], slow[2],
                                                           slow[3])


@needs_c
def test_c_leaf_copy_checks_its_arguments():
    f = walk._speedups.leaf_copy
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
    from click.testing import CliRunner

    from boltfix.cli import main

    src = REPO / "fixtures" / "bbolt" / "deep.db"
    res = CliRunner().invoke(main, ["repair", str(src), "--out", str(tmp_path / "o.db"),
                                    "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)["written"]
    assert 0 < stats["copied_leaves"] <= stats["leaf_pages"]
    assert S.PAGE_HEADER_SIZE == 16
