"""containerd's metadata database (``meta.db``) against what containerd's
own ``core/metadata`` package wrote (support/containerdgen.py builds
fixtures/containerdgen, linked against containerd v2.4.2): inspect's
facts, check's broken references, dump's decoding and masking, the
snapshotter's own metadata.db left generic, and repair's output read back
by containerd."""

from __future__ import annotations

import json

import pytest

from boltfix import containerd as CD
from boltfix.reader import DB
from boltfix.walk import Walker
from support import containerdgen, damage
from support.cli import inspect_json, invoke, jsonl, page_bytes, run_ok

SECRETS = ("hunter2", "s3cr3t-token")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two namespaces, clean, and the native snapshotter's own metadata.db:
    (meta.db path, what containerd wrote, snapshotter db path)."""
    d = tmp_path_factory.mktemp("containerd")
    path, snap = d / "state.bin", d / "snapshots.db"  # never told by their names
    return path, containerdgen.make(path, "--snapshotter-db", snap), snap


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """The same, then a blob, a container's snapshot and a parent snapshot
    removed by bbolt (what a lost page takes)."""
    path = tmp_path_factory.mktemp("containerd") / "meta.db"
    return path, containerdgen.make(path, "--damage", "blob", "--damage", "snapshot",
                                    "--damage", "parent")


def test_inspect_facts_are_what_containerd_wrote(store):
    path, wrote, _ = store
    info = inspect_json(path)
    assert info["application"] == "containerd metadata (schema v1, version 4)"
    c = info["containerd"]
    assert c["version"] == 4 and "raft" not in info and "etcd" not in info
    assert set(c["namespaces"]) == set(wrote["namespaces"])
    for ns, w in wrote["namespaces"].items():
        got = c["namespaces"][ns]
        assert got["images"] == len(w["images"])
        assert got["containers"] == len(w["containers"])
        assert got["snapshots"] == len(w["snapshots"])
        assert got["blobs"] == len(w["blobs"])
        assert got["leases"] == len(w["leases"])
        assert got["sandboxes"] == len(w["sandboxes"])
        assert got["labels"] == len(w["labels"])
    text = run_ok("inspect", path).stdout
    assert "application: containerd metadata (schema v1, version 4)" in text


def test_the_snapshotter_metadata_db_stays_generic(store):
    """The native snapshotter's metadata.db also has one bucket `v1`
    (v1/snapshots, v1/parents, no version key): not containerd's metadata."""
    _, _, snap = store
    info = inspect_json(snap)
    assert [b["name"] for b in info["buckets"]] == ["v1"]
    assert "application" not in info and "containerd" not in info
    assert all("containerd" not in r for r in jsonl(run_ok("dump", snap)))


def test_check_clean_and_with_broken_references(store, broken):
    path, _, _ = store
    res = json.loads(run_ok("check", path, "--json").stdout)
    assert res["total"] == 0 and res["stats"]["containerd"]["version"] == 4
    path, wrote = broken
    res = json.loads(invoke("check", path, "--json", "--strict", code=(1,)).stdout)
    by = {f["code"]: f["detail"] for f in res["findings"]}
    assert set(res["counts"]) == {"containerd-image-target-missing",
                                  "containerd-snapshot-missing", "containerd-parent-missing"}
    assert all(n == 1 for n in res["counts"].values())
    img = by["containerd-image-target-missing"]
    assert img["image"] == "docker.io/library/app0:latest"
    assert img["digest"] == wrote["namespaces"]["default"]["images"][img["image"]]
    assert by["containerd-snapshot-missing"]["container"] == "ctr-default-1"
    par = by["containerd-parent-missing"]
    assert (par["snapshot"], par["parent"]) == (
        "ctr-default-2", wrote["namespaces"]["default"]["snapshots"]["ctr-default-2"])
    # not a problem without --strict: warnings that never stop containerd
    assert run_ok("check", path).exit_code == 0


def _records(path, *args):
    return [r for r in jsonl(run_ok("dump", path, *args)) if r["type"] == "kv"]


def test_dump_decodes_every_value_kind(store):
    path, wrote, _ = store
    recs = _records(path)
    assert recs and all("containerd" in r for r in recs)
    by_field: dict = {}
    for r in recs:
        by_field.setdefault(r["key"], []).append(r["containerd"])
    assert by_field["version"] == [{"field": "version", "schema_version": 4}]
    assert all(d["time"].startswith("20") for d in by_field["createdat"])
    sizes = {d["id"]: d["size"] for d in by_field["size"] if d["object"] == "blob"}
    for ns in wrote["namespaces"].values():
        for b in ns["blobs"]:
            assert sizes[b["digest"]] == b["size"]
    specs = [d for d in by_field["spec"] if d["object"] == "container"]
    assert len(specs) == sum(len(w["containers"]) for w in wrote["namespaces"].values())
    for d in specs:
        assert d["any"]["type_url"].endswith("opencontainers/runtime-spec/1/Spec")
        assert d["any"]["json"]["process"]["env"] == ["PATH=<redacted>", "DB_PASSWORD=<redacted>"]
    ext = by_field["example.com/ext"][0]["any"]
    assert ext["type_url"] == "google.protobuf.StringValue"
    assert ext["fields"][0][2].startswith("extension value ctr-")
    digests = {d["value"] for d in by_field["digest"]}
    assert digests == {dg for w in wrote["namespaces"].values() for dg in w["images"].values()}


def test_dump_member_is_the_dicts_json(store, broken):
    """decode_json (dump's ``containerd`` member, written without a dict
    per record) is json.dumps of decode_record on every record containerd
    wrote, clean and broken, secrets shown or not."""
    n = 0
    for path in (store[0], broken[0]):
        with DB(str(path)) as db:
            w = Walker(db)
            for b, batch in w.walk_batches(w.root_bucket()):
                entry = batch.bucket_entry
                records = ([(bytes(entry.key), None)] if entry is not None else
                           [(bytes(k), bytes(v)) for k, v in zip(batch.keys, batch.values)])
                for key, value in records:
                    for show in (False, True):
                        d = CD.decode_record(b.path, key, value, show)
                        want = None if d is None else json.dumps(
                            d, ensure_ascii=False, separators=(",", ":"))
                        assert CD.decode_json(b.path, key, value, show) == want, (b.path, key)
                        n += 1
    assert n > 500


def test_secrets_masked_unless_show_secrets(store):
    path, _, _ = store
    for fmt, decode in (("jsonl", "auto"), ("text", "auto"), ("jsonl", "none"),
                        ("text", "vault")):
        out = run_ok("dump", path, "--format", fmt, "--decode", decode).stdout
        for s in SECRETS:
            assert s not in out and s.encode().hex() not in out, (fmt, s)
        shown = run_ok("dump", path, "--format", fmt, "--show-secrets").stdout
        for s in SECRETS:
            assert s in shown or s.encode().hex() in shown, (fmt, s)
    labels = [r for r in _records(path) if r["key"] == "password"]
    assert labels and all(r["value_redacted"] and r["value"] == "*" * 7 for r in labels)
    where = ("v1", "default", "containers", "ctr-default-0")
    r = invoke("get", path, *where, "labels", "password", code=(0,))
    assert r.stdout.strip() == "*" * 7 and "redacted" in r.stderr
    assert run_ok("get", path, *where, "labels", "password", "--show-secrets").stdout.strip() \
        == "hunter2"
    spec = run_ok("get", path, *where, "spec", "--encoding", "raw").stdout
    assert "DB_PASSWORD=*******" in spec and "PATH=********" in spec


def test_repaired_file_is_listed_by_containerd(store, tmp_path):
    """A clean copy repaired lists the same; with the leaf of default's
    `containers` zeroed, containerd still opens and lists the repaired file,
    and lists nothing it did not write."""
    path, wrote, _ = store
    run_ok("repair", path, "--out", tmp_path / "same.db")
    assert containerdgen.read(tmp_path / "same.db") == containerdgen.read(path)
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    with DB(str(src)) as db:
        root = damage.find_bucket(db, (b"v1", b"default", b"containers")).root
    ps = damage.page_size_of(src)
    with open(src, "r+b") as f:
        f.seek(root * ps)
        f.write(bytes(ps))
    rep = json.loads(invoke("repair", src, "--out", tmp_path / "fixed.db", "--json",
                            code=(1,)).stdout)["containerd"]
    assert rep["lost"]["kinds"] == [{"namespace": "default", "object": "container"}]
    assert rep["namespaces"]["default"]["containers"] == 0 and rep["advice"]
    seen = containerdgen.read(tmp_path / "fixed.db")["namespaces"]
    for ns, w in wrote["namespaces"].items():
        assert seen[ns]["images"] == w["images"]
        assert set(seen[ns]["containers"]) <= set(w["containers"])
    assert seen["k8s.io"]["containers"] == wrote["namespaces"]["k8s.io"]["containers"]
    assert seen["default"]["containers"] == {}


def test_repair_names_broken_references_in_containerd_terms(broken, tmp_path):
    """Records that name what is gone are copied as they are (content
    warnings never fail repair's read-back check); the report says what to
    pull again and which container has no snapshot."""
    path, wrote = broken
    r = run_ok("repair", path, "--out", tmp_path / "fixed.db")
    text = " ".join(r.stdout.split())
    assert "1 image(s) without their content" in text
    assert "ctr -n default images pull docker.io/library/app0:latest" in text
    rep = json.loads(run_ok("repair", path, "--out", tmp_path / "fixed2.db", "--json")
                     .stdout)["containerd"]
    lost = rep["lost"]
    assert lost["images_to_pull"] == [{"namespace": "default",
                                       "image": "docker.io/library/app0:latest"}]
    assert lost["containers_without_snapshot"] == [{"namespace": "default",
                                                    "container": "ctr-default-1"}]
    assert lost["snapshots_without_parent"] == [{"namespace": "default",
                                                 "snapshot": "ctr-default-2"}]
    assert lost["objects_total"] == 0 and lost["kinds"] == []
    assert containerdgen.read(tmp_path / "fixed.db") == containerdgen.read(path)


def test_page_views_mask_secrets(store):
    """`page`, `page --json` and `page --hex` of every page of meta.db show
    neither a credential-like label's value nor a spec's environment value
    (a page does not say its bucket: containerd's rule by the file's
    layout); --show-secrets shows them, so the test can fail."""
    path, _, _ = store
    hidden, shown = page_bytes(path), page_bytes(path, "--show-secrets")
    for s in SECRETS:
        assert s.encode() not in hidden and s.encode() in shown, s
