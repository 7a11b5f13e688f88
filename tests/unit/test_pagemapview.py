"""boltfix.pagemapview and ``pages --map``: the file as a grid of pages.

The counts per class are held to a page-by-page reading of the walk's own
:class:`PageMap` (and a walk of the other meta's tree); damage is placed
at the page the damage library wrote; the SVG parses; the output file
follows the product's rules; a huge sparse file stays fast and bounded.
"""

from __future__ import annotations

import io
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from boltfix import pagemap as P
from boltfix import pagemapview as V
from boltfix.leaves import Tree
from boltfix.reader import DB
from boltfix.walk import Walker
from support import damage, oracle
from support.cli import invoke

ETCD = damage.REPO / "fixtures" / "etcd" / "etcd-3.5.db"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _expected_counts(db: DB) -> dict:
    """Pages per class, page by page from PageMap (the slow, plain way);
    damaged: the invalid metas and the pages of the walk's findings (inside
    the file and below the high-water mark, else the page pointing there)."""
    found = []
    w = Walker(db, found.append)
    w.count_all()
    limit = min(w.hwm, db.pages_in_file)
    damaged = set()
    for f in found:
        if f.page is None:
            continue
        # a pointer out of range: the page holding it
        inside = [f.page] if f.page < limit else [p for p in f.pages
                                                  if p < limit and p != f.page]
        damaged.update(inside[-1:])
    damaged.update(m.index for m in db.metas if not m.valid and m.index < db.pages_in_file)
    pm = P.PageMap(db, w)
    other = None
    if db.meta is not None:
        m = db.metas[1 - db.meta.index]
        if m.valid and Tree.of(m) != Tree.of(db.meta):
            other = Walker(db, tree=Tree.of(m))
            other.count_all()
    out = {c.key: 0 for c in V.CLASSES}
    for pgid in range(max(db.pages_in_file, db.meta.pgid if db.meta else 0)):
        s, listed = pm.state(pgid), pm.is_listed(pgid)
        if s == P.META:
            key = "meta"
        elif s in (P.FREELIST, P.FREELIST_RUN):
            key = "freelist"
        elif s in (P.REACHED, P.OVERFLOW):
            key = "damaged" if listed else "reachable"
        elif s == P.PAST_EOF:
            key = "past-eof"
        elif s == P.BEYOND_HWM:
            key = "beyond-hwm"
        else:
            key = "free" if pm.has_tree and (listed or not pm.synced) else "unreachable"
        if (other is not None and key in ("free", "unreachable", "beyond-hwm")
                and pgid < len(other.reached) and other.reached[pgid]):
            key = "other-tree"
        if pgid in damaged:
            key = "damaged"
        out[key] += 1
    return out


def _survey(path) -> V.Survey:
    db = DB(str(path))
    return V.Survey(db)


def _text(pic: V.Picture) -> str:
    out = io.StringIO()
    V.render(Console(file=out, width=160, color_system=None), pic)
    return out.getvalue()


# ---------------------------------------------------------------- counts
@pytest.mark.parametrize("path", [oracle.fixture(s) for s in oracle.SHAPES] + [ETCD],
                         ids=[*oracle.SHAPES, "etcd-3.5"])
def test_counts_per_class_are_the_page_maps(path):
    with DB(str(path)) as db:
        expected = _expected_counts(db)
        s = V.Survey(db)
        pic, big = s.picture(), s.svg_picture()
    assert pic.counts == expected == big.counts
    assert sum(pic.counts.values()) == pic.total
    assert pic.counts["meta"] == 2 and pic.counts["reachable"] > 0
    assert pic.counts["damaged"] == pic.counts["unreachable"] == 0
    if pic.per_cell == 1:  # a cell per page: the cells are the counts
        for k in V.CLASSES:
            assert pic.cells.count(k.code) == pic.counts[k.key], k.key


def test_the_other_trees_pages_are_shown():
    with DB(str(oracle.fixture("freed"))) as db:
        pic = V.Survey(db).picture()
        assert pic.other_index == 1 - db.meta.index
    assert pic.counts["other-tree"] > 0 and pic.counts["free"] > 0
    assert "other tree: meta" in _text(pic)


def test_the_grid_reads_without_colour():
    with DB(str(oracle.fixture("nested"))) as db:
        pic = V.Survey(db).picture()
    text = _text(pic)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("0 "))
    assert row.split()[1].startswith("MM#")
    for k in V.CLASSES:
        assert f"{k.char} {k.key}" in text


# ---------------------------------------------------------------- damage
def test_a_zeroed_page_is_damaged_at_its_page(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    d = damage.zeroed_page(path)
    with DB(str(path)) as db:
        pic = V.Survey(db).picture()
    (page,) = d.pages
    assert pic.per_cell == 1 and pic.cells[page] == V.C_DAMAGED
    assert pic.counts["damaged"] == 1
    assert [i for i, c in enumerate(pic.cells) if c == V.C_DAMAGED] == [page]
    row = _text(pic).splitlines()[4]  # title, 3 header lines, then the grid
    assert row.split()[1][page] == "X"


def test_a_pointer_past_the_end_marks_the_page_holding_it(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    d = damage.branch_past_eof(path)
    with DB(str(path)) as db:
        pic = V.Survey(db).picture()
    assert pic.cells[d.extra["branch"]] == V.C_DAMAGED
    assert pic.cells[d.extra["old_child"]] == V.C_UNREACHED  # the orphaned child
    assert pic.total == pic.pages_in_file  # the grid is not stretched to the target
    assert any(str(d.extra["target"]) in note for note in pic.notes)


def test_a_truncated_file_shows_the_missing_pages(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    with DB(str(path)) as db:
        hwm = db.meta.pgid
    os.truncate(path, 40 * damage.page_size_of(path))
    with DB(str(path)) as db:
        expected = _expected_counts(db)
        pic = V.Survey(db).picture()
    assert pic.counts == expected
    assert pic.counts["past-eof"] == hwm - 40
    assert bytes(pic.cells[40:hwm]) == bytes([V.C_PAST_EOF]) * (hwm - 40)


def test_damage_is_never_hidden_in_a_big_cell(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    d = damage.zeroed_page(path)
    os.truncate(path, 1 << 30)  # 262,144 pages: many pages per cell
    with DB(str(path)) as db:
        s = V.Survey(db)
        pic, big = s.picture(), s.svg_picture()
    with DB(str(path)) as db:
        assert big.counts == _expected_counts(db)
    for p in (pic, big):
        assert p.per_cell > 1
        assert p.cells[d.pages[0] // p.per_cell] == V.C_DAMAGED
        assert p.counts["damaged"] == 1
    assert f"{pic.per_cell:,} pages per cell" in _text(pic)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunks_make_the_same_picture(monkeypatch, chunk):
    with DB(str(oracle.fixture("freed"))) as db:
        s = V.Survey(db)
        whole = [s.picture(16, 2), s.picture(16, 100)]
        monkeypatch.setattr(V, "CHUNK_PAGES", chunk)
        parts = [s.picture(16, 2), s.picture(16, 100)]
    for a, b in zip(whole, parts):
        assert (a.cells, a.counts, a.per_cell) == (b.cells, b.counts, b.per_cell)
    assert whole[0].per_cell == 4 and whole[1].per_cell == 1
    # a cell shows its worst page
    one = whole[1].cells
    assert whole[0].cells == bytearray(max(one[i:i + 4]) for i in range(0, len(one), 4))


@pytest.mark.parametrize("kind", sorted(damage.KINDS))
def test_every_damage_kind_is_drawn(tmp_path, kind):
    k = damage.KINDS[kind]
    path = damage.copy_fixture(k.shape, tmp_path)
    d = k.apply(path)
    with DB(str(path)) as db:
        expected = _expected_counts(db)
        s = V.Survey(db)
        pic, big = s.picture(), s.svg_picture()
        n, hwm = db.pages_in_file, db.meta.pgid if db.meta else db.pages_in_file
    assert pic.counts == big.counts == expected
    assert sum(pic.counts.values()) == pic.total == max(n, hwm)
    assert len(pic.cells) <= V.TERM_COLUMNS * V.TERM_ROWS
    ET.fromstring(V.svg(big))
    _text(pic)
    if pic.meta_index is not None and d.same_meta:
        # a finding's page in the tree's range is damaged on the map
        for code, page in d.expect:
            if page is not None and page < min(n, hwm) and not code.startswith(
                    ("unreachable", "freelist", "already", "multiple", "reachable")):
                assert pic.cells[page // pic.per_cell] == V.C_DAMAGED, (code, page)


# ---------------------------------------------------------------- SVG
def test_the_svg_parses_and_has_the_legend(tmp_path):
    src = damage.copy_fixture("nested", tmp_path, "a<b>&\"c\x01\x7f.db")
    d = damage.zeroed_page(src)
    out = tmp_path / "map.svg"
    r = invoke("pages", src, "--map-svg", out, code=(0,))
    assert "wrote" in r.output
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f"{SVG_NS}title").text == f"page map of {src.parent}/a<b>&\"c\\x01\\x7f.db"
    legend = root.find(f"{SVG_NS}g[@id='legend']")
    texts = [t.text for t in legend.iter(f"{SVG_NS}text")]
    for k in V.CLASSES:
        assert any(t.startswith(f"{k.char} {k.key}: ") for t in texts), k.key
    assert "X damaged: 1 pages - an invalid meta, or the walk found a problem here" in texts
    bad = [r for r in root.iter(f"{SVG_NS}rect") if r.get("class") == "damaged"]
    assert len(bad) == 1
    assert bad[0].find(f"{SVG_NS}title").text == f"pages {d.pages[0]}-{d.pages[0]}: damaged"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)


def test_xml_text_escapes_names():
    assert V.xml_text("a<b>&'\"") == "a&lt;b&gt;&amp;&#x27;&quot;"
    assert V.xml_text("x\x00\x1b\x85y") == "x\\x00\\x1b\\x85y"
    assert V.xml_text(os.fsdecode(b"n\xff")) == "n\\xff"
    ET.fromstring(f"<t a=\"{V.xml_text(chr(1) + '<&>')}\">{V.xml_text('<&>' + chr(0))}</t>")


# ---------------------------------------------------------------- the output file
def test_the_svg_output_follows_the_rules(tmp_path):
    src = damage.copy_fixture("nested", tmp_path)
    out = tmp_path / "map.svg"
    out.write_text("keep")
    r = invoke("pages", src, "--map-svg", out)
    assert r.exit_code != 0 and "--force" in r.output and out.read_text() == "keep"
    invoke("pages", src, "--map-svg", out, "--force", code=(0,))
    assert out.read_text().startswith("<?xml")
    before = src.read_bytes()
    r = invoke("pages", src, "--map-svg", src, "--force")
    assert r.exit_code != 0 and "input" in r.output and src.read_bytes() == before
    link = tmp_path / "link.db"
    link.symlink_to(src)
    r = invoke("pages", src, "--map-svg", link, "--force")
    assert r.exit_code != 0 and src.read_bytes() == before
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = invoke("pages", src, "--map-svg", fifo, "--force")
    assert r.exit_code != 0 and "not a regular file" in r.output
    r = invoke("pages", src, "--map-svg", tmp_path / "no" / "map.svg")
    assert r.exit_code != 0 and "does not exist" in r.output
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".boltfix-map-")]


def test_map_and_json_do_not_go_together():
    r = invoke("pages", oracle.fixture("nested"), "--map", "--json")
    assert r.exit_code == 2 and "--json" in r.output


def test_pages_map_on_the_command_line():
    r = invoke("pages", oracle.fixture("freed"), "--map", code=(0,))
    assert "page map of" in r.output and "1 page per cell" in r.output
    assert "other-tree" in r.output


# ---------------------------------------------------------------- big files
def test_a_huge_sparse_file_is_fast_and_bounded(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    os.truncate(path, 3 << 30)  # 786,432 pages, all but 64 a hole
    out = tmp_path / "map.svg"
    t0 = time.monotonic()
    r = invoke("pages", path, "--map", "--map-svg", out, code=(0,))
    took = time.monotonic() - t0
    assert took < 5, took
    lines = r.output.splitlines()
    assert len(lines) < V.TERM_ROWS + 20
    grid = lines[4:4 + V.TERM_ROWS]
    assert all(len(line) <= 12 + V.TERM_COLUMNS for line in grid), grid
    assert "-" * V.TERM_COLUMNS in grid[-1]
    assert Path(out).stat().st_size < 200_000
    with DB(str(path)) as db:
        pic = V.Survey(db).svg_picture()
    assert len(pic.cells) <= V.SVG_COLUMNS * V.SVG_ROWS
    assert pic.counts["beyond-hwm"] > 786_000


def test_a_hostile_high_water_mark_stays_bounded(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    for i in (0, 1):
        damage.write_meta(path, i, pgid=1 << 40)
    t0 = time.monotonic()
    with DB(str(path)) as db:
        s = V.Survey(db)
        pic, big = s.picture(), s.svg_picture()
    assert time.monotonic() - t0 < 5
    for p in (pic, big):
        assert len(p.cells) <= V.SVG_COLUMNS * V.SVG_ROWS
        assert p.counts["past-eof"] == (1 << 40) - 64 and p.total == 1 << 40
        assert set(p.cells) == {V.C_PAST_EOF}
    ET.fromstring(V.svg(big))
