"""boltfix.verdict: what repair and check lead with, and the merged rows."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from boltfix.check import check
from boltfix.findings import Finding
from boltfix.reader import DB
from boltfix.repair import repair
from boltfix.verdict import (
    check_verdict,
    compact_ranges,
    joined_key_ranges,
    merge_rows,
    repair_verdict,
    shorten,
)
from boltfix.views import render_check, render_repair
from support import damage, oracle

ETCD_13406 = damage.REPO / "fixtures" / "etcd" / "etcd-13406.db"


def _text(lines) -> str:
    return "\n".join(f"{label}: {text}" for label, text in lines)


def _rendered(render, *args) -> str:
    c = Console(file=io.StringIO(), width=100)
    render(c, *args)
    return c.file.getvalue()


def _covered(text: str) -> set:
    """Page ids named by compact ranges ("60-88, 92, … 3 more" ignored after …)."""
    out = set()
    for part in text.split("…")[0].split(","):
        part = part.strip()
        if not part:
            continue
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def test_ranges_are_compact_and_shortened():
    assert compact_ranges([5, 1, 2, 3, 9, 10]) == "1-3, 5, 9-10"
    assert compact_ranges(range(0, 40, 2), shown=3) == "0, 2, 4 … 17 more"
    assert shorten(["a", "b", "c"], 2) == "a, b … 1 more"
    rev = "{:016x}5f{:016x}".format
    ranges = [(rev(3, 0), rev(12, 0)), (rev(12, 0), rev(21, 4)), (rev(30, 0), "-")]
    assert joined_key_ranges((b"key",), ranges) == "revisions 3..21, 30.."
    assert joined_key_ranges((b"other",), [(b"a".hex(), b"c".hex()), (b"c".hex(), "-")]) \
        == "keys a.."
    long = "61" * 40 + "…"  # a long key's range as the walk shortens it
    assert joined_key_ranges((b"b",), [(long, "-")] * 5) == f"keys {long}.."


def test_healthy_repair_says_nothing_is_lost(tmp_path):
    rep = repair(oracle.fixture("nested"), tmp_path / "out.db")
    lines = dict(repair_verdict(rep))
    assert lines["what happened"].startswith("healthy")
    assert lines["lost"] == "nothing"
    assert "rule newest" in lines["kept"] and f"{rep.records:,} records" in lines["kept"]
    assert "nothing needs doing" in lines["next"]
    # a torn newest meta: bbolt uses the other one too, and nothing is lost
    src = damage.copy_fixture("nested", tmp_path, "torn.db")
    damage.newest_meta_torn(src)
    lines = dict(repair_verdict(repair(src, tmp_path / "torn-out.db")))
    assert "is invalid" in lines["what happened"] and "bbolt uses meta" in lines["what happened"]
    assert lines["lost"] == "nothing"
    text = _rendered(render_repair, rep)
    assert text.startswith("what happened: healthy") and "used meta" in text


def test_etcd_13406_verdict_names_the_loss_the_commit_the_risk_and_the_route(tmp_path):
    out = tmp_path / "fixed.db"
    rep = repair(ETCD_13406, out)
    js = rep.to_json()
    lines = repair_verdict(rep)
    v = _text(lines)
    happened = dict(lines)["what happened"]
    assert "txid 97" in happened
    assert "40 pages of `key` lie past the end of the file (the file was cut short)" in happened
    assert f"(txid {js['commits']['kept']['txid']}, meta 1; rule {js['commits']['rule']})" in v
    assert "revisions 3..53, 209..272, 281.." in dict(lines)["lost"]
    assert f"{js['etcd']['at_risk_total']:,} keys may be served wrongly" in v
    nexts = [t for label, t in lines if label == "next"]
    assert any(f"`etcdutl snapshot restore {out} --skip-hash-check" in t for t in nexts)
    assert any("member/snap/db" in t for t in nexts)
    # the whole report: the verdict fits on a screen, the table shrank to a row
    text = _rendered(render_repair, rep)
    head = text.split("\n\n")[0]
    assert len(head.splitlines()) <= 40 and len(text.splitlines()) < 120
    assert "page-past-eof" in text and "could not be recovered" in text


def test_a_rolled_back_repair_says_which_commit_was_kept(tmp_path):
    src = damage.copy_fixture("nofreelist", tmp_path, "damaged.db")
    damage.branch_empty_unrecoverable(src)  # in a page only the newest commit wrote
    rep = repair(src, tmp_path / "out.db")
    cm = rep.to_json()["commits"]
    assert cm["rule"] == "rolled-back"
    lines = dict(repair_verdict(rep))
    over, kept = cm["passed_over"]["txid"], cm["kept"]["txid"]
    assert f"the newest commit (txid {over}) is damaged" in lines["what happened"]
    assert "branch-empty" in lines["what happened"]
    assert "the previous commit" in lines["kept"] and f"txid {kept}" in lines["kept"]
    assert "rule rolled-back" in lines["kept"]
    loss = cm["newer_commit"]
    assert f"the {loss['added']:,} records it added" in lines["lost"]
    assert lines["lost"] != "nothing"


def test_merged_table_rows_cover_every_dropped_page(tmp_path):
    rep = repair(ETCD_13406, tmp_path / "fixed.db")
    dropped = rep.to_json()["dropped"]
    rows = merge_rows(rep.dropped)
    assert len(dropped) == 40 and len(rows) < len(dropped) and len(rows) == 1
    covered = set().union(*(_covered(r.page_text()) for r in rows))
    assert {f["page"] for f in dropped} <= covered
    msg = rows[0].message()
    assert msg.startswith("40 child pages of page 11 (`key`) lie past the end of the file")
    # a kind of three or fewer stays one row per finding, in the findings' order
    few = [Finding("page-past-eof", f"child page {p}", page=p, pages=(4,), bucket=(b"b",))
           for p in (9, 7, 8)]
    assert [r.pages for r in merge_rows(few)] == [[9], [7], [8]]
    assert len(merge_rows(few + [few[0]])) == 1


def test_check_leads_with_a_verdict_and_merges_its_rows():
    with DB(ETCD_13406) as db:
        result = check(db)
    lines = dict(check_verdict(result, "member/snap/db"))
    assert lines["what happened"].startswith("damaged: the file was cut short: it holds 60 of")
    assert lines["what happened"].endswith("40 pages of `key` lie past the end of the file")
    assert "`boltfix repair member/snap/db --out FIXED`" in lines["next"]
    n = result.counts["etcd-key-at-risk"]
    assert f"etcd may serve {n:,} keys wrongly" in lines["etcd"]
    text = _rendered(render_check, result, "member/snap/db")
    assert text.startswith("what happened: damaged")
    assert len(text.splitlines()) < 80
    assert re.search(r"473 × etcd-key-at-risk", text)
    # --json is unchanged: every finding, one by one
    assert len(result.to_json()["findings"]) == result.total
    json.dumps(result.to_json())


def test_next_commands_follow_the_data_dir_and_the_etcd_version(tmp_path):
    out = tmp_path / "fixed.db"
    rep = repair(ETCD_13406, out)
    rep.input = "dd/member/snap/db"
    rep.in_place = {"starts": True, "db": {"version": "3.5"}}
    (step,) = [t for label, t in repair_verdict(rep) if label == "next"]
    assert f"cp {out} dd/member/snap/db" in step and "start etcd" in step
    rep.in_place = {"starts": False, "db": {"version": "3.4 or older"}}
    (step,) = [t for label, t in repair_verdict(rep) if label == "next"]
    assert step.startswith("etcd will not start with it in place")
    assert f"ETCDCTL_API=3 etcdctl snapshot restore {out}" in step
    rep.in_place = None
    rep.commits["kept"]["etcd"].pop("term")  # a 3.4 meta bucket has no term
    steps = [t for label, t in repair_verdict(rep) if label == "next"]
    assert any("likely etcd 3.4 or older" in t and "`ETCDCTL_API=3 etcdctl snapshot "
               f"restore {out} --skip-hash-check" in t for t in steps), steps
