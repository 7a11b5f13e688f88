"""boltfix.cli: the commands as a user meets them -- inspect, pages, page,
check; exit codes and --json.  Facts are compared with what the real bbolt
reports (support/oracle.py), never with numbers written into the test."""

from __future__ import annotations

import json
import os

import pytest

from boltfix import structs as S
from support import damage, oracle
from support.cli import inspect_json, invoke, total_buckets, total_keys

SHAPES = oracle.SHAPES


# ---------------------------------------------------------------- inspect


def test_inspect_counts_match_the_dump():
    path = oracle.fixture("nested")
    info = inspect_json(path)
    records = oracle.oracle_dump(path)
    kv = sum(1 for r in records if r["type"] == "kv")
    buckets = sum(1 for r in records if r["type"] == "bucket")
    assert sum(total_keys(n) for n in info["buckets"]) == kv
    assert sum(total_buckets(n) for n in info["buckets"]) == buckets


def test_inspect_reports_freelist_modes():
    synced = inspect_json(oracle.fixture("freed"))["freelist"]
    fl_page, ids = damage.freelist_ids(oracle.fixture("freed"))
    assert synced["synced"] and synced["page"] == fl_page and synced["free_pages"] == len(ids)
    unsynced = inspect_json(oracle.fixture("nofreelist"))
    assert unsynced["freelist"]["synced"] is False
    assert unsynced["metas"][0]["freelist"] is None
    # unsynced: the free pages are the ones below the HWM the tree does not reach
    rows = json.loads(invoke("pages", oracle.fixture("nofreelist"), "--json").output)
    assert unsynced["freelist"]["free_pages"] == sum(r["state"] == "free" for r in rows)


def test_inspect_etcd_facts():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "etcd", "etcd-3.5.db")
    expected = json.load(open(path.replace(".db", ".expected.json")))
    e = inspect_json(path)["etcd"]
    assert e["version"] == "3.5"
    assert e["auth_enabled"] is True
    assert e["users"] == len(expected["users"])
    assert e["revisions"]["last"] == expected["revision"]
    assert e["finished_compact_revision"]["main"] == expected["compact_revision"]
    e34 = inspect_json(path.replace("3.5", "3.4"))["etcd"]
    assert e34["version"].startswith("3.4")


def test_inspect_damaged_file_says_what_it_cannot_read(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    damage.zeroed_page(path)
    info = inspect_json(path)
    assert info["problems"]["total"] > 0
    assert "invalid-page-type" in info["problems"]["counts"]
    human = invoke("inspect", path)
    assert human.exit_code == 0 and "boltfix check" in human.output


def test_inspect_both_metas_invalid_still_reads_pages(tmp_path):
    path = damage.copy_fixture("deep", tmp_path)
    damage.both_metas_invalid(path)
    info = inspect_json(path)
    assert info["meta_in_use"] is None
    assert info["file"]["page_size"] == 4096
    assert info["file"]["page_size_source"] in ("meta 1", "page scan")
    assert invoke("pages", path).exit_code == 0


def test_page_size_found_from_meta1_or_scan_when_meta0_is_bad(tmp_path):
    path = damage.copy_fixture("page16k", tmp_path)
    damage.write_meta(path, 0, magic=0)
    info = inspect_json(path)
    assert info["file"]["page_size"] == 16384
    assert info["file"]["page_size_source"] == "meta 1"
    assert info["meta_in_use"] == 1


# ---------------------------------------------------------------- pages / page
@pytest.mark.parametrize("shape", ["freed", "overflow"])
def test_pages_states(shape):
    path = oracle.fixture(shape)
    rows = json.loads(invoke("pages", path, "--json").output)
    by_id = {r["id"]: r for r in rows}
    assert by_id[0]["type"] == "meta" and by_id[1]["type"] == "meta"
    fl_page, ids = damage.freelist_ids(path)
    assert by_id[fl_page]["type"] == "freelist"
    for pid in ids:
        if pid in by_id:
            assert by_id[pid]["state"] == "free"
    # every page id is covered once, overflow runs folded into their page
    covered = sum(1 + r["overflow"] for r in rows if r["state"] == "reachable")
    reachable = sum(1 for r in rows if r["state"] == "reachable")
    assert reachable > 2 and covered >= reachable
    text = invoke("pages", path).output
    assert "freelist" in text and "reachable" in text


def test_page_decodes_a_leaf_and_meta():
    path = oracle.fixture("freed")
    views = json.loads(invoke("page", path, 0, 1, "--json").output)
    assert [v["type"] for v in views] == ["meta", "meta"]
    assert views[0]["meta"]["magic"] == S.MAGIC
    rows = json.loads(invoke("pages", path, "--json").output)
    leaf = next(r["id"] for r in rows if r["type"] == "leaf" and r["state"] == "reachable")
    (view,) = json.loads(invoke("page", path, leaf, "--json").output)
    assert view["count"] == len(view["elements"]) > 0
    keys = [e["key"] for e in view["elements"]]
    assert keys == sorted(keys)
    hexed = invoke("page", path, leaf, "--hex").output
    assert f"{leaf * 4096:08x}" in hexed


def test_page_past_end_is_exit_2():
    r = invoke("page", oracle.fixture("nested"), 10_000_000)
    assert r.exit_code == 2
    assert "past the end" in r.output


def test_page_redacts_password_hashes():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "etcd", "etcd-3.5.db")
    rows = json.loads(invoke("pages", path, "--json").output)
    out = "".join(invoke("page", path, r["id"], "--hex").output
                  for r in rows if r["state"] == "reachable" and r["type"] == "leaf")
    assert "$2a$" not in out
    shown = "".join(invoke("page", path, r["id"], "--hex", "--show-secrets").output
                    for r in rows if r["state"] == "reachable" and r["type"] == "leaf")
    assert "$2a$" in shown


# ---------------------------------------------------------------- check
@pytest.mark.parametrize("shape", SHAPES)
def test_check_clean_exit_0(shape):
    r = invoke("check", oracle.fixture(shape))
    assert r.exit_code == 0, r.output
    assert "OK" in r.output
    data = json.loads(invoke("check", oracle.fixture(shape), "--json").output)
    assert data["clean"] is True and data["findings"] == []


def test_check_damage_exit_1_and_json(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    d = damage.branch_past_eof(path)
    r = invoke("check", path)
    assert r.exit_code == 1
    assert "problems found" in r.output
    data = json.loads(invoke("check", path, "--json").output)
    assert data["clean"] is False and data["total"] >= 1
    f = data["findings"][0]
    assert set(f) >= {"code", "severity", "page", "path", "bucket", "message"}
    assert any((x["code"], x["page"]) in set(d.expect) for x in data["findings"])


def test_check_max_findings(tmp_path):
    path = damage.copy_fixture("freed", tmp_path)
    damage.write_freelist(path, [])  # every free page becomes a leak
    data = json.loads(invoke("check", path, "--json", "--max-findings", "2").output)
    assert data["shown"] == 2 and data["total"] > 2


def test_repair_report_names_lost_etcd_revisions(tmp_path):
    src = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "etcd", "etcd-13406.db")
    r = invoke("repair", src, "--out", tmp_path / "fixed.db")
    assert r.exit_code == 1
    assert "could not be recovered" in r.output and "page-past-eof" in r.output
    # the pruned subtrees' key ranges, as etcd revisions, not hex: the 40
    # pages past the end are one row, their ranges joined (boltfix.verdict)
    import re

    text = r.output.replace("\n", " ")
    assert re.search(r"revisions 3\.\.53, 209\.\.272, 281\.\.", text)
    assert not re.search(r"[0-9a-f]{32}", text)
    inspect_text = invoke("inspect", src).output
    assert "finished compaction" in inspect_text and "{'main'" not in inspect_text


def test_get_and_dump_agree_on_a_recovered_zero_count_leaf(tmp_path):
    """The count recovery lives where pointers are followed, so the keyed
    lookup (`get`) sees the same records as the full walk (`dump`)."""
    path = damage.copy_fixture("nested", tmp_path)
    d = damage.leaf_count_zero(path)
    (view,) = json.loads(invoke("page", oracle.fixture("nested"), d.pages[0], "--json").output)
    key = view["elements"][0]["key"]
    value = view["elements"][0]["value"]
    got = invoke("get", path, "nested", "paged", key)
    assert got.exit_code == 0 and got.output.strip() == value
    dumped = invoke("dump", path, "--bucket", "nested", "--bucket", "paged", "--format", "jsonl")
    assert dumped.exit_code == 0  # the count came back: nothing is missing
    assert any(json.loads(line)["key"] == key for line in dumped.output.splitlines())
