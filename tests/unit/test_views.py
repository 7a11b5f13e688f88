"""boltfix.views: the tables and the streamed outputs for people."""

from __future__ import annotations

import io
import json

from rich.console import Console

from boltfix import structs as S
from boltfix.browse import bucket_tree
from boltfix.check import check
from boltfix.describe import describe, page_rows
from boltfix.reader import DB
from boltfix.views import (
    bucket_lines,
    bucket_tree_json,
    render_check,
    render_inspect,
    short,
    write_page_rows,
)
from support import damage, oracle


def test_short_cuts_with_an_ellipsis():
    assert short(b"abc") == "abc"
    assert short(b"x" * 100, 10) == "x" * 9 + "…"
    assert short(b"\x00\x01") == "0x0001"


def test_page_rows_as_json_and_table():
    with DB(oracle.fixture("nested")) as db:
        rows = list(page_rows(db))
    out = io.StringIO()
    write_page_rows(out, iter(rows), True)
    assert json.loads(out.getvalue()) == rows
    out = io.StringIO()
    write_page_rows(out, iter(rows), False)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(rows) + 2 and lines[2].split()[0] == str(rows[0]["id"])


def test_bucket_tree_names_by_the_text_rule():
    tree = [{"name": b"ok", "sequence": 1, "inline": True, "root": 0, "keys": 2,
             "buckets": [{"name": b"\xff", "sequence": None, "inline": False, "root": 7,
                          "keys": 0, "buckets": []}]}]
    assert bucket_lines(tree) == ["ok", "  0xff"]
    assert bucket_tree_json(tree) == [
        {"name": "ok", "sequence": 1, "inline": True, "root": 0, "keys": 2, "buckets": [
            {"name": "ff", "name_encoding": "hex", "sequence": None, "inline": False,
             "root": 7, "keys": 0, "buckets": []}]}]


def test_bucket_lines_of_a_real_tree():
    with DB(oracle.fixture("nested")) as db:
        tree = bucket_tree(db)
    assert bucket_lines(tree)[0] == tree[0]["name"].decode()


def test_check_and_inspect_render(tmp_path):
    c = Console(file=io.StringIO(), width=200)
    with DB(oracle.fixture("nested")) as db:
        render_check(c, check(db))
        render_inspect(c, describe(db))
    text = c.file.getvalue()
    assert text.startswith("OK: no problems") and "meta pages" in text
    path = damage.copy_fixture("nested", tmp_path)
    damage.KINDS["branch-to-self"].apply(path)
    c = Console(file=io.StringIO(), width=200)
    with DB(path) as db:
        render_check(c, check(db))
    assert "page-cycle" in c.file.getvalue() and S.PAGE_HEADER_SIZE == 16
