"""Docker's volume store (``volumes/metadata.db``) and libnetwork's store
(``local-kv.db``) against what Docker's own packages wrote and read
(support/dockergen.py builds fixtures/dockergen, linked against
github.com/docker/docker v28.5.2+incompatible): inspect's facts, dump's
decoding and masking, check's endpoints without their network, and
repair's output read back by Docker."""

from __future__ import annotations

import json

import pytest

from support import damage, dockergen
from support.cli import inspect_json, invoke, jsonl, page_bytes, run_ok

#: the credential-like values dockergen writes (fixtures/dockergen/main.go)
SECRETS = ("S3cr3t-Cifs", "Ssh-Pa55w0rd", "tok-Label-S3cret", "Vpn-Dr1ver-S3cret",
           "PreShared-K3y")


@pytest.fixture(scope="module")
def vols(tmp_path_factory):
    """(metadata.db renamed, what Docker wrote): never told by its name."""
    d = tmp_path_factory.mktemp("dockervol")
    wrote = dockergen.volumes(d)
    path = d / "state.bin"
    path.write_bytes(open(wrote["path"], "rb").read())
    return path, wrote


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """(local-kv.db, what libnetwork wrote), clean and with appnet deleted."""
    a, b = tmp_path_factory.mktemp("dockernet"), tmp_path_factory.mktemp("dockernet")
    clean, broken = dockergen.network(a), dockergen.network(b, "--damage", "network")
    return clean, broken


def _secret_free(text: str) -> bool:
    return not any(s in text for s in SECRETS)


def test_inspect_volumes_is_what_docker_wrote(vols):
    path, wrote = vols
    info = inspect_json(path)
    assert info["application"] == "docker volumes"
    d = info["docker"]
    v = wrote["volumes"]
    drivers = {}
    for w in v.values():
        drivers[w["driver"]] = drivers.get(w["driver"], 0) + 1
    assert d["volumes"] == len(v) and d["drivers"] == drivers
    assert d["with_labels"] == sum(1 for w in v.values() if w["labels"])
    assert d["with_options"] == sum(1 for w in v.values() if w["options"])
    assert d["undecodable"] == 0 and d["name_mismatches"] == 0
    assert "application: docker volumes" in run_ok("inspect", path).stdout


def test_inspect_network_is_what_libnetwork_wrote(nets):
    clean, _ = nets
    d = inspect_json(clean["path"])["docker"]
    w = clean["networks"]
    assert d["application"] == "docker libnetwork"
    assert d["networks"] == len(w)
    assert d["endpoints"] == sum(len(n["endpoints"]) for n in w.values())
    assert d["by_network"] == {nid: {"name": n["name"], "type": n["type"], "scope": n["scope"],
                                     "endpoints": len(n["endpoints"])} for nid, n in w.items()}
    assert d["orphan_endpoints"] == 0 and d["undecodable"] == 0


def test_dump_decodes_volumes_and_masks_credentials(vols):
    path, wrote = vols
    res = run_ok("dump", path)
    assert _secret_free(res.stdout)
    recs = [r for r in jsonl(res) if r["type"] == "kv"]
    assert {r["key"] for r in recs} == set(wrote["volumes"])
    shown = {r["key"]: r["docker"] for r in jsonl(run_ok("dump", path, "--show-secrets"))
             if r["type"] == "kv"}
    for name, w in wrote["volumes"].items():
        got = shown[name]
        assert (got["name"], got["driver"], got["labels"], got["options"]) == \
            (name, w["driver"], w["labels"], w["options"])
    masked = {r["key"]: r for r in recs}
    assert masked["ssh-data"]["docker"]["options"]["password"] == "<redacted>"
    assert masked["ssh-data"]["value_redacted"] is True
    assert "password=<redacted>" in masked["cifs-backup"]["docker"]["options"]["o"]
    assert "value_redacted" not in masked["pgdata"]
    none = run_ok("dump", path, "--decode", "none").stdout
    assert _secret_free(none) and '"docker"' not in none
    assert _secret_free(run_ok("get", path, "volumes", "ssh-data").stdout)


def test_dump_decodes_libnetwork_records(nets):
    clean, _ = nets
    assert _secret_free(run_ok("dump", clean["path"]).stdout)
    recs = [r for r in jsonl(run_ok("dump", clean["path"], "--show-secrets"))
            if r["type"] == "kv"]
    seen_nets, seen_eps = {}, {}
    for r in recs:
        d = r["docker"]
        assert isinstance(d["index"], int) and d["index"] > 0
        if d["kind"] == "network":
            seen_nets[d["ids"][0]] = d["json"]
        elif d["kind"] == "endpoint":
            seen_eps[tuple(d["ids"])] = d["json"]["name"]
    assert {k: (v["name"], v["networkType"], v["scope"]) for k, v in seen_nets.items()} == \
        {k: (n["name"], n["type"], n["scope"]) for k, n in clean["networks"].items()}
    assert seen_eps == {(nid, eid): name for nid, n in clean["networks"].items()
                        for eid, name in n["endpoints"].items()}
    assert not _secret_free(json.dumps(recs))  # --show-secrets shows them


def test_check_reports_endpoints_without_network(nets):
    clean, broken = nets
    res = json.loads(run_ok("check", clean["path"], "--json").stdout)
    assert res["total"] == 0 and res["stats"]["docker"]["networks"] == 4
    res = json.loads(invoke("check", broken["path"], "--json", "--strict", code=(1,)).stdout)
    gone = broken["damaged"][0].split(":", 1)[1]
    assert set(res["counts"]) == {"docker-endpoint-network-missing"}
    eps = {f["detail"]["endpoint"]: f["detail"]["network"] for f in res["findings"]}
    assert eps == {eid: gone for eid in broken["networks"][gone]["endpoints"]}
    # libnetwork itself no longer lists them
    seen = dockergen.read_network(broken["path"])["networks"]
    assert gone not in seen and len(seen) == len(broken["networks"]) - 1


def test_repair_reports_in_docker_terms_and_docker_reads_it(nets, tmp_path):
    _, broken = nets
    out = tmp_path / "fixed.db"
    rep = json.loads(run_ok("repair", broken["path"], "--out", out, "--json").stdout)["docker"]
    gone = broken["damaged"][0].split(":", 1)[1]
    assert {e["endpoint"] for e in rep["lost"]["endpoints_without_network"]} == \
        set(broken["networks"][gone]["endpoints"])
    assert rep["advice"] and rep["networks"] == len(broken["networks"]) - 1
    assert dockergen.read_network(out) == dockergen.read_network(broken["path"])


def test_a_value_libnetwork_panics_on_is_flagged_and_dropped(tmp_path):
    """A value cut below libkv's 8-byte index: libnetwork's own List panics
    on the file; check flags it; repair drops it, names the network lost,
    and libnetwork lists the output (every other network and endpoint)."""
    wrote = dockergen.network(tmp_path, "--damage", "short")
    key = wrote["damaged"][0].split(":", 1)[1]
    gone = key.rstrip("/").rsplit("/", 1)[1]
    with pytest.raises(RuntimeError, match="slice bounds out of range"):
        dockergen.read_network(wrote["path"])
    res = json.loads(invoke("check", wrote["path"], "--json", "--strict", code=(1,)).stdout)
    short = [f["detail"] for f in res["findings"] if f["code"] == "docker-record-undecodable"]
    assert [(d["key"], d["length"]) for d in short] == [(key, 3)]
    out = tmp_path / "fixed.db"
    rep = json.loads(invoke("repair", wrote["path"], "--out", out, "--json",
                            code=(0, 1)).stdout)
    assert [f["code"] for f in rep["dropped"]] == ["docker-kv-value-short"]
    assert rep["docker"]["lost"]["networks"] == [gone]
    seen = dockergen.read_network(out)["networks"]
    assert seen == {nid: n for nid, n in wrote["networks"].items() if nid != gone}
    text = " ".join(invoke("repair", wrote["path"], "--out", tmp_path / "f2.db",
                           code=(0, 1)).stdout.split())
    assert f"1 record(s) dropped: {gone[:12]}" in text
    assert f"network {gone[:12]}: docker network create it again" in text


def test_repaired_volume_store_is_restored_by_docker(vols, tmp_path):
    """A clean copy repaired restores the same volumes; with the newest
    meta destroyed, repair keeps the previous commit (the last volume
    created, ssh-data, is in no other) and Docker restores exactly the
    volumes repair's report says it kept."""
    path, wrote = vols
    run_ok("repair", path, "--out", tmp_path / "same.db")
    assert dockergen.read_volumes(tmp_path / "same.db")["volumes"] == wrote["volumes"]
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    newest = max((0, 1), key=lambda i: damage.read_meta(src, i).txid)
    ps = damage.page_size_of(src)
    with open(src, "r+b") as f:
        f.seek(newest * ps)
        f.write(bytes(ps))
    rep = json.loads(invoke("repair", src, "--out", tmp_path / "fixed.db", "--json",
                            code=(0, 1)).stdout)["docker"]
    seen = dockergen.read_volumes(tmp_path / "fixed.db")["volumes"]
    assert seen == {k: v for k, v in wrote["volumes"].items() if k != "ssh-data"}
    assert rep["volumes"] == len(seen) and rep["drivers"] == {"local": len(seen)}


def test_a_lost_libnetwork_leaf_is_reported_and_libnetwork_reads_the_rest(nets, tmp_path):
    """The leaf holding the networks zeroed: repair drops it, names the
    networks whose records it held, and libnetwork lists the output: no
    network it did not write, and every endpoint left is one it wrote."""
    clean, _ = nets
    src = damage.copy_fixture(clean["path"], tmp_path, "damaged.db")
    nodes = damage.bucket_tree(src, (b"libnetwork",))
    leaf = next(n for n in nodes if n.children == [] and
                any(k.startswith(b"docker/network/v1.0/network/") for k in n.keys))
    lost = {k.decode().rstrip("/").rsplit("/", 1)[1] for k in leaf.keys
            if k.startswith(b"docker/network/v1.0/network/")}
    assert lost
    ps = damage.page_size_of(src)
    with open(src, "r+b") as f:
        f.seek(leaf.pgid * ps)
        f.write(bytes(ps))
    rep = json.loads(invoke("repair", src, "--out", tmp_path / "fixed.db", "--json",
                            code=(0, 1)).stdout)["docker"]
    assert rep["lost"]["records_total"] >= 1
    seen = dockergen.read_network(tmp_path / "fixed.db")["networks"]
    assert set(seen) == set(clean["networks"]) - lost and rep["networks"] == len(seen)
    for nid, n in seen.items():
        assert set(n["endpoints"].items()) <= set(clean["networks"][nid]["endpoints"].items())


def test_page_views_mask_credentials(vols, nets):
    """`page`, `page --json` and `page --hex` of every page: no credential
    (a page does not say its bucket: Docker's rule by the file's layout;
    the volumes bucket is inline, its records inside the root leaf's value);
    --show-secrets shows them, so the test can fail."""
    for path in (vols[0], nets[0]["path"]):
        hidden, shown = page_bytes(path), page_bytes(path, "--show-secrets")
        assert not any(s.encode() in hidden for s in SECRETS), path
        assert any(s.encode() in shown for s in SECRETS), path
