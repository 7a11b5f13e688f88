"""Vault's integrated-storage FSM: the real ``vault.db`` of
hashicorp-education/learn-vault-monitoring (``example-raft-database/
vault.db``, a file nobody here wrote; fixtures/apps/vault.db.gz, see
fixtures/README.md).  inspect names it and gives its facts, every record
is dumped (data's kinds told, config decoded and re-encoded byte for byte
by the tests' own protobuf encoder), data is masked unless
--show-secrets, and a repaired copy dumps the same."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from boltfix.repair import repair
from support import FIXTURES, damage, oracle
from support import protobuf as pb
from support.cli import inspect_json, jsonl, page_bytes, run_ok

SHA256 = "8a50ca7f72d381961ec355116bd9d4ef10c0e4de48eb1ff91b487366be822e48"


@pytest.fixture(scope="module")
def vault_db(tmp_path_factory):
    """The real vault.db, unpacked (checked against its sha256)."""
    data = gzip.decompress((FIXTURES / "apps" / "vault.db.gz").read_bytes())
    assert hashlib.sha256(data).hexdigest() == SHA256
    path = tmp_path_factory.mktemp("vault") / "fsm.bin"  # never told by its name
    path.write_bytes(data)
    return path


def _kv(path, *args):
    return [r for r in jsonl(run_ok("dump", path, *args)) if r["type"] == "kv"]


def test_every_record_dumped_and_decoded(vault_db):
    plain = _kv(vault_db, "--decode", "none", "--encoding", "hex", "--show-secrets")
    shown = _kv(vault_db, "--show-secrets", "--encoding", "hex")
    assert [(r["path"], r["key"], r["value"]) for r in plain] == \
        [(r["path"], r["key"], r["value"]) for r in shown]
    assert all("vault" in r and "error" not in r["vault"] for r in shown)
    info = inspect_json(vault_db)
    assert info["application"] == "vault fsm"
    v = info["vault"]
    data = [r for r in shown if r["path"] == [b"data".hex()]]
    assert v["data"]["entries"] == len(data) > 1000
    assert sum(v["data"]["kinds"].values()) == len(data)
    for r in data:
        raw = bytes.fromhex(r["value"])
        d = r["vault"]
        assert d["length"] == len(raw)
        if d["kind"] == "barrier":  # term, version, nonce, sealed bytes
            assert d["key_term"] == int.from_bytes(raw[:4], "big") and raw[4] == d["version"]
    assert v["data"]["kinds"]["barrier"] > 1000


def test_config_decoded_as_vault_wrote_it(vault_db):
    recs = {bytes.fromhex(r["key"]).decode(): r for r in
            _kv(vault_db, "--encoding", "hex") if r["path"] == [b"config".hex()]}
    info = inspect_json(vault_db)["vault"]
    assert sorted(recs) == info["config_keys"] == ["latest_config", "latest_indexes",
                                                   "local_node_config"]
    idx = recs["latest_indexes"]["vault"]
    assert pb.vi(1, idx["term"]) + pb.vi(2, idx["index"]) == \
        bytes.fromhex(recs["latest_indexes"]["value"])
    assert (info["latest_term"], info["latest_index"]) == (idx["term"], idx["index"])
    conf = recs["latest_config"]["vault"]
    servers = b"".join(pb.ld(2, pb.ld(2, s["id"]) + pb.ld(3, s["address"]))
                       for s in conf["servers"])
    assert all(s["suffrage"] == "voter" for s in conf["servers"])  # 0: omitted by proto3
    assert pb.vi(1, conf["index"]) + servers == bytes.fromhex(recs["latest_config"]["value"])
    assert len(info["servers"]) == len(conf["servers"]) == 5
    node = recs["local_node_config"]["vault"]
    assert pb.ld(1, node["desired_suffrage"]) == bytes.fromhex(recs["local_node_config"]["value"])


def test_data_masked_unless_show_secrets(vault_db):
    r = run_ok("dump", vault_db)
    shown = run_ok("dump", vault_db, "--show-secrets").stdout
    assert '\\"type\\":\\"shamir' not in r.stdout and '\\"type\\":\\"shamir\\"' in shown
    data = [rec for rec in jsonl(r) if rec["path"] == ["data"]]
    for decode in ("none", "containerd"):  # masked whatever --decode says
        assert '\\"type\\":\\"shamir' not in run_ok("dump", vault_db, "--decode", decode).stdout
    assert data and all(r["value_redacted"] and set(r["value"]) <= {"*"} for r in data)
    got = run_ok("get", vault_db, "data", "core/seal-config")
    assert set(got.stdout.strip()) == {"*"}
    assert json.loads(run_ok("get", vault_db, "data", "core/seal-config",
                             "--show-secrets").stdout)["type"] == "shamir"


def test_repaired_copy_dumps_the_same(vault_db, tmp_path):
    run_ok("repair", vault_db, "--out", tmp_path / "fixed.db")
    def records(path):
        return [(r["path"], r["key"], r["value"], r["vault"])
                for r in _kv(path, "--show-secrets", "--encoding", "hex")]

    assert records(tmp_path / "fixed.db") == records(vault_db)
    assert inspect_json(tmp_path / "fixed.db")["vault"] == inspect_json(vault_db)["vault"]


#: damage.KINDS that apply to a paged bucket of any bbolt file, aimed at `data`
DAMAGE = ("zeroed-page", "page-self-id-mismatch", "branch-to-self", "branch-past-pgid",
          "branch-past-eof", "branch-duplicate-child", "branch-count-too-large",
          "leaf-count-zero", "leaf-count-too-large", "leaf-count-and-pos-damaged",
          "leaf-pos-out-of-page", "leaf-ksize-out-of-page", "leaf-vsize-out-of-page",
          "zero-length-key", "keys-swapped", "key-outside-ancestor-range",
          "leaf-overflow-too-large")


def _records(path) -> dict:
    """Real bbolt's records of ``path``, by bucket path and key."""
    return {(tuple(r["path"]), r["key"]): r["value"] for r in oracle.oracle_dump(path)}


@pytest.fixture(scope="module")
def commits_of(vault_db, tmp_path_factory):
    """Real bbolt's records of the file's newest commit, and of the commit
    before it (read by bbolt itself from a copy whose newest meta fails its
    checksum, so that bbolt opens the other, as it does)."""
    prev = tmp_path_factory.mktemp("vault-prev") / "prev.db"
    prev.write_bytes(vault_db.read_bytes())
    damage.meta_bad_checksum(prev)
    return _records(vault_db), _records(prev)


@pytest.mark.parametrize("kind", DAMAGE)
def test_damage_to_the_data_keeps_only_what_was_there(kind, vault_db, commits_of, tmp_path):
    """A damage kind in Vault's ``data`` bucket: the repaired copy passes the
    real bbolt's check, is still Vault's, and holds either the previous
    commit exactly (rolled back: the newest commit's tree is damaged, the
    one before is whole) or no record the newest commit did not hold under
    the same key; what it lost is said."""
    src = damage.copy_fixture(str(vault_db), tmp_path, "damaged.db")
    damage.KINDS[kind].fn(src, (b"data",))
    out = tmp_path / "fixed.db"
    rep = repair(src, out).to_json()
    res = oracle.oracle_check(out)
    assert res.ok, (res.status, res.messages[:5])
    newest, previous = commits_of
    got = _records(out)
    if rep["commits"]["rule"] == "rolled-back":
        assert got == previous and rep["lost_data"]
    else:
        assert not [k for k, v in got.items() if newest.get(k) != v], "records placed wrong"
        if len(got) < len(newest):
            assert rep["lost_data"], rep["dropped_counts"]
    assert inspect_json(out)["application"] == inspect_json(vault_db)["application"]
    # the Vault member still masks what it dumps
    assert all("value_redacted" in r for r in _kv(out) if r["path"] == ["data"])


def test_page_views_mask_data_values(vault_db):
    """`page`, `page --json` and `page --hex` of every page show no byte run
    of a `data` value (a page does not say its bucket: every value but
    config's own keys is masked in a Vault FSM): neither a barrier value's
    nonce and ciphertext nor the plaintext seal config; --show-secrets
    shows them, so the test can fail."""
    recs = [r for r in _kv(vault_db, "--show-secrets", "--encoding", "hex")
            if r["path"] == ["64617461"]]
    pieces = [bytes.fromhex(r["value"])[5:29] for r in recs if r["vault"]["kind"] == "barrier"]
    pieces.append(b'"type":"shamir"')  # core/seal-config, plaintext JSON
    hidden, shown = page_bytes(vault_db), page_bytes(vault_db, "--show-secrets")
    assert len(pieces) > 1000 and all(p in shown for p in pieces)
    assert not any(p in hidden for p in pieces)
