"""HashiCorp raft-boltdb stores (Consul's, Nomad's, Vault's ``raft.db``)
against what the real raft-boltdb wrote (support/raftgen.py builds
fixtures/raftgen, linked against raft-boltdb v2.3.1 and raft v1.7.2):
inspect's facts, check's findings, dump's decoding and masking, and
hostile bytes."""

from __future__ import annotations

import datetime
import json
import random
import shutil

import pytest

from support import raftgen
from support.cli import inspect_json, invoke, jsonl, run_ok


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """40 logs, no gap, rising terms: (path, what raftgen wrote)."""
    path = tmp_path_factory.mktemp("raft") / "raft.db"
    return path, raftgen.make(path, 40)


@pytest.fixture(scope="module")
def gapped(tmp_path_factory):
    """300 logs (several leaf pages), DeleteRange(100, 140)."""
    path = tmp_path_factory.mktemp("raft") / "store.bin"  # never told by its name
    return path, raftgen.make(path, 300, "--gap", "100:140", "--data-size", "64")


def _types(logs) -> dict:
    out: dict = {}
    for log in logs:
        out[log["type_name"]] = out.get(log["type_name"], 0) + 1
    return out


def _gaps(logs) -> list:
    idx = [log["index"] for log in logs]
    return [[a + 1, b - 1] for a, b in zip(idx, idx[1:]) if b > a + 1]


@pytest.mark.parametrize("which", ["clean", "gapped"])
def test_inspect_facts_are_what_raft_boltdb_wrote(which, request):
    path, wrote = request.getfixturevalue(which)
    info = inspect_json(path)
    assert info["application"] == "raft-boltdb"
    assert "etcd" not in info
    r = info["raft"]
    logs = wrote["logs"]
    assert r["application"] == "raft-boltdb"
    assert r["logs"]["count"] == len(logs)
    assert r["logs"]["first_index"] == logs[0]["index"]
    assert r["logs"]["last_index"] == logs[-1]["index"]
    terms = [log["term"] for log in logs]
    assert r["logs"]["terms"] == {"min": min(terms), "max": max(terms)}
    assert r["logs"]["types"] == _types(logs)
    assert r["logs"]["gaps"]["first"] == _gaps(logs)
    assert r["logs"]["gaps"]["count"] == len(_gaps(logs))
    assert r["logs"]["term_decreases"] == 0 and r["logs"]["undecodable"] == 0
    assert r["current_term"] == wrote["conf"]["CurrentTerm"]
    assert r["last_vote_term"] == wrote["conf"]["LastVoteTerm"]
    assert r["last_vote_candidate"] == wrote["conf"]["LastVoteCand"]
    text = run_ok("inspect", path).stdout
    assert "raft-boltdb" in text and "LastVoteCand" in text
    if wrote["deleted"]:
        assert "100..140" in text


def test_check_is_clean_on_a_clean_store(clean):
    path, _ = clean
    res = json.loads(invoke("check", path, "--json", code=(0,)).stdout)
    assert res["total"] == 0 and res["findings"] == []
    assert res["stats"]["raft"]["logs"]["count"] == 40


def test_check_finds_the_gap_delete_range_made(gapped):
    path, wrote = gapped
    r = invoke("check", path, "--json", code=(1,))
    res = json.loads(r.stdout)
    assert res["counts"] == {"raft-log-gap": 1}
    (f,) = res["findings"]
    lo, hi = wrote["deleted"]
    assert f["detail"] == {"first_missing": lo, "last_missing": hi, "count": hi - lo + 1}
    assert f["bucket"] == ["logs"] and f["severity"] == "warning"


def test_check_finds_a_falling_term(tmp_path):
    path = tmp_path / "raft.db"
    wrote = raftgen.make(path, 30, "--drop-at", "21")
    r = invoke("check", path, "--json", code=(1,))
    res = json.loads(r.stdout)
    assert res["counts"] == {"raft-term-decreases": 1}
    detail = res["findings"][0]["detail"]
    logs = {log["index"]: log for log in wrote["logs"]}
    assert detail == {"index": 21, "term": logs[21]["term"], "previous_term": logs[20]["term"]}


def _logs_lines(path, *extra):
    return [d for d in jsonl(run_ok("dump", path, "--bucket", "logs", *extra))
            if d["type"] == "kv"]


def test_dump_decodes_what_raft_boltdb_wrote_and_masks_data(gapped, mode):
    path, wrote = gapped
    lines = _logs_lines(path)
    assert len(lines) == len(wrote["logs"])
    for d, log in zip(lines, wrote["logs"]):
        raft = d["raft"]
        assert (raft["index"], raft["term"], raft["type"], raft["type_name"]) == \
            (log["index"], log["term"], log["type"], log["type_name"])
        assert raft["index_matches_key"] is True
        # raftgen's AppendedAt: 2026-01-02T03:04:05Z plus the index in seconds
        when = datetime.datetime(2026, 1, 2, 3, 4, 5) + datetime.timedelta(seconds=log["index"])
        assert raft["appended_at"] == when.strftime("%Y-%m-%dT%H:%M:%S") + ".000000000Z"
        data = bytes.fromhex(log["data_hex"])
        assert raft["data"] == {"type": "str", "length": len(data), "value": "<redacted>"}
        assert d["value_redacted"] is True
        raw = bytes.fromhex(d["value"]) if d.get("value_encoding") == "hex" \
            else d["value"].encode("utf-8", "surrogateescape")
        assert data not in raw and b"*" * len(data) in raw


def test_dump_show_secrets_shows_data(gapped):
    path, wrote = gapped
    lines = _logs_lines(path, "--show-secrets", "--encoding", "hex")
    for d, log in zip(lines, wrote["logs"]):
        assert d["raft"]["data"]["value"] == bytes.fromhex(log["data_hex"]).decode()
        assert "value_redacted" not in d
        assert log["data_hex"] in d["value"]


def test_dump_text_and_conf(clean):
    path, wrote = clean
    text = run_ok("dump", path, "--format", "text").stdout
    assert "secret-" not in text and "LogConfiguration" in text
    conf = {d["key"]: d["raft"]["value"] for d in jsonl(run_ok("dump", path, "--bucket", "conf"))
            if d["type"] == "kv"}
    assert conf == wrote["conf"]
    assert "secret-" not in run_ok("dump", path).stdout


@pytest.mark.parametrize("decode", ["none", "etcd"])
def test_dump_without_decoding_still_masks_data(clean, decode):
    """--decode none (or another application's) adds no raft member, and a
    log's Data stays masked: a secret never depends on decoding."""
    path, wrote = clean
    lines = jsonl(run_ok("dump", path, "--decode", decode, "--bucket", "logs"))
    kvs = [d for d in lines if d["type"] == "kv"]
    assert len(kvs) == len(wrote["logs"]) and all("raft" not in d for d in lines)
    assert all(d["value_redacted"] for d in kvs)
    secret = b"secret-".hex()  # the values are msgpack, shown as hex
    assert secret not in run_ok("dump", path, "--decode", decode).stdout
    assert secret in run_ok("dump", path, "--decode", decode, "--show-secrets").stdout


def test_free_pages_keep_data_masked(tmp_path):
    """Deleted logs stay in free pages: a record that decodes as a raft log
    has its Data masked there too (bucket_guess logs)."""
    path = tmp_path / "raft.db"
    raftgen.make(path, 200, "--gap", "1:150", "--data-size", "40")
    lines = jsonl(run_ok("dump", path, "--include", "free,orphan"))
    guessed = [d for d in lines if d.get("bucket_guess") == ["logs"]]
    assert guessed, "DeleteRange leaves old logs in free pages"
    assert all(d["value_redacted"] and d["raft"]["data"]["value"] == "<redacted>"
               for d in guessed)
    assert not any("secret-" in str(d.get("value")) for d in lines)


def test_hostile_byte_flips_never_crash(gapped, tmp_path):
    """Random bytes of the file changed: every command ends in an exit
    code, never a traceback or an internal error (exit 3)."""
    src, _ = gapped
    data = bytearray(src.read_bytes())
    rng = random.Random(23)
    ps = 4096
    for i in range(60):
        mutated = bytearray(data)
        for _ in range(rng.choice((1, 4, 16))):
            # mostly the leaf pages' element data (msgpack values), some anywhere
            pos = rng.randrange(len(data)) if rng.random() < 0.3 else \
                rng.randrange(ps * 2, len(data))
            mutated[pos] = rng.randrange(256)
        path = tmp_path / f"flip{i}.db"
        path.write_bytes(bytes(mutated))
        for args in (("inspect", path, "--json"), ("check", path, "--json"),
                     ("dump", path, "--include", "live,free,orphan"),
                     ("dump", path, "--format", "text", "--show-secrets")):
            r = invoke(*args, catch_exceptions=False)
            assert r.exit_code != 3, (args, r.output[-2000:])
            assert "Traceback" not in r.output


def test_hostile_values_in_the_logs_bucket(tmp_path):
    """Log values replaced by hostile msgpack (a huge length claimed, deep
    nesting, a map of the wrong shape, garbage): check says
    raft-log-undecodable, dump decodes to errors, nothing raises."""
    path = tmp_path / "raft.db"
    raftgen.make(path, 8)
    from support import oracle

    hostile = [b"\xdb\xff\xff\xff\xff", b"\x91" * 5000, b"\x81\xa4Term\xc0", b"",
               b"\x86" + b"\xa5Index\x01" * 6, bytes(range(256))]
    for i, v in enumerate(hostile, start=1):
        oracle.put(path, [b"logs"], (i).to_bytes(8, "big"), v)
    res = json.loads(invoke("check", path, "--json", code=(1,)).stdout)
    assert res["counts"].get("raft-log-undecodable") == len(hostile)
    lines = _logs_lines(path)
    errors = [d for d in lines if "error" in d["raft"]]
    assert len(errors) == len(hostile)
    # no map at all: masked whole (its shape unknown); a map without Data has none to hide
    whole = {1, 2, 6}
    for d in errors:
        i = int(d["key"], 16)
        assert d.get("value_redacted", False) == (i in whole), d
    info = inspect_json(path)
    assert info["raft"]["logs"]["undecodable"] == len(hostile)


def test_an_etcd_file_is_no_raft_store():
    from support import FIXTURES

    etcd = next((FIXTURES / "etcd").glob("*.db"))
    info = inspect_json(etcd)
    assert "raft" not in info and "application" not in info


def test_a_copy_keeps_its_facts(clean, tmp_path):
    path, _ = clean
    copy = tmp_path / "whatever.name"
    shutil.copy(path, copy)
    assert inspect_json(copy)["raft"] == inspect_json(path)["raft"]


def test_get_masks_a_logs_data(clean):
    path, wrote = clean
    log = wrote["logs"][4]
    k = "0x" + log["index"].to_bytes(8, "big").hex()
    masked = invoke("get", path, "logs", k, "--encoding", "hex", code=(0,))
    assert log["data_hex"] not in masked.stdout and "2a" * 16 in masked.stdout
    assert "raft log Data redacted" in masked.stderr
    shown = invoke("get", path, "logs", k, "--encoding", "hex", "--show-secrets", code=(0,))
    assert log["data_hex"] in shown.stdout


def test_page_views_mask_a_logs_data(clean):
    """``page`` and ``page --hex`` show a leaf's bytes whatever its bucket:
    a raft log's Data is masked there too unless --show-secrets."""
    path, wrote = clean
    pages = json.loads(run_ok("pages", path, "--json").stdout)
    leaves = [p["id"] for p in pages if p["type"] == "leaf" and p["state"] == "reachable"]
    datas = [log["data_hex"] for log in wrote["logs"] if log["data_hex"]]
    assert datas and leaves
    marker = "secret-"  # what raftgen writes at the start of each Data
    assert all(bytes.fromhex(d).decode().startswith(marker) for d in datas)
    seen = shown = 0
    for pgid in leaves:
        masked = run_ok("page", path, str(pgid), "--json").stdout
        plain = run_ok("page", path, str(pgid), "--json", "--show-secrets").stdout
        assert not any(d in masked for d in datas)
        seen += sum(d in plain for d in datas)
        assert marker not in run_ok("page", path, str(pgid), "--hex").stdout
        shown += run_ok("page", path, str(pgid), "--hex", "--show-secrets").stdout.count(marker)
    assert seen == len(datas), (seen, len(datas))
    assert shown > 0
